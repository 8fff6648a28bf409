"""`RegionFeatureExtractorConfig`: the bottom-up-attention detector's architecture, input convention and box
selection rule (DESIGN.md section 7), and its presets (``presets/*.json``)."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["RegionFeatureExtractorConfig", "available_detector_presets"]

_BLOCKS_PER_DEPTH = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}


@dataclass
class RegionFeatureExtractorConfig:
    """Configuration of [`RegionFeatureExtractor`]. The defaults are the community detector of Anderson et al.
    (2018): ResNet-101 C4, Visual Genome 1,600 objects and 400 attributes, the adaptive 10-100 boxes release.

    Attributes:
        blocks_per_stage: Bottleneck blocks in res2, res3, res4 and res5 (ResNet-101: 3, 4, 23, 3).
        stem_out_channels: Channels of the 7x7 stem convolution.
        res2_out_channels: Output channels of res2 (doubled at each later stage; res5 gives 8x, the feature width).
        num_groups: Groups of the 3x3 convolutions.
        width_per_group: Bottleneck channels of res2 per group.
        stride_in_1x1: The stride of a block sits in its first 1x1 convolution (the MSRA/Caffe ResNet).
        caffe_maxpool: The stem's max pooling as in Caffe (3x3, stride 2, no padding, ceil mode).
        res5_dilation_head: res5 keeps the 14x14 RoI grid (stride 1, dilation 2), as in the Caffe test prototxt.
        norm_eps: Epsilon of the frozen batch norms.
        rpn_hidden_channels: Channels of the RPN's 3x3 convolution (512 for the VG model).
        anchor_sizes: Anchor side lengths in input pixels.
        anchor_aspect_ratios: Anchor height/width ratios.
        anchor_offset: Offset of the anchor grid in units of the stride.
        feature_stride: Stride of res4 in pixels.
        rpn_bbox_reg_weights: Weights of the RPN's box deltas.
        rpn_pre_nms_top_n: Proposals kept by objectness before the RPN's NMS.
        rpn_post_nms_top_n: Proposals (RoIs) kept after it (300 at test time).
        rpn_nms_threshold: IoU threshold of the RPN's NMS.
        rpn_min_box_size: Proposals with a side not above this (pixels) are dropped.
        pooler_resolution: RoI pooling grid (14).
        num_classes: Object classes without background (1600); the background logit is the last one.
        num_attributes: Attribute classes without "no attribute" (400); that logit is the last one.
        class_agnostic_bbox_reg: One box regressor for all classes.
        bbox_reg_weights: Weights of the box head's deltas.
        pixel_mean: Per-channel means subtracted from the input, in ``input_format`` channel order (Caffe BGR).
        pixel_std: Per-channel divisors (1 for the Caffe model).
        input_format: Channel order the network expects, ``"BGR"`` or ``"RGB"``.
        min_size: Target length of the image's shorter side (600).
        max_size: Upper bound of the longer side after resizing (1000).
        nms_threshold: Class-wise NMS threshold of the selection rule (0.3).
        conf_threshold: Minimum selection score of a kept box (0.2 adaptive, 0.4 fixed-36).
        min_boxes: Fewest boxes per image (10 adaptive, 36 fixed).
        max_boxes: Most boxes per image (100 adaptive, 36 fixed).
    """

    blocks_per_stage: list[int] = field(default_factory=lambda: [3, 4, 23, 3])
    stem_out_channels: int = 64
    res2_out_channels: int = 256
    num_groups: int = 1
    width_per_group: int = 64
    stride_in_1x1: bool = True
    caffe_maxpool: bool = True
    res5_dilation_head: bool = True
    norm_eps: float = 1e-5
    rpn_hidden_channels: int = 512
    anchor_sizes: list[float] = field(default_factory=lambda: [32.0, 64.0, 128.0, 256.0, 512.0])
    anchor_aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    anchor_offset: float = 0.0
    feature_stride: int = 16
    rpn_bbox_reg_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0])
    rpn_pre_nms_top_n: int = 6000
    rpn_post_nms_top_n: int = 300
    rpn_nms_threshold: float = 0.7
    rpn_min_box_size: float = 0.0
    pooler_resolution: int = 14
    num_classes: int = 1600
    num_attributes: int = 400
    class_agnostic_bbox_reg: bool = False
    bbox_reg_weights: list[float] = field(default_factory=lambda: [10.0, 10.0, 5.0, 5.0])
    pixel_mean: list[float] = field(default_factory=lambda: [102.9801, 115.9465, 122.7717])
    pixel_std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    input_format: str = "BGR"
    min_size: int = 600
    max_size: int = 1000
    nms_threshold: float = 0.3
    conf_threshold: float = 0.2
    min_boxes: int = 10
    max_boxes: int = 100

    def __post_init__(self) -> None:
        problems = []
        if len(self.blocks_per_stage) != 4 or any(int(b) < 1 for b in self.blocks_per_stage):
            problems.append(f"blocks_per_stage must be 4 positive counts, not {self.blocks_per_stage}")
        if self.input_format not in ("BGR", "RGB"):
            problems.append(f"input_format must be 'BGR' or 'RGB', not {self.input_format!r}")
        if len(self.pixel_mean) != 3 or len(self.pixel_std) != 3:
            problems.append("pixel_mean and pixel_std must have 3 values")
        if not 1 <= self.min_boxes <= self.max_boxes:
            problems.append(f"need 1 <= min_boxes <= max_boxes, not {self.min_boxes} and {self.max_boxes}")
        if self.min_size < 1 or self.max_size < self.min_size:
            problems.append(f"need 1 <= min_size <= max_size, not {self.min_size} and {self.max_size}")
        if problems:
            raise ValueError("invalid RegionFeatureExtractorConfig: " + "; ".join(problems))

    @property
    def feature_dim(self) -> int:
        """Width of the pooled region feature (res5's channels: 2048 for ResNet-101)."""
        return self.res2_out_channels * 8

    @property
    def num_anchors(self) -> int:
        return len(self.anchor_sizes) * len(self.anchor_aspect_ratios)

    @classmethod
    def for_depth(cls, depth: int, **kwargs: Any) -> RegionFeatureExtractorConfig:
        """The configuration of a ResNet of ``depth`` layers (50, 101 or 152)."""
        if depth not in _BLOCKS_PER_DEPTH:
            raise ValueError(f"ResNet depth {depth} is not one of {sorted(_BLOCKS_PER_DEPTH)}")
        return cls(blocks_per_stage=list(_BLOCKS_PER_DEPTH[depth]), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "configuration") -> RegionFeatureExtractorConfig:
        """A configuration from a dict; unknown keys are an error naming them and ``source``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{source}: unknown detector configuration keys {unknown}")
        return cls(**values)

    def to_json_file(self, path: str | os.PathLike) -> Path:
        from ..atomic_files import write_text_atomic

        return write_text_atomic(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> RegionFeatureExtractorConfig:
        try:
            values = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a JSON object")
        return cls.from_dict(values, source=str(path))

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> RegionFeatureExtractorConfig:
        """A preset of ``presets/<name>.json`` (see [`available_detector_presets`]) with ``overrides`` applied."""
        names = available_detector_presets()
        if name not in names:
            raise ValueError(f"unknown detector preset {name!r}; available: {', '.join(names)}")
        text = resources.files(__package__).joinpath("presets", f"{name}.json").read_text(encoding="utf-8")
        values = {k: v for k, v in json.loads(text).items() if not k.startswith("_")}
        values.update(overrides)
        return cls.from_dict(values, source=f"detector preset {name!r}")

    def with_selection(self, *, num_boxes: int | None = None, **changes: Any) -> RegionFeatureExtractorConfig:
        """A copy with another selection rule: ``num_boxes=36`` is the fixed release (conf 0.4, 36 boxes)."""
        if num_boxes is not None:
            changes = {"conf_threshold": 0.4, "min_boxes": num_boxes, "max_boxes": num_boxes, **changes}
        return dataclasses.replace(self, **changes)


def available_detector_presets() -> list[str]:
    """Names of the detector presets shipped with the package."""
    folder = resources.files(__package__).joinpath("presets")
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))
