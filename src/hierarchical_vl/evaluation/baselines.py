"""Reference rows for the evaluation tables: what chance and simple priors score on the same splits.

A model's numbers mean little without them: on a corpus whose answers depend mostly on the question type, "the most
frequent answer per question type" already scores well, and a Recall@10 over 50 captions is not small by chance.

* VQA: `QuestionTypePrior`, the most frequent training answer (``multiple_choice_answer``) of each question type
  (the overall most frequent answer for a type unseen in training), scored with the official metric
  (`vqa_accuracy`, through `vqa_metrics`) -- overall, per answer type and per question type.
* Retrieval: `retrieval_chance_recall`, the exact expected Recall@K of a random ranking. Image annotation: an image
  with ``c`` of the ``N`` captions is hit at K with probability ``1 - C(N - c, K) / C(N, K)``, averaged over
  images; image retrieval: ``K / I`` for ``I`` images.
* Grounding: `grounding_chance_recall`, the exact expected Recall@K of a random order of a phrase's candidate
  regions (the same formula with the phrase's ``T`` regions, ``c`` of them correct), averaged over phrases;
  "largest box" and "first box" rank the regions by area and by their order in the feature file, scored with the
  real metric (`grounding_recall`).

`prior_metrics` computes all of them on the encoded evaluation datasets, as flat metrics keyed like the model's
(``vqa/overall``, ``retrieval/i2t_r1``, ``grounding/r1``), one dict per reference row (`PRIOR_NAMES`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..metrics import correct_regions, grounding_recall
from .task_evaluation import vqa_metrics

__all__ = [
    "PRIOR_NAMES",
    "QuestionTypePrior",
    "grounding_box_prior_metrics",
    "grounding_candidates",
    "grounding_chance_recall",
    "prior_metrics",
    "retrieval_chance_recall",
    "retrieval_fold_chance_recall",
    "vqa_prior_metrics",
]

QUESTION_TYPE_PRIOR = "most frequent answer per question type"
CHANCE = "chance"
LARGEST_BOX = "largest box"
FIRST_BOX = "first box"
PRIOR_NAMES = (QUESTION_TYPE_PRIOR, CHANCE, LARGEST_BOX, FIRST_BOX)
"""The reference rows of `prior_metrics`, in the order tables show them."""


def _hit_probability(candidates: int, correct: int, k: int) -> float:
    """Probability that a uniformly random order of ``candidates`` items puts one of the ``correct`` ones in its
    first ``k``: ``1 - C(candidates - correct, k) / C(candidates, k)``, as a product that never overflows."""
    if correct <= 0 or candidates <= 0:
        return 0.0
    k = min(k, candidates)
    miss = 1.0
    for j in range(correct):  # C(n - c, k) / C(n, k) = prod_j (n - k - j) / (n - j)
        miss *= max(candidates - k - j, 0) / (candidates - j)
    return 1.0 - miss


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty sequence of positive integers, got {ks!r}")
    return tuple(int(k) for k in ks)


def retrieval_chance_recall(caption_to_image: Any, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Exact expected Recall@K of a random ranking, in both directions, in percent rounded to 2 decimals.

    Args:
        caption_to_image: Image index of every caption, shape (N,) (any number of captions per image).
        ks: The K of Recall@K.

    Returns:
        ``{"i2t_r1", ..., "t2i_r10", "rsum"}`` as [`hierarchical_vl.metrics.retrieval_recall`] names them.
    """
    ks = _check_ks(ks)
    c2i = np.asarray(caption_to_image)
    if c2i.ndim != 1 or c2i.size == 0 or not np.issubdtype(c2i.dtype, np.integer) or c2i.min() < 0:
        raise ValueError(f"caption_to_image must be a non-empty 1-D array of image indices, got {c2i!r}")
    per_image = np.bincount(c2i)
    per_image = per_image[per_image > 0]  # (I,) captions of each image
    n_captions, n_images = int(c2i.size), int(per_image.size)
    out: dict[str, float] = {}
    for k in ks:
        out[f"i2t_r{k}"] = 100.0 * float(np.mean([_hit_probability(n_captions, int(c), k) for c in per_image]))
    for k in ks:
        out[f"t2i_r{k}"] = 100.0 * min(k, n_images) / n_images
    out["rsum"] = sum(out.values())
    return {name: round(value, 2) for name, value in out.items()}


