"""Atomic writes: build a file or directory under a temporary name beside its destination, then rename it.

A reader therefore sees either the previous version or the complete new one, never a half-written file; a crash
leaves at most a hidden ``.<name>.<pid>.*.tmp`` sibling, named after the process that owns it; the next temporary
made for the same destination removes those whose owner is no longer alive (never another live process's). Files
and directories are flushed to disk (``fsync``) before the rename, and the parent directory after it. A directory
replacing another is swapped in with one ``renameat2(RENAME_EXCHANGE)`` on Linux, so there is no moment in which
neither is visible (elsewhere the old one is renamed aside first). This is the package's only implementation of the
pattern: every writer of the package goes through `atomic_path` or one of the ``write_*_atomic`` helpers. The module
uses the standard library only.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "DiskFullError",
    "disk_full",
    "file_sha256",
    "atomic_path",
    "discard",
    "publish",
    "remove_stale_temporaries",
    "temporary_sibling",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]

logger = logging.getLogger(__name__)

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


class DiskFullError(OSError):
    """The disk filled up while something was written; nothing was published (``errno`` is ``ENOSPC``).

    Its text is the one line to show the user (``strerror``), without the ``[Errno 28]`` prefix.
    """

    def __str__(self) -> str:
        return str(self.strerror)


def disk_full(error: BaseException, message: str) -> DiskFullError | None:
    """A [`DiskFullError`] with ``message`` when ``error`` is an ``ENOSPC`` ``OSError``, else ``None``.

    Use as ``raise disk_full(error, "...") from error`` after checking for ``None`` (an existing
    ``DiskFullError`` is returned unchanged, so its message is kept).
    """
    if isinstance(error, DiskFullError):
        return error
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return DiskFullError(errno.ENOSPC, message)
    return None


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

    Temporaries of ``path`` left by processes that are no longer alive are removed first
    ([`remove_stale_temporaries`]).

    Returns:
        The temporary's path, a hidden ``.<name>.<pid>.*.tmp`` sibling of ``path`` (``pid``: this process).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    prefix = f".{path.name}.{os.getpid()}."
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=path.parent))
    else:
        handle, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
        os.close(handle)
        tmp = Path(name)
    os.chmod(tmp, _default_mode(directory))
    return tmp


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a pid we can judge: keep the temporary
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: the process exists but belongs to someone else
        return True
    return True


def _owner_pid(candidate: Path, prefix: str) -> int | None:
    """The owner pid recorded in a temporary's name, or ``None`` for a name this module did not make."""
    parts = candidate.name[len(prefix) :].rsplit(".", 1)[0].split(".")
    # exactly <pid>.<random>: a longer name is the temporary of another destination such as "<name>.1"
    return int(parts[0]) if len(parts) == 2 and parts[0].isdigit() else None


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Removes the temporaries of ``path`` (``.<name>.<pid>.*.tmp`` / ``.old``) whose owner process is dead.

    A killed conversion or save leaves its temporary behind; this removes it on the next write to the same
    destination. Temporaries of live processes (this one included) and names without an owner pid (written by
    older versions, whose owner cannot be told) are left alone.

    Args:
        path: The destination whose temporaries to look for.

    Returns:
        The temporaries removed.
    """
    path = Path(path)
    prefix = f".{path.name}."
    removed = []
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for candidate in candidates:
        if not candidate.name.endswith((".tmp", ".old")):
            continue
        owner = _owner_pid(candidate, prefix)
        if owner is None or owner == os.getpid() or _pid_alive(owner):
            continue
        logger.info("removing %s, left by process %d that is no longer running", candidate, owner)
        discard(candidate)
        removed.append(candidate)
    return removed


def _fsync_one(path: Path) -> None:
    """Flush one file or one directory's entries to disk, where the platform allows it."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    try:
        handle = os.open(path, flags)
    except OSError:  # some platforms do not open directories
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def _fsync_directory(path: Path) -> None:
    """Flush a directory's entries (e.g. a rename into it) to disk."""
    _fsync_one(path)


def _exchange(first: Path, second: Path) -> bool:
    """Atomically swaps two paths with Linux's ``renameat2(RENAME_EXCHANGE)``; false where that is unavailable."""
    try:
        rename = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    rename.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rename.restype = ctypes.c_int
    if rename(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # old kernel or a file system without the flag: fall back
    raise OSError(code, f"cannot swap {first} and {second}: {os.strerror(code)}")


def _fsync(path: Path) -> None:
    """Flush a finished file (or every file of a finished directory, and the directory) to disk."""
    for item in [path] if not path.is_dir() else [*sorted(p for p in path.rglob("*") if p.is_file()), path]:
        _fsync_one(item)


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's contents, read in 1 MiB blocks (the checksum of every manifest the package writes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def publish(tmp: str | os.PathLike, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Flushes a finished temporary file or directory to disk and renames it to ``path``.

    An existing directory at ``path`` is swapped with the new one in one ``renameat2(RENAME_EXCHANGE)`` (Linux)
    and then removed, so ``path`` always shows the old or the new version; where the exchange is unavailable the
    old directory is renamed aside first. The parent directory is flushed after the rename.

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
        if _exchange(tmp, path):
            _fsync_directory(path.parent)
            discard(tmp)  # now the old version
            return path
        aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".old", dir=path.parent))
        os.replace(path, aside / path.name)
        os.replace(tmp, path)
        _fsync_directory(path.parent)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(tmp, path)
        _fsync_directory(path.parent)
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
