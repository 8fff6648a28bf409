"""Evaluation protocols: how every task is scored, as one named, recorded choice.

An `EvaluationProtocol` fixes every choice that changes the numbers of a table:

* ``vqa_metric``: the official VQA evaluation code as it is now (``"current"``) or as it was before its 2021 fix
  (``"legacy"``, how papers of 2015-2020, this one included, were scored; see ``hierarchical_vl.metrics.vqa``);
* ``box_matching``: how a grounding phrase with several ground-truth boxes is matched, ``"any"`` box or their
  ``"merged"`` union box (Plummer et al. [29]; see ``hierarchical_vl.metrics.grounding``); the training labels of
  the grounding collator follow the same rule;
* ``coco_retrieval``: COCO image-caption retrieval as ``"full"`` (one ranking over the split: the 5K test),
  ``"1k"`` (the mean over folds of 1,000 images: the 1K test) or ``"both"``; ``flickr30k_retrieval`` likewise
  (Flickr30k's 1K test is its whole test split, ``"full"``); ``retrieval_fold_size`` is the fold of ``"1k"``
  (1,000 images);
* ``eval_max_images``: evaluation during training on the first N images of each evaluation split (file order,
  with all their questions, captions and phrases; ``None`` = every image); ``hvl evaluate`` always scores the
  whole split;
* ``answer_pool_splits`` and ``answer_normalization``: which VQA splits the answer pool is counted over (``None``
  = the training splits) and how ``multiple_choice_answer`` strings are compared while counting (``"text"``:
  lowercase, single spaces; ``"official"``: the official VQA normalisation, as the answer pool of Teney et al.
  [34] is built). An answer joins the pool when seen more than 8 times (``data.min_answer_frequency``).

Two protocols are named (`PROTOCOLS`):

* ``current`` -- the package's defaults, unchanged: current VQA metric, any-box grounding, one ranking over the
  split for both caption corpora, every evaluation image, the pool counted over the training splits with text
  normalisation. The default wherever nothing says otherwise, so results computed before protocols existed keep
  their values.
* ``paper`` -- the paper's tables (Sec. 5.1): legacy VQA code, merged boxes, COCO 1K (5-fold mean) and 5K,
  Flickr30k 1K test, validation during training on 1,000 images, and the pool of [34]: answers seen more than 8
  times in VQA train+val after the official normalisation (3,129 answers on the real VQA 2.0).

Which corpus a Karpathy split file holds is read from the file (`caption_corpus`): COCO entries carry ``cocoid``
(and ``filepath``), Flickr30k entries do not; a file without entries is named by its file name.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.json_stream import iter_json_array
from ..metrics.grounding import BOX_MATCHING
from .task_evaluation import RETRIEVAL_PROTOCOLS

__all__ = [
    "ANSWER_NORMALIZATIONS",
    "CAPTION_CORPORA",
    "PROTOCOLS",
    "VQA_METRICS",
    "EvaluationProtocol",
    "caption_corpus",
    "evaluation_protocol",
    "first_images",
]

logger = logging.getLogger(__name__)

VQA_METRICS = ("current", "legacy")
"""Versions of the official VQA evaluation code: as it is now, and as it was before its 2021 fix."""

ANSWER_NORMALIZATIONS = ("text", "official")
"""How answers are compared while counting the answer pool: lowercase and single spaces, or the official VQA
normalisation (punctuation, number words, articles, contractions)."""

CAPTION_CORPORA = ("coco", "flickr30k")
"""The corpora of Karpathy split files."""


@dataclass(frozen=True)
class EvaluationProtocol:
    """Every choice that changes how the tasks are scored (see the module docstring).

    Args:
        name: The protocol's name in results files.
        vqa_metric: ``"current"`` or ``"legacy"`` official VQA code.
        box_matching: ``"any"`` or ``"merged"`` grounding box matching (evaluation and training labels).
        coco_retrieval: COCO retrieval ranking: ``"full"`` (5K), ``"1k"`` (5-fold mean) or ``"both"``.
        flickr30k_retrieval: Flickr30k retrieval ranking (``"full"``: its 1K test split).
        retrieval_fold_size: Images per fold of the ``"1k"`` ranking.
        eval_max_images: Evaluation during training on the first N images of each split (``None``: all).
        answer_pool_splits: VQA splits the answer pool is counted over (``None``: the training splits).
        answer_normalization: ``"text"`` or ``"official"`` comparison of answers while counting the pool.
    """

    name: str
    vqa_metric: str = "current"
    box_matching: str = "any"
    coco_retrieval: str = "full"
    flickr30k_retrieval: str = "full"
    retrieval_fold_size: int = 1000
    eval_max_images: int | None = None
    answer_pool_splits: tuple[str, ...] | None = None
    answer_normalization: str = "text"

    def __post_init__(self) -> None:
        choices = {
            "vqa_metric": VQA_METRICS,
            "box_matching": BOX_MATCHING,
            "coco_retrieval": RETRIEVAL_PROTOCOLS,
            "flickr30k_retrieval": RETRIEVAL_PROTOCOLS,
            "answer_normalization": ANSWER_NORMALIZATIONS,
        }
        for field_name, allowed in choices.items():
            if getattr(self, field_name) not in allowed:
                raise ValueError(
                    f"protocol {self.name!r}: {field_name} must be one of {allowed}, got {getattr(self, field_name)!r}"
                )
        fold = self.retrieval_fold_size
        if isinstance(fold, bool) or not isinstance(fold, int) or fold < 1:
            raise ValueError(f"protocol {self.name!r}: retrieval_fold_size must be a positive integer, got {fold!r}")
        cap = self.eval_max_images
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ValueError(f"protocol {self.name!r}: eval_max_images must be a positive integer or None, got {cap!r}")
        if self.answer_pool_splits is not None:
            splits = self.answer_pool_splits
            if isinstance(splits, str) or not all(isinstance(split, str) for split in splits) or not splits:
                raise ValueError(
                    f"protocol {self.name!r}: answer_pool_splits must be a non-empty list of split names or None, "
                    f"got {splits!r}"
                )
            object.__setattr__(self, "answer_pool_splits", tuple(splits))

    @property
    def legacy_vqa(self) -> bool:
        """Whether VQA is scored with the official code as it was before its 2021 fix."""
        return self.vqa_metric == "legacy"

    def answer_normalizer(self) -> Callable[[str], str]:
        """The function comparing ``multiple_choice_answer`` strings while counting the answer pool."""
        if self.answer_normalization == "official":
            from ..metrics.vqa import normalize_vqa_answer

            return normalize_vqa_answer
        from ..data.vqa import normalize_answer_text

        return normalize_answer_text

    def retrieval_protocol(self, corpus: str, num_images: int | None = None) -> str:
        """The ``protocol`` of `evaluate_retrieval` for a split of ``corpus``.

        Args:
            corpus: ``"coco"`` or ``"flickr30k"`` (`caption_corpus`).
            num_images: Images of the split. Folds need a multiple of ``retrieval_fold_size`` images: for a split
                of another size (a small corpus) the protocol's fold ranking falls back to the one ranking over the
                split, with a warning.
        """
        if corpus not in CAPTION_CORPORA:
            raise ValueError(f"corpus must be one of {CAPTION_CORPORA}, got {corpus!r}")
        protocol = self.coco_retrieval if corpus == "coco" else self.flickr30k_retrieval
        fold = self.retrieval_fold_size
        if protocol != "full" and num_images is not None and (num_images < fold or num_images % fold):
            logger.warning(
                "protocol %s: %s retrieval in folds of %d images needs a multiple of %d images, the split has %d; "
                "ranking the whole split instead",
                self.name,
                corpus,
                fold,
                fold,
                num_images,
            )
            return "full"
        return protocol

    def task_options(self, task: str, *, caption_corpus: str = "coco", num_images: int | None = None) -> dict:
        """The keyword arguments of ``task``'s evaluation function (`TaskSpec.evaluate_fn`) under the protocol.

        Args:
            task: The task.
            caption_corpus: Retrieval: the corpus of the evaluated Karpathy file (`caption_corpus`).
            num_images: Retrieval: images of the evaluated split (see `retrieval_protocol`).

        Returns:
            ``{"legacy": ...}`` for VQA, ``{"protocol": ..., "fold_size": ...}`` for retrieval,
            ``{"box_matching": ...}`` for grounding.
        """
        if task == "vqa":
            return {"legacy": self.legacy_vqa}
        if task == "retrieval":
            ranking = self.retrieval_protocol(caption_corpus, num_images)
            return {"protocol": ranking, "fold_size": self.retrieval_fold_size}
        if task == "grounding":
            return {"box_matching": self.box_matching}
        return {}

    def with_overrides(self, **changes: Any) -> EvaluationProtocol:
        """The protocol with some fields replaced; its name records them (``"current+vqa_metric=legacy"``).

        Fields whose value does not change are left out of the name; no change returns the protocol itself.
        """
        fields = {f.name for f in dataclasses.fields(self)} - {"name"}
        unknown = sorted(set(changes) - fields)
        if unknown:
            raise ValueError(f"unknown protocol field(s) {unknown}")
        if "answer_pool_splits" in changes and changes["answer_pool_splits"] is not None:
            changes["answer_pool_splits"] = tuple(changes["answer_pool_splits"])
        changed = {key: value for key, value in changes.items() if getattr(self, key) != value}
        if not changed:
            return self
        suffix = "+".join(f"{key}={_spelled(value)}" for key, value in changed.items())
        return dataclasses.replace(self, name=f"{self.name}+{suffix}", **changed)

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (what results files record)."""
        data = dataclasses.asdict(self)
        if data["answer_pool_splits"] is not None:
            data["answer_pool_splits"] = list(data["answer_pool_splits"])
        return data


