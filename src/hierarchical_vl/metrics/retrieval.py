"""Image-caption retrieval metrics: Recall@K, median and mean rank, rsum, and the COCO 1K / 5K protocols.

Scores come as a matrix ``scores[i, c]`` of image ``i`` against caption ``c`` (higher = better match) and the ground
truth as ``caption_to_image[c]``, the index of the image caption ``c`` describes. Any number of captions per image is
allowed (COCO and Flickr30k have 5, some images have 6 or 7).

- Image annotation (``i2t``): for each image, the rank of its best-ranked ground-truth caption among all captions.
- Image retrieval (``t2i``): for each caption, the rank of its image among all images.

Ties are broken against the ground truth (the pessimistic convention): an item that scores *the same* as the
ground truth is ranked before it, so the 0-based rank of the ground truth is the number of non-ground-truth items
scoring greater than or equal to it. For image annotation, the other ground-truth captions of the image never count
against it, so the rank is the number of non-ground-truth captions scoring >= the image's best ground-truth
caption. A scorer that gives every pair the same score therefore gets the worst rank, not the best.

Recall@K is the percentage of queries whose 0-based rank is < K. Median rank and mean rank are 1-based; the median
follows the convention of the VSE++/SCAN evaluation code, ``floor(median(0-based ranks)) + 1``. ``rsum`` is the sum
of all Recall@K of both directions. Values are in percent, rounded to 2 decimals.

COCO "1K test" is the mean over 5 folds of 1000 test images each (fold k = images 1000k ... 1000k + 999 and their
captions); "5K test" is the whole 5000-image matrix ([`retrieval_recall`] on it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["coco_1k_5fold", "retrieval_ranks", "retrieval_recall"]

# Rows of the score matrix compared at once; bounds the temporary boolean array to _CHUNK x n_captions.
_CHUNK = 512


def _check_inputs(scores: Any, caption_to_image: Any) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-D (n_images, n_captions) matrix, got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.number) or np.issubdtype(scores.dtype, np.complexfloating):
        raise ValueError(f"scores must be real numbers, got dtype {scores.dtype}")
    n_images, n_captions = scores.shape
    if n_images == 0 or n_captions == 0:
        raise ValueError(f"scores is empty: shape {scores.shape}")
    if np.issubdtype(scores.dtype, np.floating) and np.isnan(scores).any():
        image, caption = (int(v) for v in np.argwhere(np.isnan(scores))[0])
        raise ValueError(f"scores contains NaN at (image, caption) ({image}, {caption})")
    c2i = np.asarray(caption_to_image)
    if c2i.shape != (n_captions,):
        raise ValueError(
            f"caption_to_image must have one entry per caption, shape ({n_captions},), got shape {c2i.shape}"
        )
    if not np.issubdtype(c2i.dtype, np.integer):
        raise ValueError(f"caption_to_image must hold integer image indices, got dtype {c2i.dtype}")
    bad = np.flatnonzero((c2i < 0) | (c2i >= n_images))
    if bad.size:
        raise ValueError(
            f"caption_to_image[{bad[0]}] = {c2i[bad[0]]} is not an image index in [0, {n_images}) "
            f"({bad.size} bad entries)"
        )
    captions_per_image = np.bincount(c2i, minlength=n_images)
    empty = np.flatnonzero(captions_per_image == 0)
    if empty.size:
        raise ValueError(f"image {empty[0]} has no ground-truth caption ({empty.size} such images)")
    return scores, c2i.astype(np.int64)


def retrieval_ranks(scores: Any, caption_to_image: Any) -> tuple[np.ndarray, np.ndarray]:
    """0-based ranks of the ground truth in both directions (ties broken against the ground truth).

    Args:
        scores: Score matrix, shape (n_images, n_captions), higher = better.
        caption_to_image: Image index of every caption, shape (n_captions,).

    Returns:
        ``(i2t_ranks, t2i_ranks)``: for every image the rank of its best ground-truth caption among the captions,
        shape (n_images,), and for every caption the rank of its image among the images, shape (n_captions,).
    """
    scores, c2i = _check_inputs(scores, caption_to_image)
    n_images, n_captions = scores.shape
    captions = np.arange(n_captions)
    gt_scores = scores[c2i, captions]  # (n_captions,) score of each caption with its own image
    best_gt = np.full(n_images, -np.inf, dtype=np.float64)
    np.maximum.at(best_gt, c2i, gt_scores.astype(np.float64))  # (n_images,) best ground-truth caption score
    best_gt = best_gt.astype(scores.dtype) if np.issubdtype(scores.dtype, np.floating) else best_gt
    # Ground-truth captions that tie with the best one are not counted against the image.
    gt_at_best = np.bincount(c2i, weights=(gt_scores >= best_gt[c2i]), minlength=n_images).astype(np.int64)

    i2t = np.empty(n_images, dtype=np.int64)
    t2i = np.zeros(n_captions, dtype=np.int64)
    for start in range(0, n_images, _CHUNK):
        block = scores[start : start + _CHUNK]  # (chunk, n_captions)
        i2t[start : start + _CHUNK] = (block >= best_gt[start : start + _CHUNK, None]).sum(axis=1)
        t2i += (block >= gt_scores[None, :]).sum(axis=0)
    i2t -= gt_at_best
    t2i -= 1  # the caption's own image
    return i2t, t2i


def _summaries(ranks: np.ndarray, ks: Sequence[int], prefix: str) -> dict[str, float]:
    out = {f"{prefix}_r{k}": 100.0 * float(np.mean(ranks < k)) for k in ks}
    out[f"{prefix}_medr"] = float(np.floor(np.median(ranks)) + 1)
    out[f"{prefix}_meanr"] = float(np.mean(ranks) + 1)
    return out


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks) if isinstance(ks, (Sequence, np.ndarray)) else ()
    if not ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty sequence of positive integers, got {ks!r}")
    return tuple(int(k) for k in ks)


def _unrounded_recall(scores: Any, caption_to_image: Any, ks: tuple[int, ...]) -> dict[str, float]:
    i2t, t2i = retrieval_ranks(scores, caption_to_image)
    out = {**_summaries(i2t, ks, "i2t"), **_summaries(t2i, ks, "t2i")}
    out["rsum"] = sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in ks)
    return out


def _rounded(metrics: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 2) for name, value in metrics.items()}


def retrieval_recall(scores: Any, caption_to_image: Any, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K, median rank and mean rank in both directions, and rsum.

    Args:
        scores: Score matrix, shape (n_images, n_captions), higher = better. Use the full 5000-image matrix for
            the COCO 5K test and the 1000-image matrix for Flickr30k.
        caption_to_image: Image index of every caption, shape (n_captions,).
        ks: The K of Recall@K.

    Returns:
        ``{"i2t_r1", "i2t_r5", "i2t_r10", "i2t_medr", "i2t_meanr", "t2i_r1", ..., "t2i_meanr", "rsum"}`` (one
        ``_r{k}`` entry per K), recalls in percent; all values rounded to 2 decimals.
    """
    return _rounded(_unrounded_recall(scores, caption_to_image, _check_ks(ks)))


