"""The task registry: everything the package knows about each task, in one `TaskSpec` per task.

Every place that needs per-task knowledge (model cards, training, evaluation, the layer search, the command line,
checkpoint loading) reads it from `TASK_SPECS` instead of keeping its own table. The specs are data
(``task_specs.json`` beside this module, one entry per task with the fields of `TaskSpec`). Adding a task means one
new entry there plus its decoder in ``modeling_hierarchical_vl.py`` (and its dataset, collator, evaluation function and
annotation reader where the existing ones do not fit).

Classes and functions of other modules are named, not imported, so that importing the registry stays cheap and
free of cycles; the ``*_class`` / ``evaluate_fn`` properties import them on first use.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from .configuration_hierarchical_vl import TASKS

__all__ = ["MODEL_INPUTS", "TASK_SPECS", "TaskSpec", "model_tasks", "task_spec"]

MODEL_INPUTS = ("input_ids", "attention_mask", "region_features", "region_mask", "region_boxes")
"""The inputs every task reads (`TaskSpec.extra_inputs` adds a task's own)."""


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
        decoder: Class of the task's decoder in ``hierarchical_vl.layers_hierarchical_vl``; its ``extra_inputs``
            are the model inputs the task needs besides text and regions (`MODEL_INPUTS`).
        dataset: Encoded dataset class (``module:Name``).
        collator: Collator class (``module:Name``).
        evaluate: Evaluation function (``module:name``): ``fn(model, dataset, *, batch_size, device, ...)``.
        main_metric: The metric that selects models (layer search, best checkpoint).
        card_metric: The Hub metric type of the task's results.
        decoder_summary: One line on the decoder for model cards.
        decoder_formula: The decoder's score as a formula (Markdown).
        usage_example: The model card's usage snippet; ``{repo_id}``, ``{pipeline_id}`` and ``{feature_dim}`` are
            filled in.
        eval_batch_scale: Evaluation batches of the task are this many times the evaluation batch size (retrieval
            scores image-caption pairs, much cheaper than whole examples).
    """

    name: str
    title: str
    head: str
    pipeline_id: str
    pipeline_tag: str
    hub_tag: str
    text_field: str
    max_words_attribute: str
    decoder: str
    dataset: str
    collator: str
    evaluate: str
    main_metric: str
    card_metric: str
    decoder_summary: str
    decoder_formula: str
    usage_example: str
    eval_batch_scale: int = 1

    @property
    def head_class(self) -> type:
        """The single-task head (a ``HierarchicalVLPreTrainedModel`` subclass)."""
        return _resolve(f"hierarchical_vl.modeling_hierarchical_vl:{self.head}")

    @property
    def dataset_class(self) -> type:
        """The encoded dataset class."""
        return _resolve(self.dataset)

    @property
    def collator_class(self) -> type:
        """The collator class."""
        return _resolve(self.collator)

    @property
    def evaluate_fn(self) -> Any:
        """The evaluation function."""
        return _resolve(self.evaluate)

    @property
    def decoder_class(self) -> type:
        """The task's decoder (a ``torch.nn.Module``)."""
        return _resolve(f"hierarchical_vl.layers_hierarchical_vl:{self.decoder}")

    @property
    def extra_inputs(self) -> tuple[str, ...]:
        """Model inputs the task needs besides text and regions (the decoder's own)."""
        return tuple(self.decoder_class.extra_inputs)

    @property
    def input_names(self) -> tuple[str, ...]:
        """The model inputs of the task, in the order the collators and the processor build them."""
        return (*MODEL_INPUTS, *self.extra_inputs)

    def max_words(self, config: Any) -> int:
        """The task's word cap in ``config`` (a `HierarchicalVLConfig`)."""
        return int(getattr(config, self.max_words_attribute))

    def encode(self, rows: Any, store: Any, tokenizer: Any, config: Any, **options: Any) -> Any:
        """The task's encoded dataset of ``rows``, with the word cap (and answer pool) of ``config``.

        Args:
            rows: The task's annotation rows (``datasets`` rows or dicts).
            store: The `RegionFeatureStore` of the images.
            tokenizer: The word-level tokenizer.
            config: The model configuration.
            **options: Further arguments of the dataset class.
        """
        return self.dataset_class.from_config(
            rows, store, getattr(tokenizer, "tokenizer", tokenizer), config, **options
        )

    def make_collator(self, dataset: Any, config: Any, **options: Any) -> Any:
        """The task's collator over ``dataset`` with the region cap of ``config``.

        Args:
            dataset: The task's encoded dataset.
            config: The model configuration (``config.max_regions``; ``max_regions=`` in ``options`` overrides it).
            **options: Further arguments of the collator class (``include_metadata``, ...).
        """
        options.setdefault("max_regions", config.max_regions)
        return self.collator_class(dataset, **options)


_SPECS_TEXT: str | None = None
"""The text of ``task_specs.json`` where this module cannot read it as a package resource: set in the copy of this
module that a checkpoint carries with its pipeline code (see `hierarchical_vl.remote_pipelines`)."""


def _load_specs() -> dict[str, TaskSpec]:
    """The specs of ``task_specs.json`` (a ``usage_example`` may be written there as a list of lines)."""
    text = _SPECS_TEXT
    if text is None:
        text = resources.files("hierarchical_vl").joinpath("task_specs.json").read_text(encoding="utf-8")
    entries = json.loads(text)
    specs = {}
    for name, fields in entries.items():
        if isinstance(fields.get("usage_example"), list):
            fields["usage_example"] = "\n".join(fields["usage_example"])
        specs[name] = TaskSpec(name=name, **fields)
    return specs


TASK_SPECS: dict[str, TaskSpec] = _load_specs()
"""One spec per task, in `TASKS` order (the order of their default encoder depth)."""

if tuple(TASK_SPECS) != TASKS:
    raise ImportError("TASK_SPECS must list the tasks of configuration_hierarchical_vl.TASKS, in that order")


def task_spec(task: str) -> TaskSpec:
    """The spec of ``task``.

    Raises:
        ValueError: If ``task`` is not a known task (the message names the known ones).
    """
    try:
        return TASK_SPECS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; known tasks are {list(TASK_SPECS)}") from None


def model_tasks(model: Any) -> list[str]:
    """The tasks ``model`` has a decoder for (none for the bare encoder), in `TASKS` order."""
    return list(getattr(model, "tasks", []))
