"""The task registry: everything the package knows about each task, in one `TaskSpec` per task.

Every place that needs per-task knowledge (pipelines, model cards, training, evaluation, the layer search, the
command line) reads it from `TASK_SPECS` instead of keeping its own table. Adding a task means one new spec here
plus its decoder in ``modeling_hierarchical_vl.py``.

Classes and functions of other modules are named, not imported, so that importing the registry stays cheap and
free of cycles; the ``*_class`` / ``evaluate_fn`` properties import them on first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from .configuration_hierarchical_vl import TASKS

__all__ = ["TASK_SPECS", "TaskSpec", "task_spec"]


def _resolve(reference: str) -> Any:
    """``"package.module:Name"`` -> the object."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class TaskSpec:
    """What the package knows about one task.

    Args:
        name: The task's name in configurations, outputs and metrics (``config.task_layers`` keys).
        title: Human-readable name (model cards, tables, logs).
        head: Class of the single-task head in ``hierarchical_vl.modeling_hierarchical_vl``.
        pipeline_id: The transformers pipeline task name.
        pipeline_tag: The Hub pipeline tag of a checkpoint whose main task this is.
        hub_tag: The Hub tag of the task.
        text_field: The dataset column holding the task's text.
        max_words_attribute: The `HierarchicalVLConfig` field that caps the task's text (the one cap of the task,
            used by training, evaluation and inference alike).
        extra_inputs: Model inputs the task needs besides text and regions.
        dataset: Encoded dataset class (``module:Name``).
        collator: Collator class (``module:Name``).
        evaluate: Evaluation function (``module:name``).
        main_metric: The metric that selects models (layer search, best checkpoint).
        card_metric: The Hub metric type of the task's results.
        decoder_summary: One line on the decoder for model cards.
        decoder_formula: The decoder's score as a formula (Markdown).
    """

    name: str
    title: str
    head: str
    pipeline_id: str
    pipeline_tag: str
    hub_tag: str
    text_field: str
    max_words_attribute: str
    extra_inputs: tuple[str, ...]
    dataset: str
    collator: str
    evaluate: str
    main_metric: str
    card_metric: str
    decoder_summary: str
    decoder_formula: str

    @property
    def head_class(self) -> type:
        return _resolve(f"hierarchical_vl.modeling_hierarchical_vl:{self.head}")

    @property
    def dataset_class(self) -> type:
        return _resolve(self.dataset)

    @property
    def collator_class(self) -> type:
        return _resolve(self.collator)

    @property
    def evaluate_fn(self) -> Any:
        return _resolve(self.evaluate)

    def max_words(self, config: Any) -> int:
        """The task's word cap in ``config`` (a `HierarchicalVLConfig`)."""
        return int(getattr(config, self.max_words_attribute))


TASK_SPECS: dict[str, TaskSpec] = {
    "grounding": TaskSpec(
        name="grounding",
        title="Visual grounding",
        head="HierarchicalVLForVisualGrounding",
        pipeline_id="hierarchical-vl-grounding",
        pipeline_tag="zero-shot-object-detection",
        hub_tag="visual-grounding",
        text_field="sentence",
        max_words_attribute="max_caption_words",
        extra_inputs=("phrase_spans", "phrase_mask"),
        dataset="hierarchical_vl.data.encoded_datasets:EncodedGroundingDataset",
        collator="hierarchical_vl.data.collators:GroundingCollator",
        evaluate="hierarchical_vl.evaluation.task_evaluation:evaluate_grounding",
        main_metric="grounding/r1",
        card_metric="recall",
        decoder_summary="phrase vector (mean of the phrase's words) against every region, bilinear",
        decoder_formula="`sigmoid(p_h^T W i_t)`",
    ),
    "retrieval": TaskSpec(
        name="retrieval",
        title="Image-caption retrieval",
        head="HierarchicalVLForImageTextRetrieval",
        pipeline_id="hierarchical-vl-retrieval",
        pipeline_tag="zero-shot-image-classification",
        hub_tag="image-text-retrieval",
        text_field="caption",
        max_words_attribute="max_caption_words",
        extra_inputs=(),
        dataset="hierarchical_vl.data.encoded_datasets:EncodedCaptionDataset",
        collator="hierarchical_vl.data.collators:RetrievalCollator",
        evaluate="hierarchical_vl.evaluation.task_evaluation:evaluate_retrieval",
        main_metric="retrieval/rsum",
        card_metric="recall",
        decoder_summary="summary networks over words and regions, bilinear",
        decoder_formula="`sigmoid(v_I^T W v_S)`",
    ),
    "vqa": TaskSpec(
        name="vqa",
        title="Visual question answering",
        head="HierarchicalVLForVisualQuestionAnswering",
        pipeline_id="hierarchical-vl-vqa",
        pipeline_tag="visual-question-answering",
        hub_tag="visual-question-answering",
        text_field="question",
        max_words_attribute="max_question_words",
        extra_inputs=(),
        dataset="hierarchical_vl.data.encoded_datasets:EncodedVQADataset",
        collator="hierarchical_vl.data.collators:VQACollator",
        evaluate="hierarchical_vl.evaluation.task_evaluation:evaluate_vqa",
        main_metric="vqa/overall",
        card_metric="accuracy",
        decoder_summary="summary networks, MLP over `[v_I ; v_S]`",
        decoder_formula="`sigmoid(MLP([v_I ; v_S]))` per answer",
    ),
}
"""One spec per task, in `TASKS` order (the order of their default encoder depth)."""

assert tuple(TASK_SPECS) == TASKS, "TASK_SPECS must list the tasks of configuration_hierarchical_vl.TASKS"


def task_spec(task: str) -> TaskSpec:
    """The spec of ``task``; ``ValueError`` naming the known tasks otherwise."""
    try:
        return TASK_SPECS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; known tasks are {list(TASK_SPECS)}") from None
