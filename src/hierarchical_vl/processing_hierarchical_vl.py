"""Processor: text (with optional phrase spans) and region features (with boxes) -> padded model inputs.

The functions here build the model's inputs for training, evaluation and inference alike: the collators of
``hierarchical_vl.data`` call them on the arrays of an encoded dataset, the processor on raw text and features.

* `tokenize_texts`: the one tokenisation (no special tokens, cut after the word cap), with character offsets.
* `text_inputs`: ``input_ids`` and ``attention_mask`` from token lists (or a right-padded token array).
* `pad_regions` and `region_inputs`: per-image region features padded into one array, then ``region_features``,
  ``region_mask`` and ``region_boxes`` normalised by the image size.
* `char_spans_to_token_spans`: character spans of phrases -> inclusive token spans.
* `tensor_from_array`: a CPU tensor of a numpy array, copied only when the array is read-only (the memory-mapped
  rows of a region store), so that torch never holds read-only memory.
* `region_box_problem`: what is wrong with pixel boxes (reversed, NaN/inf, far outside the image), if anything;
  the feature readers and the processor refuse such boxes.

This module depends on numpy, torch and transformers only: it is saved with checkpoints as remote code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature, ProcessorMixin

__all__ = [
    "HierarchicalVLProcessor",
    "char_spans_to_token_spans",
    "pad_regions",
    "pad_token_ids",
    "region_box_problem",
    "region_inputs",
    "tensor_from_array",
    "text_inputs",
    "tokenize_texts",
]


def tokenize_texts(
    tokenizer: Any, texts: Sequence[str], max_words: int, *, return_offsets: bool = False
) -> tuple[list[list[int]], list[list[tuple[int, int]]] | None]:
    """Token ids of texts, cut after ``max_words`` words, without special tokens.

    Args:
        tokenizer: The word-level tokenizer (a fast tokenizer when ``return_offsets``).
        texts: The texts.
        max_words: Cap on tokens per text.
        return_offsets: Also return each token's ``(start, end)`` character offsets.

    Returns:
        The token ids of each text, and their character offsets (``None`` unless ``return_offsets``).
    """
    encoded = tokenizer(
        list(texts),
        add_special_tokens=False,
        truncation=True,
        max_length=max_words,
        return_offsets_mapping=return_offsets,
    )
    return encoded["input_ids"], (encoded["offset_mapping"] if return_offsets else None)


def pad_token_ids(
    token_ids: Sequence[Sequence[int]], width: int | None = None, dtype: Any = np.int64
) -> tuple[np.ndarray, np.ndarray]:
    """Token lists as one array right-padded with 0 (the padding id).

    Args:
        token_ids: B lists of token ids.
        width: Columns of the array (at least the longest list); the longest list by default.
        dtype: Integer type of the array.

    Returns:
        ``(token ids (B, W), lengths (B,) int32)``.
    """
    lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int32, count=len(token_ids))  # (B,)
    longest = int(lengths.max()) if lengths.size else 0
    if width is None:
        width = longest
    elif width < longest:
        raise ValueError(f"a text has {longest} tokens, more than the {width} columns asked for")
    padded = np.zeros((len(token_ids), width), dtype=dtype)  # (B, W)
    for row, ids in enumerate(token_ids):
        padded[row, : len(ids)] = ids
    return padded, lengths


def text_inputs(
    token_ids: Sequence[Sequence[int]] | np.ndarray, lengths: np.ndarray | None = None
) -> dict[str, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` (B, N) int64, N = the longest text (at least 1), padded with 0.

    Args:
        token_ids: B lists of token ids, or a (B, L) array right-padded with 0 together with ``lengths``.
        lengths: (B,) tokens of each row of a ``token_ids`` array.
    """
    if lengths is None:
        token_ids, lengths = pad_token_ids(token_ids)
    lengths = np.asarray(lengths)
    width = max(int(lengths.max()) if lengths.size else 0, 1)
    input_ids = np.asarray(token_ids)[:, :width].astype(np.int64)  # (B, N)
    attention_mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)  # (B, N)
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask)}


