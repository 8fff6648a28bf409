"""Agreement of two region-feature stores (e.g. features extracted here against an official release): boxes
matched per image by IoU, and the cosine similarity of the matched boxes' features."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from .box_ops import box_iou

__all__ = ["StoreComparison", "compare_region_stores", "match_boxes"]


def match_boxes(boxes_a: np.ndarray, boxes_b: np.ndarray, iou_threshold: float) -> list[tuple[int, int, float]]:
    """One-to-one greedy matching of two box sets by decreasing IoU, pairs with IoU >= ``iou_threshold``.

    Returns:
        ``(index_a, index_b, iou)`` of each matched pair, by decreasing IoU.
    """
    if len(boxes_a) == 0 or len(boxes_b) == 0:
        return []
    iou = box_iou(
        torch.tensor(np.asarray(boxes_a), dtype=torch.float64), torch.tensor(np.asarray(boxes_b), dtype=torch.float64)
    )
    flat = iou.flatten()
    order = torch.sort(flat, descending=True, stable=True).indices
    used_a, used_b, pairs = set(), set(), []
    columns = iou.shape[1]
    for index in order.tolist():
        value = float(flat[index])
        if value < iou_threshold:
            break
        i, j = divmod(index, columns)
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        pairs.append((i, j, value))
    return pairs


@dataclass
class StoreComparison:
    """How two stores agree.

    Attributes:
        images_compared: Images in both stores.
        only_in_a: Images only in store A.
        only_in_b: Images only in store B.
        boxes_a: Boxes of A in the compared images.
        boxes_b: Boxes of B in the compared images.
        matched: Matched box pairs (IoU >= threshold).
        iou_threshold: The threshold.
        mean_iou: Mean IoU of the matched pairs.
        cosine_mean: Mean cosine similarity of the matched pairs' features (``None`` if widths differ or none).
        cosine_median: Median of it.
        cosine_p05: Its 5th percentile.
        size_mismatches: Images whose recorded width/height differ between the stores.
    """

    images_compared: int
    only_in_a: int
    only_in_b: int
    boxes_a: int
    boxes_b: int
    matched: int
    iou_threshold: float
    mean_iou: float | None = None
    cosine_mean: float | None = None
    cosine_median: float | None = None
    cosine_p05: float | None = None
    size_mismatches: list[str] = field(default_factory=list)

    @property
    def box_recall(self) -> float:
        """Share of A's boxes matched in B."""
        return self.matched / self.boxes_a if self.boxes_a else 0.0

    @property
    def box_precision(self) -> float:
        """Share of B's boxes matched in A."""
        return self.matched / self.boxes_b if self.boxes_b else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "box_recall": self.box_recall, "box_precision": self.box_precision}

    def summary(self) -> str:
        def fmt(value):
            return "n/a" if value is None else f"{value:.4f}"

        lines = [
            f"images compared: {self.images_compared} (only in A: {self.only_in_a}, only in B: {self.only_in_b})",
            f"boxes: A {self.boxes_a}, B {self.boxes_b}; matched at IoU >= {self.iou_threshold}: {self.matched} "
            f"(of A: {self.box_recall:.2%}, of B: {self.box_precision:.2%}); mean IoU {fmt(self.mean_iou)}",
            f"cosine similarity of matched features: mean {fmt(self.cosine_mean)}, median {fmt(self.cosine_median)}, "
            f"5th percentile {fmt(self.cosine_p05)}",
        ]
        if self.size_mismatches:
            lines.append(f"image sizes differ for {len(self.size_mismatches)} images, e.g. {self.size_mismatches[:3]}")
        return "\n".join(lines)


def compare_region_stores(
    store_a: str | os.PathLike | Any, store_b: str | os.PathLike | Any, *, iou_threshold: float = 0.5
) -> StoreComparison:
    """Compares two stores image by image (see the module).

    Args:
        store_a: A [`RegionFeatureStore`] or its directory (e.g. the features extracted here).
        store_b: The other (e.g. an official release converted with ``hvl features convert``).
        iou_threshold: IoU at which two boxes count as the same region.
    """
    from ..data.feature_store import RegionFeatureStore

    a = store_a if isinstance(store_a, RegionFeatureStore) else RegionFeatureStore(store_a)
    b = store_b if isinstance(store_b, RegionFeatureStore) else RegionFeatureStore(store_b)
    ids_a, ids_b = set(a.image_ids.tolist()), set(b.image_ids.tolist())
    common = [image_id for image_id in a.image_ids.tolist() if image_id in ids_b]
    same_width = a.feature_dim == b.feature_dim
    boxes_a = boxes_b = 0
    ious: list[float] = []
    cosines: list[np.ndarray] = []
    mismatched = []
    for image_id in common:
        ra, rb = a[image_id], b[image_id]
        if (float(ra["width"]), float(ra["height"])) != (float(rb["width"]), float(rb["height"])):
            mismatched.append(image_id)
        boxes_a += len(ra["boxes"])
        boxes_b += len(rb["boxes"])
        pairs = match_boxes(np.asarray(ra["boxes"]), np.asarray(rb["boxes"]), iou_threshold)
        if not pairs:
            continue
        ious.extend(p[2] for p in pairs)
        if same_width:
            fa = np.asarray(ra["features"], dtype=np.float64)[[p[0] for p in pairs]]
            fb = np.asarray(rb["features"], dtype=np.float64)[[p[1] for p in pairs]]
            norms = np.linalg.norm(fa, axis=1) * np.linalg.norm(fb, axis=1)
            cosines.append(np.where(norms > 0, (fa * fb).sum(axis=1) / np.maximum(norms, 1e-12), 0.0))
    cos = np.concatenate(cosines) if cosines else np.zeros(0)
    return StoreComparison(
        images_compared=len(common),
        only_in_a=len(ids_a - ids_b),
        only_in_b=len(ids_b - ids_a),
        boxes_a=boxes_a,
        boxes_b=boxes_b,
        matched=len(ious),
        iou_threshold=iou_threshold,
        mean_iou=float(np.mean(ious)) if ious else None,
        cosine_mean=float(cos.mean()) if cos.size else None,
        cosine_median=float(np.median(cos)) if cos.size else None,
        cosine_p05=float(np.percentile(cos, 5)) if cos.size else None,
        size_mismatches=mismatched,
    )
