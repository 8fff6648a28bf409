"""The community port's checkpoint layout (``unc-nlp/frcnn-vg-finetuned``), written out independently of the
package's modules from the port's public structure, and a writer of random checkpoints in that layout."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import yaml

_DEPTH_BLOCKS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}


def _conv_norm(prefix: str, out_channels: int, in_channels: int, kernel: int, groups: int = 1) -> dict:
    shapes = {f"{prefix}.weight": (out_channels, in_channels // groups, kernel, kernel)}
    for name in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{prefix}.norm.{name}"] = (out_channels,)
    shapes[f"{prefix}.norm.num_batches_tracked"] = ()  # nn.BatchNorm2d's counter, present in a saved state dict
    return shapes


def _block(prefix: str, in_channels: int, bottleneck: int, out: int, groups: int) -> dict:
    shapes = {}
    if in_channels != out:
        shapes.update(_conv_norm(f"{prefix}.shortcut", out, in_channels, 1))
    shapes.update(_conv_norm(f"{prefix}.conv1", bottleneck, in_channels, 1))
    shapes.update(_conv_norm(f"{prefix}.conv2", bottleneck, bottleneck, 3, groups))
    shapes.update(_conv_norm(f"{prefix}.conv3", out, bottleneck, 1))
    return shapes


def port_key_shapes(
    blocks=(3, 4, 23, 3),
    stem=64,
    res2=256,
    groups=1,
    width=64,
    rpn_hidden=512,
    num_anchors=15,
    num_classes=1600,
    num_attributes=400,
) -> dict[str, tuple]:
    """Every key of the port's state dict with its shape."""
    shapes = _conv_norm("backbone.stem.conv1", stem, 3, 7)
    in_channels, out, bottleneck = stem, res2, groups * width
    for stage, count in zip(("res2", "res3", "res4"), blocks[:3]):
        for i in range(count):
            shapes.update(_block(f"backbone.{stage}.{i}", in_channels if i == 0 else out, bottleneck, out, groups))
        in_channels, out, bottleneck = out, out * 2, bottleneck * 2
    res4 = res2 * 4
    shapes["proposal_generator.anchor_generator.cell_anchors.0"] = (num_anchors, 4)
    shapes["proposal_generator.rpn_head.conv.weight"] = (rpn_hidden, res4, 3, 3)
    shapes["proposal_generator.rpn_head.conv.bias"] = (rpn_hidden,)
    shapes["proposal_generator.rpn_head.objectness_logits.weight"] = (num_anchors, rpn_hidden, 1, 1)
    shapes["proposal_generator.rpn_head.objectness_logits.bias"] = (num_anchors,)
    shapes["proposal_generator.rpn_head.anchor_deltas.weight"] = (num_anchors * 4, rpn_hidden, 1, 1)
    shapes["proposal_generator.rpn_head.anchor_deltas.bias"] = (num_anchors * 4,)
    res5 = res2 * 8
    for i in range(blocks[3]):
        shapes.update(_block(f"roi_heads.res5.{i}", res4 if i == 0 else res5, groups * width * 8, res5, groups))
    p = "roi_heads.box_predictor"
    shapes[f"{p}.cls_score.weight"] = (num_classes + 1, res5)
    shapes[f"{p}.cls_score.bias"] = (num_classes + 1,)
    shapes[f"{p}.bbox_pred.weight"] = (num_classes * 4, res5)
    shapes[f"{p}.bbox_pred.bias"] = (num_classes * 4,)
    shapes[f"{p}.cls_embedding.weight"] = (num_classes + 1, res5 // 8)
    shapes[f"{p}.fc_attr.weight"] = (res5 // 4, res5 + res5 // 8)
    shapes[f"{p}.fc_attr.bias"] = (res5 // 4,)
    shapes[f"{p}.attr_score.weight"] = (num_attributes + 1, res5 // 4)
    shapes[f"{p}.attr_score.bias"] = (num_attributes + 1,)
    return shapes


def port_config_yaml(
    sizes,
    ratios,
    *,
    depth=None,
    stem=64,
    res2=256,
    width=64,
    rpn_hidden=512,
    classes=1600,
    attributes=400,
    pooler=14,
    min_size=600,
    max_size=1000,
    pre=6000,
    post=300,
) -> dict:
    """A ``config.yaml`` tree with the port's sections (nested under MODEL, as detectron2 writes them)."""
    return {
        "MODEL": {
            "DEVICE": "cpu",
            "META_ARCHITECTURE": "GeneralizedRCNN",
            "MAX_POOL": True,
            "PIXEL_MEAN": [102.9801, 115.9465, 122.7717],
            "PIXEL_STD": [1.0, 1.0, 1.0],
            "ANCHOR_GENERATOR": {"SIZES": [list(sizes)], "ASPECT_RATIOS": [list(ratios)], "OFFSET": 0.0},
            "PROPOSAL_GENERATOR": {"HIDDEN_CHANNELS": rpn_hidden, "MIN_SIZE": 0, "NAME": "RPN"},
            "RESNETS": {
                "DEPTH": depth if depth is not None else 101,
                "NORM": "BN",
                "NUM_GROUPS": 1,
                "OUT_FEATURES": ["res4"],
                "RES2_OUT_CHANNELS": res2,
                "RES5_DILATION": 1,
                "STEM_OUT_CHANNELS": stem,
                "STRIDE_IN_1X1": True,
                "WIDTH_PER_GROUP": width,
            },
            "RPN": {
                "BBOX_REG_WEIGHTS": [1.0, 1.0, 1.0, 1.0],
                "IN_FEATURES": ["res4"],
                "NMS_THRESH": 0.7,
                "POST_NMS_TOPK_TEST": post,
                "PRE_NMS_TOPK_TEST": pre,
            },
            "ROI_BOX_HEAD": {
                "ATTR": True,
                "BBOX_REG_WEIGHTS": [10.0, 10.0, 5.0, 5.0],
                "CLS_AGNOSTIC_BBOX_REG": False,
                "NUM_ATTRS": attributes,
                "POOLER_RESOLUTION": pooler,
                "POOLER_TYPE": "ROIPool",
                "RES5HALVE": False,
            },
            "ROI_HEADS": {"NUM_CLASSES": classes, "NMS_THRESH_TEST": 0.6, "SCORE_THRESH_TEST": 0.2},
        },
        "INPUT": {"FORMAT": "BGR", "MIN_SIZE_TEST": min_size, "MAX_SIZE_TEST": max_size},
        "MAX_DETECTIONS": 36,
        "MIN_DETECTIONS": 10,
    }


def write_random_port_checkpoint(directory: Path, shapes: dict, tree: dict, seed: int = 0) -> Path:
    """``config.yaml`` + ``pytorch_model.bin`` (random tensors of every key) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        elif key.endswith("norm.weight"):
            state[key] = torch.rand(shape, generator=generator) * 0.5 + 0.25
        elif key.endswith("norm.bias") or key.endswith("running_mean") or key.endswith(".bias"):
            state[key] = torch.randn(shape, generator=generator) * 0.05
        elif key.endswith("cell_anchors.0"):
            sizes = tree["MODEL"]["ANCHOR_GENERATOR"]["SIZES"][0]
            ratios = tree["MODEL"]["ANCHOR_GENERATOR"]["ASPECT_RATIOS"][0]
            rows = []
            for size in sizes:
                for ratio in ratios:
                    w = math.sqrt(size * size / ratio)
                    rows.append([-w / 2, -ratio * w / 2, w / 2, ratio * w / 2])
            state[key] = torch.tensor(rows)
        else:
            fan_in = max(1, math.prod(shape[1:])) if len(shape) > 1 else 1
            scale = 0.01 if ("predictor" in key or "objectness" in key or "anchor_deltas" in key) else 1.0
            state[key] = torch.randn(shape, generator=generator) * scale * math.sqrt(2.0 / fan_in)
    (directory / "config.yaml").write_text(yaml.safe_dump(tree))
    torch.save(state, directory / "pytorch_model.bin")
    return directory
