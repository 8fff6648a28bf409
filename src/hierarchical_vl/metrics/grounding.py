"""Phrase grounding metrics (Flickr30k Entities): box IoU and Recall@K with its upper bound.

Boxes are ``x1 y1 x2 y2`` in pixels. By default they are continuous coordinates: width = ``x2 - x1`` (no ``+ 1``).
The data loaders convert the 1-based inclusive VOC boxes of Flickr30k Entities (``xmin ymin xmax ymax``) to this
convention, and bottom-up-attention region boxes already use it. Pass ``offset=1`` to measure inclusive integer
pixel boxes the VOC way (width = ``x2 - x1 + 1``).

A phrase may refer to several ground-truth boxes. Two rules say which region is correct for it
(``box_matching``, `BOX_MATCHING`):

* ``"any"`` (the default): IoU >= the threshold (0.5) with *any* of its boxes;
* ``"merged"``: IoU >= the threshold with the union box of its boxes (min x1, min y1, max x2, max y2,
  [`merge_boxes`]), the rule of Plummer et al. (Flickr30k Entities), which the paper follows.

A single-box phrase is scored identically under both. A phrase counts as grounded at K when one of its K
best-scoring regions is correct. Regions that score the same as the best correct
region are ranked before it (ties broken against the ground truth, as in [`hierarchical_vl.metrics.retrieval`]),
so a constant scorer does not get credit for ties. The upper bound is the percentage of phrases for which at least
one candidate region reaches the threshold, i.e. the best any scorer could do with those regions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["BOX_MATCHING", "box_iou", "correct_regions", "grounding_ranks", "grounding_recall", "merge_boxes"]

BOX_MATCHING = ("any", "merged")
"""The rules matching a region to a phrase with several ground-truth boxes: any one of them, or their union box."""


def _as_boxes(boxes: Any, name: str, dtype: Any = None) -> np.ndarray:
    """``boxes`` as a (..., n, 4) float array (float32 stays float32, anything else becomes float64), checked."""
    boxes = np.asarray(boxes)
    boxes = boxes.astype(dtype or (np.float32 if boxes.dtype == np.float32 else np.float64), copy=False)
    if boxes.ndim == 1 and boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim == 1 and boxes.shape == (4,):
        boxes = boxes[None]
    if boxes.ndim < 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape (n, 4) (or (..., n, 4)) as x1 y1 x2 y2, got shape {boxes.shape}")
    if np.isnan(boxes).any():
        raise ValueError(f"{name} contains NaN (box {np.flatnonzero(np.isnan(boxes.reshape(-1, 4)).any(axis=1))[0]})")
    inverted = np.argwhere((boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1]))
    if inverted.size:
        where = tuple(int(i) for i in inverted[0])
        raise ValueError(f"{name}[{', '.join(map(str, where))}] = {boxes[where].tolist()} has x2 < x1 or y2 < y1")
    return boxes


def box_iou(a: Any, b: Any, offset: float = 0.0) -> np.ndarray:
    """Pairwise intersection over union of two sets of boxes.

    This is the package's one IoU: the grounding metric, the collators' grounding labels and the demo corpus all
    use it. It is computed in float32 when both inputs are float32 arrays (as region and ground-truth boxes are
    stored) and in float64 otherwise.

    Args:
        a: Boxes, shape (n, 4) (or a single box, shape (4,)), as x1 y1 x2 y2 in pixels; or a batch (..., n, 4).
        b: Boxes, shape (m, 4) (or (4,)); or a batch (..., m, 4) whose leading dimensions broadcast with ``a``'s.
        offset: Added to every width and height: 0 for continuous coordinates (default), 1 for inclusive integer
            pixel coordinates (the VOC convention).

    Returns:
        IoU matrix, shape (n, m) (or (..., n, m)). A pair whose union is empty (two zero-area boxes) has IoU 0.

    Raises:
        ValueError: If the boxes do not have 4 coordinates, contain NaN, or have x2 < x1 or y2 < y1.
    """
    a, b = _as_boxes(a, "a"), _as_boxes(b, "b")
    dtype = np.result_type(a, b)
    a = a.astype(dtype, copy=False)[..., :, None, :]  # (..., n, 1, 4)
    b = b.astype(dtype, copy=False)[..., None, :, :]  # (..., 1, m, 4)
    # Intersection width and height, (..., n, m).
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + offset
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + offset
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[..., 2] - a[..., 0] + offset) * (a[..., 3] - a[..., 1] + offset)  # (..., n, 1)
    area_b = (b[..., 2] - b[..., 0] + offset) * (b[..., 3] - b[..., 1] + offset)  # (..., 1, m)
    union = area_a + area_b - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0).astype(dtype, copy=False)


def merge_boxes(boxes: Any, mask: Any = None) -> np.ndarray:
    """The union box of each set of boxes: min x1, min y1, max x2, max y2 (the "merged box" of Flickr30k Entities).

    Args:
        boxes: Boxes, shape (G, 4), or a batch (..., G, 4), as x1 y1 x2 y2.
        mask: Optional (..., G) mask, true for real boxes (padding is ignored); every set needs one real box.

    Returns:
        The merged boxes, shape (4,) for (G, 4) input, else (..., 4); the dtype of ``boxes`` (float32 or float64).

    Raises:
        ValueError: If a set has no (real) box.
    """
    boxes = _as_boxes(boxes, "boxes")
    valid = (
        np.ones(boxes.shape[:-1], dtype=bool)
        if mask is None
        else np.broadcast_to(np.asarray(mask, bool), boxes.shape[:-1])
    )
    if not valid.any(axis=-1).all():
        raise ValueError("merge_boxes: a set of boxes has no box to merge")
    lower = np.where(valid[..., None], boxes[..., :2], np.inf).min(axis=-2)  # (..., 2)
    upper = np.where(valid[..., None], boxes[..., 2:], -np.inf).max(axis=-2)  # (..., 2)
    return np.concatenate([lower, upper], axis=-1).astype(boxes.dtype, copy=False)


def _check_box_matching(box_matching: str) -> None:
    if box_matching not in BOX_MATCHING:
        raise ValueError(f"box_matching must be one of {BOX_MATCHING}, got {box_matching!r}")


def correct_regions(
    region_boxes: Any,
    gt_boxes: Any,
    iou_threshold: float = 0.5,
    offset: float = 0.0,
    box_matching: str = "any",
) -> np.ndarray:
    """Which candidate regions ground a phrase: IoU >= ``iou_threshold`` with any of its ground-truth boxes
    (``box_matching="any"``) or with their merged box (``"merged"``).

    Args:
        region_boxes: The candidate boxes, shape (T, 4).
        gt_boxes: The phrase's ground-truth boxes, shape (G, 4).
        iou_threshold: IoU a region needs to count as correct.
        offset: Box convention passed to [`box_iou`].
        box_matching: ``any`` or ``merged`` (see the module docstring).

    Returns:
        (T,) bool.
    """
    _check_box_matching(box_matching)
    if box_matching == "merged":
        gt_boxes = merge_boxes(gt_boxes)[None]  # (1, 4)
    return (box_iou(region_boxes, gt_boxes, offset=offset) >= iou_threshold).any(axis=1)


def _phrases(region_scores: Any, region_boxes: Any, region_mask: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-phrase (scores (T,), boxes (T, 4)) with padding removed."""
    if region_mask is not None:
        scores = np.asarray(region_scores, dtype=np.float64)  # (P, T)
        boxes = np.asarray(region_boxes, dtype=np.float64)  # (P, T, 4)
        mask = np.asarray(region_mask, dtype=bool)  # (P, T)
        if scores.ndim != 2 or mask.shape != scores.shape or boxes.shape != (*scores.shape, 4):
            raise ValueError(
                "with region_mask, region_scores must be (P, T), region_mask (P, T) and region_boxes (P, T, 4); "
                f"got {scores.shape}, {mask.shape} and {boxes.shape}"
            )
        return [(scores[p][mask[p]], boxes[p][mask[p]]) for p in range(scores.shape[0])]
    if len(region_scores) != len(region_boxes):
        raise ValueError(f"got region scores for {len(region_scores)} phrases but boxes for {len(region_boxes)}")
    return [(np.asarray(s, dtype=np.float64), b) for s, b in zip(region_scores, region_boxes)]