def coco_1k_5fold(
    scores: Any | Callable[[np.ndarray, np.ndarray], Any],
    caption_to_image: Any,
    *,
    ks: Sequence[int] = (1, 5, 10),
    num_folds: int = 5,
    fold_size: int = 1000,
    return_folds: bool = False,
) -> dict[str, float] | tuple[dict[str, float], list[dict[str, float]]]:
    """COCO "1K test": the retrieval metrics averaged over 5 folds of 1000 images.

    Fold k holds images ``fold_size * k`` ... ``fold_size * (k + 1) - 1`` and the captions of those images (in
    caption order); each fold is ranked on its own, and every metric is the mean over folds.

    Args:
        scores: Either the full score matrix, shape (num_folds * fold_size, n_captions), or a function
            ``scores(image_indices, caption_indices)`` returning the (len(image_indices), len(caption_indices))
            matrix of one fold, so the full matrix need never exist.
        caption_to_image: Image index of every caption, shape (n_captions,), indices in
            [0, num_folds * fold_size).
        ks: The K of Recall@K.
        num_folds: Number of folds.
        fold_size: Images per fold.
        return_folds: Also return the metrics of each fold.

    Returns:
        The mean metrics (same keys as [`retrieval_recall`], rounded to 2 decimals after averaging), and with
        ``return_folds`` also the list of per-fold metrics.
    """
    ks = _check_ks(ks)
    if num_folds < 1 or fold_size < 1:
        raise ValueError(f"num_folds and fold_size must be positive, got {num_folds} and {fold_size}")
    n_images = num_folds * fold_size
    c2i = np.asarray(caption_to_image)
    if c2i.ndim != 1 or not np.issubdtype(c2i.dtype, np.integer):
        raise ValueError(f"caption_to_image must be a 1-D integer array, got shape {c2i.shape}, dtype {c2i.dtype}")
    if c2i.size and (c2i.min() < 0 or c2i.max() >= n_images):
        raise ValueError(
            f"caption_to_image holds image indices outside [0, {n_images}) ({num_folds} folds x {fold_size} images)"
        )
    full = None
    if not callable(scores):
        full = np.asarray(scores)
        if full.ndim != 2 or full.shape != (n_images, c2i.size):
            raise ValueError(
                f"scores must have shape ({n_images}, {c2i.size}) for {num_folds} folds of {fold_size} images "
                f"and {c2i.size} captions, got {full.shape}"
            )
    folds = []
    for fold in range(num_folds):
        images = np.arange(fold * fold_size, (fold + 1) * fold_size)
        captions = np.flatnonzero((c2i >= images[0]) & (c2i <= images[-1]))
        if full is not None:
            block = full[images[0] : images[-1] + 1][:, captions]
        else:
            block = np.asarray(scores(images, captions))
            if block.shape != (fold_size, captions.size):
                raise ValueError(
                    f"fold {fold}: the score function returned shape {block.shape}, "
                    f"expected ({fold_size}, {captions.size})"
                )
        try:
            folds.append(_unrounded_recall(block, c2i[captions] - images[0], ks))
        except ValueError as error:
            raise ValueError(f"fold {fold} (images {images[0]}-{images[-1]}): {error}") from None
    mean = _rounded({name: float(np.mean([f[name] for f in folds])) for name in folds[0]})
    if return_folds:
        return mean, [_rounded(f) for f in folds]
    return mean
