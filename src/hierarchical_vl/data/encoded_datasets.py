"""Annotations encoded once into numpy arrays, joined with a region-feature store, for fast training.

Reading examples one at a time through ``datasets`` runs at about a thousand examples per second; a training step
needs hundreds of them. So each task's rows are read once, in large batches, into compact arrays -- token ids
(M, L) int32 and their lengths, the store index of each example's image, sparse VQA soft labels, grounding phrase
spans and ground-truth boxes -- and the DataLoader's batches are index arrays that the task's collator
(`collators`) turns into model inputs with a handful of vectorised gathers.

The datasets are ``torch.utils.data.Dataset`` s whose items are their own indices: ``__getitems__`` hands the
sampler's index list straight to the collator. ``dataset.example(i)`` gives a readable dict of one example.

Rows may come from a map-style ``datasets.Dataset``, an ``IterableDataset`` (``streaming=True``) or any iterable of
dicts with the same fields, so ``datasets`` itself is optional here.

Each dataset cuts its texts after ``max_words`` tokens: the task's cap in the model configuration
(``hierarchical_vl.tasks.TaskSpec.max_words``). ``Encoded*Dataset.from_config(rows, store, tokenizer, config)``
takes the cap (and, for VQA, the answer pool) from a model configuration; without a cap the configuration's default
is used. Texts are tokenised by the same function as the processor's (`tokenize_texts`).
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch.utils.data

from ..metrics.grounding import box_iou
from ..processing_hierarchical_vl import char_spans_to_token_spans, pad_token_ids, tokenize_texts
from ..tasks import task_spec
from .feature_store import RegionFeatureStore

__all__ = ["EncodedCaptionDataset", "EncodedDataset", "EncodedGroundingDataset", "EncodedVQADataset"]

logger = logging.getLogger(__name__)

_ROW_BATCH = 20_000


def _iter_row_batches(rows: Any, columns: Sequence[str], batch_size: int = _ROW_BATCH) -> Iterator[dict[str, list]]:
    """Yields ``{column: values}`` batches of rows from a ``datasets`` dataset or an iterable of dicts."""
    if hasattr(rows, "select_columns") and hasattr(rows, "iter"):
        present = [c for c in columns if c in (rows.column_names or columns)]
        yield from rows.select_columns(present).iter(batch_size=batch_size)
        return
    chunk: list[Mapping[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == batch_size:
            yield _transpose(chunk, columns)
            chunk = []
    if chunk:
        yield _transpose(chunk, columns)


def _transpose(chunk: list[Mapping[str, Any]], columns: Sequence[str]) -> dict[str, list]:
    """Rows -> ``{column: values}`` for the columns the rows have (all of them or none)."""
    out = {}
    for column in columns:
        present = sum(column in row for row in chunk)
        if present == len(chunk):
            out[column] = [row[column] for row in chunk]
        elif present:
            raise ValueError(f"{len(chunk) - present} of {len(chunk)} rows lack the field {column!r}")
    return out


def _encode_texts(
    tokenizer: Any, texts: Sequence[str], max_length: int, return_offsets: bool = False
) -> tuple[np.ndarray, np.ndarray, list | None]:
    """Tokenises texts into a padded array.

    Returns:
        token ids (M, max_length) int32 padded with 0, lengths (M,) int32, and the offset mappings when asked.
    """
    ids, offsets = tokenize_texts(tokenizer, texts, max_length, return_offsets=return_offsets)
    tokens, lengths = pad_token_ids(ids, width=max_length, dtype=np.int32)
    return tokens, lengths, offsets


@functools.cache
def _default_config() -> Any:
    """The default model configuration, whose input caps are the defaults of the datasets and collators."""
    from ..configuration_hierarchical_vl import HierarchicalVLConfig

    return HierarchicalVLConfig()


def _word_cap(task: str, max_words: int | None, legacy: int | None, legacy_name: str) -> int:
    """The word cap of a dataset: ``max_words``, the deprecated ``legacy`` keyword, or the configuration default."""
    if legacy is not None:
        warnings.warn(f"{legacy_name}= is deprecated; pass max_words=", FutureWarning, stacklevel=4)
        if max_words is not None and max_words != legacy:
            raise ValueError(f"max_words={max_words} and {legacy_name}={legacy} disagree")
        max_words = legacy
    if max_words is None:
        return task_spec(task).max_words(_default_config())
    if int(max_words) < 1:
        raise ValueError(f"max_words must be positive, got {max_words}")
    return int(max_words)


def _stack_tokens(chunks: list[tuple[np.ndarray, np.ndarray]], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenates the (token ids, lengths) of the row batches."""
    if not chunks:
        return np.zeros((0, max_length), np.int32), np.zeros(0, np.int32)
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


