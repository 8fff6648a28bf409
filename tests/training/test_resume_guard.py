"""A run resumes only with the configuration it was started with."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from hierarchical_vl.training.arguments import load_training_arguments
from hierarchical_vl.training.trainer import MultiTaskTrainer


def _guard(args, output_dir):
    stub = SimpleNamespace(args=args, output_dir=output_dir, accelerator=SimpleNamespace(
        is_main_process=True, wait_for_everyone=lambda: None))  # fmt: skip
    MultiTaskTrainer._check_output_dir(stub)


def test_a_changed_configuration_is_refused_and_the_saved_one_kept(tmp_path):
    old = load_training_arguments("demo", [f"output_dir={tmp_path}"])
    old.save(tmp_path / "training_args.yaml")
    saved = (tmp_path / "training_args.yaml").read_text()
    same = load_training_arguments("demo", [f"output_dir={tmp_path}", "progress=false", "log_every=3"])
    _guard(same, tmp_path)  # only fields that do not change the run: resumes
    changed = load_training_arguments("demo", [f"output_dir={tmp_path}", "seed=7"])
    with pytest.raises(ValueError, match=r"seed: 0 -> 7.*--overwrite-output"):
        _guard(changed, tmp_path)
    assert (tmp_path / "training_args.yaml").read_text() == saved


def test_overwrite_output_starts_afresh(tmp_path):
    load_training_arguments("demo").save(tmp_path / "training_args.yaml")
    (tmp_path / "checkpoints" / "step-00000001").mkdir(parents=True)
    changed = load_training_arguments("demo", ["seed=7", "overwrite_output_dir=true"])
    _guard(changed, tmp_path)
    assert not (tmp_path / "checkpoints").exists()
