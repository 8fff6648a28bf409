"""A truncated or damaged ``.npz`` and empty arrays in the npz/npy directory reader are named errors (issue 11, 8)."""

from __future__ import annotations

import numpy as np
import pytest

from hierarchical_vl.data import RegionFeatureError, RegionFeatureRecord, open_region_feature_reader
from hierarchical_vl.data.feature_writers import write_npz_directory


def _record(image_id: str) -> RegionFeatureRecord:
    boxes = np.tile(np.array([0, 0, 50, 60], np.float32), (3, 1))
    features = np.random.default_rng(int(image_id)).normal(size=(3, 8)).astype(np.float32)
    return RegionFeatureRecord(image_id, 100.0, 80.0, boxes, features)


GOOD = {"bbox": np.tile(np.array([0, 0, 5, 5], np.float32), (3, 1)), "num_bbox": 3, "image_w": 100, "image_h": 80}


def _damage_truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _damage_compressed(path):
    np.savez_compressed(path, x=np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32), **GOOD)
    data = bytearray(path.read_bytes())
    data[60:90] = bytes(30)  # inside the first member's deflate stream
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_damage_truncated, _damage_compressed])
def test_damaged_npz_names_the_file(tmp_path, damage):
    directory = write_npz_directory(tmp_path / "npz", [_record("1"), _record("2"), _record("3")])
    damage(directory / "2.npz")
    with pytest.raises(RegionFeatureError) as caught:
        list(open_region_feature_reader(directory))
    assert caught.value.file == str(directory) and caught.value.location.startswith("file '2.npz'"), caught.value
    assert "cannot be read" in caught.value.problem, caught.value
    reader = open_region_feature_reader(directory, skip_bad=True)
    assert [r.image_id for r in reader] == ["1", "3"]
    assert len(reader.skipped) == 1 and "'2.npz'" in reader.skipped[0].location


@pytest.mark.parametrize("key", ["x", "bbox", "image_w", "num_bbox"])
def test_empty_array_in_npz_names_the_file_and_key(tmp_path, key):
    directory = tmp_path / "npz"
    directory.mkdir()
    arrays = {"x": np.ones((3, 8), np.float32), **GOOD}
    arrays[key] = np.array([], np.float32)
    np.savez(directory / "5.npz", **arrays)
    with pytest.raises(RegionFeatureError) as caught:
        list(open_region_feature_reader(directory))
    assert caught.value.location.startswith("file '5.npz'"), caught.value
    assert f"empty array(s) {key!r}" in caught.value.problem, caught.value


def test_empty_npy_feature_array_names_the_file(tmp_path):
    directory = tmp_path / "npy"
    directory.mkdir()
    np.save(directory / "5.npy", np.zeros((0, 8), np.float32))
    np.save(directory / "5_info.npy", {"bbox": np.zeros((3, 4)), "image_width": 100, "image_height": 80})
    with pytest.raises(RegionFeatureError, match=r"file '5\.npy'.*empty array\(s\) 'features'"):
        list(open_region_feature_reader(directory))
