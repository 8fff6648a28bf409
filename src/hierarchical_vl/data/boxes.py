"""Box geometry shared by the collators (grounding labels) and the demo corpus."""

from __future__ import annotations

import numpy as np


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of every pair of boxes (continuous x1 y1 x2 y2 coordinates).

    Args:
        boxes_a: (..., A, 4) boxes.
        boxes_b: (..., B, 4) boxes.

    Returns:
        (..., A, B) IoU; 0 where a box has no area.
    """
    a = np.asarray(boxes_a, dtype=np.float32)[..., :, None, :]  # (..., A, 1, 4)
    b = np.asarray(boxes_b, dtype=np.float32)[..., None, :, :]  # (..., 1, B, 4)
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0).astype(np.float32)
