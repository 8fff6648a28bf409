"""A full disk while training saves (one line, exit 1, nothing published) and temporaries of killed checkpoints."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hierarchical_vl.data.feature_store as feature_store
from hierarchical_vl import HierarchicalVLForMultiTask, HierarchicalVLProcessor
from hierarchical_vl.cli import main
from hierarchical_vl.training.checkpointing import CheckpointManager
from hierarchical_vl.training.trainer import MultiTaskTrainer

from .conftest import write_config


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.name.startswith((".tmp-step-", ".hvl-save-")))


def test_disk_full_error_lives_in_atomic_files_and_is_still_importable_from_feature_store():
    from hierarchical_vl.atomic_files import DiskFullError

    assert feature_store.DiskFullError is DiskFullError
    assert issubclass(DiskFullError, OSError)


def test_disk_full_while_writing_a_checkpoint(tiny_corpus, tmp_path, capsys, monkeypatch):
    config = write_config(tmp_path / "config.yaml", tiny_corpus, tmp_path / "ignored")
    original = MultiTaskTrainer.save_checkpoint
    calls = []

    def save_then_fill_the_disk(self, schedule):
        calls.append(self.state["updates"])
        if len(calls) == 2:  # the second checkpoint: a partial save_state, then ENOSPC
            temporary = self.checkpoints.temporary_path(self.state["updates"])
            temporary.mkdir(parents=True)
            (temporary / "model.safetensors").write_bytes(b"partial")
            monkeypatch.setattr(self.accelerator, "save_state", _no_space)
        original(self, schedule)

    monkeypatch.setattr(MultiTaskTrainer, "save_checkpoint", save_then_fill_the_disk)
    out_dir = tmp_path / "out"
    code = main(["train", str(config), "--output-dir", str(out_dir)])
    assert code == 1
    checkpoints = out_dir / "checkpoints"
    written = CheckpointManager(checkpoints).checkpoints()
    assert [p.name for p in written] == [f"step-{calls[0]:08d}"]
    CheckpointManager.verify(written[0])
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"hvl train: disk full while writing {checkpoints / f'step-{calls[1]:08d}'}; nothing was published; "
        f"the previous checkpoint at {written[0]} is intact"
    ), err
    assert not any("Traceback" in line for line in err)
    assert _leftovers(out_dir) == []


@pytest.mark.parametrize("what", ["model", "processor"])
def test_disk_full_while_saving_the_final_model(what, tiny_corpus, tmp_path, capsys, monkeypatch):
    config = write_config(tmp_path / "config.yaml", tiny_corpus, tmp_path / "ignored")
    out_dir = tmp_path / "out"
    assert main(["train", str(config), "--output-dir", str(out_dir)]) == 0
    before = {p.name: p.read_bytes() for p in out_dir.iterdir() if p.is_file()}
    cls = HierarchicalVLForMultiTask if what == "model" else HierarchicalVLProcessor
    original = cls.save_pretrained

    def save_then_fill_the_disk(self, directory, *args, **kwargs):
        original(self, directory, *args, **kwargs)
        for path in Path(directory).iterdir():  # the files are written, then one is cut short by the full disk
            if path.is_file():
                path.write_bytes(b"half-written")
        _no_space()

    monkeypatch.setattr(cls, "save_pretrained", save_then_fill_the_disk)
    capsys.readouterr()
    # the finished run is resumed from its last checkpoint and saved again
    code = main(["train", str(config), "--output-dir", str(out_dir)])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"hvl train: disk full while writing {out_dir}; nothing was published; the previous model at {out_dir} "
        "is intact"
    ), err
    assert not any("Traceback" in line for line in err)
    after = {p.name: p.read_bytes() for p in out_dir.iterdir() if p.is_file() and p.name in before}
    assert after == before
    assert _leftovers(out_dir) == []


def test_temporaries_of_dead_checkpoint_writers_are_removed_and_live_ones_kept(tiny_corpus, tmp_path, monkeypatch):
    config = write_config(tmp_path / "config.yaml", tiny_corpus, tmp_path / "ignored")
    out_dir = tmp_path / "out"
    checkpoints = out_dir / "checkpoints"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        stale = checkpoints / f".tmp-step-00000003.{dead.pid}.ckpt.tmp"
        alive = checkpoints / f".tmp-step-00000004.{live.pid}.ckpt.tmp"
        older = checkpoints / ".tmp-step-00000002"  # no owner pid: left alone
        for path in (stale, alive, older):
            path.mkdir(parents=True)
            (path / "model.safetensors").write_bytes(b"partial")
        names = []
        original = CheckpointManager.finalize

        def record(self, step, trainer_state):
            names.append(self.temporary_path(step).name)
            return original(self, step, trainer_state)

        monkeypatch.setattr(CheckpointManager, "finalize", record)
        assert main(["train", str(config), "--output-dir", str(out_dir)]) == 0
        assert not stale.exists()
        assert alive.exists() and older.exists()
        assert names and all(f".{os.getpid()}." in name for name in names), names
    finally:
        live.kill()
        live.wait()
