"""Region-feature readers on files in the real formats, with value checks."""

from __future__ import annotations

import base64
import pickle

import numpy as np
import pytest

from hierarchical_vl.data import (
    FEATURE_FORMATS,
    RegionFeatureRecord,
    detect_feature_format,
    generate_demo_corpus,
    open_region_feature_reader,
    write_bottom_up_tsv,
    write_hdf5,
    write_lmdb,
    write_lxmert_tsv,
    write_npz_directory,
)

from .conftest import DEMO_FEATURE_DIM, DEMO_IMAGES

KNOWN_BOX = [10.5, 20.0, 110.25, 220.0]


def _known_records() -> list[RegionFeatureRecord]:
    rng = np.random.default_rng(0)
    records = []
    for image_id, count in (("42", 3), ("7", 1), ("1001", 5)):
        boxes = rng.uniform(0, 300, (count, 4)).astype(np.float32)
        boxes[:, 2:] += boxes[:, :2]
        if image_id == "42":
            boxes[1] = KNOWN_BOX
        records.append(
            RegionFeatureRecord(image_id, 640.0, 480.0, boxes, rng.normal(size=(count, 8)).astype(np.float32))
        )
    return records


WRITERS = {
    "tsv": ("features.tsv", write_bottom_up_tsv),
    "lxmert-tsv": ("features_lxmert.tsv", write_lxmert_tsv),
    "hdf5": ("features.h5", write_hdf5),
    "npz-dir": ("features_npz", write_npz_directory),
    "lmdb": ("features.lmdb", write_lmdb),
}


@pytest.mark.parametrize("format_name", FEATURE_FORMATS)
def test_each_format_reads_a_known_box_and_features(tmp_path, format_name):
    records = _known_records()
    file_name, writer = WRITERS[format_name]
    path = writer(tmp_path / file_name, records)
    assert detect_feature_format(path) == format_name
    read = {r.image_id: r for r in open_region_feature_reader(path)}
    assert set(read) == {"42", "7", "1001"}
    assert read["42"].boxes[1].tolist() == KNOWN_BOX
    assert (read["42"].width, read["42"].height) == (640.0, 480.0)
    for record in records:
        np.testing.assert_array_equal(read[record.image_id].features, record.features)
        np.testing.assert_array_equal(read[record.image_id].boxes, record.boxes)
        assert read[record.image_id].num_boxes == record.num_boxes


def test_demo_formats_hold_identical_content(demo):
    reference = {r.image_id: r for r in open_region_feature_reader(demo.features_tsv)}
    assert len(reference) == DEMO_IMAGES
    counts = {r.num_boxes for r in reference.values()}
    assert min(counts) >= 10 and max(counts) <= 36 and len(counts) > 1  # adaptive number of boxes
    for format_name, path in demo.extra_features.items():
        records = list(open_region_feature_reader(path))
        assert len(records) == DEMO_IMAGES, format_name
        for record in records:
            expected = reference[record.image_id]
            assert record.features.shape == (expected.num_boxes, DEMO_FEATURE_DIM)
            np.testing.assert_array_equal(record.features, expected.features, err_msg=format_name)
            np.testing.assert_array_equal(record.boxes, expected.boxes, err_msg=format_name)
            assert (record.width, record.height) == (expected.width, expected.height), format_name


def test_fixed_36_box_release(tmp_path):
    paths = generate_demo_corpus(tmp_path, num_images=10, seed=1, feature_dim=8, min_regions=36, max_regions=36)
    assert {r.num_boxes for r in open_region_feature_reader(paths.features_tsv)} == {36}


