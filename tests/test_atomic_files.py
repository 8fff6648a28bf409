"""The package's one atomic-write implementation: all or nothing, nothing left behind, the usual permissions."""

from __future__ import annotations

import json
import os
import stat

import pytest

from hierarchical_vl.atomic_files import (
    atomic_path,
    publish,
    temporary_sibling,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)


def _names(directory):
    return sorted(p.name for p in directory.iterdir())


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    """Sets the process umask for one test (``umask(value)``) and restores it afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


def test_write_helpers_round_trip(tmp_path):
    assert write_text_atomic(tmp_path / "a" / "t.txt", "café\n") == tmp_path / "a" / "t.txt"  # parents created
    assert (tmp_path / "a" / "t.txt").read_text(encoding="utf-8") == "café\n"
    write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    write_json_atomic(tmp_path / "c.json", {"k": "é"})
    assert (tmp_path / "c.json").read_text(encoding="utf-8") == '{\n  "k": "é"\n}\n'
    write_json_atomic(tmp_path / "d.json", [1, 2], indent=None)
    assert (tmp_path / "d.json").read_bytes() == b"[1, 2]"  # one line, no newline: as json.dumps
    assert _names(tmp_path) == ["a", "b.bin", "c.json", "d.json"]


def test_an_error_mid_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = write_text_atomic(tmp_path / "results.json", "old")
    with pytest.raises(OSError, match="disk full"):
        with atomic_path(path) as temporary:
            with open(temporary, "w") as handle:
                handle.write("half of the new")
                handle.flush()
                raise OSError("disk full")
    assert path.read_text() == "old"
    assert _names(tmp_path) == ["results.json"]


def test_the_file_appears_only_when_complete(tmp_path):
    path = tmp_path / "out.txt"
    with atomic_path(path) as temporary:
        temporary.write_text("new")
        assert not path.exists() and temporary.parent == tmp_path and temporary.name.startswith(".out.txt.")
    assert path.read_text() == "new" and _names(tmp_path) == ["out.txt"]


def test_a_directory_is_swapped_in_whole(tmp_path):
    destination = tmp_path / "store"
    with atomic_path(destination, directory=True) as temporary:
        (temporary / "a.bin").write_bytes(b"first")
    assert _names(destination) == ["a.bin"]
    with atomic_path(destination, directory=True) as temporary:
        (temporary / "b.bin").write_bytes(b"second")
        assert _names(destination) == ["a.bin"]  # the old directory is untouched until the swap
    assert _names(destination) == ["b.bin"] and (destination / "b.bin").read_bytes() == b"second"
    assert _names(tmp_path) == ["store"]  # neither the temporary nor the old directory is left behind


def test_a_failed_directory_leaves_the_old_one(tmp_path):
    destination = tmp_path / "checkpoint"
    with atomic_path(destination, directory=True) as temporary:
        (temporary / "state.json").write_text(json.dumps({"step": 1}))
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(destination, directory=True) as temporary:
            (temporary / "state.json").write_text("{")
            raise KeyboardInterrupt
    assert json.loads((destination / "state.json").read_text()) == {"step": 1}
    assert _names(tmp_path) == ["checkpoint"]


def test_publish_replaces_a_directory_and_can_refuse_to(tmp_path):
    destination = tmp_path / "step-1"
    first = temporary_sibling(destination, directory=True)
    (first / "x").write_text("1")
    publish(first, destination)
    second = temporary_sibling(destination, directory=True)
    (second / "x").write_text("2")
    with pytest.raises(FileExistsError):
        publish(second, destination, overwrite=False)
    assert (destination / "x").read_text() == "1"
    publish(second, destination)
    assert (destination / "x").read_text() == "2" and _names(tmp_path) == ["step-1"]


@pytest.mark.parametrize(
    ("mask", "file_mode", "directory_mode"),
    [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700), (0o002, 0o664, 0o775)],
)
def test_permissions_follow_the_umask(tmp_path, umask, mask, file_mode, directory_mode):
    umask(mask)
    write_text_atomic(tmp_path / "file.txt", "x")
    with atomic_path(tmp_path / "directory", directory=True) as temporary:
        (temporary / "inner.txt").write_text("y")
    assert _mode(tmp_path / "file.txt") == file_mode  # as open() would create it (not mkstemp's 0600)
    assert _mode(tmp_path / "directory") == directory_mode  # as mkdir() would (not mkdtemp's 0700)
    assert _mode(tmp_path / "directory" / "inner.txt") == file_mode
