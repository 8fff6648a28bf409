"""Edge cases of the region-feature readers: non-UTF-8 ids, TSV lines cut at a base64 boundary, overlapping HDF5
row ranges and empty shards each give an error naming the file, the record and the problem (or, with
``skip_bad``, a listed skipped record)."""

from __future__ import annotations

import base64
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
)
from hierarchical_vl.data.feature_writers import _bottom_up_tsv_line, _lxmert_tsv_line

DIM = 8


def _record(image_id: str, count: int = 3, dim: int = DIM, seed: int = 0) -> RegionFeatureRecord:
    rng = np.random.default_rng(seed)
    boxes = np.tile(np.array([0, 0, 50, 60], np.float32), (count, 1))
    return RegionFeatureRecord(image_id, 100.0, 80.0, boxes, rng.normal(size=(count, dim)).astype(np.float32))


def _cut_line(image_id: str, keep_dim: int, newline: bool, line_of=_bottom_up_tsv_line) -> bytes:
    """A TSV line whose features column is cut so that it still decodes, to ``keep_dim`` values per box."""
    record = _record(image_id, count=3)
    fields = line_of(record).rstrip(b"\n").split(b"\t")
    cut = base64.b64encode(record.features.reshape(-1)[: 3 * keep_dim].tobytes())
    assert base64.b64encode(record.features.tobytes()).startswith(cut)  # a prefix: cut at a base64 boundary
    return b"\t".join(fields[:-1] + [cut]) + (b"\n" if newline else b"")


# -- 1. non-UTF-8 image ids -------------------------------------------------------------------------------------
@pytest.mark.parametrize("line_of", [_bottom_up_tsv_line, _lxmert_tsv_line], ids=["tsv", "lxmert-tsv"])
@pytest.mark.parametrize("skip_bad", [False, True])
def test_non_utf8_tsv_image_id_is_a_named_bad_record(tmp_path, line_of, skip_bad):
    bad = line_of(_record("2")).replace(b"2\t", b"\xff2\t", 1)
    path = tmp_path / "f.tsv"
    path.write_bytes(line_of(_record("1")) + bad + line_of(_record("3")))
    fmt = "tsv" if line_of is _bottom_up_tsv_line else "lxmert-tsv"
    reader = open_region_feature_reader(path, fmt, skip_bad=skip_bad)
    if not skip_bad:
        with pytest.raises(RegionFeatureError) as caught:
            list(reader)
        message = str(caught.value)
        assert f"{path}, line 2" in message and "not UTF-8" in message and "\\xff" in message, message
        return
    assert [r.image_id for r in reader] == ["1", "3"]
    assert len(reader.skipped) == 1 and reader.skipped[0].location == "line 2"
    assert "not UTF-8" in reader.skipped[0].problem


@pytest.mark.parametrize("skip_bad", [False, True])
def test_non_utf8_lmdb_key_is_a_named_bad_record(tmp_path, skip_bad):
    lmdb = pytest.importorskip("lmdb")
    path = write_lmdb(tmp_path / "f.lmdb", [_record("1"), _record("3")])
    value = {"image_w": 100.0, "image_h": 80.0, "boxes": _record("2").boxes, "features": _record("2").features}
    env = lmdb.open(str(path), subdir=True, map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"2\xfe", pickle.dumps(value))
    env.close()
    reader = open_region_feature_reader(path, "lmdb", skip_bad=skip_bad)
    try:
        if not skip_bad:
            with pytest.raises(RegionFeatureError) as caught:
                list(reader)
            message = str(caught.value)
            assert f"{path}, key b'2\\xfe'" in message and "not UTF-8" in message, message
            assert "\ufffd" not in message
            return
        assert [r.image_id for r in reader] == ["1", "3"]
        assert [s.location for s in reader.skipped] == ["key b'2\\xfe'"]
    finally:
        reader.close()


