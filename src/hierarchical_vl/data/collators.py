"""Collators that turn index batches of the encoded datasets into the model's inputs.

Use each with its encoded dataset (`encoded_datasets`), whose items are indices::

    train = EncodedVQADataset(vqa["train"], store, tokenizer)
    loader = DataLoader(train, batch_size=256, shuffle=True, collate_fn=VQACollator(train), num_workers=2)
    for batch in loader:
        metadata = batch.pop("metadata")
        outputs = model(**batch)

Every batch has ``input_ids`` and ``attention_mask`` (B, N) int64 (N = longest text in the batch, capped when
encoding), ``region_features`` (B, T, F) float16 straight from the store (the model casts), ``region_mask`` (B, T)
int64 and ``region_boxes`` (B, T, 4) float32 normalised by the image size (T = most regions in the batch, capped at
``max_regions``); the task adds its ``labels`` (and grounding its phrase spans). Everything else (ids, texts,
answers, pixel boxes) is under ``"metadata"``, a dict of lists (pass ``include_metadata=False`` for batches that go
to the model as they are). Regions are read from the float16 memory map with one fancy-index gather per batch;
with ``feature_rows=True`` a collator leaves that gather out and emits ``region_feature_rows`` (B, T) int64 store
rows instead of ``region_features``, for a trainer that keeps the store on its accelerator and gathers there.

The inputs are built by the processor's functions (`text_inputs`, `region_inputs` in
``hierarchical_vl.processing_hierarchical_vl``), so a collated example equals the processor's output for the same
text and regions. ``max_regions`` defaults to ``HierarchicalVLConfig().max_regions``; build collators for a model
with ``hierarchical_vl.tasks.task_spec(task).collator(dataset, config)``.

On a small machine ``num_workers=0`` is the fastest way to feed batches (a 256 x 36 x 2048 float16 batch is 38 MB,
and a worker must copy it into shared memory to hand it over); workers pay off when the main process is busy with
the model step and cores are free.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..metrics.grounding import BOX_MATCHING, box_iou, merge_boxes
from ..processing_hierarchical_vl import region_inputs, text_inputs
from .encoded_datasets import (
    EncodedCaptionDataset,
    EncodedDataset,
    EncodedGroundingDataset,
    EncodedVQADataset,
    _default_config,
)
from .feature_store import RegionFeatureStore

__all__ = [
    "NEGATIVE_MINING",
    "REGION_FEATURE_ROWS",
    "GroundingCollator",
    "RetrievalCollator",
    "VQACollator",
    "region_tensors",
    "text_tensors",
]

NEGATIVE_MINING = ("random", "hard")
"""How retrieval batches get their negatives: random in-batch shifts (the default) or the hardest by current score."""

REGION_FEATURE_ROWS = "region_feature_rows"
"""The batch entry of (B, T) int64 store rows that a collator with ``feature_rows=True`` emits instead of
``region_features``."""


def _indices(items: Any) -> np.ndarray:
    """Example indices from what the DataLoader hands over (an index array, ints, or dicts with ``index``)."""
    if isinstance(items, np.ndarray):
        return items.astype(np.int64, copy=False)
    if isinstance(items, torch.Tensor):
        return items.numpy().astype(np.int64, copy=False)
    return np.fromiter((item["index"] if isinstance(item, Mapping) else item for item in items), dtype=np.int64)


def text_tensors(dataset: EncodedDataset, indices: np.ndarray) -> dict[str, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` (B, N) int64 of examples, N = the longest of them (at least 1)."""
    indices = np.asarray(indices, dtype=np.int64)
    return text_inputs(dataset.token_ids[indices], dataset.lengths[indices])


def region_tensors(
    store: RegionFeatureStore, image_index: np.ndarray, max_regions: int | None, *, feature_rows: bool = False
) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """``region_features`` (B, T, F) float16, ``region_mask`` (B, T) int64 and ``region_boxes`` (B, T, 4) float32
    of images given by store index, and their store rows (B, T) (padding rows point at the zero row).

    ``max_regions`` caps the regions per image (the first ones are kept); ``None`` keeps them all. With
    ``feature_rows`` the features are not read: ``region_feature_rows`` (B, T) int64, the store rows, takes the
    place of ``region_features``, for a caller that gathers them from its own copy of ``store.features``.
    """
    image_index = np.asarray(image_index, dtype=np.int64)
    rows, mask = store.region_rows(image_index, max_regions)  # (B, T)
    features = np.zeros((*rows.shape, 0), np.float16) if feature_rows else store.read_rows(rows)  # (B, T, F)
    tensors = region_inputs(
        features,
        mask.sum(axis=1),
        boxes=np.asarray(store.boxes[rows]),
        image_sizes=store.sizes[image_index],
    )
    if feature_rows:
        del tensors["region_features"]
        tensors[REGION_FEATURE_ROWS] = torch.from_numpy(rows)
    return tensors, rows