def grounding_ranks(
    region_scores: Sequence[Any] | np.ndarray,
    region_boxes: Sequence[Any] | np.ndarray,
    gt_boxes: Sequence[Any],
    iou_threshold: float = 0.5,
    region_mask: Any = None,
    offset: float = 0.0,
    box_matching: str = "any",
) -> np.ndarray:
    """0-based rank of the best-ranked correct region of every phrase.

    A region is correct when its IoU with any ground-truth box of the phrase (``box_matching="any"``) or with
    their merged box (``"merged"``) is >= ``iou_threshold``. The rank is
    the number of incorrect regions scoring >= the best correct region (ties broken against the ground truth).

    Args:
        region_scores: Per phrase, the scores of its image's candidate regions, shape (T_p,); or a padded (P, T)
            array together with ``region_mask``.
        region_boxes: Per phrase, the candidate boxes, shape (T_p, 4); or a padded (P, T, 4) array.
        gt_boxes: Per phrase, its ground-truth boxes, shape (G_p, 4) with G_p >= 1.
        iou_threshold: IoU a region needs to count as correct.
        region_mask: Optional (P, T) mask, true for real regions, when scores and boxes are padded arrays.
        offset: Box convention passed to [`box_iou`].
        box_matching: ``"any"`` or ``"merged"`` (see the module docstring).

    Returns:
        Ranks, shape (P,), float: ``inf`` for a phrase without any correct region.
    """
    _check_box_matching(box_matching)
    phrases = _phrases(region_scores, region_boxes, region_mask)
    if len(gt_boxes) != len(phrases):
        raise ValueError(f"got regions for {len(phrases)} phrases but ground-truth boxes for {len(gt_boxes)}")
    if not phrases:
        raise ValueError("no phrases to evaluate")
    ranks = np.empty(len(phrases), dtype=np.float64)
    for p, ((scores, boxes), gts) in enumerate(zip(phrases, gt_boxes)):
        where = f"phrase {p}"
        if scores.ndim != 1:
            raise ValueError(f"{where}: region scores must be 1-D, got shape {scores.shape}")
        if np.isnan(scores).any():
            raise ValueError(f"{where}: region scores contain NaN")
        boxes = _as_boxes(boxes, f"{where} region boxes", np.float64)
        gts = _as_boxes(gts, f"{where} ground-truth boxes", np.float64)
        if boxes.ndim != 2 or gts.ndim != 2:
            raise ValueError(
                f"{where}: region and ground-truth boxes must have shape (n, 4), got {boxes.shape} and {gts.shape}"
            )
        if boxes.shape[0] != scores.shape[0]:
            raise ValueError(f"{where}: {scores.shape[0]} region scores but {boxes.shape[0]} region boxes")
        if gts.shape[0] == 0:
            raise ValueError(f"{where}: no ground-truth box (phrases without boxes are not evaluated; drop them)")
        correct = correct_regions(boxes, gts, iou_threshold, offset, box_matching)  # (T_p,)
        if not correct.any():
            ranks[p] = np.inf
            continue
        best = scores[correct].max()
        ranks[p] = np.count_nonzero(scores[~correct] >= best)
    return ranks