def retrieval_fold_chance_recall(
    caption_to_image: Any, fold_size: int = 1000, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """[`retrieval_chance_recall`] averaged over folds of ``fold_size`` images, as the COCO "1K test" ranks them
    (fold k: images ``fold_size * k`` ... ``fold_size * (k + 1) - 1`` and their captions; `coco_1k_5fold`).

    Raises:
        ValueError: If the number of images is not a positive multiple of ``fold_size``.
    """
    c2i = np.asarray(caption_to_image)
    n_images = int(c2i.max()) + 1 if c2i.size else 0
    if fold_size < 1 or n_images < fold_size or n_images % fold_size:
        raise ValueError(f"{n_images} images do not make folds of {fold_size}")
    folds = [
        retrieval_chance_recall(c2i[(c2i // fold_size) == k] % fold_size, ks) for k in range(n_images // fold_size)
    ]
    return {name: round(float(np.mean([fold[name] for fold in folds])), 2) for name in folds[0]}


def grounding_chance_recall(
    region_boxes: Sequence[Any],
    gt_boxes: Sequence[Any],
    ks: Sequence[int] = (1, 5, 10),
    iou_threshold: float = 0.5,
    box_matching: str = "any",
) -> dict[str, float]:
    """Exact expected phrase grounding Recall@K of a random order of each phrase's candidate regions.

    Args:
        region_boxes: Per phrase, its candidate boxes, shape (T_p, 4).
        gt_boxes: Per phrase, its ground-truth boxes, shape (G_p, 4).
        ks: The K of Recall@K.
        iou_threshold: IoU a region needs with a ground-truth box to be correct (`correct_regions`).
        box_matching: ``any`` ground-truth box or their ``merged`` box (`correct_regions`).

    Returns:
        ``{"r1", "r5", "r10", "upper_bound", "num_phrases"}`` in percent rounded to 2 decimals, as
        [`hierarchical_vl.metrics.grounding_recall`] names them.
    """
    ks = _check_ks(ks)
    if len(region_boxes) != len(gt_boxes) or not len(gt_boxes):
        raise ValueError(f"got candidates of {len(region_boxes)} phrases and ground truth of {len(gt_boxes)}")
    counts = [
        (
            len(boxes),
            int(correct_regions(np.asarray(boxes), np.asarray(truth), iou_threshold, box_matching=box_matching).sum()),
        )
        for boxes, truth in zip(region_boxes, gt_boxes)
    ]
    out: dict[str, float] = {
        f"r{k}": round(100.0 * float(np.mean([_hit_probability(t, c, k) for t, c in counts])), 2) for k in ks
    }
    out["upper_bound"] = round(100.0 * float(np.mean([c > 0 for _, c in counts])), 2)
    out["num_phrases"] = len(counts)
    return out


def grounding_candidates(dataset: Any, max_regions: int | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per grounded phrase of an `EncodedGroundingDataset`, its candidate boxes and its ground-truth boxes.

    The candidates are the first ``max_regions`` regions of the phrase's image in the region store, in the
    order of the feature file, as the model sees them in `evaluate_grounding`.

    Returns:
        ``(region_boxes, gt_boxes)``: lists of (T_p, 4) and (G_p, 4) float arrays.
    """
    store = dataset.store
    region_boxes, gt_boxes = [], []
    for index in range(len(dataset)):
        image = int(dataset.image_index[index])
        start = int(store.offsets[image])
        count = int(store.num_regions[image])
        count = count if max_regions is None else min(count, max_regions)
        boxes = np.asarray(store.boxes[start : start + count], dtype=np.float64)  # (T, 4)
        for phrase in dataset.phrases(index):
            region_boxes.append(boxes)
            gt_boxes.append(np.asarray(dataset.gt_boxes[dataset.box_offsets[phrase] : dataset.box_offsets[phrase + 1]]))
    if not gt_boxes:
        raise ValueError("the grounding split has no grounded phrase to evaluate")
    return region_boxes, gt_boxes


def grounding_box_prior_metrics(
    region_boxes: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    rule: str,
    iou_threshold: float = 0.5,
    box_matching: str = "any",
) -> dict[str, float]:
    """Grounding Recall@K of ranking the candidate regions by a rule that ignores the phrase.

    Args:
        region_boxes: Per phrase, its candidate boxes, shape (T_p, 4), in file order.
        gt_boxes: Per phrase, its ground-truth boxes.
        rule: ``"largest box"`` (by area, largest first) or ``"first box"`` (file order).
        iou_threshold: IoU a region needs with a ground-truth box.
        box_matching: ``any`` ground-truth box or their ``merged`` box.

    Returns:
        The result of [`hierarchical_vl.metrics.grounding_recall`] for those scores.
    """
    if rule == LARGEST_BOX:
        scores = [(b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) for b in region_boxes]
    elif rule == FIRST_BOX:
        scores = [-np.arange(len(b), dtype=np.float64) for b in region_boxes]
    else:
        raise ValueError(f"unknown grounding prior {rule!r}; choose {LARGEST_BOX!r} or {FIRST_BOX!r}")
    return grounding_recall(scores, region_boxes, gt_boxes, iou_threshold=iou_threshold, box_matching=box_matching)


@dataclass(frozen=True)
class QuestionTypePrior:
    """The VQA prior "most frequent answer per question type", learned from training annotations.

    Attributes:
        answers: Question type -> its most frequent training answer (ties: the alphabetically first).
        fallback: The most frequent training answer overall, for question types unseen in training.
        counts: Question type -> training questions of that type.
    """

    answers: Mapping[str, str]
    fallback: str
    counts: Mapping[str, int]

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> QuestionTypePrior:
        """Learns the prior from VQA rows (``load_vqa``: ``question_type`` and ``multiple_choice_answer``).

        Raises:
            ValueError: If no row has an answer.
        """
        per_type: dict[str, Counter[str]] = {}
        overall: Counter[str] = Counter()
        for row in rows:
            answer = row.get("multiple_choice_answer") or ""
            if not answer:
                continue
            per_type.setdefault(row.get("question_type") or "", Counter())[answer] += 1
            overall[answer] += 1
        if not overall:
            raise ValueError("the VQA prior needs annotated training questions (multiple_choice_answer); none found")

        def most_frequent(counter: Counter[str]) -> str:
            return min(counter, key=lambda answer: (-counter[answer], answer))

        return cls(
            answers={kind: most_frequent(counter) for kind, counter in sorted(per_type.items())},
            fallback=most_frequent(overall),
            counts={kind: sum(counter.values()) for kind, counter in sorted(per_type.items())},
        )

    @classmethod
    def from_corpus(cls, layout: Any, splits: Sequence[str], answer_vocab: Sequence[str]) -> QuestionTypePrior:
        """Learns the prior from the VQA training splits ``splits`` of a corpus (a `CorpusLayout`).

        Args:
            layout: Where the corpus is.
            splits: The training splits (``["train"]``; the paper's run 2 adds ``val``).
            answer_vocab: The answer pool the rows' soft labels refer to.
        """
        return cls.from_rows(
            row
            for split in splits
            for row in layout.read_split("vqa", split, answer_vocab=list(answer_vocab), streaming=True)
        )

    def answer(self, question_type: str) -> str:
        """The prior's answer to a question of ``question_type``."""
        return self.answers.get(question_type, self.fallback)


def vqa_prior_metrics(prior: QuestionTypePrior, dataset: Any, legacy: bool = False) -> dict[str, float]:
    """The prior's flat VQA metrics on an `EncodedVQADataset`, keyed as `evaluate_vqa` keys the model's.

    Args:
        prior: The learned prior.
        dataset: The evaluation questions (with their 10 answers and question types).
        legacy: Score with the official code as it was before its 2021 fix.
    """
    predictions, references, answer_types, question_types = {}, {}, {}, {}
    for row in range(len(dataset)):
        question_id = int(dataset.question_ids[row])
        kind = dataset.question_type_table[dataset.question_type_codes[row]]
        predictions[question_id] = prior.answer(kind)
        references[question_id] = [dataset.answer_table[c] for c in dataset.answer_codes[row] if c >= 0]
        answer_types[question_id] = dataset.answer_type_table[dataset.answer_type_codes[row]]
        question_types[question_id] = kind
    return vqa_metrics(predictions, references, answer_types, question_types, legacy=legacy)


def prior_metrics(
    datasets: Mapping[str, Any],
    *,
    vqa_prior: QuestionTypePrior | None = None,
    max_regions: int | None = None,
    iou_threshold: float = 0.5,
    legacy: bool = False,
    box_matching: str = "any",
    retrieval_ranking: str = "full",
    fold_size: int = 1000,
) -> dict[str, dict[str, float]]:
    """The reference rows of the evaluation tables on the encoded evaluation datasets.

    Args:
        datasets: ``{"vqa": EncodedVQADataset, "retrieval": EncodedCaptionDataset, "grounding": ...}`` (any
            subset; VQA needs ``vqa_prior`` and annotations).
        vqa_prior: The VQA prior learned from the training annotations; no VQA row without it.
        max_regions: Candidate regions per image for grounding (the model's ``config.max_regions``).
        iou_threshold: Grounding's IoU threshold.
        legacy: VQA scored with the pre-2021 official code.
        box_matching: Grounding against ``any`` ground-truth box or their ``merged`` box.
        retrieval_ranking: As the model's retrieval is ranked: ``full`` (one ranking over the split), ``1k``
            (folds of ``fold_size`` images, keys ``retrieval/1k/...``) or ``both``.
        fold_size: Images per fold.

    The arguments after ``iou_threshold`` follow the evaluation protocol (`EvaluationProtocol.task_options`), so
    that the reference rows are scored as the model is.

    Returns:
        Row name (`PRIOR_NAMES`) -> flat metrics (``vqa/...``, ``retrieval/...``, ``grounding/...``); rows
        without any metric are left out.
    """
    rows: dict[str, dict[str, float]] = {name: {} for name in PRIOR_NAMES}
    vqa = datasets.get("vqa")
    if vqa is not None and vqa_prior is not None and vqa.has_labels:
        rows[QUESTION_TYPE_PRIOR].update(vqa_prior_metrics(vqa_prior, vqa, legacy=legacy))
    retrieval = datasets.get("retrieval")
    if retrieval is not None:
        if retrieval_ranking in ("full", "both"):
            chance = retrieval_chance_recall(retrieval.caption_image)
            rows[CHANCE].update({f"retrieval/{name}": value for name, value in chance.items()})
        if retrieval_ranking in ("1k", "both"):
            chance = retrieval_fold_chance_recall(retrieval.caption_image, fold_size)
            rows[CHANCE].update({f"retrieval/1k/{name}": value for name, value in chance.items()})
        rows[CHANCE]["retrieval/num_images"] = len(retrieval.images)
        rows[CHANCE]["retrieval/num_captions"] = len(retrieval)
    grounding = datasets.get("grounding")
    if grounding is not None:
        candidates, truth = grounding_candidates(grounding, max_regions)
        chance = grounding_chance_recall(candidates, truth, iou_threshold=iou_threshold, box_matching=box_matching)
        rows[CHANCE].update({f"grounding/{name}": value for name, value in chance.items()})
        for rule in (LARGEST_BOX, FIRST_BOX):
            result = grounding_box_prior_metrics(candidates, truth, rule, iou_threshold, box_matching)
            rows[rule].update({f"grounding/{name}": value for name, value in result.items()})
    return {name: metrics for name, metrics in rows.items() if metrics}
