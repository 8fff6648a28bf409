"""Training runs on a tiny corpus: resumption after a kill, corrupt checkpoints, two processes, the CLI."""

import json
import logging
from pathlib import Path

import pytest
import torch
from accelerate_launch import run_launched
from safetensors.torch import load_file

from hierarchical_vl import HierarchicalVLForMultiTask, HierarchicalVLProcessor
from hierarchical_vl.training.arguments import load_training_arguments
from hierarchical_vl.training.checkpointing import CheckpointManager
from hierarchical_vl.training.run import build_model, make_evaluate_fn, prepare_data, train_from_arguments
from hierarchical_vl.training.trainer import MultiTaskTrainer, TrainerCallback

from .conftest import write_config

REPO = Path(__file__).resolve().parents[2]


class _Killed(RuntimeError):
    pass


class _KillAt(TrainerCallback):
    """Ends training at the end of one update, as a kill would: before that update's checkpoint."""

    def __init__(self, update):
        self.update = update
        self.seen = []

    def on_update_end(self, trainer, state):
        self.seen.append((state.update, state.task))
        if state.update == self.update:
            raise _Killed(f"killed after update {state.update} ({state.stage}, {state.task})")


def _train_until_killed(args, prepared, update):
    """The steps of ``train_from_arguments`` with a callback that kills the run after ``update``."""
    model = build_model(args, prepared)
    kill = _KillAt(update)
    trainer = MultiTaskTrainer(
        model, args, prepared.sources(), make_evaluate_fn(prepared, args.eval_batch_size), callbacks=[kill]
    )
    with pytest.raises(_Killed, match=f"killed after update {update} "):
        trainer.train()
    return kill


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
    kill = _train_until_killed(args, prepared, 13)  # killed between the checkpoints at 10 and 15
    assert [update for update, _ in kill.seen] == list(range(1, 14))
    assert [task for _, task in kill.seen[:8]] == ["grounding"] * 8  # stage 1 trains grounding alone
    manager = CheckpointManager(tmp_path / "out" / "checkpoints")
    assert [p.name for p in manager.checkpoints()][-1] == "step-00000010"
    train_from_arguments(load_training_arguments(config), prepared)
    _assert_same_weights(_weights(out), _weights(tmp_path / "out"))


def test_kill_at_a_checkpoint_update_leaves_no_checkpoint_for_it(tiny_corpus, tmp_path):
    config = write_config(
        tmp_path / "config.yaml",
        tiny_corpus,
        tmp_path / "out",
        tasks={"grounding": {"iterations": 8, "lr_step": 4, "batch_size": 4}},
        curriculum=[{"name": "grounding", "tasks": ["grounding"], "cycle_length": 4}],
    )
    args = load_training_arguments(config)
    _train_until_killed(args, prepare_data(args), 5)  # save_every=5: the callback runs before the save
    assert CheckpointManager(tmp_path / "out" / "checkpoints").checkpoints() == []
    resumed = train_from_arguments(load_training_arguments(config))  # starts afresh and finishes
    assert resumed.updates == 8


def test_corrupt_checkpoint_falls_back_to_the_previous_one(uninterrupted, tiny_corpus, tmp_path, caplog):
    out, _, prepared = uninterrupted
    config = write_config(tmp_path / "config.yaml", tiny_corpus, tmp_path / "out")
    _train_until_killed(load_training_arguments(config), prepared, 17)
    manager = CheckpointManager(tmp_path / "out" / "checkpoints")
    latest = manager.checkpoints()[-1]
    assert latest.name == "step-00000015"
    weights = latest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a partial write
    with pytest.raises(Exception, match="truncated or partial"):
        manager.verify(latest)
    with caplog.at_level(logging.INFO, logger="hierarchical_vl"):
        train_from_arguments(load_training_arguments(config), prepared)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("skipping checkpoint" in m and "step-00000015" in m for m in warnings), warnings
    assert any("resumed from" in m and "step-00000010" in m for m in infos), infos
    _assert_same_weights(_weights(out), _weights(tmp_path / "out"))


def test_two_processes_train_like_one(tiny_corpus, tmp_path):
    """accelerate launch with two CPU processes (gloo): same updates as one process on the whole batch."""
    no_dropout = {"region_feature_dim": 32, "hidden_dropout": 0.0, "lstm_dropout": 0.0, "text_projection_dropout": 0.0}
    stages = [{"name": "vqa", "tasks": ["vqa"], "cycle_length": 5}]
    tasks = {"vqa": {"iterations": 10, "lr_step": 5, "batch_size": 8}}
    single = write_config(
        tmp_path / "single.yaml",
        tiny_corpus,
        tmp_path / "single",
        model_overrides=no_dropout,
        curriculum=stages,
        tasks=tasks,
    )
    double = write_config(
        tmp_path / "double.yaml",
        tiny_corpus,
        tmp_path / "double",
        model_overrides=no_dropout,
        curriculum=stages,
        tasks=tasks,
    )
    run_launched(1, "-m", "hierarchical_vl.cli", "train", str(single))
    run_launched(2, "-m", "hierarchical_vl.cli", "train", str(double))
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


def test_two_processes_train_the_same_task_at_every_update(tiny_corpus, tmp_path):
    """The documented two-CPU-process launch (the shipped Accelerate config file): both ranks train the same task
    at every update, through a multi-task stage."""
    import subprocess
    import sys

    from accelerate_launch import launch_environment

    stages = [{"name": "mixed", "tasks": ["grounding", "vqa"], "cycle_length": 5, "evaluate": []}]
    tasks = {
        "grounding": {"iterations": 4, "lr_step": 5, "batch_size": 4},
        "vqa": {"iterations": 6, "lr_step": 5, "batch_size": 4},
    }
    config = write_config(
        tmp_path / "c.yaml", tiny_corpus, tmp_path / "out", curriculum=stages, tasks=tasks, save_every=0
    )
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(REPO / "examples" / "accelerate" / "cpu_two_processes.yaml"),
        str(REPO / "tests" / "training" / "task_trace_train.py"),
        str(config),
        str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=launch_environment(), cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [trace["world"] for trace in ranks] == ["2", "2"]
    assert ranks[0]["updates"] == ranks[1]["updates"]
    assert [task for _, _, task in ranks[0]["updates"]] == (["grounding"] * 2 + ["vqa"] * 3) * 2
