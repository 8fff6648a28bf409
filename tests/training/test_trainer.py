"""Training runs on a tiny corpus: resumption after a kill, corrupt checkpoints, two processes, the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hierarchical_vl import HierarchicalVLForMultiTask, HierarchicalVLProcessor
from hierarchical_vl.training.arguments import load_training_arguments
from hierarchical_vl.training.checkpointing import CheckpointManager
from hierarchical_vl.training.run import prepare_data, train_from_arguments

from .conftest import write_config

REPO = Path(__file__).resolve().parents[2]


def _weights(directory):
    return load_file(str(Path(directory) / "model.safetensors"))


def _assert_same_weights(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for key in a:
        if atol:
            torch.testing.assert_close(a[key], b[key], atol=atol, rtol=1e-4, msg=key)
        else:
            assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def uninterrupted(tiny_corpus, tmp_path_factory):
    directory = tmp_path_factory.mktemp("uninterrupted")
    config = write_config(directory / "config.yaml", tiny_corpus, directory / "out")
    args = load_training_arguments(config)
    prepared = prepare_data(args)
    result = train_from_arguments(args, prepared)
    return directory / "out", result, prepared


def test_run_produces_a_complete_pretrained_directory(uninterrupted):
    out, result, _ = uninterrupted
    # Stage 1: 8 grounding updates. Stage 2: 8 + 12 iterations, C = 5: round(5 * 8/20) = 2 grounding and
    # round(5 * 12/20) = 3 VQA updates per cycle, floor(20 / 5) = 4 cycles -> 20 updates.
    assert result.updates == 8 + 20
    model = HierarchicalVLForMultiTask.from_pretrained(out)
    assert model.config.task_layers == {"grounding": 1, "vqa": 3}
    assert set(model.config.id2label.values()) and model.config.vocab_size > 10
    processor = HierarchicalVLProcessor.from_pretrained(out)
    assert len(processor.tokenizer) == model.config.vocab_size
    training_args = load_training_arguments(out / "training_args.yaml")
    assert training_args.seed == 7
    assert "seed" not in json.loads((out / "config.json").read_text())  # training arguments kept apart
    assert result.evaluations[0]["stage"] == "grounding" and "grounding/r1" in result.evaluations[0]
    assert result.final_losses["vqa"] > 0


def test_interrupted_run_resumes_to_identical_weights(uninterrupted, tiny_corpus, tmp_path):
    out, _, prepared = uninterrupted
    config = write_config(tmp_path / "config.yaml", tiny_corpus, tmp_path / "out")
    args = load_training_arguments(config)
    with pytest.raises(RuntimeError, match="stopped after update 13"):
        train_from_arguments(args, prepared, stop_after_updates=13)  # killed between the checkpoints at 10 and 15
    manager = CheckpointManager(tmp_path / "out" / "checkpoints")
    assert [p.name for p in manager.checkpoints()][-1] == "step-00000010"
    train_from_arguments(load_training_arguments(config), prepared)
    _assert_same_weights(_weights(out), _weights(tmp_path / "out"))


def test_corrupt_checkpoint_falls_back_to_the_previous_one(uninterrupted, tiny_corpus, tmp_path, capsys):
    out, _, prepared = uninterrupted
    config = write_config(tmp_path / "config.yaml", tiny_corpus, tmp_path / "out")
    with pytest.raises(RuntimeError):
        train_from_arguments(load_training_arguments(config), prepared, stop_after_updates=17)
    manager = CheckpointManager(tmp_path / "out" / "checkpoints")
    latest = manager.checkpoints()[-1]
    assert latest.name == "step-00000015"
    weights = latest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a partial write
    with pytest.raises(Exception, match="truncated or partial"):
        manager.verify(latest)
    train_from_arguments(load_training_arguments(config), prepared)
    captured = capsys.readouterr()
    assert "skipping checkpoint" in captured.out and "step-00000015" in captured.out
    assert "resumed from" in captured.out and "step-00000010" in captured.out
    _assert_same_weights(_weights(out), _weights(tmp_path / "out"))


def test_two_processes_train_like_one(tiny_corpus, tmp_path):
    """accelerate launch with two CPU processes (gloo): same updates as one process on the whole batch."""
    no_dropout = {"region_feature_dim": 32, "hidden_dropout": 0.0, "lstm_dropout": 0.0}
    stages = [{"name": "vqa", "tasks": ["vqa"], "cycle_length": 5}]
    tasks = {"vqa": {"iterations": 10, "lr_step": 5, "batch_size": 8}}
    single = write_config(tmp_path / "single.yaml", tiny_corpus, tmp_path / "single", model_overrides=no_dropout,
                          curriculum=stages, tasks=tasks)
    double = write_config(tmp_path / "double.yaml", tiny_corpus, tmp_path / "double", model_overrides=no_dropout,
                          curriculum=stages, tasks=tasks)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "true"}
    launcher = [sys.executable, "-m", "accelerate.commands.launch"]
    for command in (
        [*launcher, "--num_processes", "1", "-m", "hierarchical_vl.cli", "train", str(single)],
        [*launcher, "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", "-m", "hierarchical_vl.cli", "train", str(double)],
    ):
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
        assert result.returncode == 0, result.stderr[-4000:]
    checkpoints = CheckpointManager(tmp_path / "double" / "checkpoints").checkpoints()
    state = CheckpointManager.verify(checkpoints[-1])
    assert state["updates"] == 10 and state["data"]["vqa"]["position"] == 10
    assert (checkpoints[-1] / "random_states_1.pkl").exists()  # both processes saved their state
    # Gradients are averaged across the processes, so the two runs agree to float rounding; Adam divides by the
    # gradient's own scale, which turns rounding noise on a parameter with a (near) zero gradient (a dead ReLU unit)
    # into a full step, so a handful of such elements may differ by up to a few learning-rate steps.
    single, double = _weights(tmp_path / "single"), _weights(tmp_path / "double")
    assert single.keys() == double.keys()
    differences = torch.cat([(single[key] - double[key]).abs().flatten() for key in single])
    assert (differences > 1e-5).sum() <= differences.numel() // 1000, differences.topk(5)
    assert differences.max() < 3e-3
