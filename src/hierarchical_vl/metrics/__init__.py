"""Evaluation metrics: official VQA accuracy, image-caption retrieval Recall@K and phrase grounding Recall@K.

The metrics are plain functions over numpy arrays and Python containers (no torch, no model code). The same
metrics are available as ``evaluate`` modules through [`load_metric`], which loads them from this installed
package without network access.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from .grounding import BOX_MATCHING, box_iou, correct_regions, grounding_ranks, grounding_recall, merge_boxes
from .retrieval import coco_1k_5fold, retrieval_ranks, retrieval_recall
from .vqa import (
    ANSWER_TYPES,
    normalize_vqa_answer,
    read_vqa_submission,
    vqa_accuracy,
    vqa_question_accuracy,
    write_vqa_submission,
)

__all__ = [
    "ANSWER_TYPES",
    "BOX_MATCHING",
    "METRIC_NAMES",
    "box_iou",
    "coco_1k_5fold",
    "correct_regions",
    "grounding_ranks",
    "grounding_recall",
    "load_metric",
    "merge_boxes",
    "normalize_vqa_answer",
    "read_vqa_submission",
    "retrieval_ranks",
    "retrieval_recall",
    "vqa_accuracy",
    "vqa_question_accuracy",
    "write_vqa_submission",
]

METRIC_NAMES = ("vqa_accuracy", "retrieval_recall", "grounding_recall")
"""Names accepted by [`load_metric`], one ``evaluate`` module each under ``metrics/modules/``."""


def load_metric(name: str, **kwargs: Any) -> Any:
    """Load one of the package's ``evaluate`` modules from its installed directory (works offline).

    ``evaluate`` (and ``datasets``) are imported only here, so the rest of the package runs without them.

    Args:
        name: One of [`METRIC_NAMES`].
        **kwargs: Passed to ``evaluate.load`` (e.g. ``experiment_id``, ``num_process``, ``process_id``).

    Returns:
        The ``evaluate.EvaluationModule``.

    Raises:
        ValueError: If ``name`` is not one of [`METRIC_NAMES`].
        ImportError: If ``evaluate`` is not installed.
    """
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric {name!r}; choose one of {', '.join(METRIC_NAMES)}")
    try:
        import evaluate
    except ImportError as error:
        raise ImportError(
            f"load_metric({name!r}) needs the `evaluate` library (pip install evaluate); "
            "the metric functions of hierarchical_vl.metrics work without it"
        ) from error
    path = resources.files(__name__).joinpath("modules", name)
    if not path.joinpath(f"{name}.py").is_file():
        raise FileNotFoundError(f"the evaluate module {name!r} is not installed at {path}")
    return evaluate.load(str(path), **kwargs)
