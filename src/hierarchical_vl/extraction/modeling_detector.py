"""The bottom-up-attention Faster R-CNN (Anderson et al., 2018) as torch modules: ResNet C4 backbone, RPN, RoI
pooling and the res5 box head with Visual Genome object and attribute classifiers.

Module and parameter names follow the community PyTorch port's checkpoint (``backbone.res4.0.conv1.norm.weight``,
``proposal_generator.rpn_head.conv.weight``, ``roi_heads.box_predictor.cls_score.weight``, ...), so its state
dict loads as it is. Everything is inference only: the batch norms are frozen affine maps.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .box_ops import apply_box_deltas, clip_boxes, nms, roi_pool
from .configuration_extractor import RegionFeatureExtractorConfig

__all__ = ["BottomUpDetector", "FrozenBatchNorm2d"]


_HEAD_PREFIXES = (
    "proposal_generator.rpn_head.objectness_logits",
    "proposal_generator.rpn_head.anchor_deltas",
    "roi_heads.box_predictor.bbox_pred",
    "roi_heads.box_predictor.cls_score",
    "roi_heads.box_predictor.attr_score",
)


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters (buffers ``weight``, ``bias``, ``running_mean``,
    ``running_var``, as in the checkpoint)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        return x * scale.to(x.dtype)[None, :, None, None] + shift.to(x.dtype)[None, :, None, None]


class _ConvNorm(nn.Conv2d):
    """A bias-free convolution followed by a frozen batch norm (the checkpoint's ``<conv>.norm``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, eps: float, **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, bias=False, **kwargs)
        self.norm = FrozenBatchNorm2d(out_channels, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(super().forward(x))


class _Bottleneck(nn.Module):
    def __init__(
        self,
        in_channels: int,
        bottleneck_channels: int,
        out_channels: int,
        *,
        stride: int,
        dilation: int,
        config: RegionFeatureExtractorConfig,
    ):
        super().__init__()
        eps = config.norm_eps
        self.shortcut = (
            _ConvNorm(in_channels, out_channels, 1, eps, stride=stride) if in_channels != out_channels else None
        )
        stride_1x1, stride_3x3 = (stride, 1) if config.stride_in_1x1 else (1, stride)
        self.conv1 = _ConvNorm(in_channels, bottleneck_channels, 1, eps, stride=stride_1x1)
        self.conv2 = _ConvNorm(
            bottleneck_channels,
            bottleneck_channels,
            3,
            eps,
            stride=stride_3x3,
            padding=dilation,
            dilation=dilation,
            groups=config.num_groups,
        )
        self.conv3 = _ConvNorm(bottleneck_channels, out_channels, 1, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.conv1(x))
        out = torch.relu(self.conv2(out))
        out = self.conv3(out)
        return torch.relu(out + (x if self.shortcut is None else self.shortcut(x)))


def _stage(
    num_blocks: int, in_channels: int, bottleneck: int, out: int, stride: int, dilation: int, config
) -> nn.Sequential:
    blocks = [
        _Bottleneck(
            in_channels if i == 0 else out,
            bottleneck,
            out,
            stride=stride if i == 0 else 1,
            dilation=dilation,
            config=config,
        )
        for i in range(num_blocks)
    ]
    return nn.Sequential(*blocks)


class _Stem(nn.Module):
    def __init__(self, config: RegionFeatureExtractorConfig):
        super().__init__()
        self.conv1 = _ConvNorm(3, config.stem_out_channels, 7, config.norm_eps, stride=2, padding=3)
        self.caffe_maxpool = config.caffe_maxpool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        if self.caffe_maxpool:
            return nn.functional.max_pool2d(x, kernel_size=3, stride=2, padding=0, ceil_mode=True)
        return nn.functional.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class _Backbone(nn.Module):
    """Stem and res2-res4 (the shared part of the C4 arrangement); output at stride 16."""

    def __init__(self, config: RegionFeatureExtractorConfig):
        super().__init__()
        self.stem = _Stem(config)
        in_channels, out = config.stem_out_channels, config.res2_out_channels
        bottleneck = config.num_groups * config.width_per_group
        for index, name in enumerate(("res2", "res3", "res4")):
            stride = 1 if index == 0 else 2
            self.add_module(
                name, _stage(config.blocks_per_stage[index], in_channels, bottleneck, out, stride, 1, config)
            )
            in_channels, out, bottleneck = out, out * 2, bottleneck * 2

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.res4(self.res3(self.res2(self.stem(images))))  # (N, 4 res2, H/16, W/16)


class _AnchorGenerator(nn.Module):
    def __init__(self, config: RegionFeatureExtractorConfig):
        super().__init__()
        anchors = []
        for size in config.anchor_sizes:
            for ratio in config.anchor_aspect_ratios:
                w = math.sqrt(size * size / ratio)
                h = ratio * w
                anchors.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
        # A parameter list, as in the checkpoint (key ``cell_anchors.0``); never trained.
        self.cell_anchors = nn.ParameterList([nn.Parameter(torch.tensor(anchors), requires_grad=False)])
        self.stride = config.feature_stride
        self.offset = config.anchor_offset

    def forward(self, height: int, width: int) -> torch.Tensor:
        """(H W A, 4) anchors of an H x W feature map, ordered by row, column, anchor."""
        cell = self.cell_anchors[0]
        device = cell.device
        shifts_x = torch.arange(width, device=device, dtype=torch.float32) * self.stride + self.offset * self.stride
        shifts_y = torch.arange(height, device=device, dtype=torch.float32) * self.stride + self.offset * self.stride
        shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
        shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=-1).reshape(-1, 1, 4)  # (HW, 1, 4)
        return (shifts + cell.float()[None]).reshape(-1, 4)


class _RPNHead(nn.Module):
    def __init__(self, in_channels: int, config: RegionFeatureExtractorConfig):
        super().__init__()
        hidden = config.rpn_hidden_channels
        self.conv = nn.Conv2d(in_channels, hidden, kernel_size=3, padding=1)
        self.objectness_logits = nn.Conv2d(hidden, config.num_anchors, kernel_size=1)
        self.anchor_deltas = nn.Conv2d(hidden, config.num_anchors * 4, kernel_size=1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = torch.relu(self.conv(features))
        return self.objectness_logits(hidden), self.anchor_deltas(hidden)


class _RegionProposalNetwork(nn.Module):
    def __init__(self, in_channels: int, config: RegionFeatureExtractorConfig):
        super().__init__()
        self.config = config
        self.rpn_head = _RPNHead(in_channels, config)
        self.anchor_generator = _AnchorGenerator(config)

    def forward(self, features: torch.Tensor, image_sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
        """Proposals of each image, (P_i, 4) in input pixels, by decreasing objectness.

        Args:
            features: (N, C, H, W) res4 features of N images of one size.
            image_sizes: (height, width) of each image (proposals are clipped to it).
        """
        config = self.config
        logits, deltas = self.rpn_head(features)  # (N, A, H, W), (N, 4A, H, W)
        n, a, h, w = logits.shape
        anchors = self.anchor_generator(h, w)  # (H W A, 4)
        logits = logits.permute(0, 2, 3, 1).reshape(n, -1).float()  # (N, H W A)
        deltas = deltas.view(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4).float()  # (N, H W A, 4)
        proposals = []
        for i, (height, width) in enumerate(image_sizes):
            top = min(config.rpn_pre_nms_top_n, logits.shape[1])
            order = torch.sort(logits[i], descending=True, stable=True).indices[:top]
            boxes = apply_box_deltas(deltas[i][order], anchors[order], tuple(config.rpn_bbox_reg_weights))
            boxes = clip_boxes(boxes, height, width)
            scores = logits[i][order]
            sides = torch.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
            valid = sides > config.rpn_min_box_size
            boxes, scores = boxes[valid], scores[valid]
            keep = nms(boxes, scores, config.rpn_nms_threshold)[: config.rpn_post_nms_top_n]
            proposals.append(boxes[keep])
        return proposals


class _BoxPredictor(nn.Module):
    def __init__(self, config: RegionFeatureExtractorConfig):
        super().__init__()
        dim = config.feature_dim
        self.cls_score = nn.Linear(dim, config.num_classes + 1)
        regressed = 1 if config.class_agnostic_bbox_reg else config.num_classes
        self.bbox_pred = nn.Linear(dim, regressed * 4)
        self.cls_embedding = nn.Embedding(config.num_classes + 1, dim // 8)
        self.fc_attr = nn.Linear(dim + dim // 8, dim // 4)
        self.attr_score = nn.Linear(dim // 4, config.num_attributes + 1)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Object logits (R, C + 1) and attribute logits (R, A + 1) of pooled features (R, F)."""
        class_logits = self.cls_score(pooled)
        embedded = self.cls_embedding(class_logits.argmax(dim=-1))  # (R, F / 8)
        hidden = torch.relu(self.fc_attr(torch.cat([pooled, embedded.to(pooled.dtype)], dim=-1)))
        return class_logits, self.attr_score(hidden)


class _Res5RoIHeads(nn.Module):
    def __init__(self, config: RegionFeatureExtractorConfig):
        super().__init__()
        self.config = config
        out = config.feature_dim
        bottleneck = config.num_groups * config.width_per_group * 8
        dilated = config.res5_dilation_head
        self.res5 = _stage(
            config.blocks_per_stage[3], out // 2, bottleneck, out, 1 if dilated else 2, 2 if dilated else 1, config
        )
        self.box_predictor = _BoxPredictor(config)

    def pool(self, features: torch.Tensor, boxes: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        """(R, F) mean-pooled res5 features of boxes (R, 4) in input pixels on one image's res4 map (C, H, W)."""
        config = self.config
        pooled = []
        for start in range(0, boxes.shape[0], chunk):
            grid = roi_pool(
                features, boxes[start : start + chunk], config.pooler_resolution, 1.0 / config.feature_stride
            )
            pooled.append(self.res5(grid).mean(dim=(2, 3)))
        if not pooled:
            return features.new_zeros(0, config.feature_dim)
        return torch.cat(pooled, dim=0)


class BottomUpDetector(nn.Module):
    """The detector's modules, named as in the community checkpoint.

    Args:
        config: The architecture.
    """

    def __init__(self, config: RegionFeatureExtractorConfig):
        super().__init__()
        self.config = config
        self.backbone = _Backbone(config)
        self.proposal_generator = _RegionProposalNetwork(config.res2_out_channels * 4, config)
        self.roi_heads = _Res5RoIHeads(config)

    def init_random_weights(self, seed: int = 0) -> BottomUpDetector:
        """Random weights with sane scales (for tests, benchmarks and the demo; deterministic by ``seed``)."""
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, tensor in self.state_dict().items():
                if name.endswith("cell_anchors.0"):
                    continue
                if name.endswith("running_var"):
                    tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.5 + 0.75)
                elif name.endswith("running_mean") or name.endswith(".bias"):
                    tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.05)
                elif name.startswith(_HEAD_PREFIXES) and name.endswith(".weight"):  # output layers: small, as trained
                    tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.01)
                elif name.endswith("conv3.norm.weight"):  # small residual branches keep deep stacks bounded
                    tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.1 + 0.05)
                elif name.endswith("norm.weight"):
                    tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.5 + 0.5)
                else:
                    fan_in = max(1, tensor[0].numel()) if tensor.dim() > 1 else 1
                    tensor.copy_(torch.randn(tensor.shape, generator=generator) * math.sqrt(2.0 / fan_in))
        return self
