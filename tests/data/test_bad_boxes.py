"""Unusable region boxes are refused naming the file, the record and the problem (issue 11, item 6).

Reversed boxes (``x2 < x1`` or ``y2 < y1``), NaN/inf coordinates and boxes reaching more than 1% of the image size
beyond its edge are refused by every feature reader (and skipped and listed with ``--skip-bad``) and by the
processor; zero-width boxes and boxes just at the tolerance stay accepted.
"""

from __future__ import annotations

import numpy as np
import pytest

from hierarchical_vl import HierarchicalVLProcessor, HierarchicalVLTokenizer
from hierarchical_vl.cli import main as hvl
from hierarchical_vl.data import (
    FEATURE_FORMATS,
    RegionFeatureError,
    RegionFeatureRecord,
    RegionFeatureStore,
    open_region_feature_reader,
    write_bottom_up_tsv,
    write_hdf5,
    write_lmdb,
    write_lxmert_tsv,
    write_npz_directory,
)

WIDTH, HEIGHT = 100.0, 80.0
GOOD_BOX = [10.0, 10.0, 50.0, 60.0]

# name -> (bad box placed as region row 1, expected words of the problem)
BAD_BOXES = {
    "x2 < x1": ([50.0, 10.0, 20.0, 60.0], "boxes have x2 < x1 or y2 < y1 (region rows [1]"),
    "y2 < y1": ([10.0, 60.0, 50.0, 59.0], "boxes have x2 < x1 or y2 < y1 (region rows [1]"),
    "nan": ([10.0, np.nan, 50.0, 60.0], "boxes contain NaN or inf (region rows [1]"),
    "inf": ([10.0, 10.0, np.inf, 60.0], "boxes contain NaN or inf (region rows [1]"),
    "far right": ([10.0, 10.0, 102.0, 60.0], "boxes lie more than 1% outside the 100 x 80 image (region rows [1]"),
    "far left": ([-1.5, 10.0, 50.0, 60.0], "more than 1% outside the 100 x 80 image"),
    "far below": ([10.0, 10.0, 50.0, 81.0], "more than 1% outside the 100 x 80 image"),
    "far above": ([10.0, -200.0, 50.0, 60.0], "more than 1% outside the 100 x 80 image"),
}

WRITERS = {
    "tsv": ("features.tsv", write_bottom_up_tsv, "line 2"),
    "lxmert-tsv": ("features_lxmert.tsv", write_lxmert_tsv, "line 2"),
    "hdf5": ("features.h5", write_hdf5, "entry 1"),
    "npz-dir": ("features_npz", write_npz_directory, "file '2.npz'"),
    "lmdb": ("features.lmdb", write_lmdb, "key '2'"),
}


def _record(image_id: str, bad_box=None) -> RegionFeatureRecord:
    boxes = np.array([GOOD_BOX, GOOD_BOX, [0.0, 0.0, WIDTH, HEIGHT]], np.float32)
    if bad_box is not None:
        boxes[1] = bad_box
    features = np.random.default_rng(int(image_id)).normal(size=(3, 8)).astype(np.float32)
    return RegionFeatureRecord(image_id, WIDTH, HEIGHT, boxes, features)


def _write(tmp_path, format_name, records):
    file_name, writer, _ = WRITERS[format_name]
    if format_name in ("hdf5", "lmdb"):
        pytest.importorskip({"hdf5": "h5py", "lmdb": "lmdb"}[format_name])
    return writer(tmp_path / file_name, records)


@pytest.mark.parametrize("name", list(BAD_BOXES))
def test_bad_box_names_file_record_and_problem(tmp_path, name):
    bad_box, problem = BAD_BOXES[name]
    path = write_bottom_up_tsv(tmp_path / "f.tsv", [_record("1"), _record("2", bad_box), _record("3")])
    with pytest.raises(RegionFeatureError) as caught:
        list(open_region_feature_reader(path))
    message = str(caught.value)
    assert caught.value.file == str(path) and caught.value.location == "line 2 (image '2')", message
    assert problem in message, message


