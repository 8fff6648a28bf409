"""Checkpoints whose manifest or trainer state is broken are skipped; random states that fail to load are an error."""

from __future__ import annotations

import json
import logging
import random

import numpy as np
import pytest
import torch

from hierarchical_vl.training.checkpointing import CheckpointError, CheckpointManager

STATE = {"stage": 0, "updates": 0, "evaluations": [], "data": {}, "schedule": None}


def _checkpoint(manager: CheckpointManager, step: int) -> None:
    temporary = manager.temporary_path(step)
    temporary.mkdir(parents=True)
    (temporary / "model.safetensors").write_bytes(b"weights %d" % step)
    manager.finalize(step, {**STATE, "updates": step})


def _rewrite_manifest(path, manifest) -> None:
    (path / "checkpoint_manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def manager(tmp_path):
    manager = CheckpointManager(tmp_path / "checkpoints", keep_last=3)
    _checkpoint(manager, 5)
    _checkpoint(manager, 10)
    return manager


@pytest.mark.parametrize(
    "manifest",
    [{"step": 10}, {"step": 10, "files": None}, {"step": 10, "files": {"model.safetensors": "abc"}}, ["files"]],
    ids=["no-files", "files-null", "entry-not-a-mapping", "not-an-object"],
)
def test_broken_manifest_is_skipped_for_the_previous_checkpoint(manager, manifest, caplog):
    latest = manager.final_path(10)
    _rewrite_manifest(latest, manifest)
    with pytest.raises(CheckpointError, match="broken manifest"):
        manager.verify(latest)
    with caplog.at_level(logging.WARNING, logger="hierarchical_vl"):
        path, state = manager.latest_good()
    assert path == manager.final_path(5) and state["updates"] == 5
    assert any("step-00000010" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("content", ["{not json", '{"stage": 0}', "[]"], ids=["not-json", "missing-keys", "a-list"])
def test_broken_trainer_state_is_skipped_even_when_its_checksum_matches(manager, content):
    latest = manager.final_path(10)
    (latest / "trainer_state.json").write_text(content)
    manifest = json.loads((latest / "checkpoint_manifest.json").read_text())
    manifest["files"]["trainer_state.json"] = {
        "size": len(content.encode()),
        "sha256": __import__("hashlib").sha256(content.encode()).hexdigest(),
    }
    _rewrite_manifest(latest, manifest)
    with pytest.raises(CheckpointError, match="trainer state"):
        manager.verify(latest)
    path, state = manager.latest_good()
    assert path == manager.final_path(5) and state["updates"] == 5


def test_random_states_that_fail_to_load_are_an_error(manager):
    latest = manager.final_path(10)
    (latest / "random_states_0.pkl").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="random_states_0.pkl: the random states could not be restored"):
        manager.restore_random_states(latest, 0)
    with pytest.raises(CheckpointError, match="random_states_1.pkl"):  # missing for this process
        manager.restore_random_states(latest, 1)


def test_random_states_are_restored(manager):
    latest = manager.final_path(10)
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    states = {
        "random_state": random.getstate(),
        "numpy_random_seed": np.random.get_state(),
        "torch_manual_seed": torch.get_rng_state(),
    }
    torch.save(states, latest / "random_states_0.pkl")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    manager.restore_random_states(latest, 0)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
