"""Corrupt region-feature input raises errors naming the file, the line or key and the problem; skip mode lists."""

from __future__ import annotations

import base64
import json
import pickle

import numpy as np
import pytest

from hierarchical_vl.cli import main as hvl
from hierarchical_vl.data import (
    RegionFeatureError,
    RegionFeatureRecord,
    RegionFeatureStore,
    convert_region_features,
    open_region_feature_reader,
    write_bottom_up_tsv,
    write_hdf5,
    write_lmdb,
    write_npz_directory,
)
from hierarchical_vl.data.feature_writers import _bottom_up_tsv_line


def _record(image_id: str, count: int = 3, dim: int = 8, seed: int = 0) -> RegionFeatureRecord:
    rng = np.random.default_rng(seed)
    boxes = np.tile(np.array([0, 0, 50, 60], np.float32), (count, 1))
    return RegionFeatureRecord(image_id, 100.0, 80.0, boxes, rng.normal(size=(count, dim)).astype(np.float32))


def _good_line(image_id: str, **kwargs) -> bytes:
    return _bottom_up_tsv_line(_record(image_id, **kwargs))


def _b64(array: np.ndarray) -> bytes:
    return base64.b64encode(np.ascontiguousarray(array, np.float32).tobytes())


def _line(image_id: str, num_boxes: int, boxes: np.ndarray, features: np.ndarray) -> bytes:
    return b"\t".join([image_id.encode(), b"100", b"80", str(num_boxes).encode(), _b64(boxes), _b64(features)]) + b"\n"


BOXES = np.tile(np.array([0, 0, 50, 60], np.float32), (3, 1))
FEATURES = np.ones((3, 8), np.float32)
NAN_FEATURES = FEATURES.copy()
NAN_FEATURES[1, 4] = np.nan
INF_FEATURES = FEATURES.copy()
INF_FEATURES[2, 0] = np.inf

# name -> (bad line placed as line 2, expected words of the problem)
TSV_CORRUPTIONS = {
    "bad base64": (
        b"\t".join([b"2", b"100", b"80", b"3", b"@@not-base64@@", _b64(FEATURES)]) + b"\n",
        "bad base64 in column 'boxes'",
    ),
    "num_boxes disagrees": (_line("2", 4, BOXES, FEATURES), "num_boxes=4 disagrees with the boxes array"),
    "num_boxes disagrees with features": (
        _line("2", 3, BOXES, np.ones(25, np.float32)),
        "num_boxes=3 disagrees with the features array",
    ),
    "wrong feature width": (
        _line("2", 3, BOXES, np.ones((3, 7), np.float32)),
        "wrong feature width 7, expected 8",
    ),
    "nan": (_line("2", 3, BOXES, NAN_FEATURES), "features contain NaN or inf"),
    "inf": (_line("2", 3, BOXES, INF_FEATURES), "features contain NaN or inf"),
    "duplicate image id": (_good_line("1", seed=5), "duplicate image id '1' (first seen at line 1)"),
    "missing column": (b"2\t100\t80\t3\t" + _b64(BOXES) + b"\n", "5 tab-separated columns, expected 6"),
}


@pytest.mark.parametrize("name", list(TSV_CORRUPTIONS))
def test_tsv_corruption_names_file_line_and_problem(tmp_path, name):
    bad_line, problem = TSV_CORRUPTIONS[name]
    path = tmp_path / "features.tsv"
    path.write_bytes(_good_line("1") + bad_line + _good_line("3"))
    with pytest.raises(RegionFeatureError) as caught:
        list(open_region_feature_reader(path))
    message = str(caught.value)
    assert str(path) in message and "line 2" in message and problem in message, message
    assert caught.value.file == str(path) and caught.value.location.startswith("line 2")


def test_truncated_last_line(tmp_path):
    path = tmp_path / "features.tsv"
    path.write_bytes(_good_line("1") + _good_line("2")[:-21])  # cut in the features column, no newline
    with pytest.raises(RegionFeatureError) as caught:
        list(open_region_feature_reader(path))
    message = str(caught.value)
    assert f"{path}, line 2" in message and "truncated line (no newline at end of file)" in message, message


