"""Loading a saved checkpoint with the class that saved it: the one loader of the package.

`load_checkpoint` is what ``hvl evaluate``, the pipelines and the Hub helpers call; `load_processor` loads the
processor (or, for checkpoints saved with the tokenizer only, wraps the tokenizer with the model's input caps).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from .configuration_hierarchical_vl import HierarchicalVLConfig
from .tasks import TASK_SPECS, task_spec

__all__ = ["load_checkpoint", "load_processor"]

logger = logging.getLogger(__name__)

_MULTI_TASK = "HierarchicalVLForMultiTask"
_ENCODER = "HierarchicalVLModel"
_HUB_KEYS = ("revision", "token", "local_files_only", "cache_dir", "subfolder")


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
    name = _model_class_name(path, config, task)
    logger.debug("loading %s as %s", path, name)
    return _model_classes()[name].from_pretrained(path, config=config, **kwargs).eval()


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
