"""Loading a saved checkpoint with the class that saved it: the one loader of the package.

`load_checkpoint` is what ``hvl evaluate``, the pipelines and the Hub helpers call; `load_processor` loads the
processor (or, for checkpoints saved with the tokenizer only, wraps the tokenizer with the model's input caps).

A model directory written by the trainer (`save_model_with_checksums`) carries ``checksums.json``, the size and
SHA-256 of each file its save wrote; `load_checkpoint` verifies a local directory against it when it is present
(directories without one, such as those of version 0.1, load as before) and refuses weights holding NaN or inf.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from .atomic_files import file_sha256
from .configuration_hierarchical_vl import HierarchicalVLConfig
from .tasks import TASK_SPECS, task_spec

__all__ = [
    "CHECKSUMS_FILE",
    "CheckpointIntegrityError",
    "load_checkpoint",
    "load_processor",
    "save_model_with_checksums",
    "save_staged",
    "verify_checksums",
]

logger = logging.getLogger(__name__)

_MULTI_TASK = "HierarchicalVLForMultiTask"
_ENCODER = "HierarchicalVLModel"
_HUB_KEYS = ("revision", "token", "local_files_only", "cache_dir", "subfolder")

CHECKSUMS_FILE = "checksums.json"
"""The checksum manifest of a model directory: ``{"algorithm": "sha256", "files": {name: {size, sha256}}}``."""


class CheckpointIntegrityError(ValueError):
    """A model directory does not match its checksum manifest, or its weights hold NaN or inf."""


def save_model_with_checksums(model: Any, directory: str | os.PathLike, **save_kwargs: Any) -> list[str]:
    """``model.save_pretrained(directory)`` with the pipeline code (`save_remote_pipelines`) plus a
    ``checksums.json`` of exactly the files that save wrote.

    The save and its manifest go into a private staging folder inside ``directory`` first and are then moved into
    place (renames, which need no space), so the manifest lists the save's own files (config, weights or shards and
    their index, remote code), never files that were already there or that other programs write meanwhile; and a
    save that fails (e.g. ``ENOSPC``, a full disk) publishes nothing: the staging folder is removed and the previous
    model in ``directory`` is left as it was.

    Args:
        model: A model with ``save_pretrained``.
        directory: The model directory (created when missing).
        **save_kwargs: Passed to ``save_pretrained``.

    Returns:
        The files the save wrote, relative to ``directory``, sorted (``checksums.json`` not included).
    """
    from .remote_pipelines import save_remote_pipelines

    names: list[str] = []

    def save(staging: Path) -> None:
        model.save_pretrained(staging, **save_kwargs)
        save_remote_pipelines(staging)
        names.extend(sorted(path.relative_to(staging).as_posix() for path in staging.rglob("*") if path.is_file()))
        files = {
            name: {"size": (staging / name).stat().st_size, "sha256": file_sha256(staging / name)} for name in names
        }
        (staging / CHECKSUMS_FILE).write_text(json.dumps({"algorithm": "sha256", "files": files}, indent=2) + "\n")

    save_staged(save, directory)
    return names


def save_staged(save: Any, directory: str | os.PathLike) -> list[str]:
    """Runs ``save(staging)`` into a private staging folder inside ``directory``, then moves its files into place.

    Nothing is moved before ``save`` has finished, and the files are flushed to disk first; on any error the
    staging folder is removed and ``directory`` is left as it was.

    Args:
        save: Writes the files, e.g. ``processor.save_pretrained``.
        directory: The destination directory (created when missing).

    Returns:
        The files moved, relative to ``directory``, sorted.
    """
    from .atomic_files import _fsync

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    staging = directory / f".hvl-save-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        save(staging)
        names = sorted(path.relative_to(staging).as_posix() for path in staging.rglob("*") if path.is_file())
        _fsync(staging)
        for name in names:
            target = directory / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return names


def verify_checksums(directory: str | os.PathLike) -> bool:
    """Checks a model directory against its ``checksums.json``.

    Args:
        directory: A local model directory.

    Returns:
        ``True`` when the directory has a manifest and matches it, ``False`` when it has none (older saves).

    Raises:
        CheckpointIntegrityError: If the manifest is unreadable, or a file it lists is missing, of another size or
            of another checksum; the message names the file.
    """
    directory = Path(directory)
    manifest_path = directory / CHECKSUMS_FILE
    if not manifest_path.is_file():
        return False
    try:
        manifest = json.loads(manifest_path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointIntegrityError(f"{manifest_path}: unreadable checksum manifest ({error})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or manifest.get("algorithm", "sha256") != "sha256":
        raise CheckpointIntegrityError(f"{manifest_path}: broken checksum manifest (no 'files' mapping of sha256)")
    for name, expected in files.items():
        file = directory / name
        if not isinstance(expected, dict) or not isinstance(expected.get("sha256"), str):
            raise CheckpointIntegrityError(f"{manifest_path}: broken entry for {name!r} (needs its sha256)")
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise CheckpointIntegrityError(f"{manifest_path}: entry {name!r} points outside {directory}")
        if not file.is_file():
            raise CheckpointIntegrityError(f"{file}: listed in {CHECKSUMS_FILE} but missing")
        size = expected.get("size")
        if isinstance(size, int) and file.stat().st_size != size:
            raise CheckpointIntegrityError(
                f"{file}: {file.stat().st_size} bytes, {CHECKSUMS_FILE} says {size} (truncated or replaced; "
                f"if you saved into this folder again on purpose, delete {CHECKSUMS_FILE})"
            )
        if file_sha256(file) != expected["sha256"]:
            raise CheckpointIntegrityError(
                f"{file}: does not match its checksum in {CHECKSUMS_FILE} (corrupt, or saved again: if you saved "
                f"into this folder again on purpose, delete {CHECKSUMS_FILE})"
            )
    return True


def _check_finite(path: Any, model: Any) -> None:
    import torch

    tensors = [*model.named_parameters(), *model.named_buffers()]
    for name, tensor in tensors:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointIntegrityError(f"{path}: the weights of {name} hold NaN or inf values; refusing to load")


def _model_classes() -> dict[str, type]:
    from . import modeling_hierarchical_vl as modeling

    names = [_MULTI_TASK, _ENCODER, *(spec.head for spec in TASK_SPECS.values())]
    return {name: getattr(modeling, name) for name in names}


def _check_local(path: Any, kwargs: dict[str, Any]) -> None:
    """A local folder (or any path object) must hold a ``config.json``; strings may also be Hub ids."""
    if not (isinstance(path, os.PathLike) or os.path.isdir(path)):
        return
    folder = Path(path) / kwargs.get("subfolder", "")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} is not a saved model directory (no config.json)")


def _model_class_name(path: Any, config: HierarchicalVLConfig, task: str | None) -> str:
    classes = _model_classes()
    architectures = list(config.architectures or [])
    known = [name for name in architectures if name in classes]
    if architectures and not known:
        raise ValueError(f"{path} holds a {', '.join(architectures)}, which is not a hierarchical-vl model class")
    if task is None:
        return known[0] if known else _MULTI_TASK
    head = task_spec(task).head
    if not known or head in known:
        return head
    if _MULTI_TASK in known:
        if task not in config.task_layers:
            raise ValueError(
                f"the multi-task checkpoint {path} has no {task} decoder (its tasks: {sorted(config.task_layers)})"
            )
        return _MULTI_TASK
    raise ValueError(
        f"{path} holds a {', '.join(known)}, which has no {task} decoder; use a checkpoint of {head} or {_MULTI_TASK}"
    )


def load_checkpoint(path: str | os.PathLike, task: str | None = None, **from_pretrained_kwargs: Any) -> Any:
    """Load a saved model with the class recorded in its ``config.architectures``, in eval mode.

    Without ``task`` the checkpoint loads as the class that saved it (a head, the multi-task model or the
    encoder; a checkpoint that records no class loads as [`HierarchicalVLForMultiTask`]). With ``task``, a checkpoint
    of that task's head loads as the head and a multi-task checkpoint as [`HierarchicalVLForMultiTask`]; any other
    (another task's head, the bare encoder, a multi-task model without that decoder) is refused, since its ``task``
    decoder would be untrained. A checkpoint that records no class loads as the task's head.

    Args:
        path: A local folder or a Hub repository id.
        task: The task the model must run (a `TASK_SPECS` key), or ``None``.
        **from_pretrained_kwargs: Passed to ``from_pretrained`` (``revision``, ``token``, ``dtype``, ``config``,
            ...); ``trust_remote_code`` and ``code_revision`` are dropped (the classes are this package's own).

    Returns:
        The model, in eval mode.

    Raises:
        FileNotFoundError: If a local folder has no ``config.json``.
        ValueError: If the checkpoint is not a hierarchical-vl model, or cannot run ``task``.
        CheckpointIntegrityError: If a local folder does not match its ``checksums.json``, or a weight holds NaN
            or inf (the message names the file or the parameter).
    """
    kwargs = dict(from_pretrained_kwargs)
    kwargs.pop("trust_remote_code", None)
    kwargs.pop("code_revision", None)
    config = kwargs.pop("config", None)
    if config is None:
        _check_local(path, kwargs)
        hub_kwargs = {key: kwargs[key] for key in _HUB_KEYS if key in kwargs}
        config_dict, _ = HierarchicalVLConfig.get_config_dict(path, **hub_kwargs)
        if config_dict.get("model_type") != HierarchicalVLConfig.model_type:
            raise ValueError(
                f"{path} is not a hierarchical-vl checkpoint (model_type {config_dict.get('model_type')!r})"
            )
        config = HierarchicalVLConfig.from_pretrained(path, **hub_kwargs)
    elif getattr(config, "model_type", None) != HierarchicalVLConfig.model_type:
        raise ValueError(f"{path}: the configuration is not a hierarchical-vl one ({type(config).__name__})")
    if isinstance(path, os.PathLike) or os.path.isdir(path):
        verify_checksums(Path(path) / kwargs.get("subfolder", ""))
    name = _model_class_name(path, config, task)
    logger.debug("loading %s as %s", path, name)
    model = _model_classes()[name].from_pretrained(path, config=config, **kwargs).eval()
    _check_finite(path, model)
    return model


def load_processor(path: str | os.PathLike, config: HierarchicalVLConfig | None = None, **kwargs: Any) -> Any:
    """The [`HierarchicalVLProcessor`] of a checkpoint.

    A checkpoint saved with its tokenizer only (``tokenizer.json``, no ``processor_config.json``) gets a processor
    with the input caps of its model configuration.

    Args:
        path: A local folder or a Hub repository id.
        config: The model configuration (read from ``path`` when needed and not given).
        **kwargs: Passed to ``from_pretrained`` (``revision``, ``token``, ...).

    Raises:
        FileNotFoundError: If a local folder has no tokenizer.
    """
    from .processing_hierarchical_vl import HierarchicalVLProcessor
    from .tokenization_hierarchical_vl import HierarchicalVLTokenizer

    local = Path(path) if (isinstance(path, os.PathLike) or os.path.isdir(path)) else None
    if local is None or (local / "processor_config.json").is_file():
        return HierarchicalVLProcessor.from_pretrained(path, **kwargs)
    if not (local / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{local} has no tokenizer (tokenizer.json): save the processor with the model")
    tokenizer = HierarchicalVLTokenizer.from_pretrained(local, **kwargs)
    return HierarchicalVLProcessor.from_config(tokenizer, config or HierarchicalVLConfig.from_pretrained(local))
