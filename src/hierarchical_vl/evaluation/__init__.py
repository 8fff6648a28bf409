"""Evaluation: fast exact retrieval ranking, per-task evaluation over a dataset split, and ``hvl evaluate``.

* `RetrievalScorer`: the exact images x captions score matrix of a co-attention model, computing per caption and
  per image what does not depend on the pair, in large batches, resumable, with an optional two-stage shortlist.
* `evaluate_vqa`, `evaluate_retrieval`, `evaluate_grounding`: run a loaded model over a task's encoded split and
  return flat metrics (``"vqa/overall"``, ``"retrieval/i2t_r1"``, ``"grounding/r1"``, ...); `retrieval_inputs`: a
  caption split's score-matrix inputs and ground truth.
* `CorpusLayout`: where each task's annotations lie in a corpus directory, and the one reader of their files
  (training reads through it too); `open_region_store`: the one opener of region features.
* `EvaluationProtocol`, `PROTOCOLS` (``current``, ``paper``): how each task is scored, recorded in every results
  file; `caption_corpus` tells COCO from Flickr30k; `first_images` caps a split at its first N images.
* `load_evaluation_data`: the encoded evaluation splits of a corpus directory, with a model's input caps;
  `format_results_table`: the paper's tables.
* `prior_metrics` (``baselines``): the reference rows of chance and simple priors (VQA: the most frequent answer per
  question type; retrieval and grounding: chance; grounding: the largest box, the first box).

Checkpoints load with ``hierarchical_vl.loading.load_checkpoint``.
"""

from __future__ import annotations

from .baselines import (
    PRIOR_NAMES,
    QuestionTypePrior,
    grounding_chance_recall,
    prior_metrics,
    retrieval_chance_recall,
)
from .evaluation_data import CorpusLayout, EvaluationData, load_evaluation_data, open_region_store
from .protocols import PROTOCOLS, EvaluationProtocol, caption_corpus, evaluation_protocol, first_images
from .results_table import format_results_table, write_results_json
from .retrieval_ranking import (
    FIRST_STAGES,
    RetrievalScorer,
    ScoringStats,
    StaleCacheError,
    shortlist_agreement,
    shortlist_mask,
)
from .task_evaluation import (
    QUESTION_TYPE_PREFIX,
    evaluate_grounding,
    evaluate_retrieval,
    evaluate_tasks,
    evaluate_vqa,
    model_tasks,
    retrieval_inputs,
    vqa_metrics,
)

__all__ = [
    "FIRST_STAGES",
    "PRIOR_NAMES",
    "PROTOCOLS",
    "QUESTION_TYPE_PREFIX",
    "QuestionTypePrior",
    "CorpusLayout",
    "EvaluationData",
    "EvaluationProtocol",
    "RetrievalScorer",
    "ScoringStats",
    "StaleCacheError",
    "caption_corpus",
    "evaluate_grounding",
    "evaluate_retrieval",
    "evaluate_tasks",
    "evaluate_vqa",
    "evaluation_protocol",
    "first_images",
    "format_results_table",
    "grounding_chance_recall",
    "load_evaluation_data",
    "model_tasks",
    "open_region_store",
    "prior_metrics",
    "retrieval_chance_recall",
    "retrieval_inputs",
    "shortlist_agreement",
    "shortlist_mask",
    "vqa_metrics",
    "write_results_json",
]
