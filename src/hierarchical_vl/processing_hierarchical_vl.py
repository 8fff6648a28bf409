"""Processor: text (with optional phrase spans) and region features (with boxes) -> padded model inputs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import BatchFeature, ProcessorMixin

__all__ = ["HierarchicalVLProcessor", "char_spans_to_token_spans"]


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
    become inclusive token spans (``phrase_spans``, ``phrase_mask``) for visual grounding.

    Args:
        tokenizer: A [`HierarchicalVLTokenizer`].
        max_regions: Cap on regions per image (100 in the paper's setting).
        max_words: Cap on words per text (14 for VQA questions as in DCN; use more for captions).
    """

    attributes = ["tokenizer"]
    tokenizer_class = "HierarchicalVLTokenizer"

    def __init__(self, tokenizer=None, max_regions: int = 100, max_words: int = 14, **kwargs):
        self.max_regions = max_regions
        self.max_words = max_words
        super().__init__(tokenizer, **kwargs)

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
            ``phrase_spans`` `(B, H, 2)` and ``phrase_mask`` `(B, H)`.
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

    def _encode_text(self, texts: list[str], phrase_char_spans, max_words: int) -> dict[str, torch.Tensor]:
        for index, item in enumerate(texts):
            if not isinstance(item, str) or not item.strip():
                raise ValueError(f"text {index} is empty: every example needs at least one word")
        encoded = self.tokenizer(
            texts,
            add_special_tokens=False,
            truncation=True,
            max_length=max_words,
            padding=True,
            return_offsets_mapping=phrase_char_spans is not None,
        )
        input_ids = torch.tensor(encoded["input_ids"], dtype=torch.long)  # (B, N)
        attention_mask = torch.tensor(encoded["attention_mask"], dtype=torch.long)
        empty = (~attention_mask.bool().any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"texts {empty} have no word after tokenisation")
        data = {"input_ids": input_ids, "attention_mask": attention_mask}
        if phrase_char_spans is not None:
            if len(phrase_char_spans) != len(texts):
                raise ValueError(f"got {len(texts)} texts but phrase spans for {len(phrase_char_spans)}")
            num_phrases = max(1, max(len(spans) for spans in phrase_char_spans))
            spans = torch.zeros(len(texts), num_phrases, 2, dtype=torch.long)  # (B, H, 2)
            mask = torch.zeros(len(texts), num_phrases, dtype=torch.long)  # (B, H)
            for row, (offsets, char_spans) in enumerate(zip(encoded["offset_mapping"], phrase_char_spans)):
                for column, token_span in enumerate(char_spans_to_token_spans(offsets, char_spans)):
                    if token_span is not None:
                        spans[row, column] = torch.tensor(token_span)
                        mask[row, column] = 1
            data["phrase_spans"] = spans
            data["phrase_mask"] = mask
        return data

    def _pad_regions(self, features: list, boxes, image_sizes, max_regions: int) -> dict[str, torch.Tensor]:
        arrays = [torch.from_numpy(np.array(item, dtype=np.float32)) for item in features]  # copies read-only memmaps
        widths = {array.shape[-1] for array in arrays}
        if len(widths) != 1 or any(array.dim() != 2 for array in arrays):
            raise ValueError(f"region features must all be (regions, width) arrays of one width, got widths {sorted(widths)}")
        counts = [min(array.shape[0], max_regions) for array in arrays]
        if min(counts) < 1:
            raise ValueError(f"images {[i for i, c in enumerate(counts) if c < 1]} have no region")
        num_regions = max(counts)
        padded = torch.zeros(len(arrays), num_regions, widths.pop(), dtype=torch.float32)  # (B, T, F)
        mask = torch.zeros(len(arrays), num_regions, dtype=torch.long)  # (B, T)
        for row, (array, count) in enumerate(zip(arrays, counts)):
            padded[row, :count] = array[:count].float()
            mask[row, :count] = 1
        if not torch.isfinite(padded).all():
            raise ValueError("region features contain NaN or inf")
        data = {"region_features": padded, "region_mask": mask}
        if boxes is not None:
            box_list = _as_list(boxes, "region_boxes")
            if image_sizes is None or len(image_sizes) != len(arrays) or len(box_list) != len(arrays):
                raise ValueError("region_boxes needs one (regions, 4) array and one (width, height) per image")
            normalised = torch.zeros(len(arrays), num_regions, 4, dtype=torch.float32)  # (B, T, 4)
            for row, (item, (width, height), count) in enumerate(zip(box_list, image_sizes, counts)):
                item = torch.as_tensor(np.asarray(item), dtype=torch.float32)
                if item.shape[0] != arrays[row].shape[0] or item.shape[-1] != 4:
                    raise ValueError(f"image {row}: {tuple(item.shape)} boxes for {arrays[row].shape[0]} regions")
                scale = torch.tensor([width, height, width, height], dtype=torch.float32)
                normalised[row, :count] = (item[:count] / scale).clamp(0.0, 1.0)
            data["region_boxes"] = normalised
        return data