def _id_array(values: list[Any]) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        return np.asarray(values, dtype=object)


class EncodedDataset(torch.utils.data.Dataset):
    """Base of the encoded task datasets: texts as token arrays, images as store indices.

    Attributes:
        store: The region-feature store.
        image_index: (M,) int64 store index of each example's image.
        image_ids: (M,) image id of each example (as in the annotations).
        token_ids: (M, L) int32 token ids padded with 0.
        lengths: (M,) int32 number of tokens.
        texts: The M texts (question, caption or sentence).
        dropped: Examples left out while encoding, by reason (e.g. image not in the store).
    """

    task: str = ""
    """The task whose examples the dataset holds (a `TASK_SPECS` key)."""
    max_length: int
    """The word cap the texts were cut at."""

    def __init__(
        self, store: RegionFeatureStore, max_words: int | None, legacy_max_words: int | None, legacy_name: str
    ):
        """Sets the store and the word cap (see `_word_cap`) of a subclass, which then encodes its rows."""
        self.store = store
        self.dropped: Counter[str] = Counter()
        self.max_length = _word_cap(self.task, max_words, legacy_max_words, legacy_name)

    @classmethod
    def from_config(cls, rows: Any, store: RegionFeatureStore, tokenizer: Any, config: Any, **options: Any):
        """Encodes ``rows`` with the task's word cap in ``config`` (a `HierarchicalVLConfig`).

        Args:
            rows: The task's rows.
            store: Region features of the images.
            tokenizer: The word-level tokenizer.
            config: The model configuration whose caps (and answer pool) the inputs follow.
            **options: Other arguments of the dataset (``missing_images``, ...).
        """
        options.setdefault("max_words", task_spec(cls.task).max_words(config))
        return cls(rows, store, tokenizer, **options)

    def __len__(self) -> int:
        return len(self.image_index)

    def __getitem__(self, index: int) -> int:
        """The item of an encoded dataset is its index (see `example` for a readable view)."""
        if isinstance(index, (list, tuple, np.ndarray)):
            return self.__getitems__(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} examples")
        return int(index) % len(self)

    def __getitems__(self, indices: Sequence[int]) -> np.ndarray:
        return np.asarray(indices, dtype=np.int64)

    def example_sizes(self, max_regions: int | None = None) -> np.ndarray:
        """(M, 2) int64 regions (capped at ``max_regions``; ``None`` for no cap) and words of each example: what
        its batch is padded to."""
        regions = self.store.num_regions[self.image_index]  # (M,)
        if max_regions is not None:
            regions = np.minimum(regions, max_regions)
        return np.stack([regions, self.lengths], axis=1).astype(np.int64)

    def example(self, index: int) -> dict[str, Any]:
        """A readable dict of one encoded example."""
        length = int(self.lengths[index])
        return {
            "index": index,
            "image_id": self.image_ids[index].item(),
            "text": self.texts[index],
            "input_ids": self.token_ids[index, :length].tolist(),
        }

    def _resolve_images(self, image_ids: list[Any], missing_images: str) -> np.ndarray:
        """(M,) store indices of the examples' images, -1 for images not in the store (when dropping them)."""
        if missing_images not in ("raise", "drop"):
            raise ValueError(f"missing_images must be 'raise' or 'drop', got {missing_images!r}")
        index = self.store.indices(image_ids, missing="mark")
        absent = index < 0
        if absent.any():
            examples = [image_ids[i] for i in np.flatnonzero(absent)[:5]]
            message = (
                f"{int(absent.sum())} of {len(image_ids)} examples have images that are not in the region "
                f"store {self.store.path}, e.g. images {examples}"
            )
            if missing_images == "raise":
                raise KeyError(message + "; pass missing_images='drop' to leave them out")
            logger.warning("%s; leaving them out", message)
            self.dropped["image not in store"] += int(absent.sum())
        return index

    def _set_arrays(self, arrays: dict[str, Any], image_index: np.ndarray, keep: np.ndarray, what: str) -> None:
        """Keeps the examples in ``keep`` (failing on kept texts without tokens) and sets the arrays."""
        empty = (arrays["lengths"] == 0) & keep
        if empty.any():
            raise ValueError(
                f"{int(empty.sum())} {what} have no token after tokenisation, e.g. "
                f"{[arrays['texts'][i] for i in np.flatnonzero(empty)[:5]]}"
            )
        if not keep.all():
            arrays = _select(arrays, keep)
        for name, value in arrays.items():
            setattr(self, name, value)
        self.image_index = image_index[keep]


