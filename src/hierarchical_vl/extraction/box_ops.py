"""Box operations of the detector in plain torch: IoU, box deltas, greedy NMS (one class and class-wise) and RoI
max pooling, each vectorised over boxes (no per-box Python loop) so that they run on any device torch supports.

``torchvision.ops`` implements the same operations in compiled code but is not installable beside every torch
build; when it imports, `nms` and `roi_pool` can use it (``use_torchvision=True``), and the tests check both
against each other and against brute-force loops.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "apply_box_deltas",
    "box_iou",
    "classwise_nms_max_scores",
    "clip_boxes",
    "nms",
    "roi_pool",
    "torchvision_ops",
]

_DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


def torchvision_ops():
    """``torchvision.ops`` when torchvision imports beside this torch, else ``None``."""
    try:
        import torchvision.ops as ops  # noqa: PLC0415
    except Exception:  # ImportError, or a binary built for another torch
        return None
    return ops


def box_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """(N, M) intersection over union of x1 y1 x2 y2 boxes (N, 4) and (M, 4), continuous coordinates."""
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]).clamp(min=0) * (boxes_a[:, 3] - boxes_a[:, 1]).clamp(min=0)  # (N,)
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]).clamp(min=0) * (boxes_b[:, 3] - boxes_b[:, 1]).clamp(min=0)  # (M,)
    top_left = torch.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])  # (N, M, 2)
    bottom_right = torch.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])  # (N, M, 2)
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]  # (N, M)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def clip_boxes(boxes: torch.Tensor, height: float, width: float) -> torch.Tensor:
    """Boxes (..., 4) clipped to the image ``[0, width] x [0, height]`` (a new tensor)."""
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


def apply_box_deltas(
    deltas: torch.Tensor,
    boxes: torch.Tensor,
    weights: tuple[float, float, float, float],
    scale_clamp: float = _DEFAULT_SCALE_CLAMP,
) -> torch.Tensor:
    """The R-CNN box transform: shifts each box's centre by (dx w, dy h) and scales it by (exp dw, exp dh).

    Args:
        deltas: (N, 4 k) deltas ``dx dy dw dh`` for k boxes per row (k classes), multiplied by ``weights``.
        boxes: (N, 4) source boxes x1 y1 x2 y2.
        weights: The weights the deltas were scaled by at training time.
        scale_clamp: Upper bound of ``dw`` and ``dh`` before ``exp``.

    Returns:
        (N, 4 k) boxes x1 y1 x2 y2.
    """
    boxes = boxes.to(deltas.dtype)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy  # (N, k)
    dw = (deltas[:, 2::4] / ww).clamp(max=scale_clamp)
    dh = (deltas[:, 3::4] / wh).clamp(max=scale_clamp)
    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    pred_w = torch.exp(dw) * widths[:, None]
    pred_h = torch.exp(dh) * heights[:, None]
    out = torch.stack(
        [pred_ctr_x - 0.5 * pred_w, pred_ctr_y - 0.5 * pred_h, pred_ctr_x + 0.5 * pred_w, pred_ctr_y + 0.5 * pred_h],
        dim=-1,
    )  # (N, k, 4)
    return out.reshape(deltas.shape)


def _descending_order(scores: torch.Tensor) -> torch.Tensor:
    """Indices sorting ``scores`` (..., N) from high to low, ties by index (stable, hence deterministic)."""
    return torch.sort(scores, dim=-1, descending=True, stable=True).indices


def nms(
    boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, *, use_torchvision: bool = False
) -> torch.Tensor:
    """Greedy non-maximum suppression of one class.

    A box is kept when no kept box of higher score overlaps it by IoU > ``iou_threshold``. The greedy rule is the
    fixed point of ``keep[j] = not any(keep[i] and overlap[i, j] for i ranked before j)``; it is computed by
    iterating that rule on all boxes at once until it stops changing (at most as many rounds as the longest chain
    of suppressions, a handful in practice).

    Args:
        boxes: (N, 4) boxes x1 y1 x2 y2.
        scores: (N,) scores.
        iou_threshold: Overlap above which the lower-scored box is dropped.
        use_torchvision: Use ``torchvision.ops.nms`` when it imports (same result up to ties in score).

    Returns:
        (K,) int64 indices of the kept boxes, by decreasing score.
    """
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    ops = torchvision_ops() if use_torchvision else None
    if ops is not None:
        return ops.nms(boxes.float(), scores.float(), iou_threshold)
    order = _descending_order(scores)  # (N,)
    sorted_boxes = boxes[order]
    overlap = box_iou(sorted_boxes, sorted_boxes) > iou_threshold  # (N, N)
    overlap = torch.triu(overlap, diagonal=1)  # overlap[i, j]: i ranked before j suppresses j
    keep = torch.ones(order.shape[0], dtype=torch.bool, device=boxes.device)
    for _ in range(order.shape[0]):
        suppressed = (overlap & keep[:, None]).any(dim=0)  # (N,)
        new_keep = ~suppressed
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return order[keep]


def classwise_nms_max_scores(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """The selection score of the bottom-up-attention feature script: per class, greedy NMS of the same boxes
    ranked by that class's scores; each box then scores the highest of its class scores that survived.

    All classes are processed together: the boxes are shared, so one (N, N) IoU matrix serves every class, and the
    greedy pass walks the N ranks once, each step vectorised over the classes.

    Args:
        boxes: (N, 4) boxes (the RoIs), shared by every class.
        scores: (N, C) class probabilities (background excluded).
        iou_threshold: NMS overlap threshold (0.3 in the original script).

    Returns:
        (N,) for each box the maximum over classes of its score where it survived that class's NMS, 0 where it
        survived none.
    """
    num_boxes, num_classes = scores.shape
    if num_boxes == 0:
        return scores.new_zeros(0)
    overlap = box_iou(boxes, boxes) > iou_threshold  # (N, N)
    order = _descending_order(scores.t())  # (C, N): rank -> box, per class
    suppressed = torch.zeros(num_classes, num_boxes, dtype=torch.bool, device=boxes.device)  # by box index
    kept = torch.zeros_like(suppressed)
    classes = torch.arange(num_classes, device=boxes.device)
    for rank in range(num_boxes):
        candidate = order[:, rank]  # (C,) the box at this rank in each class
        alive = ~suppressed[classes, candidate]  # (C,)
        kept[classes, candidate] = alive
        suppressed |= alive[:, None] & overlap[candidate]  # (C, N)
    surviving = torch.where(kept.t(), scores, torch.zeros_like(scores))  # (N, C)
    return surviving.max(dim=1).values


def _round_half_away(values: torch.Tensor) -> torch.Tensor:
    """C's ``round``: halves away from zero (``torch.round`` rounds halves to even)."""
    return torch.sign(values) * torch.floor(values.abs() + 0.5)


