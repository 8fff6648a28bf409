"""Atomic writes: build a file or directory under a temporary name beside its destination, then rename it.

A reader therefore sees either the previous version or the complete new one, never a half-written file; a crash
leaves at most a hidden ``.<name>.*.tmp`` sibling. Files are flushed to disk (``fsync``) before the rename. This is
the package's only implementation of the pattern: every writer of the package goes through `atomic_path` or one of
the ``write_*_atomic`` helpers. The module uses the standard library only.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_path",
    "discard",
    "publish",
    "temporary_sibling",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


def _default_mode(directory: bool) -> int:
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def temporary_sibling(path: str | os.PathLike, *, directory: bool = False) -> Path:
    """Creates an empty temporary file (or directory) beside ``path``, with the usual permissions.

    The permissions are those ``open()`` or ``mkdir()`` would give (0o666 or 0o777 less the umask), not the private
    0o600 / 0o700 of `tempfile`. The parent directory is created if needed.

    Args:
        path: The destination the temporary will be published to.
        directory: Create a directory instead of a file.

    Returns:
        The temporary's path, a hidden ``.<name>.*.tmp`` sibling of ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    else:
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(handle)
        tmp = Path(name)
    os.chmod(tmp, _default_mode(directory))
    return tmp


def _fsync(path: Path) -> None:
    """Flush a finished file (or every file of a finished directory, and the directory) to disk."""
    paths = [path] if not path.is_dir() else [*sorted(p for p in path.rglob("*") if p.is_file()), path]
    for item in paths:
        flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if item.is_dir() else 0)
        try:
            handle = os.open(item, flags)
        except OSError:  # some file systems do not open directories
            continue
        try:
            os.fsync(handle)
        except OSError:
            pass
        finally:
            os.close(handle)


def publish(tmp: str | os.PathLike, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Flushes a finished temporary file or directory to disk and renames it to ``path``.

    An existing directory at ``path`` is first renamed aside, then removed, so the swap itself is one rename.

    Args:
        tmp: The finished temporary (from [`temporary_sibling`]).
        path: The destination.
        overwrite: Replace an existing ``path``.

    Returns:
        ``path``.

    Raises:
        FileExistsError: If ``path`` exists and ``overwrite`` is false.
    """
    tmp, path = Path(tmp), Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; not replacing it")
    _fsync(tmp)
    if path.is_dir() and not path.is_symlink():
        aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        os.replace(path, aside / path.name)
        os.replace(tmp, path)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(tmp, path)
    return path


def discard(tmp: str | os.PathLike) -> None:
    """Removes a temporary file or directory (if it still exists).

    Args:
        tmp: The temporary to remove.
    """
    tmp = Path(tmp)
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | os.PathLike, *, directory: bool = False, overwrite: bool = True) -> Iterator[Path]:
    """Yields a temporary path to write; on success it is published to ``path``, on any error it is removed.

    Example::

        with atomic_path("results.png") as temporary:
            picture.save(temporary, format="PNG")

    Args:
        path: The destination file (or directory).
        directory: The temporary is a directory (e.g. a store or a checkpoint).
        overwrite: Replace an existing ``path``; [`publish`] raises ``FileExistsError`` otherwise.

    Yields:
        The temporary path, beside ``path``.
    """
    tmp = temporary_sibling(path, directory=directory)
    try:
        yield tmp
        publish(tmp, path, overwrite=overwrite)
    except BaseException:
        discard(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` as a UTF-8 file atomically.

    Args:
        path: The destination.
        text: The content.

    Returns:
        ``path``.
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Writes ``data`` to a file atomically.

    Args:
        path: The destination.
        data: The content.

    Returns:
        ``path``.
    """
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data: Any, *, indent: int | None = 2, **kwargs: Any) -> Path:
    """Writes ``data`` as UTF-8 JSON atomically.

    Args:
        path: The destination.
        data: A JSON-serialisable value.
        indent: ``json.dumps`` indent; with an indent the file ends with a newline, without one it is one line.
        **kwargs: More ``json.dumps`` arguments (``ensure_ascii`` defaults to false).

    Returns:
        ``path``.
    """
    kwargs.setdefault("ensure_ascii", False)
    return write_text_atomic(path, json.dumps(data, indent=indent, **kwargs) + ("\n" if indent is not None else ""))