def test_skip_mode_lists_every_bad_record_and_keeps_the_rest(tmp_path, capsys):
    path = tmp_path / "features.tsv"
    lines = (
        [_good_line("1")] + [line for line, _ in TSV_CORRUPTIONS.values()] + [_good_line("99"), _good_line("100")[:-21]]
    )
    path.write_bytes(b"".join(lines))
    report = convert_region_features(path, tmp_path / "store", skip_bad=True, progress=False)
    assert report.num_images == 2  # lines 1 and 99
    skipped = [str(s) for s in report.skipped]
    assert len(skipped) == len(TSV_CORRUPTIONS) + 1
    for number, (_, problem) in enumerate(TSV_CORRUPTIONS.values(), start=2):
        assert any(f"line {number}" in s and problem in s for s in skipped), (number, problem, skipped)
    assert "truncated line" in skipped[-1]
    store = RegionFeatureStore(tmp_path / "store")
    assert sorted(store) == ["1", "99"]
    assert store.skipped == skipped  # recorded with the store, too
    # The command line prints what it skipped.
    assert hvl(["features", "convert", str(path), str(tmp_path / "store2"), "--skip-bad", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"skipped {len(skipped)} records" in out and "line 2" in out and "truncated line" in out


def test_failed_conversion_leaves_nothing_behind(tmp_path, capsys):
    path = tmp_path / "features.tsv"
    path.write_bytes(_good_line("1") + TSV_CORRUPTIONS["nan"][0])
    with pytest.raises(RegionFeatureError):
        convert_region_features(path, tmp_path / "store", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.tsv"]
    assert hvl(["features", "convert", str(path), str(tmp_path / "store"), "--no-progress"]) == 1
    assert f"{path}, line 2" in capsys.readouterr().err


def test_duplicate_image_across_sources(tmp_path):
    first, second = tmp_path / "a.tsv", tmp_path / "b.tsv"
    first.write_bytes(_good_line("1") + _good_line("2"))
    second.write_bytes(_good_line("3") + _good_line("2"))
    with pytest.raises(RegionFeatureError, match=r"b\.tsv, image '2': duplicate image id \(already in .*a\.tsv\)"):
        convert_region_features([first, second], tmp_path / "store", progress=False)
    report = convert_region_features([first, second], tmp_path / "store", skip_bad=True, progress=False)
    assert report.num_images == 3 and len(report.skipped) == 1 and "b.tsv" in str(report.skipped[0])


def test_feature_width_must_agree_across_sources(tmp_path):
    first, second = tmp_path / "a.tsv", tmp_path / "b.tsv"
    first.write_bytes(_good_line("1"))
    second.write_bytes(_good_line("2", dim=16))
    with pytest.raises(RegionFeatureError, match=r"b\.tsv, line 1 \(image '2'\): wrong feature width 16, expected 8"):
        convert_region_features([first, second], tmp_path / "store", progress=False)


def test_hdf5_corruption_names_the_entry(tmp_path):
    pytest.importorskip("h5py")
    bad = _record("2")
    bad.features[0, 0] = np.inf
    path = write_hdf5(tmp_path / "f.h5", [_record("1"), bad])
    with pytest.raises(RegionFeatureError, match=r"f\.h5, entry 1 \(image '2'\): features contain NaN or inf"):
        list(open_region_feature_reader(path))
    path = write_hdf5(tmp_path / "dup.h5", [_record("1"), _record("1")])
    with pytest.raises(RegionFeatureError, match=r"dup\.h5, entry 1 \(image '1'\): duplicate image id"):
        list(open_region_feature_reader(path))


def test_npz_corruption_names_the_file(tmp_path):
    directory = write_npz_directory(tmp_path / "npz", [_record("1"), _record("2")])
    np.savez(
        directory / "2.npz",
        x=np.ones((3, 8), np.float32),
        bbox=np.ones((2, 4), np.float32),
        num_bbox=3,
        image_w=100,
        image_h=80,
    )
    with pytest.raises(RegionFeatureError, match=r"file '2\.npz' \(image '2'\): num_boxes=3 disagrees with the boxes"):
        list(open_region_feature_reader(directory))
    (directory / "3.npz").write_bytes(b"not a zip file")
    reader = open_region_feature_reader(directory, skip_bad=True)
    assert [r.image_id for r in reader] == ["1"]
    assert [s.location.split(" ")[1] for s in reader.skipped] == ["'2.npz'", "'3.npz'"]
    assert "cannot be read" in reader.skipped[1].problem


def test_lmdb_corruption_names_the_key(tmp_path):
    lmdb = pytest.importorskip("lmdb")
    path = write_lmdb(tmp_path / "f.lmdb", [_record("1"), _record("2")])
    env = lmdb.open(str(path), map_size=1 << 22)
    with env.begin(write=True) as txn:
        value = pickle.loads(txn.get(b"2"))
        value["features"] = np.ones((3, 9), np.float32)
        txn.put(b"2", pickle.dumps(value))
        txn.put(b"5", b"\x80\x04garbage")
    env.close()
    with pytest.raises(RegionFeatureError, match=r"f\.lmdb, key '2' \(image '2'\): wrong feature width 9, expected 8"):
        list(open_region_feature_reader(path))
    reader = open_region_feature_reader(path, skip_bad=True)
    assert [r.image_id for r in reader] == ["1"]
    assert [s.location for s in reader.skipped] == ["key '2' (image '2')", "key '5' (image '5')"]
    assert "cannot be unpickled" in reader.skipped[1].problem


def test_store_metadata_is_json(tmp_path):
    write_bottom_up_tsv(tmp_path / "f.tsv", [_record("1")])
    convert_region_features(tmp_path / "f.tsv", tmp_path / "store", progress=False)
    meta = json.loads((tmp_path / "store" / "store.json").read_text())
    assert meta["num_images"] == 1 and meta["feature_dim"] == 8 and meta["skipped"] == []
