"""Detector weights: the community PyTorch port's files (``config.yaml`` + ``pytorch_model.bin``, as published on
the Hub under ``unc-nlp/frcnn-vg-finetuned``) and the package's own format (``config.json`` +
``model.safetensors``), and the conversion from the former to the latter.

The port's checkpoint is read with ``torch.load(weights_only=True)`` (tensors only, no code); its keys are the
module names of [`BottomUpDetector`]; batch-norm step counters (``num_batches_tracked``) carry no weight and are
dropped, and old ``gamma``/``beta`` names are read as ``weight``/``bias``. Any other missing or unexpected key, or
a shape that does not match, is an error that names the keys.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .configuration_extractor import RegionFeatureExtractorConfig

__all__ = [
    "OWN_CONFIG_NAME",
    "OWN_WEIGHTS_NAME",
    "PORT_CONFIG_NAME",
    "PORT_WEIGHTS_NAME",
    "config_from_port_yaml",
    "load_detector_state",
    "read_port_state_dict",
    "resolve_detector_files",
]

PORT_CONFIG_NAME = "config.yaml"
PORT_WEIGHTS_NAME = "pytorch_model.bin"
OWN_CONFIG_NAME = "config.json"
OWN_WEIGHTS_NAME = "model.safetensors"
_DEPTH_BLOCKS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}


def _find(tree: Any, section: str, key: str) -> Any:
    """``tree[...][section][key]`` at any depth of the nested YAML (the port nests sections under ``MODEL``)."""
    if isinstance(tree, Mapping):
        if section in tree and isinstance(tree[section], Mapping) and key in tree[section]:
            return tree[section][key]
        for value in tree.values():
            found = _find(value, section, key)
            if found is not None:
                return found
    return None


def _flat(values: Any) -> list[float]:
    """``[[32, 64, ...]]`` or ``[32, 64, ...]`` -> ``[32.0, 64.0, ...]``."""
    out: list[float] = []
    for value in values:
        out.extend(_flat(value) if isinstance(value, (list, tuple)) else [float(value)])
    return out


def config_from_port_yaml(path: str | os.PathLike, **overrides: Any) -> RegionFeatureExtractorConfig:
    """The architecture and input convention of the port's ``config.yaml``.

    Only what defines the network and its input is read (ResNet depth and widths, RPN, anchors, RoI head, classes,
    pixel means, input format, test sizes); the box selection stays the original feature script's rule (the
    configuration's defaults or ``overrides``), not the port's own detection thresholds.

    Raises:
        ValueError: The file is not YAML, or a value has the wrong type; the message names the file and the key.
    """
    import yaml

    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(tree, Mapping):
        raise ValueError(f"{path}: expected a YAML mapping at the top level")
    values: dict[str, Any] = {}

    def take(section: str, key: str, name: str, convert: Any) -> None:
        found = _find(tree, section, key)
        if found is None:
            return
        try:
            values[name] = convert(found)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {section}.{key} = {found!r} is not valid ({error})") from None

    depth = _find(tree, "RESNETS", "DEPTH")
    if depth is not None:
        if int(depth) not in _DEPTH_BLOCKS:
            raise ValueError(f"{path}: RESNETS.DEPTH = {depth!r} is not one of {sorted(_DEPTH_BLOCKS)}")
        values["blocks_per_stage"] = list(_DEPTH_BLOCKS[int(depth)])
    take("RESNETS", "STEM_OUT_CHANNELS", "stem_out_channels", int)
    take("RESNETS", "RES2_OUT_CHANNELS", "res2_out_channels", int)
    take("RESNETS", "NUM_GROUPS", "num_groups", int)
    take("RESNETS", "WIDTH_PER_GROUP", "width_per_group", int)
    take("RESNETS", "STRIDE_IN_1X1", "stride_in_1x1", bool)
    take("MODEL", "MAX_POOL", "caffe_maxpool", bool)
    take("ROI_BOX_HEAD", "RES5HALVE", "res5_dilation_head", lambda v: not bool(v))
    take("PROPOSAL_GENERATOR", "MIN_SIZE", "rpn_min_box_size", float)
    take("ANCHOR_GENERATOR", "SIZES", "anchor_sizes", _flat)
    take("ANCHOR_GENERATOR", "ASPECT_RATIOS", "anchor_aspect_ratios", _flat)
    take("ANCHOR_GENERATOR", "OFFSET", "anchor_offset", float)
    take("RPN", "PRE_NMS_TOPK_TEST", "rpn_pre_nms_top_n", int)
    take("RPN", "POST_NMS_TOPK_TEST", "rpn_post_nms_top_n", int)
    take("RPN", "NMS_THRESH", "rpn_nms_threshold", float)
    take("RPN", "BBOX_REG_WEIGHTS", "rpn_bbox_reg_weights", _flat)
    take("ROI_BOX_HEAD", "POOLER_RESOLUTION", "pooler_resolution", int)
    take("ROI_BOX_HEAD", "BBOX_REG_WEIGHTS", "bbox_reg_weights", _flat)
    take("ROI_BOX_HEAD", "CLS_AGNOSTIC_BBOX_REG", "class_agnostic_bbox_reg", bool)
    take("ROI_BOX_HEAD", "NUM_ATTRS", "num_attributes", int)
    take("ROI_HEADS", "NUM_CLASSES", "num_classes", int)
    take("MODEL", "PIXEL_MEAN", "pixel_mean", _flat)
    take("MODEL", "PIXEL_STD", "pixel_std", _flat)
    take("INPUT", "FORMAT", "input_format", str)
    take("INPUT", "MIN_SIZE_TEST", "min_size", lambda v: int(_flat(v)[0]) if isinstance(v, list) else int(v))
    take("INPUT", "MAX_SIZE_TEST", "max_size", int)
    hidden = _find(tree, "PROPOSAL_GENERATOR", "HIDDEN_CHANNELS")
    if hidden is not None:  # -1: as wide as res4
        res2 = values.get("res2_out_channels", RegionFeatureExtractorConfig.res2_out_channels)
        values["rpn_hidden_channels"] = res2 * 4 if int(hidden) == -1 else int(hidden)
    values.update(overrides)
    return RegionFeatureExtractorConfig(**values)


def read_port_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The port's ``pytorch_model.bin`` as a state dict of tensors (``torch.load(weights_only=True)``).

    Raises:
        ValueError: The file is not a loadable tensor checkpoint (e.g. it needs code to unpickle).
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors, zip errors, UnpicklingError for non-tensor content
        raise ValueError(f"{path}: not a loadable weights-only PyTorch checkpoint ({error})") from None
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        name = key.replace(".gamma", ".weight").replace(".beta", ".bias")
        out[name] = value
    return out


def load_detector_state(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Loads ``state`` into the detector, refusing missing or unexpected keys and wrong shapes by name."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''} ({len(missing)} in all)")
    if unexpected:
        more = " ..." if len(unexpected) > 8 else ""
        problems.append(f"unexpected keys {unexpected[:8]}{more} ({len(unexpected)} in all)")
    if wrong:
        problems.append(f"shape mismatches {wrong[:8]}{' ...' if len(wrong) > 8 else ''}")
    if problems:
        raise ValueError(f"{source}: the weights do not fit the detector configuration: " + "; ".join(problems))
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)


def resolve_detector_files(path_or_hub_id: str | os.PathLike, **hub_kwargs: Any) -> tuple[str, Path, Path]:
    """Finds a detector's files: a local directory, or a Hub repository downloaded on demand.

    Returns:
        ``("own" | "port", config_file, weights_file)``.

    Raises:
        FileNotFoundError: A local directory holds neither layout.
    """
    local = Path(path_or_hub_id)
    if local.is_dir():
        if (local / OWN_CONFIG_NAME).is_file() and (local / OWN_WEIGHTS_NAME).is_file():
            return "own", local / OWN_CONFIG_NAME, local / OWN_WEIGHTS_NAME
        if (local / PORT_CONFIG_NAME).is_file() and (local / PORT_WEIGHTS_NAME).is_file():
            return "port", local / PORT_CONFIG_NAME, local / PORT_WEIGHTS_NAME
        raise FileNotFoundError(
            f"{local} holds no detector: expected {OWN_CONFIG_NAME} + {OWN_WEIGHTS_NAME} (this package's format) or "
            f"{PORT_CONFIG_NAME} + {PORT_WEIGHTS_NAME} (the community port)"
        )
    if local.exists() or str(path_or_hub_id).startswith((".", "/")) or str(path_or_hub_id).count("/") != 1:
        raise FileNotFoundError(f"{path_or_hub_id} is not a detector directory nor a Hub id (owner/name)")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    repo = str(path_or_hub_id)
    try:
        return (
            "own",
            Path(hf_hub_download(repo, OWN_CONFIG_NAME, **hub_kwargs)),
            Path(hf_hub_download(repo, OWN_WEIGHTS_NAME, **hub_kwargs)),
        )
    except EntryNotFoundError:
        return (
            "port",
            Path(hf_hub_download(repo, PORT_CONFIG_NAME, **hub_kwargs)),
            Path(hf_hub_download(repo, PORT_WEIGHTS_NAME, **hub_kwargs)),
        )
