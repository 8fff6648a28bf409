"""Crash hygiene of the atomic writers: stale temporaries, the directory swap, fsync of the parent directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from hierarchical_vl import atomic_files
from hierarchical_vl.atomic_files import atomic_path, publish, temporary_sibling
from hierarchical_vl.data.feature_store import RegionFeatureStore, RegionFeatureStoreWriter


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _write_store(path: Path, images: int, *, overwrite: bool = False) -> None:
    with RegionFeatureStoreWriter(path, overwrite=overwrite) as writer:
        for index in range(images):
            writer.add(index, np.zeros((2, 4)), np.ones((2, 3)), 10, 10)


def test_temporaries_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    destination = tmp_path / "features.store"
    dead = tmp_path / f".features.store.{_dead_pid()}.abcdefgh.tmp"
    dead.mkdir()
    (dead / "features.bin").write_bytes(b"x" * 1000)
    live_owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".features.store.{live_owner.pid}.ijklmnop.tmp"
        live.mkdir()
        other = tmp_path / f".features.store.1.{_dead_pid()}.qrstuvwx.tmp"  # the temporary of "features.store.1"
        other.mkdir()
        unknown = tmp_path / ".features.store.k2j3h4g5.tmp"  # an older version's name: no owner recorded
        unknown.mkdir()
        _write_store(destination, 2)
        assert not dead.exists()
        assert live.exists() and other.exists() and unknown.exists()
        assert len(RegionFeatureStore(destination)) == 2
    finally:
        live_owner.kill()
        live_owner.wait()


def test_temporary_names_record_the_owner_pid(tmp_path):
    tmp = temporary_sibling(tmp_path / "out.json")
    assert tmp.name.startswith(f".out.json.{os.getpid()}.")
    tmp.unlink()
    tmp = temporary_sibling(tmp_path / "out.store", directory=True)
    assert tmp.name.startswith(f".out.store.{os.getpid()}.") and tmp.is_dir()


def test_replacing_a_directory_never_hides_both_versions(tmp_path, monkeypatch):
    destination = tmp_path / "features.store"
    _write_store(destination, 2)
    real_replace = os.replace

    def checked_replace(source, target):
        assert destination.exists(), "the destination vanished during the swap"
        real_replace(source, target)
        assert destination.exists(), "the destination vanished during the swap"

    monkeypatch.setattr(atomic_files.os, "replace", checked_replace)
    _write_store(destination, 3, overwrite=True)
    assert len(RegionFeatureStore(destination)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.store"]


def test_publish_falls_back_without_the_exchange(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic_files, "_exchange", lambda first, second: False)
    destination = tmp_path / "d"
    destination.mkdir()
    (destination / "old").write_text("old")
    with atomic_path(destination, directory=True) as tmp:
        (tmp / "new").write_text("new")
    assert [p.name for p in destination.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_publish_fsyncs_the_parent_directory_after_the_rename(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(handle):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{handle}")))
        real_fsync(handle)

    def replace(source, target):
        events.append(("rename", str(target)))
        real_replace(source, target)

    monkeypatch.setattr(atomic_files.os, "fsync", fsync)
    monkeypatch.setattr(atomic_files.os, "replace", replace)
    tmp = temporary_sibling(tmp_path / "file.txt")
    tmp.write_text("content")
    publish(tmp, tmp_path / "file.txt")
    rename = events.index(("rename", str(tmp_path / "file.txt")))
    assert ("fsync", str(tmp)) in events[:rename]  # the file before the rename
    assert ("fsync", str(tmp_path)) in events[rename:]  # the directory entry after it
