"""Run a model over a task's evaluation split and score it with the official metrics.

Each function takes an already loaded model (a single-task head or the multi-task model) and the task's encoded
dataset from ``hierarchical_vl.data`` (or its rows plus the tokenizer and region store to encode them), and
returns a flat dict of metrics in percent, e.g.::

    {"vqa/overall": 61.2, "vqa/yes/no": 79.1, "vqa/number": 40.3, "vqa/other": 52.9, "vqa/num_questions": 214354}
    {"retrieval/i2t_r1": ..., "retrieval/t2i_r10": ..., "retrieval/rsum": ..., "retrieval/num_images": 1000}
    {"grounding/r1": ..., "grounding/r5": ..., "grounding/r10": ..., "grounding/upper_bound": ...}

The trainer calls them at stage ends; ``hvl evaluate`` calls them for a checkpoint. Rows are encoded with the
model's own input caps (``model.config``, see `TaskSpec.max_words`), as in training.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data import EncodedCaptionDataset, EncodedGroundingDataset, EncodedVQADataset
from ..data.collators import region_tensors, text_tensors
from ..metrics import coco_1k_5fold, grounding_recall, retrieval_recall, vqa_accuracy, write_vqa_submission
from ..tasks import TASK_SPECS, model_tasks, task_spec
from .retrieval_ranking import RetrievalScorer, shortlist_agreement

__all__ = [
    "QUESTION_TYPE_PREFIX",
    "RETRIEVAL_PROTOCOLS",
    "evaluate_grounding",
    "evaluate_retrieval",
    "evaluate_tasks",
    "evaluate_vqa",
    "model_tasks",
    "retrieval_inputs",
    "vqa_metrics",
]

logger = logging.getLogger(__name__)

RETRIEVAL_PROTOCOLS = ("full", "1k", "both")
"""The ``protocol`` values of `evaluate_retrieval`."""

QUESTION_TYPE_PREFIX = "vqa/question_type/"
"""Prefix of the per-question-type VQA accuracies in the flat metrics (``vqa/question_type/how many``)."""


def _check_task(model: torch.nn.Module, task: str) -> None:
    if task not in model_tasks(model):
        raise ValueError(f"{type(model).__name__} has no {task} decoder; it can evaluate {model_tasks(model)}")


def _device(model: torch.nn.Module, device: str | torch.device | None) -> torch.device:
    if device is None:
        return next(model.parameters()).device
    device = torch.device(device)
    model.to(device)
    return device


def _run_task(model: torch.nn.Module, task: str, batch: dict[str, Any], device: torch.device) -> Any:
    """The model's output on a collated batch: only the task's model inputs go to the model."""
    inputs = {name: batch[name].to(device) for name in task_spec(task).input_names if name in batch}
    return model.forward_task(task, **inputs)


def _batches(dataset, collator, batch_size: int, num_workers: int, progress: bool, description: str):
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, collate_fn=collator, num_workers=num_workers
    )
    return tqdm(loader, desc=description, unit="batch", disable=not progress)


def _encoded(dataset: Any, task: str, tokenizer: Any, store: Any, config: Any) -> Any:
    """``dataset`` itself when already encoded, else its rows encoded with ``tokenizer``, ``store`` and the input
    caps of ``config``."""
    spec = task_spec(task)
    if isinstance(dataset, spec.dataset_class):
        return dataset
    if tokenizer is None or store is None:
        raise ValueError(f"pass an encoded {spec.dataset_class.__name__}, or rows together with tokenizer= and store=")
    return spec.encode(dataset, store, tokenizer, config)


def evaluate_vqa(
    model: torch.nn.Module,
    dataset: EncodedVQADataset | Any,
    *,
    tokenizer: Any = None,
    store: Any = None,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    max_regions: int | None = None,
    legacy: bool = False,
    submission_path: str | os.PathLike | None = None,
    num_workers: int = 0,
    progress: bool = False,
) -> dict[str, float]:
    """VQA accuracy overall and per answer type (official evaluation), and the predictions' submission file.

    The predicted answer of a question is the answer pool's entry (``model.config.id2label``) with the highest logit.

    Args:
        model: A VQA head or the multi-task model.
        dataset: An `EncodedVQADataset`, or VQA rows (``hierarchical_vl.data.load_vqa``) with ``tokenizer`` and
            ``store``.
        tokenizer: The model's tokenizer (or processor), to encode rows (at ``config.max_question_words``).
        store: The region-feature store, to encode rows.
        batch_size: Questions per forward pass.
        device: Where to run (the model is moved there); the model's device by default.
        max_regions: Cap on regions per image (``model.config.max_regions`` by default).
        legacy: Score with the official code as it was before its 2021 fix (how papers of 2015-2020 were scored).
        submission_path: Also write the predictions in the official submission format here.
        num_workers: DataLoader workers.
        progress: Show a progress bar.

    Returns:
        ``{"vqa/overall", "vqa/yes/no", "vqa/number", "vqa/other", "vqa/num_questions"}`` (types present only)
        and ``vqa/question_type/<type>`` per question type when the annotations have them (see `vqa_metrics`);
        only ``vqa/num_questions`` for a split without annotations (test), whose answers go to the submission.
    """
    _check_task(model, "vqa")
    answer_pool = [model.config.id2label[i] for i in range(model.config.num_answers)]
    dataset = _encoded(dataset, "vqa", tokenizer, store, model.config)
    device = _device(model, device)
    collator = task_spec("vqa").make_collator(
        dataset, model.config, max_regions=max_regions or model.config.max_regions
    )
    predictions: dict[int, str] = {}
    references: dict[int, list[str]] = {}
    answer_types: dict[int, str] = {}
    question_types: dict[int, str] = {}
    with model.inference():
        for batch in _batches(dataset, collator, batch_size, num_workers, progress, "vqa"):
            best = _run_task(model, "vqa", batch, device).logits.argmax(dim=-1).cpu().tolist()  # (B,)
            metadata = batch["metadata"]
            for row, question_id in enumerate(metadata["question_id"]):
                question_id = int(question_id)
                predictions[question_id] = answer_pool[best[row]]
                references[question_id] = metadata["answers"][row]
                answer_types[question_id] = metadata["answer_type"][row]
                question_types[question_id] = metadata["question_type"][row]
    if submission_path is not None:
        write_vqa_submission(predictions, submission_path)
    return vqa_metrics(predictions, references, answer_types, question_types, legacy=legacy)


def vqa_metrics(
    predictions: dict[int, str],
    references: dict[int, list[str]],
    answer_types: dict[int, str],
    question_types: dict[int, str],
    legacy: bool = False,
) -> dict[str, float]:
    """The flat VQA metrics of predictions (official accuracy, via `vqa_accuracy`), as `evaluate_vqa` reports them.

    Questions without answers (test splits) are counted but not scored. The per-question-type accuracies
    (``vqa/question_type/<type>``) are added when the questions have types.

    Args:
        predictions: Question id -> predicted answer.
        references: Question id -> its 10 human answers (empty when unannotated).
        answer_types: Question id -> answer type.
        question_types: Question id -> question type (``""`` when the annotations have none).
        legacy: Score with the official code as it was before its 2021 fix.
    """
    metrics: dict[str, float] = {"vqa/num_questions": len(predictions)}
    scored = [q for q, answers in references.items() if answers]
    if not scored:
        return metrics
    with_kinds = any(question_types[q] for q in scored)
    result = vqa_accuracy(
        {q: predictions[q] for q in scored},
        {q: references[q] for q in scored},
        {q: answer_types[q] for q in scored},
        legacy=legacy,
        question_types={q: question_types[q] for q in scored} if with_kinds else None,
    )
    metrics["vqa/overall"] = result["overall"]
    metrics.update({f"vqa/{name}": value for name, value in result["per_answer_type"].items()})
    for kind, value in result.get("per_question_type", {}).items():
        metrics[f"{QUESTION_TYPE_PREFIX}{kind}"] = value
    return metrics


def evaluate_retrieval(
    model: torch.nn.Module,
    dataset: EncodedCaptionDataset | Any,
    *,
    tokenizer: Any = None,
    store: Any = None,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    max_regions: int | None = None,
    protocol: str = "full",
    fold_size: int = 1000,
    shortlist: int | None = None,
    first_stage: str = "dual-encoder",
    shortlist_check: bool = False,
    cache_dir: str | os.PathLike | None = None,
    scorer: RetrievalScorer | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Image annotation and image retrieval Recall@K over the split's images x captions score matrix.

    The matrix is computed exactly by [`RetrievalScorer`] (or in two stages with ``shortlist``).

    Args:
        model: A retrieval head or the multi-task model.
        dataset: An `EncodedCaptionDataset`, or caption rows (``hierarchical_vl.data.load_karpathy_captions``)
            with ``tokenizer`` and ``store``.
        tokenizer: The model's tokenizer (or processor), to encode rows (at ``config.max_caption_words``).
        store: The region-feature store, to encode rows.
        batch_size: Pairs per forward pass.
        device: Where to score; the model's device by default.
        dtype: ``torch.bfloat16`` to score pairs under autocast (GPU), ``None`` for float32.
        max_regions: Cap on regions per image (``model.config.max_regions`` by default).
        protocol: ``full``: one ranking over all images of the split (COCO 5K, Flickr30k 1K); ``1k``: the mean over
            folds of ``fold_size`` images, each ranked on its own (COCO 1K; only the folds' pairs are scored);
            ``both``: the full matrix and its folds.
        fold_size: Images per fold of the ``1k`` protocol.
        shortlist: Two-stage ranking: exact scores only for each query's top-``shortlist`` candidates of a cheap
            first stage.
        first_stage: The shortlist's first stage, ``dual-encoder`` or ``first-layer`` (see
            `RetrievalScorer.first_stage_scores`).
        shortlist_check: With ``shortlist``, also compute the exact matrix and report how often the two agree
            (``retrieval/shortlist/...``, in percent).
        cache_dir: Save finished score blocks here so that an interrupted evaluation resumes.
        scorer: A configured scorer to use instead of building one (its statistics stay readable afterwards).
        progress: Show progress bars.

    Returns:
        ``retrieval/{i2t,t2i}_r{1,5,10}``, ``_medr``, ``_meanr``, ``retrieval/rsum`` for the full ranking,
        ``retrieval/1k/...`` for the folds, ``retrieval/num_images`` and ``retrieval/num_captions``.
    """
    _check_task(model, "retrieval")
    if protocol not in RETRIEVAL_PROTOCOLS:
        raise ValueError(f"protocol must be one of {RETRIEVAL_PROTOCOLS}, got {protocol!r}")
    if shortlist_check and shortlist is None:
        raise ValueError("shortlist_check needs shortlist")
    dataset = _encoded(dataset, "retrieval", tokenizer, store, model.config)
    if scorer is None:
        scorer = RetrievalScorer(model, batch_size=batch_size, dtype=dtype, device=device)
    text_inputs, image_inputs, caption_image = retrieval_inputs(dataset, max_regions or model.config.max_regions)
    n_images, n_captions = len(dataset.images), len(dataset)
    metrics: dict[str, float] = {"retrieval/num_images": n_images, "retrieval/num_captions": n_captions}

    def cache(name: str) -> str | None:
        return None if cache_dir is None else os.path.join(cache_dir, name)

    def score(images: np.ndarray, captions: np.ndarray, name: str, k: int | None) -> np.ndarray:
        whole = len(images) == n_images and len(captions) == n_captions  # no copy of the whole split's features
        text = text_inputs if whole else {key: value[captions] for key, value in text_inputs.items()}
        image = image_inputs if whole else {key: value[images] for key, value in image_inputs.items()}
        return scorer.score_matrix(
            text, image, cache_dir=cache(name), progress=progress, shortlist=k, first_stage=first_stage
        )

    all_images, all_captions = np.arange(n_images), np.arange(n_captions)
    if protocol in ("full", "both"):
        matrix = score(
            all_images,
            all_captions,
            "full" if shortlist is None else f"full_{first_stage}{shortlist}",
            shortlist,
        )
        metrics.update({f"retrieval/{name}": value for name, value in retrieval_recall(matrix, caption_image).items()})
        if shortlist_check:
            exact = score(all_images, all_captions, "full", None)
            metrics.update(
                {
                    f"retrieval/shortlist/{name}": round(100.0 * value, 2)
                    for name, value in shortlist_agreement(matrix, exact).items()
                }
            )
            metrics.update(
                {f"retrieval/exact/{name}": value for name, value in retrieval_recall(exact, caption_image).items()}
            )
        if protocol == "both":
            folds = _fold_count(n_images, fold_size)
            result = coco_1k_5fold(matrix, caption_image, num_folds=folds, fold_size=fold_size)
            metrics.update({f"retrieval/1k/{name}": value for name, value in result.items()})
    else:
        folds = _fold_count(n_images, fold_size)
        counter = iter(range(folds))

        def fold_scores(images: np.ndarray, captions: np.ndarray) -> np.ndarray:
            fold = next(counter)
            name = f"fold{fold}" if shortlist is None else f"fold{fold}_{first_stage}{shortlist}"
            return score(images, captions, name, shortlist)

        result = coco_1k_5fold(fold_scores, caption_image, num_folds=folds, fold_size=fold_size)
        metrics.update({f"retrieval/1k/{name}": value for name, value in result.items()})
    if shortlist is not None:
        metrics["retrieval/shortlist_k"] = shortlist
    return metrics