def _region_cap(max_regions: int | None) -> int:
    return _default_config().max_regions if max_regions is None else max_regions


class VQACollator:
    """Batches of `EncodedVQADataset`.

    Adds ``labels`` (B, num_answers) float32 soft scores (absent for test splits) and metadata ``question_id``,
    ``image_id``, ``question``, ``answers`` (the 10 strings, for the official accuracy), ``answer_type`` and
    ``question_type``.

    Args:
        dataset: The encoded VQA dataset.
        max_regions: Cap on regions per image (default: ``HierarchicalVLConfig().max_regions``).
        include_metadata: Add the ``"metadata"`` entry.
        feature_rows: Emit ``region_feature_rows`` (store rows) instead of ``region_features`` (`region_tensors`).
    """

    def __init__(
        self,
        dataset: EncodedVQADataset,
        *,
        max_regions: int | None = None,
        include_metadata: bool = True,
        feature_rows: bool = False,
    ):
        self.dataset = dataset
        self.max_regions = _region_cap(max_regions)
        self.include_metadata = include_metadata
        self.feature_rows = feature_rows

    def __call__(self, items: Any) -> dict[str, Any]:
        ds = self.dataset
        index = _indices(items)  # (B,)
        batch: dict[str, Any] = text_tensors(ds, index)
        regions, _ = region_tensors(ds.store, ds.image_index[index], self.max_regions, feature_rows=self.feature_rows)
        batch.update(regions)
        if ds.has_labels:
            label_ids = ds.label_ids[index]  # (B, S), -1 padded
            row, slot = np.nonzero(label_ids >= 0)
            labels = np.zeros((len(index), ds.num_answers), dtype=np.float32)  # (B, A)
            labels[row, label_ids[row, slot]] = ds.label_scores[index][row, slot]
            batch["labels"] = torch.from_numpy(labels)
        if self.include_metadata:
            table, types = ds.answer_table, ds.answer_type_table
            batch["metadata"] = {
                "question_id": ds.question_ids[index].tolist(),
                "image_id": ds.image_ids[index].tolist(),
                "question": [ds.texts[i] for i in index],
                "answers": [[table[c] for c in codes if c >= 0] for codes in ds.answer_codes[index]],
                "answer_type": [types[c] for c in ds.answer_type_codes[index]],
                "question_type": [ds.question_type_table[c] for c in ds.question_type_codes[index]],
            }
        return batch