def _spelled(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(item) for item in value)
    return str(value)


PROTOCOLS: dict[str, EvaluationProtocol] = {
    "current": EvaluationProtocol(name="current"),
    "paper": EvaluationProtocol(
        name="paper",
        vqa_metric="legacy",
        box_matching="merged",
        coco_retrieval="both",
        flickr30k_retrieval="full",
        eval_max_images=1000,
        answer_pool_splits=("train", "val"),
        answer_normalization="official",
    ),
}
"""The named protocols; ``current`` is the default."""


def evaluation_protocol(protocol: str | EvaluationProtocol) -> EvaluationProtocol:
    """The protocol named ``protocol`` (a protocol is returned as it is).

    Raises:
        ValueError: If no protocol has that name (the message names the known ones).
    """
    if isinstance(protocol, EvaluationProtocol):
        return protocol
    try:
        return PROTOCOLS[protocol]
    except (KeyError, TypeError):
        raise ValueError(f"unknown evaluation protocol {protocol!r}; choose from {list(PROTOCOLS)}") from None


def caption_corpus(path: str | os.PathLike) -> str:
    """``"coco"`` or ``"flickr30k"``: the corpus of a Karpathy split file.

    Read from the file's first image entry (COCO entries have ``cocoid`` or ``filepath``, Flickr30k's have
    neither); a file without entries is named by its file name (``dataset_coco.json``,
    ``dataset_flickr30k.json``).

    Raises:
        ValueError: If the file has no entry and its name names neither corpus.
    """
    path = Path(path)
    entries = iter_json_array(path, "images")
    try:
        first = next(entries, None)
    finally:
        entries.close()
    if first is not None:
        return "coco" if isinstance(first, dict) and ("cocoid" in first or "filepath" in first) else "flickr30k"
    name = path.name.lower()
    for corpus in CAPTION_CORPORA:
        if corpus in name:
            return corpus
    raise ValueError(f"{path}: no image entry, and the file name names neither COCO nor Flickr30k")


