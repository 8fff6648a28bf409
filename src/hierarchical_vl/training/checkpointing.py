"""Atomic, verified training checkpoints on top of Accelerate's ``save_state`` / ``load_state``."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from ..atomic_files import file_sha256, publish, remove_stale_temporaries

__all__ = ["CheckpointError", "CheckpointManager"]

logger = logging.getLogger(__name__)

_MANIFEST = "checkpoint_manifest.json"
_TRAINER_STATE = "trainer_state.json"
_NAME = re.compile(r"^step-(\d{8})$")
_TEMPORARY = re.compile(r"^\.(tmp-step-\d{8})\.")
_STATE_KEYS = ("stage", "updates", "evaluations", "data", "schedule")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, partial or corrupt."""


class CheckpointManager:
    """Writes ``checkpoints/step-NNNNNNNN`` directories atomically and finds the newest good one.

    A checkpoint is first written to a hidden temporary directory (Accelerate state of every process, then the
    trainer state and a manifest with the size and SHA-256 of every file), and renamed into place only when
    complete. The temporary's name records the pid of the process that owns it (the main process),
    ``.tmp-step-NNNNNNNN.<pid>.ckpt.tmp``, in the form of `hierarchical_vl.atomic_files.temporary_sibling`, so that
    [`remove_stale_temporaries`] can remove those of killed runs, never a live process's. On resume, checkpoints
    are verified against their manifest, newest first; a partial or corrupt one is reported and skipped in favour
    of the previous good one, as is one whose manifest or trainer state is broken.

    Args:
        directory: The run's checkpoint directory.
        keep_last: Checkpoints kept; older ones are deleted after a new one is complete.
        owner_pid: The pid recorded in temporary names: the main process's (the same on every process); this
            process's by default.
    """

    def __init__(self, directory: str | os.PathLike, keep_last: int = 2, owner_pid: int | None = None):
        self.directory = Path(directory)
        self.keep_last = keep_last
        self.owner_pid = os.getpid() if owner_pid is None else owner_pid

    def temporary_path(self, step: int) -> Path:
        """The hidden directory every process saves the state of ``step`` into (the same name on all of them)."""
        return self.directory / f".tmp-step-{step:08d}.{self.owner_pid}.ckpt.tmp"

    def remove_stale_temporaries(self) -> list[Path]:
        """Removes the temporaries of checkpoints whose owner process is dead (killed runs); main process only.

        Each ``.tmp-step-NNNNNNNN.<pid>.*.tmp`` is judged by `hierarchical_vl.atomic_files.remove_stale_temporaries`:
        temporaries of live processes and names without a pid (older versions) are left alone.

        Returns:
            The temporaries removed.
        """
        try:
            names = {match.group(1) for p in self.directory.iterdir() if (match := _TEMPORARY.match(p.name))}
        except OSError:
            return []
        return [path for name in sorted(names) for path in remove_stale_temporaries(self.directory / name)]

    def final_path(self, step: int) -> Path:
        """Where the finished checkpoint of ``step`` lives."""
        return self.directory / f"step-{step:08d}"

    def finalize(self, step: int, trainer_state: dict[str, Any]) -> Path:
        """Writes the trainer state and manifest into the temporary directory and publishes it (main process).

        The directory is flushed to disk and renamed into place by `hierarchical_vl.atomic_files.publish`; older
        checkpoints beyond ``keep_last`` are then deleted.

        Args:
            step: The update the checkpoint was taken after.
            trainer_state: The trainer's position (stage, schedule, data order, evaluations).

        Returns:
            The finished checkpoint directory.
        """
        temporary = self.temporary_path(step)
        (temporary / _TRAINER_STATE).write_text(json.dumps(trainer_state, indent=1))
        files = {
            str(path.relative_to(temporary)): {"size": path.stat().st_size, "sha256": file_sha256(path)}
            for path in sorted(temporary.rglob("*"))
            if path.is_file()
        }
        (temporary / _MANIFEST).write_text(json.dumps({"step": step, "files": files}, indent=1))
        final = publish(temporary, self.final_path(step))  # fsync, then one rename (an old one is swapped out)
        self._prune()
        return final

    def _prune(self) -> None:
        for path in self.checkpoints()[: -self.keep_last]:
            shutil.rmtree(path, ignore_errors=True)

    def checkpoints(self) -> list[Path]:
        """Finished checkpoint directories, oldest first."""
        if not self.directory.exists():
            return []
        found = [p for p in self.directory.iterdir() if p.is_dir() and _NAME.match(p.name)]
        return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))

    @staticmethod
    def verify(path: Path) -> dict[str, Any]:
        """Checks a checkpoint against its manifest.

        Returns:
            The checkpoint's trainer state.

        Raises:
            CheckpointError: If the checkpoint is incomplete, truncated or corrupt.
        """
        manifest_path = path / _MANIFEST
        if not manifest_path.exists():
            raise CheckpointError(f"{path}: no {_MANIFEST} (the checkpoint was not completed)")
        try:
            manifest = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CheckpointError(f"{manifest_path}: unreadable manifest ({error})") from None
        files = manifest.get("files") if isinstance(manifest, dict) else None
        if not isinstance(files, dict) or not files:
            raise CheckpointError(f"{manifest_path}: broken manifest (no 'files' mapping of file to size and sha256)")
        for name, expected in files.items():
            if not (
                isinstance(expected, dict)
                and isinstance(expected.get("size"), int)
                and isinstance(expected.get("sha256"), str)
            ):
                raise CheckpointError(f"{manifest_path}: broken manifest entry for {name!r} (needs size and sha256)")
            file = path / name
            if not file.exists():
                raise CheckpointError(f"{path}: file {name} listed in the manifest is missing")
            if file.stat().st_size != expected["size"]:
                raise CheckpointError(
                    f"{path}: file {name} has {file.stat().st_size} bytes, the manifest says {expected['size']} "
                    "(truncated or partial write)"
                )
            if file_sha256(file) != expected["sha256"]:
                raise CheckpointError(f"{path}: file {name} does not match its checksum (corrupt)")
        if _TRAINER_STATE not in files:
            raise CheckpointError(f"{manifest_path}: {_TRAINER_STATE} is not listed in the manifest")
        state_path = path / _TRAINER_STATE
        try:
            state = json.loads(state_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CheckpointError(f"{state_path}: unreadable trainer state ({error})") from None
        missing = [key for key in _STATE_KEYS if not isinstance(state, dict) or key not in state]
        if missing:
            raise CheckpointError(f"{state_path}: broken trainer state (missing {missing})")
        return state

    @staticmethod
    def restore_random_states(path: Path, process_index: int = 0) -> None:
        """Restores the Python, NumPy and torch random states saved in a checkpoint for one process.

        Accelerate's ``load_state`` only logs (at INFO) when it cannot restore them, and the run then goes on with
        other random numbers than the interrupted one; here that is an error.

        Args:
            path: The checkpoint directory.
            process_index: The process whose states to restore.

        Raises:
            CheckpointError: If the states file is missing or cannot be loaded or applied.
        """
        import random

        import numpy as np
        import torch
        from accelerate.utils import load

        file = Path(path) / f"random_states_{process_index}.pkl"
        try:
            states = load(file)
            random.setstate(states["random_state"])
            np.random.set_state(states["numpy_random_seed"])
            torch.set_rng_state(states["torch_manual_seed"])
            if torch.cuda.is_available() and "torch_cuda_manual_seed" in states:
                torch.cuda.set_rng_state_all(states["torch_cuda_manual_seed"])
        except Exception as error:  # noqa: BLE001 - any failure means the resumed run would not be reproducible
            raise CheckpointError(
                f"{file}: the random states could not be restored ({type(error).__name__}: {error}); resuming "
                "from this checkpoint would not reproduce the interrupted run"
            ) from error

    def latest_good(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest checkpoint that verifies, with its trainer state; corrupt ones are logged and skipped."""
        for path in reversed(self.checkpoints()):
            try:
                return path, self.verify(path)
            except CheckpointError as error:
                logger.warning("skipping checkpoint: %s; trying the previous one", error)
        return None
