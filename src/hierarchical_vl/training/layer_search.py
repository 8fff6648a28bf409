"""Choosing the layer that fits a task best (paper Sec. 4.2): train the task alone with its decoder at each layer."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..tasks import task_spec
from .arguments import StageArguments, TrainingArguments
from .run import prepare_data, train_from_arguments

__all__ = ["LayerSearchTable", "search_layers"]

logger = logging.getLogger(__name__)


@dataclass
class LayerSearchTable:
    """Validation scores of one task with its decoder at each candidate layer.

    Attributes:
        task: The task searched.
        metric: The metric that picks the best layer (the task's `TaskSpec.main_metric`).
        rows: The scores of each candidate layer.
    """

    task: str
    metric: str
    rows: dict[int, dict[str, float]] = field(default_factory=dict)

    @property
    def best_layer(self) -> int:
        """The layer with the highest ``metric``."""
        return max(self.rows, key=lambda layer: self.rows[layer][self.metric])

    def render(self) -> str:
        """The table as text, the best layer marked."""
        keys = [k for k in next(iter(self.rows.values())) if not k.rsplit("/", 1)[-1].startswith("num_")]
        lines = [
            f"layer search for {self.task} (best by {self.metric})",
            "layer " + "".join(f"{k:>18}" for k in keys),
        ]
        for layer, scores in sorted(self.rows.items()):
            mark = "  <- best" if layer == self.best_layer else ""
            lines.append(f"{layer:>5} " + "".join(f"{scores[k]:>18.2f}" for k in keys) + mark)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The table as JSON-ready data."""
        return {"task": self.task, "metric": self.metric, "best_layer": self.best_layer, "rows": self.rows}


def search_layers(
    args: TrainingArguments,
    task: str,
    layers: list[int],
    iterations: int | None = None,
    output_dir: str | None = None,
) -> LayerSearchTable:
    """Train ``task`` alone once per candidate layer (same data, seed and budget) and evaluate each.

    Each candidate sets the layer in the model configuration (``model_overrides.task_layers``).

    Args:
        args: Training arguments supplying the data, optimiser, model preset and the task's batch size.
        task: The task searched.
        layers: Candidate decoder layers (1-based, at most the preset's number of layers).
        iterations: Updates per candidate (the task's ``iterations`` by default).
        output_dir: Where the candidate runs go (``args.output_dir/layer_search`` by default).
    """
    if task not in args.tasks:
        raise ValueError(f"the training configuration has no entry for task {task!r} (tasks: {sorted(args.tasks)})")
    base = copy.deepcopy(args)
    base.tasks = {task: copy.deepcopy(args.tasks[task])}
    if iterations:
        base.tasks[task].iterations = iterations
        base.tasks[task].lr_step = max(1, min(base.tasks[task].lr_step, iterations))
    cycle = min(args.curriculum[0].cycle_length, base.tasks[task].iterations)
    base.curriculum = [StageArguments(tasks=[task], cycle_length=cycle, name=f"{task}-alone")]
    base.eval_every = 0
    base.save_every = 0
    base.validate()
    prepared = prepare_data(base)
    root = Path(output_dir or Path(args.output_dir) / "layer_search")
    table = LayerSearchTable(task=task, metric=task_spec(task).main_metric)
    for layer in layers:
        run = copy.deepcopy(base)
        run.model_overrides["task_layers"] = {**run.task_layers, task: layer}
        run.output_dir = str(root / f"{task}_layer{layer}")
        logger.info("== %s with its decoder at layer %d", task, layer)
        result = train_from_arguments(run, prepared)
        scores = {k: v for k, v in result.evaluations[-1].items() if k not in ("update", "stage")}
        table.rows[layer] = scores
    return table
