"""Ctrl-C during ``hvl train`` prints one line saying where the last checkpoint is and exits 130 (issue 11, 8)."""

from __future__ import annotations

from hierarchical_vl.cli import main
from hierarchical_vl.training import run
from hierarchical_vl.training.checkpointing import CheckpointManager

from .conftest import write_config


def test_ctrl_c_after_a_checkpoint_names_it(tiny_corpus, tmp_path, capsys, monkeypatch):
    config = write_config(tmp_path / "config.yaml", tiny_corpus, tmp_path / "ignored")
    original = CheckpointManager.finalize

    def finalize_then_ctrl_c(self, step, trainer_state):
        original(self, step, trainer_state)
        raise KeyboardInterrupt  # as if Ctrl-C arrived right after the first checkpoint

    monkeypatch.setattr(CheckpointManager, "finalize", finalize_then_ctrl_c)
    out_dir = tmp_path / "out"
    code = main(["train", str(config), "save_every=3", "--output-dir", str(out_dir)])
    assert code == 130
    written = CheckpointManager(out_dir / "checkpoints").checkpoints()
    assert len(written) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"hvl train: interrupted; the last checkpoint is {written[0]}; run the same command again to resume from it"
    ), err
    assert not any("Traceback" in line for line in err)


def test_ctrl_c_before_any_checkpoint_says_so(tmp_path, capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "train_from_arguments", interrupted)
    code = main(["train", "demo", "--output-dir", str(tmp_path / "run")])
    assert code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"hvl train: interrupted before the first checkpoint was written (none in {tmp_path / 'run' / 'checkpoints'})"
    ]
