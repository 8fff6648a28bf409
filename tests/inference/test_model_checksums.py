"""Model directories written with a checksum manifest are verified on load; NaN/inf weights are refused."""

from __future__ import annotations

import json

import pytest
import torch

from hierarchical_vl import HierarchicalVLForMultiTask
from hierarchical_vl.loading import CheckpointIntegrityError, load_checkpoint, save_model_with_checksums


@pytest.fixture
def saved(tiny_config, tmp_path):
    torch.manual_seed(0)
    model = HierarchicalVLForMultiTask(tiny_config).eval()
    (tmp_path / "train.log").write_text("not part of the save")
    names = save_model_with_checksums(model, tmp_path, safe_serialization=True)
    return tmp_path, model, names


def test_manifest_lists_exactly_the_saved_files_and_loads(saved):
    directory, model, names = saved
    manifest = json.loads((directory / "checksums.json").read_text())
    assert sorted(manifest["files"]) == names and {"config.json", "model.safetensors"} <= set(names)
    assert "train.log" not in names
    loaded = load_checkpoint(directory)
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())


def test_corrupt_weights_are_refused_naming_the_file(saved):
    directory, _, _ = saved
    weights = directory / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte in a tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointIntegrityError, match="model.safetensors.*checksum"):
        load_checkpoint(directory)


def test_nan_weights_are_refused_naming_the_parameter(tiny_config, tmp_path):
    model = HierarchicalVLForMultiTask(tiny_config).eval()
    name, parameter = next(iter(model.named_parameters()))
    with torch.no_grad():
        parameter.view(-1)[0] = float("nan")
    model.save_pretrained(tmp_path)  # no manifest: an old-style directory
    with pytest.raises(CheckpointIntegrityError, match=f"{name}.*NaN or inf"):
        load_checkpoint(tmp_path)