def test_lxmert_columns_put_height_before_width_and_keep_objects(tmp_path):
    def b64(array):
        return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()

    boxes = np.array([[1, 2, 30, 40], [5, 6, 70, 80]], dtype=np.float32)
    features = np.arange(2 * 4, dtype=np.float32).reshape(2, 4)
    fields = [
        "COCO_val2014_000000000042",
        "480",
        "640",
        b64(np.array([3, 9], np.int64)),
        b64(np.array([0.5, 0.25], np.float32)),
        b64(np.array([1, 2], np.int64)),
        b64(np.array([0.1, 0.2], np.float32)),
        "2",
        b64(boxes),
        b64(features),
    ]
    path = tmp_path / "lxmert.tsv"
    path.write_text(
        "\t".join(
            [
                "img_id",
                "img_h",
                "img_w",
                "objects_id",
                "objects_conf",
                "attrs_id",
                "attrs_conf",
                "num_boxes",
                "boxes",
                "features",
            ]
        )
        + "\n"
        + "\t".join(fields)
        + "\n"
    )
    assert detect_feature_format(path) == "lxmert-tsv"
    (record,) = open_region_feature_reader(path)
    assert record.image_id == "COCO_val2014_000000000042"
    assert (record.width, record.height) == (640.0, 480.0)
    assert record.extras["objects_id"].tolist() == [3, 9]
    np.testing.assert_array_equal(record.boxes, boxes)
    (numeric,) = open_region_feature_reader(path, numeric_ids=True)
    assert numeric.image_id == "42"


def test_tsv_tolerates_python3_bytes_repr_and_header(tmp_path):
    boxes = np.array([[0, 0, 10, 10]], np.float32)
    features = np.ones((1, 4), np.float32)
    wrapped = [f"b'{base64.b64encode(a.tobytes()).decode()}'" for a in (boxes, features)]
    path = tmp_path / "f.tsv"
    path.write_text(
        "image_id\timage_w\timage_h\tnum_boxes\tboxes\tfeatures\n"
        + "\t".join(["000123", "100", "50", "1", *wrapped])
        + "\n"
    )
    (record,) = open_region_feature_reader(path)
    assert record.image_id == "123"  # canonical: no leading zeros
    np.testing.assert_array_equal(record.features, features)


def test_hdf5_fixed_k_layout_and_ids_from_argument(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "fixed.h5"
    features = np.random.default_rng(0).normal(size=(3, 4, 6)).astype(np.float32)
    boxes = np.tile(np.array([0, 0, 5, 5], np.float32), (3, 4, 1))
    with h5py.File(path, "w") as f:
        f["image_features"] = features
        f["image_bb"] = boxes
        f["image_w"] = np.array([10, 20, 30])
        f["image_h"] = np.array([11, 21, 31])
    records = list(open_region_feature_reader(path, image_ids=[5, 6, 7]))
    assert [r.image_id for r in records] == ["5", "6", "7"]
    np.testing.assert_array_equal(records[2].features, features[2])
    assert (records[1].width, records[1].height) == (20.0, 21.0)


def test_npy_with_info_files(tmp_path):
    directory = tmp_path / "npy"
    directory.mkdir()
    features = np.ones((2, 3), np.float32)
    np.save(directory / "99.npy", features)
    np.save(
        directory / "99_info.npy",
        {
            "bbox": np.array([[0, 0, 1, 1], [1, 1, 2, 2]], np.float32),
            "image_width": 64,
            "image_height": 48,
            "num_boxes": 2,
        },
        allow_pickle=True,
    )
    (record,) = open_region_feature_reader(directory)
    assert record.image_id == "99" and record.boxes[1].tolist() == [1, 1, 2, 2]
    assert (record.width, record.height) == (64.0, 48.0)


def test_lmdb_with_base64_values(tmp_path):
    lmdb = pytest.importorskip("lmdb")
    path = tmp_path / "vilbert.lmdb"
    boxes = np.array([[1, 2, 3, 4]], np.float32)
    features = np.full((1, 5), 0.5, np.float32)
    env = lmdb.open(str(path), map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(
            b"17",
            pickle.dumps(
                {
                    "image_id": "17",
                    "image_w": 100,
                    "image_h": 80,
                    "num_boxes": 1,
                    "boxes": base64.b64encode(boxes.tobytes()),
                    "features": base64.b64encode(features.tobytes()),
                }
            ),
        )
        txn.put(b"keys", pickle.dumps([b"17"]))
    env.close()
    (record,) = open_region_feature_reader(path, format="lmdb")
    assert record.image_id == "17"
    np.testing.assert_array_equal(record.boxes, boxes)
    np.testing.assert_array_equal(record.features, features)
