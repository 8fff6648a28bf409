"""Arrays read from a region store are read-only memory maps: they reach torch without the "not writable"
warning and without torch ever holding the read-only memory."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from hierarchical_vl import HierarchicalVLProcessor, HierarchicalVLTokenizer
from hierarchical_vl.data import RegionFeatureStore, RegionFeatureStoreWriter
from hierarchical_vl.data.image_regions import ImageRegions
from hierarchical_vl.processing_hierarchical_vl import region_inputs, tensor_from_array


@pytest.fixture()
def store(tmp_path) -> RegionFeatureStore:
    rng = np.random.default_rng(0)
    with RegionFeatureStoreWriter(tmp_path / "regions.store") as writer:
        for image_id, count in (("7", 4), ("9", 6)):
            boxes = np.tile(np.array([[1.0, 2.0, 20.0, 30.0]], np.float32), (count, 1))
            writer.add(image_id, boxes, rng.standard_normal((count, 8)).astype(np.float32), 40.0, 50.0)
    return RegionFeatureStore(tmp_path / "regions.store")


def _address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def test_store_arrays_are_read_only_and_copied_once(store):
    features = store["7"]["features"]
    assert not features.flags.writeable and not np.asarray(features).flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = tensor_from_array(features)
        inputs = region_inputs(features[None], np.array([4]))
    for value in (tensor, inputs["region_features"]):
        assert value.data_ptr() != _address(features)  # a copy: torch never points at the memory map
        np.testing.assert_array_equal(value.numpy().reshape(4, 8), features)
    tensor[0, 0] = 123.0  # writing the tensor leaves the store alone
    assert store["7"]["features"][0, 0] != 123.0
    writable = np.zeros((2, 3), np.float32)
    assert tensor_from_array(writable).data_ptr() == _address(writable)  # no copy of a writable array


def test_processor_and_ranking_take_store_records_without_warnings(store):
    from hierarchical_vl.evaluation.retrieval_ranking import _prepare_images

    processor = HierarchicalVLProcessor(HierarchicalVLTokenizer.from_texts(["a cat"]), max_regions=5)
    records = [store["7"], store["9"]]
    regions = [ImageRegions.from_store(store, image_id) for image_id in ("7", "9")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = processor(
            text=["a cat", "a cat"],
            region_features=[record["features"] for record in records],
            region_boxes=[record["boxes"] for record in records],
            image_sizes=[(record["width"], record["height"]) for record in records],
        )
        from_regions = processor(region_features=[item.features for item in regions])
        features, mask, _ = _prepare_images({"region_features": store.features[None, :4]}, 8)
    assert batch["region_features"].shape == (2, 5, 8)
    assert batch["region_mask"].sum(dim=1).tolist() == [4, 5]
    torch.testing.assert_close(
        batch["region_features"][0, :4], torch.from_numpy(records[0]["features"].astype(np.float32))
    )
    torch.testing.assert_close(from_regions["region_features"], batch["region_features"])
    assert features.data_ptr() != _address(store.features)
    np.testing.assert_array_equal(features[0].numpy(), store.features[:4])
    assert mask.all()