def grounding_recall(
    region_scores: Sequence[Any] | np.ndarray,
    region_boxes: Sequence[Any] | np.ndarray,
    gt_boxes: Sequence[Any],
    ks: Sequence[int] = (1, 5, 10),
    iou_threshold: float = 0.5,
    region_mask: Any = None,
    offset: float = 0.0,
    box_matching: str = "any",
) -> dict[str, float]:
    """Phrase grounding Recall@K and its upper bound.

    Args:
        region_scores: Per phrase, the scores of its image's candidate regions, shape (T_p,) (the number of regions
            may differ between images); or a padded (P, T) array together with ``region_mask``.
        region_boxes: Per phrase, the candidate boxes, shape (T_p, 4); or a padded (P, T, 4) array.
        gt_boxes: Per phrase, its ground-truth boxes, shape (G_p, 4), G_p >= 1.
        ks: The K of Recall@K.
        iou_threshold: IoU a region needs with a ground-truth box to count as correct.
        region_mask: Optional (P, T) mask, true for real regions, when scores and boxes are padded arrays.
        offset: Box convention passed to [`box_iou`] (0: continuous coordinates).
        box_matching: ``"any"``: a region is correct with IoU >= ``iou_threshold`` with one of the phrase's boxes;
            ``"merged"``: with their union box (Plummer et al., the paper's protocol).

    Returns:
        ``{"r1": float, "r5": float, "r10": float, "upper_bound": float, "num_phrases": int}`` (one ``r{k}`` per
        K), in percent rounded to 2 decimals. The upper bound is the share of phrases with at least one correct
        candidate region under ``box_matching``.
    """
    ks = tuple(ks) if isinstance(ks, (Sequence, np.ndarray)) else ()
    if not ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty sequence of positive integers, got {ks!r}")
    ranks = grounding_ranks(
        region_scores, region_boxes, gt_boxes, iou_threshold, region_mask, offset, box_matching=box_matching
    )
    out: dict[str, float] = {f"r{int(k)}": round(100.0 * float(np.mean(ranks < k)), 2) for k in ks}
    out["upper_bound"] = round(100.0 * float(np.mean(np.isfinite(ranks))), 2)
    out["num_phrases"] = int(ranks.size)
    return out