# -- 2. TSV lines cut at a base64 boundary --------------------------------------------------------------------------
@pytest.mark.parametrize(("fmt", "line_of"), [("tsv", _bottom_up_tsv_line), ("lxmert-tsv", _lxmert_tsv_line)])
def test_cut_first_line_is_blamed_not_the_good_lines_after_it(tmp_path, fmt, line_of):
    path = tmp_path / "f.tsv"
    good = [line_of(_record(str(i), seed=i)) for i in (2, 3)]
    path.write_bytes(_cut_line("1", 6, newline=True, line_of=line_of) + b"".join(good))
    with pytest.raises(RegionFeatureError) as caught:
        list(open_region_feature_reader(path, fmt))
    message = str(caught.value)
    assert f"{path}, line 1 (image '1')" in message and "width 6, expected 8" in message, message

    reader = open_region_feature_reader(path, fmt, skip_bad=True)
    assert [r.image_id for r in reader] == ["2", "3"]
    assert [s.location for s in reader.skipped] == ["line 1 (image '1')"]


def test_one_line_file_cut_at_a_base64_boundary_is_refused(tmp_path):
    path = tmp_path / "f.tsv"
    path.write_bytes(_cut_line("1", 6, newline=False))
    with pytest.raises(RegionFeatureError) as caught:
        convert_region_features(path, tmp_path / "store", progress=False)
    message = str(caught.value)
    assert f"{path}, line 1 (image '1')" in message and "truncated line" in message and "width 6" in message
    assert not (tmp_path / "store").exists()
    # a store of the wrong width is never written; with the width given the complete line is accepted
    whole = tmp_path / "whole.tsv"
    whole.write_bytes(_bottom_up_tsv_line(_record("1")).rstrip(b"\n"))
    report = convert_region_features(whole, tmp_path / "ok", feature_dim=DIM, progress=False)
    assert report.feature_dim == DIM and RegionFeatureStore(tmp_path / "ok").feature_dim == DIM
    skipping = open_region_feature_reader(path, "tsv", skip_bad=True)
    assert list(skipping) == [] and "truncated line" in skipping.skipped[0].problem


# -- 3. overlapping HDF5 row ranges -----------------------------------------------------------------------------
def _overlapping_hdf5(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = write_hdf5(tmp_path / "f.h5", [_record("1"), _record("2"), _record("3")])
    with h5py.File(path, "r+") as f:
        f["pos_boxes"][1] = [2, 5]  # image '2' takes row 2 of image '1' ([0, 3))
    return path


def test_overlapping_hdf5_row_ranges_are_refused_at_open(tmp_path):
    path = _overlapping_hdf5(tmp_path)
    with pytest.raises(RegionFeatureError) as caught:
        open_region_feature_reader(path, "hdf5")
    message = str(caught.value)
    assert f"{path}, entries " in message and "'1'" in message and "'2'" in message, message
    assert "overlap" in message and "[2, 5)" in message and "[0, 3)" in message


def test_overlapping_hdf5_row_ranges_are_skipped_and_listed(tmp_path):
    path = _overlapping_hdf5(tmp_path)
    reader = open_region_feature_reader(path, "hdf5", skip_bad=True)
    try:
        assert [r.image_id for r in reader] == ["3"]
        assert [s.location for s in reader.skipped] == ["entry 0 (image '1')", "entry 1 (image '2')"]
        assert all("overlap" in s.problem for s in reader.skipped)
    finally:
        reader.close()


# -- 4. empty shards --------------------------------------------------------------------------------------------
def test_empty_shard_in_a_multi_file_conversion_is_named(tmp_path, capsys):
    a = write_bottom_up_tsv(tmp_path / "a.tsv", [_record("1")])
    empty = tmp_path / "empty.tsv"
    empty.write_bytes(b"")
    b = write_bottom_up_tsv(tmp_path / "b.tsv", [_record("2")])
    with pytest.raises(RegionFeatureError) as caught:
        convert_region_features([a, empty, b], tmp_path / "store", format="tsv", progress=False)
    assert str(caught.value) == f"{empty}, file: no records (the source is empty)"
    assert not (tmp_path / "store").exists()

    assert hvl(["features", "convert", str(a), str(empty), str(b), str(tmp_path / "cli")]) != 0
    assert str(empty) in capsys.readouterr().err

    report = convert_region_features([a, empty, b], tmp_path / "skip", format="tsv", skip_bad=True, progress=False)
    assert report.num_images == 2
    assert [str(s) for s in report.skipped] == [f"{empty}, file: no records (the source is empty)"]
    assert RegionFeatureStore(tmp_path / "skip").skipped == [f"{empty}, file: no records (the source is empty)"]