def first_images(rows: Any, max_images: int | None) -> Any:
    """The rows of the first ``max_images`` distinct images of ``rows``, in file order, with all their rows.

    Args:
        rows: Annotation rows with an ``image_id`` (a map-style ``datasets.Dataset`` or a sequence of dicts).
        max_images: How many images to keep; ``None`` keeps every row.

    Returns:
        Rows of the same kind (``Dataset.select`` of the kept rows, or a list).
    """
    if max_images is None:
        return rows
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise ValueError(f"max_images must be a positive integer or None, got {max_images!r}")
    if hasattr(rows, "select") and hasattr(rows, "column_names"):
        image_ids: Sequence[Any] = rows["image_id"]
    elif isinstance(rows, Sequence):
        image_ids = [row["image_id"] for row in rows]
    else:
        raise TypeError(f"first_images needs a map-style dataset or a list of rows, got {type(rows).__name__}")
    kept: set[Any] = set()
    indices = []
    for index, image_id in enumerate(image_ids):
        if image_id not in kept:
            if len(kept) == max_images:
                continue
            kept.add(image_id)
        indices.append(index)
    if hasattr(rows, "select") and hasattr(rows, "column_names"):
        return rows if len(indices) == len(image_ids) else rows.select(indices)
    return [rows[index] for index in indices]
