"""``save_best``: the best evaluation's model kept in ``output_dir/best`` beside the last checkpoints, also across
a resume."""

import json

import pytest
import torch
from safetensors.torch import load_file

from hierarchical_vl import HierarchicalVLForMultiTask
from hierarchical_vl.cli import main
from hierarchical_vl.training.arguments import load_training_arguments
from hierarchical_vl.training.checkpointing import CheckpointManager
from hierarchical_vl.training.run import build_model, make_evaluate_fn, prepare_data, train_from_arguments
from hierarchical_vl.training.trainer import MultiTaskTrainer, TrainerCallback

from .conftest import write_config

METRIC = "grounding/r1"


class _Stop(RuntimeError):
    pass


class _StopAt(TrainerCallback):
    def __init__(self, update):
        self.update = update

    def on_update_end(self, trainer, state):
        if state.update == self.update:
            raise _Stop


def _expected_best(evaluations):
    scored = [record for record in evaluations if METRIC in record]
    best = max(scored, key=lambda record: record[METRIC])  # the first of equal values: ties do not replace it
    return {"metric": METRIC, "value": best[METRIC], "update": best["update"], "stage": best["stage"]}


@pytest.fixture(scope="module")
def best_run(tiny_corpus, tmp_path_factory):
    directory = tmp_path_factory.mktemp("best")
    config = write_config(directory / "c.yaml", tiny_corpus, directory / "out", eval_every=2, save_best=METRIC)
    args = load_training_arguments(config)
    prepared = prepare_data(args)
    return directory / "out", train_from_arguments(args, prepared), prepared, config


def test_best_checkpoint_is_the_best_evaluation(best_run):
    out, result, _, _ = best_run
    assert len({record[METRIC] for record in result.evaluations}) > 1  # the metric moved: the choice means something
    expected = _expected_best(result.evaluations)
    assert result.best == expected
    assert json.loads((out / "best" / "best_metric.json").read_text()) == expected
    assert len(CheckpointManager(out / "checkpoints").checkpoints()) == 3  # keep_last, besides best/
    model = HierarchicalVLForMultiTask.from_pretrained(out / "best")
    saved = load_file(str(out / "best" / "model.safetensors"))
    assert all(torch.equal(saved[key], value) for key, value in model.state_dict().items() if key in saved)
    if expected["update"] != result.updates:  # the final model moved on after the best evaluation
        final = load_file(str(out / "model.safetensors"))
        assert any(not torch.equal(saved[key], final[key]) for key in saved)


def test_resumed_run_keeps_the_best_value(best_run, tmp_path):
    _, result, prepared, config = best_run
    args = load_training_arguments(config, [f"output_dir={tmp_path / 'out'}"])
    trainer = MultiTaskTrainer(
        build_model(args, prepared),
        args,
        prepared.sources(),
        make_evaluate_fn(prepared, args.eval_batch_size),
        callbacks=[_StopAt(7)],
    )
    with pytest.raises(_Stop):
        trainer.train()
    saved = CheckpointManager.verify(CheckpointManager(tmp_path / "out" / "checkpoints").checkpoints()[-1])
    assert saved["updates"] == 5 and saved["best"] == _expected_best(saved["evaluations"])
    resumed = train_from_arguments(args, prepared)
    assert resumed.evaluations == result.evaluations
    assert resumed.best == result.best
    assert json.loads((tmp_path / "out" / "best" / "best_metric.json").read_text()) == result.best


def test_save_best_flag_and_summary(tiny_corpus, tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml", tiny_corpus, tmp_path / "out", eval_every=4)
    assert main(["train", str(config), "--save-best", METRIC, "--no-progress"]) == 0
    out = capsys.readouterr().out
    best = json.loads((tmp_path / "out" / "best" / "best_metric.json").read_text())
    assert (
        f"best checkpoint ({METRIC} {best['value']:.4g} at update {best['update']}): {tmp_path / 'out' / 'best'}" in out
    )
    assert f"checkpoints (last 3): {tmp_path / 'out' / 'checkpoints'}" in out
    assert "last evaluation (update 8, grounding): grounding/r1 " in out


def test_save_best_must_name_a_metric():
    with pytest.raises(ValueError, match="save_best must name an evaluation metric as task/metric"):
        load_training_arguments("demo", ["save_best=accuracy"])
