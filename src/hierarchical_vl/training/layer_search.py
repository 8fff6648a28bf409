"""The single-task grid search of paper Sec. 4.2: the layer ``l(i)``, ``#iter_i``, ``#step_i`` and ``bs_i`` of a task.

Each grid point trains the task alone (a fresh model from the same seed, on data prepared once) and is evaluated on
the task's validation split, never on its test split. The results are written atomically after every point
(``search.json`` in the output directory), so that a stopped search resumes without retraining finished points; the
chosen values are written as a preset fragment (``best_<task>.yaml``) that ``hvl train --fragment`` merges on top of
a preset.

Rules:
    * ``lr_step`` pairs with ``iterations``: a point whose explicit ``lr_step`` exceeds its ``iterations`` is skipped
      and listed as such; when the grid gives no ``lr_step`` list, the configured ``lr_step`` is capped at each
      point's ``iterations``.
    * A rerun with the same training configuration (data, optimiser, model, seed, split) reuses every finished point
      of the same values, whatever the rest of the grid; a rerun with another configuration is refused, unless
      ``overwrite`` is set, in which case every point is trained again.
    * The selection metric (the task's `TaskSpec.main_metric` by default) is maximised.
    * Each point's run goes to ``<task>_layer<L>_iter<I>_step<S>_bs<B>`` in the output directory, or
      ``<task>_layer<L>`` when the grid varies the layer only (the directories of ``hvl search-layers``).
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..atomic_files import write_text_atomic
from ..tasks import TASK_SPECS, task_spec
from .arguments import StageArguments, TaskArguments, TrainingArguments
from .run import prepare_data, train_from_arguments

__all__ = ["LayerSearchTable", "SearchGrid", "SearchPoint", "load_search_grid", "search_grid", "search_layers"]

logger = logging.getLogger(__name__)

VALIDATION_SPLITS = frozenset({"val"})
"""Split names a search may select on."""

_EVAL_SPLIT_FIELDS = {"vqa": "vqa_eval_split", "retrieval": "caption_eval_split", "grounding": "entities_eval_split"}
_GRID_LISTS = ("layers", "iterations", "lr_step", "batch_size")
_RESULTS = "search.json"
_BASE_ARGS = "search_args.yaml"


@dataclass
class SearchGrid:
    """The values searched for one task; an empty list means the configuration's single value.

    Args:
        layers: Candidate decoder layers ``l(i)`` (1-based).
        iterations: Candidate ``#iter_i``.
        lr_step: Candidate ``#step_i``.
        batch_size: Candidate ``bs_i``.
        metric: The metric maximised (default: the task's `TaskSpec.main_metric`).
        split: The split the points are evaluated on; it must be a validation split.
    """

    layers: list[int] = field(default_factory=list)
    iterations: list[int] = field(default_factory=list)
    lr_step: list[int] = field(default_factory=list)
    batch_size: list[int] = field(default_factory=list)
    metric: str | None = None
    split: str = "val"

    def __post_init__(self) -> None:
        for name in _GRID_LISTS:
            values = getattr(self, name)
            if isinstance(values, int):
                values = [values]
            if not isinstance(values, list) or any(not isinstance(v, int) or v < 1 for v in values):
                raise ValueError(f"search.{name}: expected a list of positive integers, got {values!r}")
            setattr(self, name, sorted(set(values)))
        if self.split not in VALIDATION_SPLITS:
            raise ValueError(
                f"search.split: {self.split!r} is not a validation split ({sorted(VALIDATION_SPLITS)}); "
                "the search selects on validation data only"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "search") -> SearchGrid:
        """A grid from a ``search:`` mapping; unknown fields are refused, naming ``source``."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a mapping, got {data!r}")
        unknown = sorted(set(data) - {*_GRID_LISTS, "metric", "split"})
        if unknown:
            raise ValueError(
                f"{source}: unknown field(s) {unknown}; valid fields are {[*_GRID_LISTS, 'metric', 'split']}"
            )
        return cls(**data)

    def updated(self, **changes: Any) -> SearchGrid:
        """A copy with the given non-``None`` fields replaced."""
        data = {name: getattr(self, name) for name in (*_GRID_LISTS, "metric", "split")}
        data.update({key: value for key, value in changes.items() if value is not None})
        return SearchGrid(**data)