def _select(arrays: dict[str, Any], keep: np.ndarray) -> dict[str, Any]:
    out = {}
    for name, value in arrays.items():
        if isinstance(value, np.ndarray):
            out[name] = value[keep]
        else:
            out[name] = [v for v, k in zip(value, keep) if k]
    return out


class EncodedVQADataset(EncodedDataset):
    """VQA questions encoded for `VQACollator`.

    Args:
        rows: VQA rows (`load_vqa`), map-style, streaming or dicts.
        store: Region features of the images.
        tokenizer: The word-level tokenizer.
        answer_vocab: The answer vocabulary; read from the dataset's ``labels`` feature when ``None``.
        max_words: Cap on question tokens (default: ``HierarchicalVLConfig().max_question_words``, 14 as in DCN).
        missing_images: ``"raise"`` on questions whose image is not in the store, or ``"drop"`` them (counted).
        keep_answers: Keep the 10 answer strings for evaluation (``metadata["answers"]``).
        max_question_length: Deprecated name of ``max_words``.

    Attributes:
        question_ids: (M,) int64.
        label_ids: (M, S) int32 answer ids of the soft labels, -1 padded (S <= 10).
        label_scores: (M, S) float32 soft scores.
        has_labels: Whether the split has annotations (test splits do not).
        question_type_table: The distinct question types (the annotations' ``question_type``, ``""`` when absent);
            ``question_type_codes``: (M,) int32 index of each question's type in it.
        answer_vocab: The answer vocabulary (``num_answers`` = its length).
    """

    task = "vqa"

    def __init__(
        self,
        rows: Any,
        store: RegionFeatureStore,
        tokenizer: Any,
        *,
        answer_vocab: Sequence[str] | None = None,
        max_words: int | None = None,
        missing_images: str = "raise",
        keep_answers: bool = True,
        max_question_length: int | None = None,
    ):
        super().__init__(store, max_words, max_question_length, "max_question_length")
        max_question_length = self.max_length
        if answer_vocab is None:
            features = getattr(rows, "features", None)
            try:
                answer_vocab = features["labels"].feature.names
            except (KeyError, AttributeError, TypeError):
                raise ValueError("pass answer_vocab= (the rows carry no ClassLabel 'labels' feature)") from None
        self.answer_vocab = list(answer_vocab)
        columns = ["question_id", "image_id", "question", "labels", "scores", "answer_type", "question_type"]
        if keep_answers:
            columns.append("answers")
        question_ids, image_ids, texts, answer_types, question_types = [], [], [], [], []
        label_rows, score_rows, answer_rows = [], [], []
        token_chunks = []
        for batch in _iter_row_batches(rows, columns):
            size = len(batch["question"])
            question_ids += batch["question_id"]
            image_ids += batch["image_id"]
            texts += batch["question"]
            answer_types += batch.get("answer_type") or [""] * size
            question_types += batch.get("question_type") or [""] * size
            label_rows += batch.get("labels") or [[]] * size
            score_rows += batch.get("scores") or [[]] * size
            if keep_answers:
                answer_rows += [[a["answer"] for a in answers] for answers in batch.get("answers") or [[]] * size]
            token_chunks.append(_encode_texts(tokenizer, batch["question"], max_question_length)[:2])
        count = len(question_ids)
        token_ids, lengths = _stack_tokens(token_chunks, max_question_length)
        width = max((len(labels) for labels in label_rows), default=0)
        label_ids = np.full((count, max(width, 1)), -1, dtype=np.int32)  # (M, S)
        label_scores = np.zeros((count, max(width, 1)), dtype=np.float32)  # (M, S)
        for row, (labels, scores) in enumerate(zip(label_rows, score_rows)):
            label_ids[row, : len(labels)] = labels
            label_scores[row, : len(scores)] = scores
        if (label_ids >= len(self.answer_vocab)).any():
            raise ValueError(f"labels beyond the {len(self.answer_vocab)}-answer vocabulary")
        self.has_labels = any(answer_types) or width > 0
        # The 10 answer strings as codes into one table (compact for 440k questions).
        answer_table: dict[str, int] = {}
        answer_codes = np.full((count, 10 if keep_answers else 0), -1, dtype=np.int32)  # (M, 10)
        for row, answers in enumerate(answer_rows):
            answer_codes[row, : len(answers[:10])] = [
                answer_table.setdefault(a, len(answer_table)) for a in answers[:10]
            ]
        self.answer_table = list(answer_table)
        self.answer_type_table = sorted(set(answer_types))
        type_code = {t: i for i, t in enumerate(self.answer_type_table)}
        self.question_type_table = sorted(set(question_types))
        kind_code = {t: i for i, t in enumerate(self.question_type_table)}
        arrays = {
            "question_ids": _id_array(question_ids),
            "image_ids": _id_array(image_ids),
            "texts": texts,
            "token_ids": token_ids,
            "lengths": lengths,
            "label_ids": label_ids,
            "label_scores": label_scores,
            "answer_codes": answer_codes,
            "answer_type_codes": np.asarray([type_code[t] for t in answer_types], dtype=np.int16),
            "question_type_codes": np.asarray([kind_code[t] for t in question_types], dtype=np.int32),
        }
        image_index = self._resolve_images(image_ids, missing_images)
        self._set_arrays(arrays, image_index, image_index >= 0, "questions")

    @classmethod
    def from_config(cls, rows: Any, store: RegionFeatureStore, tokenizer: Any, config: Any, **options: Any):
        """Encodes ``rows`` with the question cap and the answer pool (``config.id2label``) of ``config``."""
        options.setdefault("answer_vocab", [config.id2label[i] for i in range(config.num_answers)])
        return super().from_config(rows, store, tokenizer, config, **options)

    @property
    def num_answers(self) -> int:
        return len(self.answer_vocab)

    def example(self, index: int) -> dict[str, Any]:
        out = super().example(index)
        labels = self.label_ids[index]
        out.update(
            {
                "question_id": int(self.question_ids[index]),
                "labels": {self.answer_vocab[i]: float(s) for i, s in zip(labels, self.label_scores[index]) if i >= 0},
                "answers": [self.answer_table[c] for c in self.answer_codes[index] if c >= 0],
            }
        )
        return out


