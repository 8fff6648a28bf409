"""The fast region-feature store: round trip, random access, batched gathers, atomic writes, the command."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from hierarchical_vl.cli import main as hvl
from hierarchical_vl.data import (
    FEATURE_FORMATS,
    RegionFeatureStore,
    RegionFeatureStoreWriter,
    convert_region_features,
    open_region_feature_reader,
)


@pytest.mark.parametrize("format_name", FEATURE_FORMATS)
def test_round_trip_equals_the_source_in_float16(demo, tmp_path, format_name):
    source = demo.features_tsv if format_name == "tsv" else demo.extra_features[format_name]
    report = convert_region_features(source, tmp_path / "store", progress=False)
    store = RegionFeatureStore(tmp_path / "store")
    records = list(open_region_feature_reader(source))
    assert report.num_images == len(store) == len(records)
    assert report.num_regions == sum(r.num_boxes for r in records)
    for record in records:
        item = store[record.image_id]
        assert item["features"].dtype == np.float16
        np.testing.assert_allclose(item["features"], record.features, rtol=1e-3, atol=1e-3)
        np.testing.assert_array_equal(item["boxes"], record.boxes)
        assert (item["width"], item["height"]) == (record.width, record.height)


def test_lookup_by_int_or_string_id(demo_store):
    image_id = demo_store.image_ids[5]
    assert int(image_id) in demo_store and image_id in demo_store
    np.testing.assert_array_equal(demo_store[int(image_id)]["features"], demo_store[image_id]["features"])
    assert demo_store.index_of(f"000{image_id}") == 5
    with pytest.raises(KeyError, match="not in the region-feature store"):
        demo_store[123456789]
    with pytest.raises(KeyError, match="1 image ids are not in"):
        demo_store.indices([image_id, 123456789])
    assert demo_store.indices([image_id, 123456789], missing="mark").tolist() == [5, -1]


def test_region_rows_pad_with_zeros_and_boxes_are_normalised(demo_store):
    counts = demo_store.num_regions
    small, large = int(np.argmin(counts)), int(np.argmax(counts))
    images = np.array([small, large, small])
    rows, mask = demo_store.region_rows(images)
    features = demo_store.read_rows(rows)
    boxes = np.asarray(demo_store.boxes[rows])
    normalized = demo_store.normalized_boxes(rows, images)
    width = int(counts[large])
    assert features.shape == (3, width, demo_store.feature_dim) and features.dtype == np.float16
    assert mask.tolist()[0] == [1] * int(counts[small]) + [0] * (width - int(counts[small]))
    assert not features[0, counts[small] :].any() and not boxes[0, counts[small] :].any()
    item = demo_store[demo_store.image_ids[large]]
    np.testing.assert_array_equal(features[1], item["features"])
    scale = np.array([item["width"], item["height"]] * 2, np.float32)
    np.testing.assert_allclose(normalized[1], item["boxes"] / scale, rtol=1e-6)
    assert normalized.dtype == np.float32 and normalized.min() >= 0 and normalized.max() <= 1
    capped, _ = demo_store.region_rows(np.array([large]), max_regions=5)
    assert capped.shape == (1, 5)
    np.testing.assert_array_equal(demo_store.read_rows(capped)[0], item["features"][:5])


def test_store_pickles_by_path(demo_store):
    payload = pickle.dumps(demo_store)
    assert len(payload) < 1000
    copy = pickle.loads(payload)
    np.testing.assert_array_equal(copy.features[:3], demo_store.features[:3])


def test_writer_is_atomic_and_refuses_to_overwrite(tmp_path):
    path = tmp_path / "store"
    with pytest.raises(RuntimeError), RegionFeatureStoreWriter(path) as writer:
        writer.add(1, np.zeros((2, 4)), np.ones((2, 3)), 10, 10)
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []  # neither the store nor temporary files
    with RegionFeatureStoreWriter(path) as writer:
        writer.add(1, np.zeros((2, 4)), np.ones((2, 3)), 10, 10)
        with pytest.raises(ValueError, match="duplicate image id '1'"):
            writer.add("1", np.zeros((1, 4)), np.ones((1, 3)), 10, 10)
    with pytest.raises(FileExistsError):
        RegionFeatureStoreWriter(path)
    with RegionFeatureStoreWriter(path, overwrite=True) as writer:
        writer.add(2, np.zeros((1, 4)), np.full((1, 3), 2.0), 10, 10)
    store = RegionFeatureStore(path)
    assert list(store) == ["2"] and store["2"]["features"].tolist() == [[2.0, 2.0, 2.0]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_convert_command(demo, tmp_path, capsys):
    destination = tmp_path / "store"
    assert hvl(["features", "convert", str(demo.extra_features["hdf5"]), str(destination), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "wrote 24 images" in out and "skipped 0 records" in out
    assert len(RegionFeatureStore(destination)) == 24
    assert hvl(["features", "convert", str(demo.features_tsv), str(destination), "--no-progress"]) == 1
    assert "exists" in capsys.readouterr().err
    assert (
        hvl(
            [
                "features",
                "convert",
                str(demo.features_tsv),
                str(destination),
                "--overwrite",
                "--format",
                "tsv",
                "--no-progress",
            ]
        )
        == 0
    )