@pytest.mark.parametrize("format_name", FEATURE_FORMATS)
def test_every_reader_refuses_reversed_and_outside_boxes(tmp_path, format_name):
    location = WRITERS[format_name][2]
    for name in ("x2 < x1", "far right"):
        bad_box, problem = BAD_BOXES[name]
        path = _write(tmp_path / name.replace(" ", "_"), format_name, [_record("1"), _record("2", bad_box)])
        reader = open_region_feature_reader(path)
        with pytest.raises(RegionFeatureError) as caught:
            list(reader)
        getattr(reader, "close", lambda: None)()
        assert location in caught.value.location and "'2'" in caught.value.location, str(caught.value)
        assert problem in caught.value.problem, str(caught.value)
        reader = open_region_feature_reader(path, skip_bad=True)
        assert [r.image_id for r in reader] == ["1"]
        getattr(reader, "close", lambda: None)()
        assert len(reader.skipped) == 1 and problem in str(reader.skipped[0])


def test_skip_bad_lists_bad_boxes_in_convert(tmp_path, capsys):
    records = [_record("1")] + [_record(str(i), box) for i, (box, _) in enumerate(BAD_BOXES.values(), start=2)]
    records.append(_record("99"))
    path = write_bottom_up_tsv(tmp_path / "f.tsv", records)
    assert hvl(["features", "convert", str(path), str(tmp_path / "store"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"{path}, line 2 (image '2'): boxes have x2 < x1" in err, err
    assert hvl(["features", "convert", str(path), str(tmp_path / "store"), "--skip-bad", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"skipped {len(BAD_BOXES)} records" in out, out
    store = RegionFeatureStore(tmp_path / "store")
    assert sorted(store) == ["1", "99"]
    for line, (_, problem) in enumerate(BAD_BOXES.values(), start=2):
        assert any(f"line {line} (image '{line}')" in s and problem in s for s in store.skipped), (line, store.skipped)


def test_zero_width_and_edge_boxes_stay_accepted(tmp_path):
    from hierarchical_vl.processing_hierarchical_vl import region_box_problem

    edge = [[20.0, 10.0, 20.0, 10.0], [-0.99, -0.79, 100.99, 80.79]]  # a point; just within the 1% tolerance
    record = _record("1")
    record = RegionFeatureRecord("1", WIDTH, HEIGHT, np.array(edge + [GOOD_BOX], np.float32), record.features)
    path = write_bottom_up_tsv(tmp_path / "f.tsv", [record])
    assert [r.image_id for r in open_region_feature_reader(path)] == ["1"]
    assert region_box_problem(np.array(edge), WIDTH, HEIGHT) is None
    assert region_box_problem(np.array([[0.0, 0.0, 500.0, 500.0]])) is None  # size unknown: only order and values


@pytest.mark.parametrize("name", list(BAD_BOXES))
def test_processor_refuses_bad_boxes(name):
    bad_box, problem = BAD_BOXES[name]
    processor = HierarchicalVLProcessor(HierarchicalVLTokenizer.from_texts(["a red cube"]))
    features = [np.ones((3, 8), np.float32), np.ones((3, 8), np.float32)]
    good = np.array([GOOD_BOX] * 3, np.float32)
    bad = good.copy()
    bad[1] = bad_box
    sizes = [(WIDTH, HEIGHT), (WIDTH, HEIGHT)]
    with pytest.raises(ValueError) as caught:
        processor(region_features=features, region_boxes=[good, bad], image_sizes=sizes)
    assert str(caught.value).startswith("image 1: ") and problem in str(caught.value), str(caught.value)
    edge = good.copy()
    edge[0] = [0.0, 0.0, 0.0, 80.5]  # zero width, within tolerance
    out = processor(region_features=features, region_boxes=[good, edge], image_sizes=sizes)
    assert out["region_boxes"].shape == (2, 3, 4)


def test_processor_refuses_invalid_image_size():
    processor = HierarchicalVLProcessor(HierarchicalVLTokenizer.from_texts(["a red cube"]))
    boxes = [np.array([GOOD_BOX], np.float32)]
    with pytest.raises(ValueError, match=r"image 0: invalid image size 0 x 80"):
        processor(region_features=[np.ones((1, 8), np.float32)], region_boxes=boxes, image_sizes=[(0, 80)])