class EncodedCaptionDataset(EncodedDataset):
    """Captions encoded for `RetrievalCollator`.

    Args:
        rows: Caption rows (`load_karpathy_captions`) or dicts with
            ``image_id``, ``caption`` and optionally ``sentence_id``.
        store: Region features of the images.
        tokenizer: The word-level tokenizer.
        max_words: Cap on caption tokens (default: ``HierarchicalVLConfig().max_caption_words``).
        missing_images: ``"raise"`` or ``"drop"`` captions whose image is not in the store.
        max_caption_length: Deprecated name of ``max_words``.

    Attributes:
        sentence_ids: (M,) caption ids.
        caption_image: (M,) int64 position of each caption's image in `images`.
        images: (I,) the distinct image ids, in order of first appearance.
        images_store_index: (I,) int64 store index of each distinct image.
    """

    task = "retrieval"

    def __init__(
        self,
        rows: Any,
        store: RegionFeatureStore,
        tokenizer: Any,
        *,
        max_words: int | None = None,
        missing_images: str = "raise",
        max_caption_length: int | None = None,
    ):
        super().__init__(store, max_words, max_caption_length, "max_caption_length")
        max_caption_length = self.max_length
        image_ids, texts, sentence_ids = [], [], []
        token_chunks = []
        for batch in _iter_row_batches(rows, ["image_id", "caption", "sentence_id"]):
            start = len(texts)
            image_ids += batch["image_id"]
            texts += batch["caption"]
            sentence_ids += batch.get("sentence_id") or list(range(start, len(texts)))
            token_chunks.append(_encode_texts(tokenizer, batch["caption"], max_caption_length)[:2])
        token_ids, lengths = _stack_tokens(token_chunks, max_caption_length)
        arrays = {
            "image_ids": _id_array(image_ids),
            "texts": texts,
            "sentence_ids": _id_array(sentence_ids),
            "token_ids": token_ids,
            "lengths": lengths,
        }
        image_index = self._resolve_images(image_ids, missing_images)
        self._set_arrays(arrays, image_index, image_index >= 0, "captions")
        image_index = self.image_index
        # Distinct images in order of first appearance, and each caption's position among them.
        unique, first, inverse = np.unique(image_index, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        self.caption_image = rank[inverse].astype(np.int64)  # (M,)
        self.images_store_index = unique[order]  # (I,)
        self.images = self.image_ids[first[order]] if len(first) else self.image_ids[:0]

    def example(self, index: int) -> dict[str, Any]:
        out = super().example(index)
        out["sentence_id"] = self.sentence_ids[index].item()
        return out


class EncodedGroundingDataset(EncodedDataset):
    """Flickr30k Entities sentences encoded for `GroundingCollator`.

    Only phrases with boxes (``box_status == "box"``) are kept; phrases without boxes, phrases cut off by the
    token cap and sentences left without phrases are counted in `excluded`. A kept phrase whose ground truth gives no
    region of its image a positive label (IoU >= 0.5 with none of the store's regions) stays in, with all-zero
    labels, but is counted in `phrases_without_positive` and reported in one logged warning.

    Args:
        rows: Rows of `load_flickr30k_entities` (or such dicts).
        store: Region features of the images.
        tokenizer: The word-level tokenizer (with offsets: a fast tokenizer).
        max_words: Cap on sentence tokens (default: ``HierarchicalVLConfig().max_caption_words``, the caption cap).
        missing_images: ``"raise"`` or ``"drop"`` sentences whose image is not in the store.
        max_sentence_length: Deprecated name of ``max_words``.

    Attributes:
        phrase_offsets: (M + 1,) int64, phrases of example m are rows ``phrase_offsets[m]:phrase_offsets[m + 1]``.
        phrase_spans: (P, 2) int64 inclusive token spans.
        phrase_texts: The P phrase texts; ``phrase_ids``: their chain ids.
        box_offsets: (P + 1,) int64, boxes of phrase p are rows ``box_offsets[p]:box_offsets[p + 1]``.
        gt_boxes: (G, 4) float32 ground-truth boxes, x1 y1 x2 y2 pixels (0-based).
        excluded: Phrases and sentences left out, by reason.
        phrase_first_positive: (P',) int64 index, within its image's store regions, of the first region whose IoU
            with one of the phrase's ground-truth boxes is >= 0.5; -1 when there is none. Under a collator's
            ``max_regions`` cap K a phrase has a positive label exactly when ``0 <= phrase_first_positive < K``.
        phrases_without_positive: Kept phrases with no such region among all of the store's regions.
    """

    task = "grounding"
    positive_iou: float = 0.5
    """The IoU at which `phrase_first_positive` counts a region as showing a phrase (the collator's default)."""

    def __init__(
        self,
        rows: Any,
        store: RegionFeatureStore,
        tokenizer: Any,
        *,
        max_words: int | None = None,
        missing_images: str = "raise",
        max_sentence_length: int | None = None,
    ):
        super().__init__(store, max_words, max_sentence_length, "max_sentence_length")
        max_sentence_length = self.max_length
        self.excluded: Counter[str] = Counter()
        image_ids, texts, sentence_indices = [], [], []
        token_chunks = []
        spans: list[tuple[int, int]] = []
        phrase_counts: list[int] = []  # per sentence
        phrase_texts: list[str] = []
        phrase_ids: list[str] = []
        box_counts: list[int] = []  # per phrase
        boxes: list[list[float]] = []
        for batch in _iter_row_batches(rows, ["image_id", "sentence_index", "sentence", "phrases"]):
            tokens, lengths, offsets = _encode_texts(
                tokenizer, batch["sentence"], max_sentence_length, return_offsets=True
            )
            token_chunks.append((tokens, lengths))
            image_ids += batch["image_id"]
            texts += batch["sentence"]
            sentence_indices += batch.get("sentence_index") or [0] * len(batch["sentence"])
            for phrases, offset in zip(batch["phrases"], offsets):
                grounded = []
                for phrase in phrases:
                    if phrase["box_status"] == "box" and phrase["boxes"]:
                        grounded.append(phrase)
                    else:
                        self.excluded[f"phrases {phrase['box_status']}"] += 1
                token_spans = char_spans_to_token_spans(offset, [(p["char_start"], p["char_end"]) for p in grounded])
                kept = 0
                for phrase, span in zip(grounded, token_spans):
                    if span is None:  # cut off by the token cap
                        self.excluded["phrases truncated"] += 1
                        continue
                    spans.append(span)
                    phrase_texts.append(phrase["phrase"])
                    phrase_ids.append(str(phrase["phrase_id"]))
                    box_counts.append(len(phrase["boxes"]))
                    boxes.extend(phrase["boxes"])
                    kept += 1
                phrase_counts.append(kept)
        token_ids, lengths = _stack_tokens(token_chunks, max_sentence_length)
        phrase_counts_array = np.asarray(phrase_counts, dtype=np.int64)  # (M,)
        box_counts_array = np.asarray(box_counts, dtype=np.int64)  # (P,)
        image_index = self._resolve_images(image_ids, missing_images)
        has_phrases = phrase_counts_array > 0
        self.excluded["sentences without grounded phrases"] += int((~has_phrases).sum())
        keep = (image_index >= 0) & has_phrases  # (M,)
        arrays = {
            "image_ids": _id_array(image_ids),
            "texts": texts,
            "sentence_indices": np.asarray(sentence_indices, dtype=np.int64),
            "token_ids": token_ids,
            "lengths": lengths,
        }
        self._set_arrays(arrays, image_index, keep, "sentences")

        # The kept sentences' rows of the flat phrase and box tables.
        phrase_keep = np.repeat(keep, phrase_counts_array)  # (P,) bool
        kept_phrases = np.flatnonzero(phrase_keep)  # (P',)
        kept_boxes = np.flatnonzero(np.repeat(phrase_keep, box_counts_array))  # (G',)
        self.phrase_spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)[kept_phrases]  # (P', 2)
        self.phrase_texts = [phrase_texts[p] for p in kept_phrases]
        self.phrase_ids = [phrase_ids[p] for p in kept_phrases]
        self.gt_boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)[kept_boxes]  # (G', 4)
        self.box_offsets = np.concatenate([[0], np.cumsum(box_counts_array[kept_phrases])]).astype(np.int64)
        self.phrase_offsets = np.concatenate([[0], np.cumsum(phrase_counts_array[keep])]).astype(np.int64)
        if self.excluded:
            logger.info("grounding: left out %s", dict(self.excluded))
        self.phrase_first_positive = self._first_positive_regions()
        self.phrases_without_positive = int((self.phrase_first_positive < 0).sum())
        if self.phrases_without_positive:
            unlabelled = np.flatnonzero(self.phrase_first_positive < 0)
            phrase_image = np.repeat(self.image_ids, np.diff(self.phrase_offsets))  # (P',)
            examples = [f"{self.phrase_texts[p]!r} (image {phrase_image[p].item()})" for p in unlabelled[:3]]
            logger.warning(
                "grounding: %d of %d phrases have no region with IoU >= %g in the region store %s, so no positive "
                "label (kept, with all-zero labels), e.g. %s",
                self.phrases_without_positive,
                len(self.phrase_texts),
                self.positive_iou,
                self.store.path,
                ", ".join(examples),
            )

    def _first_positive_regions(self) -> np.ndarray:
        """(P',) first store region (within its image) that is a positive of each kept phrase, or -1 (see above)."""
        num_phrases = len(self.phrase_texts)
        first = np.full(num_phrases, -1, dtype=np.int64)
        if num_phrases == 0 or len(self.gt_boxes) == 0:
            return first
        phrase_image = np.repeat(self.image_index, np.diff(self.phrase_offsets))  # (P',) store index
        box_phrase = np.repeat(np.arange(num_phrases), np.diff(self.box_offsets))  # (G',)
        box_image = phrase_image[box_phrase]  # (G',)
        box_first = np.full(len(box_phrase), np.iinfo(np.int64).max, dtype=np.int64)  # (G',)
        order = np.argsort(box_image, kind="stable")
        starts = np.flatnonzero(np.r_[True, box_image[order][1:] != box_image[order][:-1]])
        for group in np.split(order, starts[1:]):
            image = int(box_image[group[0]])
            regions = self.store.boxes[int(self.store.offsets[image]) : int(self.store.offsets[image + 1])]  # (K, 4)
            positive = box_iou(self.gt_boxes[group], np.asarray(regions)) >= self.positive_iou  # (g, K)
            hit = positive.any(axis=1)
            box_first[group[hit]] = positive[hit].argmax(axis=1)
        per_phrase = np.minimum.reduceat(box_first, self.box_offsets[:-1])  # every kept phrase has >= 1 box
        return np.where(per_phrase == np.iinfo(np.int64).max, -1, per_phrase).astype(np.int64)

    def phrases(self, index: int) -> range:
        """Rows of the phrase tables that belong to example ``index``."""
        return range(int(self.phrase_offsets[index]), int(self.phrase_offsets[index + 1]))

    def example(self, index: int) -> dict[str, Any]:
        out = super().example(index)
        out["phrases"] = [
            {
                "phrase": self.phrase_texts[p],
                "phrase_id": self.phrase_ids[p],
                "token_span": tuple(int(v) for v in self.phrase_spans[p]),
                "boxes": self.gt_boxes[self.box_offsets[p] : self.box_offsets[p + 1]].tolist(),
            }
            for p in self.phrases(index)
        ]
        return out