def pad_regions(
    features: Sequence[Any], boxes: Sequence[Any] | None = None, max_regions: int | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The region features (and boxes) of B images as padded float32 arrays, keeping the first ``max_regions``.

    Bottom-up-attention features are sorted by detection confidence, so the first regions are the ones kept.

    Args:
        features: B arrays `(T_i, F)` (numpy arrays or CPU tensors).
        boxes: B matching arrays `(T_i, 4)` of pixel boxes, or ``None``.
        max_regions: Cap on regions per image; ``None`` for no cap.

    Returns:
        ``(features (B, T, F) float32, boxes (B, T, 4) float32 or None, counts (B,) int64)``, T = the most regions
        kept of any image; padding is 0.
    """
    arrays = [np.asarray(item, dtype=np.float32) for item in features]
    widths = {array.shape[-1] for array in arrays if array.ndim == 2}
    if len(widths) > 1 or any(array.ndim != 2 for array in arrays):
        raise ValueError(
            f"region features must all be (regions, width) arrays of one width, got widths {sorted(widths)}"
        )
    counts = np.asarray(
        [array.shape[0] if max_regions is None else min(array.shape[0], max_regions) for array in arrays],
        dtype=np.int64,
    )  # (B,)
    num_regions = int(counts.max()) if counts.size else 0
    padded = np.zeros((len(arrays), num_regions, widths.pop() if widths else 0), dtype=np.float32)  # (B, T, F)
    for row, (array, count) in enumerate(zip(arrays, counts)):
        padded[row, :count] = array[:count]
    if boxes is None:
        return padded, None, counts
    if len(boxes) != len(arrays):
        raise ValueError(f"got region features of {len(arrays)} images but boxes of {len(boxes)}")
    padded_boxes = np.zeros((len(arrays), num_regions, 4), dtype=np.float32)  # (B, T, 4)
    for row, (item, count) in enumerate(zip(boxes, counts)):
        item = np.asarray(item, dtype=np.float32)
        if item.ndim != 2 or item.shape[0] != arrays[row].shape[0] or item.shape[-1] != 4:
            raise ValueError(f"image {row}: {tuple(item.shape)} boxes for {arrays[row].shape[0]} regions")
        padded_boxes[row, :count] = item[:count]
    return padded, padded_boxes, counts


BOX_TOLERANCE = 0.01
"""How far, as a fraction of the image width or height, a box may reach beyond the image's edge."""


def region_box_problem(
    boxes: Any, width: float | None = None, height: float | None = None, tolerance: float = BOX_TOLERANCE
) -> str | None:
    """What is wrong with an image's pixel boxes, or ``None`` when they are usable.

    A box is refused when a coordinate is NaN or inf, when ``x2 < x1`` or ``y2 < y1``, or, with the image size
    known, when it reaches more than ``tolerance`` of the image width (height) beyond the image's left or right
    (top or bottom) edge. Zero-width and zero-height boxes are accepted.

    Args:
        boxes: `(K, 4)` pixel boxes x1 y1 x2 y2.
        width: Image width in pixels, or ``None`` when unknown.
        height: Image height in pixels, or ``None`` when unknown.
        tolerance: Allowed overshoot beyond the edges, as a fraction of the image size.

    Returns:
        A one-line description naming the first offending region rows and box, or ``None``.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        return f"boxes have shape {boxes.shape}, expected (num_boxes, 4)"

    def rows(bad: np.ndarray) -> str:
        indices = np.flatnonzero(bad)
        first = ", ".join(f"{v:g}" for v in boxes[indices[0]])
        return f"region rows {indices[:5].tolist()}, first ({first})"

    finite = np.isfinite(boxes).all(axis=1)
    if not finite.all():
        return f"boxes contain NaN or inf ({rows(~finite)})"
    reversed_boxes = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if reversed_boxes.any():
        return f"boxes have x2 < x1 or y2 < y1 ({rows(reversed_boxes)})"
    if width is not None and height is not None:
        xs, ys = boxes[:, 0::2], boxes[:, 1::2]
        dx, dy = tolerance * float(width), tolerance * float(height)
        outside = ((xs < -dx) | (xs > width + dx)).any(axis=1) | ((ys < -dy) | (ys > height + dy)).any(axis=1)
        if outside.any():
            return (
                f"boxes lie more than {tolerance:.0%} outside the {float(width):g} x {float(height):g} image "
                f"({rows(outside)})"
            )
    return None


def tensor_from_array(array: Any) -> torch.Tensor:
    """A CPU tensor of ``array``: its memory when the array is writable, a copy when it is read-only.

    Arrays of a `RegionFeatureStore` are read-only views of its memory map (``store[image_id]["features"]``), and
    ``np.asarray`` of one stays read-only; ``torch.from_numpy`` of such an array would warn that the tensor may write
    to memory it must not. Writable arrays (a padded batch) are shared without a copy.

    Args:
        array: A numpy array (or anything ``np.asarray`` takes).
    """
    array = np.asarray(array)
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array)


def region_inputs(
    features: np.ndarray,
    counts: np.ndarray,
    boxes: np.ndarray | None = None,
    image_sizes: Any = None,
) -> dict[str, torch.Tensor]:
    """``region_features``, ``region_mask`` and ``region_boxes`` of a padded batch of images.

    Args:
        features: `(B, T, F)` region features, padded (any float type: the model casts them to its own).
        counts: `(B,)` regions of each image (the first ``counts[b]`` rows are real).
        boxes: `(B, T, 4)` pixel boxes x1 y1 x2 y2, padded with 0; needs ``image_sizes``.
        image_sizes: `(B, 2)` width and height of each image.

    Returns:
        ``region_features`` `(B, T, F)` as given, ``region_mask`` `(B, T)` int64 and, with ``boxes``,
        ``region_boxes`` `(B, T, 4)` float32: the boxes divided by ``(width, height, width, height)``, in [0, 1].
    """
    counts = np.asarray(counts, dtype=np.int64)
    mask = (np.arange(features.shape[1])[None, :] < counts[:, None]).astype(np.int64)  # (B, T)
    data = {"region_features": tensor_from_array(features), "region_mask": torch.from_numpy(mask)}
    if boxes is not None:
        if image_sizes is None or len(image_sizes) != len(counts):
            raise ValueError("region_boxes needs one (width, height) per image")
        sizes = np.asarray(image_sizes, dtype=np.float32).reshape(-1, 2)  # (B, 2)
        scale = np.concatenate([sizes, sizes], axis=1)[:, None, :]  # (B, 1, 4) w h w h
        normalised = np.clip(np.asarray(boxes, dtype=np.float32) / scale, 0.0, 1.0)  # (B, T, 4)
        data["region_boxes"] = torch.from_numpy(normalised.astype(np.float32, copy=False))
    return data


def char_spans_to_token_spans(
    offsets: Sequence[tuple[int, int]], char_spans: Sequence[tuple[int, int]]
) -> list[tuple[int, int] | None]:
    """Map character spans ``[start, end)`` of a text to inclusive token index spans.

    A token belongs to a span when their character ranges overlap. Spans that cover no token (for example
    because truncation removed their words) map to ``None``.

    Args:
        offsets: ``(start, end)`` character offsets of each token (``return_offsets_mapping=True``); padding
            tokens have ``(0, 0)`` and are ignored.
        char_spans: ``(start, end)`` character spans, end exclusive.
    """
    starts = np.asarray([start for start, end in offsets if end > start], dtype=np.int64)  # (n,)
    ends = np.asarray([end for start, end in offsets if end > start], dtype=np.int64)
    result: list[tuple[int, int] | None] = []
    for span_start, span_end in char_spans:
        if span_end <= span_start:
            raise ValueError(f"empty or reversed character span ({span_start}, {span_end})")
        inside = np.nonzero((starts < span_end) & (ends > span_start))[0]
        result.append((int(inside[0]), int(inside[-1])) if inside.size else None)
    return result


def _as_list(value, name: str) -> list:
    if isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim == 2:
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim == 3:
        return list(value)
    raise ValueError(f"{name} must be an array (regions, width), a list of them, or a (batch, regions, width) array")


class HierarchicalVLProcessor(ProcessorMixin):
    """Turns text and region features into the inputs of the hierarchical vision-language model.

    Text is tokenised by the word-level tokenizer and padded on the right (``input_ids``, ``attention_mask``);
    region features are padded to the most regions in the batch (``region_features``, ``region_mask``), keeping
    the first ``max_regions`` of each image (bottom-up features are sorted by detection confidence); boxes in
    pixels are normalised by the image size (``region_boxes``). Phrases given as character spans of the text
    become inclusive token spans (``phrase_spans``, ``phrase_mask``) for visual grounding. The inputs equal those
    the training collators build from the same text and regions (the same functions build both).

    Args:
        tokenizer: A [`HierarchicalVLTokenizer`].
        max_regions: Cap on regions per image (``config.max_regions``; 100 in the paper's setting).
        max_words: Cap on words per text (``config.max_question_words``, 14 for VQA questions as in DCN; pass
            ``max_words=`` per call for captions: ``config.max_caption_words``).
    """

    attributes = ["tokenizer"]
    tokenizer_class = "HierarchicalVLTokenizer"

    def __init__(self, tokenizer=None, max_regions: int = 100, max_words: int = 14, **kwargs):
        self.max_regions = max_regions
        self.max_words = max_words
        super().__init__(tokenizer, **kwargs)

    @classmethod
    def from_config(cls, tokenizer, config) -> HierarchicalVLProcessor:
        """A processor with the input caps of a model configuration (``max_regions``, ``max_question_words``)."""
        return cls(tokenizer, max_regions=config.max_regions, max_words=config.max_question_words)

    def __call__(
        self,
        text: str | list[str] | None = None,
        region_features=None,
        region_boxes=None,
        image_sizes=None,
        phrase_char_spans: list[list[tuple[int, int]]] | None = None,
        max_words: int | None = None,
        max_regions: int | None = None,
        return_tensors: str = "pt",
        **kwargs,
    ) -> BatchFeature:
        """Prepare a batch.

        Args:
            text: One text or a list of texts.
            region_features: `(T, F)` array for one image, or a list of `(T_i, F)` arrays (one per text).
            region_boxes: Matching `(T_i, 4)` pixel boxes (x1, y1, x2, y2); needs ``image_sizes``.
            image_sizes: ``(width, height)`` of each image.
            phrase_char_spans: Per text, the ``[start, end)`` character spans of its phrases.
            max_words: Overrides the processor's word cap for this call.
            max_regions: Overrides the processor's region cap for this call.
            return_tensors: Only ``"pt"`` is supported.

        Returns:
            A `BatchFeature` with ``input_ids`` `(B, N)`, ``attention_mask`` `(B, N)`, ``region_features``
            `(B, T, F)` float32, ``region_mask`` `(B, T)`, and when given ``region_boxes`` `(B, T, 4)` in [0, 1],
            ``phrase_spans`` `(B, H, 2)` and ``phrase_mask`` `(B, H)`. A phrase cut off by the word cap keeps its
            column with ``phrase_mask`` 0.
        """
        if return_tensors not in ("pt", None):
            raise ValueError(f"only return_tensors='pt' is supported, got {return_tensors!r}")
        data: dict[str, torch.Tensor] = {}
        batch_size = None
        if text is not None:
            texts = [text] if isinstance(text, str) else list(text)
            data.update(self._encode_text(texts, phrase_char_spans, max_words or self.max_words))
            batch_size = len(texts)
        if region_features is not None:
            features = _as_list(region_features, "region_features")
            if batch_size is not None and len(features) != batch_size:
                raise ValueError(f"got {batch_size} texts but region features for {len(features)} images")
            data.update(self._pad_regions(features, region_boxes, image_sizes, max_regions or self.max_regions))
        if not data:
            raise ValueError("give text, region_features or both")
        return BatchFeature(data=data, tensor_type=None)

    def unknown_words(self, text: str) -> list[str]:
        """The words of ``text`` not in the tokenizer's vocabulary, read as ``<unk>`` (see
        `HierarchicalVLTokenizer.unknown_words`)."""
        return self.tokenizer.unknown_words(text)

    def _encode_text(self, texts: list[str], phrase_char_spans, max_words: int) -> dict[str, torch.Tensor]:
        for index, item in enumerate(texts):
            if not isinstance(item, str) or not item.strip():
                raise ValueError(f"text {index} is empty: every example needs at least one word")
        token_ids, offsets = tokenize_texts(
            self.tokenizer, texts, max_words, return_offsets=phrase_char_spans is not None
        )
        empty = [index for index, ids in enumerate(token_ids) if not ids]
        if empty:
            raise ValueError(f"texts {empty} have no word after tokenisation")
        data = text_inputs(token_ids)
        if phrase_char_spans is not None:
            if len(phrase_char_spans) != len(texts):
                raise ValueError(f"got {len(texts)} texts but phrase spans for {len(phrase_char_spans)}")
            num_phrases = max(1, max(len(spans) for spans in phrase_char_spans))
            spans = torch.zeros(len(texts), num_phrases, 2, dtype=torch.long)  # (B, H, 2)
            mask = torch.zeros(len(texts), num_phrases, dtype=torch.long)  # (B, H)
            for row, (token_offsets, char_spans) in enumerate(zip(offsets, phrase_char_spans)):
                for column, token_span in enumerate(char_spans_to_token_spans(token_offsets, char_spans)):
                    if token_span is not None:
                        spans[row, column] = torch.tensor(token_span)
                        mask[row, column] = 1
            data["phrase_spans"] = spans
            data["phrase_mask"] = mask
        return data

    def _pad_regions(self, features: list, boxes, image_sizes, max_regions: int) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("region_features holds no image")
        if boxes is not None:
            boxes = _as_list(boxes, "region_boxes")
            if image_sizes is None or len(image_sizes) != len(features) or len(boxes) != len(features):
                raise ValueError("region_boxes needs one (regions, 4) array and one (width, height) per image")
        padded, padded_boxes, counts = pad_regions(features, boxes, max_regions)
        if boxes is not None:  # shapes are checked by pad_regions
            for index, (item, size) in enumerate(zip(boxes, image_sizes)):
                width, height = (float(v) for v in np.asarray(size, dtype=np.float64).reshape(2))
                if not (np.isfinite([width, height]).all() and width > 0 and height > 0):
                    raise ValueError(f"image {index}: invalid image size {width:g} x {height:g}")
                problem = region_box_problem(item, width, height)
                if problem is not None:
                    raise ValueError(f"image {index}: {problem}")
        if counts.size and counts.min() < 1:
            raise ValueError(f"images {np.flatnonzero(counts < 1).tolist()} have no region")
        if not np.isfinite(padded).all():
            raise ValueError("region features contain NaN or inf")
        return region_inputs(padded, counts, padded_boxes, image_sizes)