class RetrievalCollator:
    """Batches of image-caption pairs with in-batch negatives, from
    `EncodedCaptionDataset`.

    With ``negative_mining="random"`` (the default): from B matched (image, caption) pairs it emits the B positives,
    then for each of ``negatives_per_positive`` = k random shifts s (distinct, 1 <= s < B, drawn per batch from the
    seed and the batch's indices) the B pairs (image i, caption of example i + s) and then the B pairs (image of
    example i + s, caption i): (1 + 2k) B rows with ``labels`` (B',) float32 1 for the positives and 0 for the
    negatives. A label is 1 exactly when the image is the caption's own, so a batch that does repeat an image still
    gets correct labels. Each image's regions are read from the store once and repeated with an index gather.
    Metadata: ``image_id``, ``sentence_id`` and ``pair`` (``positive``, ``other_caption``, ``other_image``) per row.

    With ``negative_mining="hard"`` the negatives depend on the model, which a collator does not have: it emits the
    B positives only, plus ``image_positions`` (B,) int64, each row's image position in ``dataset.images`` (it tells
    which in-batch pairs are not negatives). The training step then picks each positive's k hardest in-batch
    negatives by the current model's scores (``hierarchical_vl.training.negative_mining.mine_hard_negatives``),
    which also removes ``image_positions`` before the batch goes to the model.

    Args:
        dataset: The encoded captions.
        negatives_per_positive: k above (clamped to B - 1); 0 gives positives only. Unused with ``"hard"``, where
            the mining step is given k.
        negative_mining: ``"random"`` (negatives by random shifts, here) or ``"hard"`` (positives for mining).
        max_regions: Cap on regions per image (default: ``HierarchicalVLConfig().max_regions``).
        seed: Seed of the shifts.
        include_metadata: Add the ``"metadata"`` entry.
        feature_rows: Emit ``region_feature_rows`` (store rows) instead of ``region_features`` (`region_tensors`).
    """

    def __init__(
        self,
        dataset: EncodedCaptionDataset,
        *,
        negatives_per_positive: int = 1,
        negative_mining: str = "random",
        max_regions: int | None = None,
        seed: int = 0,
        include_metadata: bool = True,
        feature_rows: bool = False,
    ):
        if negatives_per_positive < 0:
            raise ValueError("negatives_per_positive must be >= 0")
        if negative_mining not in NEGATIVE_MINING:
            raise ValueError(f"negative_mining must be one of {list(NEGATIVE_MINING)}, got {negative_mining!r}")
        self.dataset = dataset
        self.negatives_per_positive = negatives_per_positive
        self.negative_mining = negative_mining
        self.max_regions = _region_cap(max_regions)
        self.seed = seed
        self.include_metadata = include_metadata
        self.feature_rows = feature_rows

    def __call__(self, items: Any) -> dict[str, Any]:
        index = _indices(items)  # (B,) caption indices
        size = len(index)
        own_image = self.dataset.caption_image[index]  # (B,)
        if self.negative_mining == "hard":
            batch = self.pairs(index, own_image, kinds=["positive"] * size)
            batch["image_positions"] = torch.from_numpy(own_image.astype(np.int64))
            return batch
        count = min(self.negatives_per_positive, max(size - 1, 0))
        rng = np.random.default_rng([self.seed, zlib.crc32(index.tobytes())])
        shifts = rng.choice(np.arange(1, size), size=count, replace=False) if count else np.zeros(0, np.int64)
        positions = np.arange(size)
        shifted = [(positions + s) % size for s in shifts]
        caption_rows = np.concatenate([positions, *shifted, *([positions] * count)])  # (B',)
        image_rows = np.concatenate([positions, *([positions] * count), *shifted])  # (B',)
        kinds = ["positive"] * size + ["other_caption"] * (size * count) + ["other_image"] * (size * count)
        return self.pairs(index[caption_rows], own_image[image_rows], kinds=kinds)

    def pairs(
        self,
        caption_indices: Sequence[int] | np.ndarray,
        image_positions: Sequence[int] | np.ndarray,
        *,
        kinds: list[str] | None = None,
    ) -> dict[str, Any]:
        """A batch of explicit (image, caption) pairs, e.g. for scoring every pair at evaluation.

        Args:
            caption_indices: (P,) caption indices into the dataset.
            image_positions: (P,) image positions into ``dataset.images``.
            kinds: Optional per-row names for the metadata ``pair`` entry.

        Returns:
            The model inputs of the P pairs with ``labels`` (P,) float32.
        """
        ds = self.dataset
        caption_indices = np.asarray(caption_indices, dtype=np.int64)
        image_positions = np.asarray(image_positions, dtype=np.int64)
        batch: dict[str, Any] = text_tensors(ds, caption_indices)
        distinct, inverse = np.unique(image_positions, return_inverse=True)
        regions, _ = region_tensors(
            ds.store, ds.images_store_index[distinct], self.max_regions, feature_rows=self.feature_rows
        )
        repeat = torch.from_numpy(inverse.reshape(-1))
        batch.update({name: tensor.index_select(0, repeat) for name, tensor in regions.items()})
        batch["labels"] = torch.from_numpy((ds.caption_image[caption_indices] == image_positions).astype(np.float32))
        if self.include_metadata:
            batch["metadata"] = {
                "image_id": ds.images[image_positions].tolist(),
                "sentence_id": ds.sentence_ids[caption_indices].tolist(),
                "pair": kinds if kinds is not None else ["pair"] * len(caption_indices),
            }
        return batch