def roi_pool(
    features: torch.Tensor,
    boxes: torch.Tensor,
    output_size: int,
    spatial_scale: float,
    *,
    use_torchvision: bool = False,
    max_elements: int = 1 << 25,
) -> torch.Tensor:
    """Max pooling of each box of one feature map into an ``output_size`` x ``output_size`` grid (Fast R-CNN's
    RoIPool, as in Caffe and ``torchvision.ops.roi_pool``).

    A box is scaled by ``spatial_scale`` and rounded to whole cells (its end cell included); bin ``(i, j)`` covers
    rows ``floor(i h / P)`` to ``ceil((i + 1) h / P)`` of it (clipped to the map), and an empty bin gives 0.
    The maximum over the bins' windows is taken with gathers of at most the largest bin's extent, rows then
    columns, for many boxes at once (in chunks of at most ``max_elements`` gathered values).

    Args:
        features: (C, H, W) feature map of one image.
        boxes: (K, 4) boxes x1 y1 x2 y2 in input-image pixels.
        output_size: P, the pooled grid side.
        spatial_scale: Feature-map cells per input pixel (1/16 for the C4 backbone).
        use_torchvision: Use ``torchvision.ops.roi_pool`` when it imports.
        max_elements: Bound on one chunk's gathered values (memory).

    Returns:
        (K, C, P, P) pooled features.
    """
    channels, height, width = features.shape
    num_boxes = boxes.shape[0]
    if num_boxes == 0:
        return features.new_zeros(0, channels, output_size, output_size)
    ops = torchvision_ops() if use_torchvision else None
    if ops is not None:
        rois = torch.cat([boxes.new_zeros(num_boxes, 1), boxes], dim=1).to(features.dtype)
        return ops.roi_pool(features[None], rois, output_size, spatial_scale)
    scaled = _round_half_away(boxes.float() * spatial_scale)  # (K, 4) cells
    start_w, start_h, end_w, end_h = scaled.unbind(dim=1)
    roi_w = (end_w - start_w + 1).clamp(min=1)
    roi_h = (end_h - start_h + 1).clamp(min=1)
    bins = torch.arange(output_size, device=features.device, dtype=torch.float32)  # (P,)
    h0 = (torch.floor(bins[None] * (roi_h[:, None] / output_size)) + start_h[:, None]).clamp(0, height)  # (K, P)
    h1 = (torch.ceil((bins[None] + 1) * (roi_h[:, None] / output_size)) + start_h[:, None]).clamp(0, height)
    w0 = (torch.floor(bins[None] * (roi_w[:, None] / output_size)) + start_w[:, None]).clamp(0, width)
    w1 = (torch.ceil((bins[None] + 1) * (roi_w[:, None] / output_size)) + start_w[:, None]).clamp(0, width)
    h0, h1, w0, w1 = (t.long() for t in (h0, h1, w0, w1))
    extent_h = max(int((h1 - h0).max()), 1)
    extent_w = max(int((w1 - w0).max()), 1)
    steps_h = torch.arange(extent_h, device=features.device)
    steps_w = torch.arange(extent_w, device=features.device)
    rows = h0[..., None] + steps_h  # (K, P, Eh)
    row_valid = rows < h1[..., None]
    cols = w0[..., None] + steps_w  # (K, P, Ew)
    col_valid = cols < w1[..., None]
    rows = rows.clamp(max=height - 1)
    cols = cols.clamp(max=width - 1)
    lowest = torch.finfo(features.dtype).min
    per_box = channels * output_size * max(extent_h * width, extent_w * output_size)
    chunk = max(1, max_elements // max(per_box, 1))
    out = []
    for start in range(0, num_boxes, chunk):
        part = slice(start, start + chunk)
        n = rows[part].shape[0]
        # rows of each bin: (n, C, P, Eh, W) -> max over the bin's rows -> (n, C, P, W)
        gathered = features[:, rows[part]]  # (C, n, P, Eh, W)
        gathered = gathered.masked_fill(~row_valid[part][None, :, :, :, None], lowest)
        by_rows = gathered.amax(dim=3).permute(1, 0, 2, 3)  # (n, C, Ph, W)
        # columns of each bin: gather (n, C, Ph, Pw, Ew) -> max -> (n, C, Ph, Pw)
        index = cols[part][:, None, None, :, :].expand(n, channels, output_size, output_size, extent_w)
        source = by_rows[:, :, :, None, :].expand(n, channels, output_size, output_size, width)
        pooled = torch.gather(source, 4, index)
        pooled = pooled.masked_fill(~col_valid[part][:, None, None, :, :], lowest).amax(dim=4)
        empty = ((h1[part] <= h0[part])[:, :, None] | (w1[part] <= w0[part])[:, None, :])[:, None]  # (n,1,P,P)
        out.append(pooled.masked_fill(empty, 0.0))
    return torch.cat(out, dim=0)