def retrieval_inputs(
    dataset: EncodedCaptionDataset, max_regions: int | None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], np.ndarray]:
    """The inputs of a caption split's whole score matrix (`RetrievalScorer.score_matrix`) and its ground truth.

    Args:
        dataset: The encoded caption split.
        max_regions: Cap on regions per image (``None`` keeps them all).

    Returns:
        ``text_inputs`` (``input_ids``, ``attention_mask`` `(C, N)`), ``image_inputs`` (``region_features``
        `(I, T, F)`, ``region_mask``, ``region_boxes``) and ``caption_image`` `(C,)`, each caption's image row.
    """
    text_inputs = text_tensors(dataset, np.arange(len(dataset)))  # (C, N)
    image_inputs, _ = region_tensors(dataset.store, dataset.images_store_index, max_regions)
    return text_inputs, image_inputs, dataset.caption_image


def _fold_count(n_images: int, fold_size: int) -> int:
    if n_images < fold_size or n_images % fold_size:
        raise ValueError(
            f"the fold protocol needs a multiple of {fold_size} images (COCO 1K: 5000 = 5 x 1000), the split has "
            f"{n_images}; use protocol='full'"
        )
    return n_images // fold_size


def evaluate_grounding(
    model: torch.nn.Module,
    dataset: EncodedGroundingDataset | Any,
    *,
    tokenizer: Any = None,
    store: Any = None,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    max_regions: int | None = None,
    iou_threshold: float = 0.5,
    box_matching: str = "any",
    num_workers: int = 0,
    progress: bool = False,
) -> dict[str, float]:
    """Phrase grounding Recall@K: a phrase counts when one of its top-K regions has IoU >= 0.5 with its boxes
    (any of them, or their merged box: ``box_matching``).

    Args:
        model: A grounding head or the multi-task model.
        dataset: An `EncodedGroundingDataset`, or Flickr30k Entities rows
            (``hierarchical_vl.data.load_flickr30k_entities``) with ``tokenizer`` and ``store``.
        tokenizer: The model's tokenizer (or processor), to encode rows (at ``config.max_caption_words``, as in
            training; a phrase beyond the cap is left out and counted in the dataset's ``excluded``).
        store: The region-feature store, to encode rows.
        batch_size: Sentences per forward pass.
        device: Where to run (the model is moved there); the model's device by default.
        max_regions: Cap on regions per image (``model.config.max_regions`` by default).
        iou_threshold: IoU a region needs with a ground-truth box of the phrase.
        box_matching: ``"any"``: IoU with one of the phrase's boxes; ``"merged"``: IoU with their union box
            (Plummer et al., the paper's protocol). See ``hierarchical_vl.metrics.grounding``.
        num_workers: DataLoader workers.
        progress: Show a progress bar.

    Returns:
        ``{"grounding/r1", "grounding/r5", "grounding/r10", "grounding/upper_bound", "grounding/num_phrases"}``;
        the upper bound is the share of phrases that any candidate region grounds.
    """
    _check_task(model, "grounding")
    dataset = _encoded(dataset, "grounding", tokenizer, store, model.config)
    device = _device(model, device)
    collator = task_spec("grounding").make_collator(
        dataset,
        model.config,
        max_regions=max_regions or model.config.max_regions,
        iou_threshold=iou_threshold,
        box_matching=box_matching,
    )
    region_scores, region_boxes, gt_boxes = [], [], []
    with model.inference():
        for batch in _batches(dataset, collator, batch_size, num_workers, progress, "grounding"):
            logits = _run_task(model, "grounding", batch, device).logits
            logits = logits.float().cpu().numpy()  # (B, H, T)
            metadata = batch["metadata"]
            for row, boxes in enumerate(metadata["region_boxes"]):
                for phrase, truth in enumerate(metadata["gt_boxes"][row]):
                    region_scores.append(logits[row, phrase, : len(boxes)])
                    region_boxes.append(np.asarray(boxes))
                    gt_boxes.append(np.asarray(truth))
    if not region_scores:
        raise ValueError("the grounding split has no grounded phrase to evaluate")
    result = grounding_recall(
        region_scores, region_boxes, gt_boxes, iou_threshold=iou_threshold, box_matching=box_matching
    )
    metrics = {f"grounding/{name}": value for name, value in result.items() if name != "num_phrases"}
    metrics["grounding/num_phrases"] = result["num_phrases"]
    return metrics


def evaluate_tasks(
    model: torch.nn.Module,
    datasets: dict[str, Any],
    *,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    **task_options: dict[str, Any],
) -> dict[str, float]:
    """Evaluate several tasks with their evaluation functions (`TaskSpec.evaluate_fn`), in `TASKS` order.

    Args:
        model: The model.
        datasets: ``{"vqa": EncodedVQADataset, "retrieval": EncodedCaptionDataset, ...}``.
        batch_size: Examples per forward pass (VQA, grounding) and pairs per forward pass (retrieval).
        device: Where to run.
        **task_options: Per task, extra keyword arguments of its function, e.g. ``retrieval={"shortlist": 20}``.

    Returns:
        The merged flat metrics of the tasks.
    """
    unknown = sorted(set(datasets) - set(TASK_SPECS))
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; choose from {sorted(TASK_SPECS)}")
    metrics: dict[str, float] = {}
    for task, spec in TASK_SPECS.items():
        if task in datasets:
            options = dict(task_options.get(task) or {})
            metrics.update(spec.evaluate_fn(model, datasets[task], batch_size=batch_size, device=device, **options))
    return metrics