class GroundingCollator:
    """Batches of `EncodedGroundingDataset`.

    Adds ``phrase_spans`` (B, H, 2) int64 inclusive token spans, ``phrase_mask`` (B, H) int64 and ``labels``
    (B, H, T) float32: 1 where the region's IoU with any ground-truth box of the phrase (``box_matching="any"``)
    or with their merged box (``"merged"``, see ``hierarchical_vl.metrics.grounding``) is >= ``iou_threshold``
    (IoU of continuous x1 y1 x2 y2 pixel boxes; padded phrases and regions are 0). Metadata: ``image_id``,
    ``sentence``, ``phrases``, ``phrase_ids``, ``gt_boxes`` (per phrase, (G, 4) pixels) and ``region_boxes``
    ((T, 4) pixels per image, for recall at IoU 0.5).

    Args:
        dataset: The encoded sentences.
        max_regions: Cap on regions per image (default: ``HierarchicalVLConfig().max_regions``).
        iou_threshold: IoU at which a region counts as showing the phrase.
        box_matching: How a phrase with several ground-truth boxes is matched: ``"any"`` box (default) or their
            ``"merged"`` union box; training and evaluation use the same rule.
        include_metadata: Add the ``"metadata"`` entry.
        feature_rows: Emit ``region_feature_rows`` (store rows) instead of ``region_features`` (`region_tensors`).
    """

    def __init__(
        self,
        dataset: EncodedGroundingDataset,
        *,
        max_regions: int | None = None,
        iou_threshold: float = 0.5,
        box_matching: str = "any",
        include_metadata: bool = True,
        feature_rows: bool = False,
    ):
        if box_matching not in BOX_MATCHING:
            raise ValueError(f"box_matching must be one of {BOX_MATCHING}, got {box_matching!r}")
        self.dataset = dataset
        self.max_regions = _region_cap(max_regions)
        self.iou_threshold = iou_threshold
        self.box_matching = box_matching
        self.include_metadata = include_metadata
        self.feature_rows = feature_rows

    def __call__(self, items: Any) -> dict[str, Any]:
        ds = self.dataset
        index = _indices(items)  # (B,)
        size = len(index)
        batch: dict[str, Any] = text_tensors(ds, index)
        image_index = ds.image_index[index]
        regions, rows = region_tensors(ds.store, image_index, self.max_regions, feature_rows=self.feature_rows)
        batch.update(regions)

        # Phrases of the batch: (B, H) rows into the phrase tables.
        first = ds.phrase_offsets[index]  # (B,)
        counts = ds.phrase_offsets[index + 1] - first
        width = max(int(counts.max()) if size else 0, 1)
        phrase_mask = np.arange(width)[None, :] < counts[:, None]  # (B, H)
        phrase_rows = np.where(phrase_mask, first[:, None] + np.arange(width)[None, :], 0)  # (B, H)
        spans = np.where(phrase_mask[..., None], ds.phrase_spans[phrase_rows], 0)  # (B, H, 2)

        # Ground-truth boxes of each phrase: (B, H, G, 4) with a mask.
        box_first = ds.box_offsets[phrase_rows]  # (B, H)
        box_counts = np.where(phrase_mask, ds.box_offsets[phrase_rows + 1] - box_first, 0)
        depth = max(int(box_counts.max()) if size else 0, 1)
        box_mask = np.arange(depth)[None, None, :] < box_counts[..., None]  # (B, H, G)
        box_rows = np.where(box_mask, box_first[..., None] + np.arange(depth), 0)
        gt_boxes = np.where(box_mask[..., None], ds.gt_boxes[box_rows] if len(ds.gt_boxes) else 0, 0)
        if self.box_matching == "merged":
            # One union box per phrase, (B, H, 1, 4); a padded phrase keeps a zero box (masked below).
            has_box = box_mask.any(axis=2)  # (B, H)
            merged = merge_boxes(gt_boxes, box_mask | ~has_box[..., None])
            gt_boxes = np.where(has_box[..., None], merged, 0)[:, :, None, :]
            box_mask, depth = has_box[..., None], 1

        region_boxes = np.asarray(ds.store.boxes[rows])  # (B, T, 4) pixels
        iou = box_iou(gt_boxes.reshape(size, width * depth, 4), region_boxes)  # (B, H * G, T)
        iou = iou.reshape(size, width, depth, -1)  # (B, H, G, T)
        hits = ((iou >= self.iou_threshold) & box_mask[..., None]).any(axis=2)  # (B, H, T)
        labels = hits & phrase_mask[..., None] & (regions["region_mask"].numpy()[:, None, :] > 0)
        batch["phrase_spans"] = torch.from_numpy(spans.astype(np.int64))
        batch["phrase_mask"] = torch.from_numpy(phrase_mask.astype(np.int64))
        batch["labels"] = torch.from_numpy(labels.astype(np.float32))
        if self.include_metadata:
            region_counts = regions["region_mask"].sum(dim=1).tolist()
            batch["metadata"] = {
                "image_id": ds.image_ids[index].tolist(),
                "sentence": [ds.texts[i] for i in index],
                "phrases": [[ds.phrase_texts[p] for p in ds.phrases(i)] for i in index],
                "phrase_ids": [[ds.phrase_ids[p] for p in ds.phrases(i)] for i in index],
                "gt_boxes": [
                    [ds.gt_boxes[ds.box_offsets[p] : ds.box_offsets[p + 1]] for p in ds.phrases(i)] for i in index
                ],
                "region_boxes": [region_boxes[b, :n] for b, n in enumerate(region_counts)],
            }
        return batch