def load_search_grid(path: str | Path) -> SearchGrid:
    """A grid from a YAML file: its ``search:`` section, or the whole file when it has none."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"search grid {path} does not exist")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if isinstance(data, dict) and "search" in data:
        data = data["search"]
    return SearchGrid.from_dict(data, source=f"{path}: search")


@dataclass(frozen=True)
class SearchPoint:
    """One grid point: the task's layer and hyper-parameters."""

    layer: int
    iterations: int
    lr_step: int
    batch_size: int

    def key(self) -> str:
        return f"layer{self.layer}_iter{self.iterations}_step{self.lr_step}_bs{self.batch_size}"

    def to_dict(self) -> dict[str, int]:
        return {
            "layer": self.layer,
            "iterations": self.iterations,
            "lr_step": self.lr_step,
            "batch_size": self.batch_size,
        }


@dataclass
class LayerSearchTable:
    """Validation scores of every grid point of one task.

    Attributes:
        task: The task searched.
        metric: The metric that picks the best point.
        split: The split evaluated.
        seed: The seed of every point.
        points: The scores of each finished point.
        skipped: Points not trained, with the reason.
        protocol: The evaluation protocol the scores follow (`EvaluationProtocol.to_dict`).
    """

    task: str
    metric: str
    split: str = "val"
    seed: int = 0
    points: dict[SearchPoint, dict[str, float]] = field(default_factory=dict)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    protocol: dict[str, Any] | None = None

    @property
    def best(self) -> SearchPoint:
        """The point with the highest ``metric`` (the first in grid order on ties)."""
        if not self.points:
            raise ValueError(f"the search of {self.task} has no finished point")
        return max(self.points, key=lambda point: self.points[point][self.metric])

    @property
    def best_layer(self) -> int:
        """The layer of the best point."""
        return self.best.layer

    @property
    def rows(self) -> dict[int, dict[str, float]]:
        """The scores by layer (one point per layer: a search that varies the layer only)."""
        return {point.layer: scores for point, scores in self.points.items()}

    def chosen(self) -> dict[str, int]:
        """The values of the best point."""
        return self.best.to_dict()

    def render(self) -> str:
        """Every point as a text table, the best one marked."""
        keys = [k for k in next(iter(self.points.values())) if not k.rsplit("/", 1)[-1].startswith("num_")]
        widths = {k: max(18, len(k) + 2) for k in keys}
        best = self.best
        lines = [
            f"layer search for {self.task} on {self.split} (best by {self.metric}, seed {self.seed})",
            f"{'layer':>5} {'iter':>7} {'step':>7} {'bs':>5} " + "".join(f"{k:>{widths[k]}}" for k in keys),
        ]
        for point, scores in self.points.items():
            mark = "  <- best" if point == best else ""
            lines.append(
                f"{point.layer:>5} {point.iterations:>7} {point.lr_step:>7} {point.batch_size:>5} "
                + "".join(f"{scores[k]:>{widths[k]}.2f}" for k in keys)
                + mark
            )
        for entry in self.skipped:
            lines.append(f"skipped {entry['point']}: {entry['reason']}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The table as JSON-ready data: every point, the metric, the split, the seed and the chosen values."""
        data: dict[str, Any] = {
            "task": self.task,
            "metric": self.metric,
            "split": self.split,
            "seed": self.seed,
            "points": [{**point.to_dict(), "scores": scores} for point, scores in self.points.items()],
            "skipped": list(self.skipped),
        }
        if self.protocol is not None:
            data["protocol"] = self.protocol
        if self.points:
            data["chosen"] = self.chosen()
            data["best_layer"] = self.best_layer
        if len({point.layer for point in self.points}) == len(self.points):
            data["rows"] = {str(layer): scores for layer, scores in self.rows.items()}
        return data

    def fragment(self) -> dict[str, Any]:
        """The chosen values as a preset fragment for ``hvl train --fragment``."""
        chosen = self.chosen()
        layer = chosen.pop("layer")
        return {
            "description": f"values chosen by the grid search of {self.task} on {self.split} ({self.metric})",
            "model_overrides": {"task_layers": {self.task: layer}},
            "tasks": {self.task: chosen},
        }


def _grid_points(
    grid: SearchGrid, config: TaskArguments, default_layer: int, num_layers: int
) -> tuple[list[SearchPoint], list[dict]]:
    layers = grid.layers or [default_layer]
    too_deep = [layer for layer in layers if layer > num_layers]
    if too_deep:
        raise ValueError(f"search.layers: {too_deep} exceed the model's {num_layers} encoder layers")
    points, skipped = [], []
    for layer, iterations, batch_size in itertools.product(
        layers, grid.iterations or [config.iterations], grid.batch_size or [config.batch_size]
    ):
        for lr_step in grid.lr_step or [min(config.lr_step, iterations)]:
            point = SearchPoint(layer, iterations, lr_step, batch_size)
            if lr_step > iterations:
                skipped.append({"point": point.to_dict(), "reason": f"lr_step {lr_step} > iterations {iterations}"})
            else:
                points.append(point)
    return points, skipped


def _point_arguments(
    base: TrainingArguments, task: str, point: SearchPoint, root: Path, layer_only: bool
) -> TrainingArguments:
    run = copy.deepcopy(base)
    run.tasks[task] = TaskArguments(iterations=point.iterations, lr_step=point.lr_step, batch_size=point.batch_size)
    run.model_overrides["task_layers"] = {**run.task_layers, task: point.layer}
    run.curriculum = [
        StageArguments(
            tasks=[task], cycle_length=min(base.curriculum[0].cycle_length, point.iterations), name=f"{task}-alone"
        )
    ]
    run.output_dir = str(root / (f"{task}_layer{point.layer}" if layer_only else f"{task}_{point.key()}"))
    run.overwrite_output_dir = True
    run.validate()
    return run


def search_grid(
    args: TrainingArguments,
    task: str,
    grid: SearchGrid,
    output_dir: str | Path | None = None,
    overwrite: bool = False,
) -> LayerSearchTable:
    """Train ``task`` alone at every grid point (same data, seed and optimiser) and evaluate each on validation.

    Args:
        args: Training arguments supplying the data, optimiser, model preset, seed and the task's single values.
        task: The task searched.
        grid: The values searched; the split evaluated is ``grid.split`` whatever ``args`` evaluates.
        output_dir: Where the points' runs, ``search.json`` and ``best_<task>.yaml`` go
            (``args.output_dir/layer_search`` by default).
        overwrite: Start afresh in an ``output_dir`` holding a search of another configuration.

    Raises:
        ValueError: For a task without configuration, a layer beyond the model's depth, an unknown metric, or an
            ``output_dir`` holding a search of another configuration (without ``overwrite``).
    """
    if task not in TASK_SPECS or task not in args.tasks:
        raise ValueError(f"the training configuration has no entry for task {task!r} (tasks: {sorted(args.tasks)})")
    base = copy.deepcopy(args)
    base.tasks = {task: TaskArguments()}
    layers = dict(base.task_layers)
    layers.pop(task, None)
    base.model_overrides = {k: v for k, v in base.model_overrides.items() if k != "task_layers"}
    if layers:
        base.model_overrides["task_layers"] = layers
    base.curriculum = [StageArguments(tasks=[task], cycle_length=args.curriculum[0].cycle_length, name=f"{task}-alone")]
    setattr(base.data, _EVAL_SPLIT_FIELDS[task], grid.split)
    train_splits, eval_split = base.data.splits(task)
    if eval_split in train_splits:
        field_name = {"vqa": "vqa_train_splits", "retrieval": "caption_train_splits"}.get(task, "entities_train_split")
        raise ValueError(f"data.{field_name}: trains on the validation split {eval_split!r} the search selects on")
    base.eval_every = 0
    base.save_every = 0
    base.validate()
    root = Path(output_dir or Path(args.output_dir) / "layer_search")
    metric = grid.metric or task_spec(task).main_metric
    table = LayerSearchTable(
        task=task, metric=metric, split=grid.split, seed=base.seed, protocol=base.evaluation_protocol().to_dict()
    )
    finished = _finished_points(base, root, overwrite)

    prepared = prepare_data(base)
    default_layer = args.task_layers.get(task, prepared.config.task_layers[task])
    points, table.skipped = _grid_points(grid, args.tasks[task], default_layer, prepared.config.num_layers)
    layer_only = len({point.layer for point in points}) == len(points)
    if not points:
        raise ValueError(f"search of {task}: every grid point was skipped ({table.skipped})")
    root.mkdir(parents=True, exist_ok=True)
    base.save(root / _BASE_ARGS)
    for point in points:
        if point in finished:
            logger.info("== %s at %s: reused from %s", task, point.key(), root / _RESULTS)
            table.points[point] = finished[point]
        else:
            logger.info("== %s alone at %s", task, point.key())
            run = _point_arguments(base, task, point, root, layer_only)
            result = train_from_arguments(run, prepared)
            table.points[point] = {k: v for k, v in result.evaluations[-1].items() if k not in ("update", "stage")}
        if metric not in table.points[point]:
            raise ValueError(f"search.metric: {metric!r} is not a metric of {task} ({sorted(table.points[point])})")
        _write_results(table, root, finished)
    write_text_atomic(root / f"best_{task}.yaml", yaml.safe_dump(table.fragment(), sort_keys=False))
    return table


def _write_results(table: LayerSearchTable, root: Path, finished: dict[SearchPoint, dict[str, float]]) -> None:
    data = table.to_dict()
    # points an earlier search finished outside this grid stay on record for later reuse
    data["other_points"] = [
        {**point.to_dict(), "scores": scores} for point, scores in finished.items() if point not in table.points
    ]
    write_text_atomic(root / _RESULTS, json.dumps(data, indent=2))


def _finished_points(base: TrainingArguments, root: Path, overwrite: bool) -> dict[SearchPoint, dict[str, float]]:
    """The points a previous search of the same configuration finished in ``root``."""
    results, saved = root / _RESULTS, root / _BASE_ARGS
    if not results.exists() or not saved.exists():
        return {}
    differences = base.run_differences(saved)
    if differences:
        if overwrite:
            logger.warning("%s holds a search of another configuration; every point is trained again", root)
            return {}
        raise ValueError(
            f"{root} holds a search of another configuration ({'; '.join(differences)}); use another output "
            "directory, or overwrite (--overwrite-output) to train every point again"
        )
    try:
        data = json.loads(results.read_text(encoding="utf-8"))
        entries = [*data.get("points", []), *data.get("other_points", [])]
        return {
            SearchPoint(int(e["layer"]), int(e["iterations"]), int(e["lr_step"]), int(e["batch_size"])): e["scores"]
            for e in entries
        }
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{results}: not a search result file ({error})") from None


def search_layers(
    args: TrainingArguments,
    task: str,
    layers: list[int],
    iterations: int | None = None,
    output_dir: str | None = None,
) -> LayerSearchTable:
    """Train ``task`` alone once per candidate layer and evaluate each on validation (`search_grid` over layers)."""
    grid = SearchGrid(layers=list(layers), iterations=[iterations] if iterations else [])
    return search_grid(args, task, grid, output_dir=output_dir)
