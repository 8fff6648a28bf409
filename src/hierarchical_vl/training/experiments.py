"""``hvl experiment table1``: the paper's Table 1 (every task combination) with update-matched single-task runs and
the reference rows of chance and simple priors.

The paper compares each task trained alone with the same task trained together with others (Sec. 5, Table 1).
Trained with the curriculum, a lower task of a multi-task run gets more updates than when trained alone (it is
trained in every later stage too), so a multi-task "gain" can be an update-count effect. The table therefore also
has, for each task, a single-task run with as many updates as the task got in the run of all tasks ("matched"),
and rows for what chance and simple priors score on the same splits (`hierarchical_vl.evaluation.baselines`).

* `table1_plan`: the runs -- each combination of the configuration's tasks (singles, pairs, all; a combination's
  curriculum is the configuration's restricted to its tasks, `combination_arguments`) and the matched single-task
  runs (`single_task_arguments` with ``updates``);
* `run_table1`: prepares the data once, trains every run for every seed and evaluates its final model on the
  configuration's evaluation splits (the trainer's evaluation), and computes the reference rows;
* `Table1Result`: per-seed metrics, mean and range over seeds; `format_table1` prints it, ``to_dict`` /
  ``from_dict`` are its JSON form.

This is a command module of the training package: only the CLI (and the demo) import it.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic_files import write_json_atomic

if TYPE_CHECKING:
    from .arguments import TrainingArguments

__all__ = [
    "TABLE1_COLUMNS",
    "TASK_LABELS",
    "RunPlan",
    "Table1Result",
    "TableRow",
    "add_commands",
    "combination_arguments",
    "format_table1",
    "run_table1",
    "single_task_arguments",
    "table1_plan",
    "updates_per_task",
]

TASK_LABELS = {"vqa": "VQA", "retrieval": "ICR", "grounding": "VG"}
"""The paper's short names of the tasks (Table 1)."""

_PAPER_ORDER = ("vqa", "retrieval", "grounding")

TABLE1_COLUMNS = (
    ("VQA acc", "vqa/overall"),
    ("ICR i2t R@1", "retrieval/i2t_r1"),
    ("ICR t2i R@1", "retrieval/t2i_r1"),
    ("VG R@1", "grounding/r1"),
)
"""Table 1's columns: heading and flat metric key (VQA accuracy, image annotation / retrieval R@1, grounding R@1)."""


def updates_per_task(args: TrainingArguments) -> dict[str, int]:
    """How many updates each task gets over all stages of a run (Algorithm 1's sequences)."""
    from .schedule import TaskSwitchingSchedule, TaskTiming

    counts: dict[str, int] = {}
    for stage in args.curriculum:
        timings = [
            TaskTiming(t, args.tasks[t].iterations, args.tasks[t].lr_step, args.tasks[t].batch_size)
            for t in stage.tasks
        ]
        for task in TaskSwitchingSchedule(timings, stage.cycle_length).sequence():
            counts[task] = counts.get(task, 0) + 1
    return counts


def single_task_arguments(
    base: TrainingArguments, task: str, output_dir: str | Path, updates: int | None = None
) -> TrainingArguments:
    """The arguments of ``task`` trained alone, with the task's settings of ``base``.

    Args:
        base: The multi-task arguments.
        task: The task.
        output_dir: The run's output directory.
        updates: Train exactly this many updates instead of the task's ``iterations`` (one cycle of that length),
            with the learning-rate step ``lr_step`` scaled by the same factor ``updates / iterations``.
    """
    from .arguments import StageArguments, TaskArguments

    args = copy.deepcopy(base)
    args.output_dir = str(output_dir)
    timing = base.tasks[task]
    cycle = min(base.curriculum[0].cycle_length, timing.iterations)
    name = f"single-{task}"
    if updates is not None:
        scaled = max(1, round(timing.lr_step * updates / timing.iterations))
        timing = TaskArguments(iterations=updates, lr_step=scaled, batch_size=timing.batch_size)
        cycle, name = updates, f"matched-{task}"
    args.tasks = {task: copy.deepcopy(timing)}
    args.curriculum = [StageArguments(tasks=[task], cycle_length=cycle, name=name)]
    args.validate()
    return args


def combination_arguments(base: TrainingArguments, tasks: Sequence[str], output_dir: str | Path) -> TrainingArguments:
    """The arguments of ``base`` restricted to ``tasks``: the curriculum's stages keep only those tasks, stages
    left empty are dropped and consecutive stages with the same tasks are merged. The final model is evaluated on
    all of ``tasks`` at the end of the last stage (the earlier stages are not evaluated).
    """
    from .arguments import StageArguments

    unknown = [task for task in tasks if task not in base.tasks]
    if unknown:
        raise ValueError(f"tasks {unknown} are not in the configuration's tasks {list(base.tasks)}")
    args = copy.deepcopy(base)
    args.output_dir = str(output_dir)
    args.tasks = {task: copy.deepcopy(base.tasks[task]) for task in base.tasks if task in tasks}
    stages: list[StageArguments] = []
    for stage in base.curriculum:
        kept = [task for task in stage.tasks if task in tasks]
        if not kept or (stages and stages[-1].tasks == kept):
            continue
        stages.append(StageArguments(tasks=kept, cycle_length=stage.cycle_length, name="+".join(kept), evaluate=[]))
    if not stages:
        raise ValueError(f"no stage of the curriculum trains any of {list(tasks)}")
    stages[-1].evaluate = [task for task in _PAPER_ORDER if task in tasks]
    args.curriculum = stages
    args.validate()
    return args


def _label(tasks: Sequence[str]) -> str:
    return "+".join(TASK_LABELS.get(task, task) for task in tasks)


@dataclass
class RunPlan:
    """One trained row of the table.

    Attributes:
        name: Row label (``VQA+ICR``, ``VG (matched)``).
        kind: ``combination`` or ``matched``.
        tasks: The row's tasks, in the paper's order.
        build: ``build(output_dir) -> TrainingArguments`` of the run (the seed is set afterwards).
        updates: Updates per task of the run.
    """

    name: str
    kind: str
    tasks: list[str]
    build: Callable[[Path], TrainingArguments]
    updates: dict[str, int]


def table1_plan(base: TrainingArguments) -> list[RunPlan]:
    """The runs of the table: every combination of the configuration's trained tasks in the paper's order (singles,
    pairs, all), then each task alone matched to its updates in the run of all tasks."""
    tasks = [task for task in _PAPER_ORDER if task in base.trained_tasks]
    tasks += [task for task in base.trained_tasks if task not in tasks]
    plans: list[RunPlan] = []
    for size in range(1, len(tasks) + 1):
        for combination in itertools.combinations(tasks, size):
            chosen = list(combination)
            if size == 1:
                build = _single_builder(base, chosen[0], None)
            else:
                build = _combination_builder(base, chosen)
            updates = updates_per_task(build(Path(".")))
            plans.append(RunPlan(_label(chosen), "combination", chosen, build, updates))
    if len(tasks) > 1:
        together = plans[-1].updates
        for task in tasks:
            build = _single_builder(base, task, together[task])
            plans.append(RunPlan(f"{_label([task])} (matched)", "matched", [task], build, {task: together[task]}))
    return plans


def _single_builder(base: TrainingArguments, task: str, updates: int | None) -> Callable[[Path], TrainingArguments]:
    return lambda output_dir: single_task_arguments(base, task, output_dir, updates)


def _combination_builder(base: TrainingArguments, tasks: list[str]) -> Callable[[Path], TrainingArguments]:
    return lambda output_dir: combination_arguments(base, tasks, output_dir)


@dataclass
class TableRow:
    """A row of the table: its runs' metrics per seed (one entry for a reference row), and their summary.

    Attributes:
        name: Row label.
        kind: ``combination``, ``matched`` or ``prior``.
        tasks: The row's tasks (empty for a reference row).
        updates: Updates per task (empty for a reference row).
        per_seed: Flat metrics of each seed's run, in the order of the result's seeds.
        output_dirs: Where each seed's run saved its model.
        trained_updates: The updates each seed's run made (the trainer's count; ``sum(updates.values())``).
    """

    name: str
    kind: str
    tasks: list[str] = field(default_factory=list)
    updates: dict[str, int] = field(default_factory=dict)
    per_seed: list[dict[str, float]] = field(default_factory=list)
    output_dirs: list[str] = field(default_factory=list)
    trained_updates: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, float]]:
        """``{"mean": {...}, "min": {...}, "max": {...}}`` over the seeds, for the metrics every seed has."""
        if not self.per_seed:
            return {"mean": {}, "min": {}, "max": {}}
        keys = [key for key in self.per_seed[0] if all(key in run for run in self.per_seed)]
        values = {key: [float(run[key]) for run in self.per_seed] for key in keys}
        return {
            "mean": {key: round(sum(v) / len(v), 2) for key, v in values.items()},
            "min": {key: min(v) for key, v in values.items()},
            "max": {key: max(v) for key, v in values.items()},
        }


@dataclass
class Table1Result:
    """The table: trained rows and reference rows, over seeds.

    Attributes:
        seeds: The training seeds.
        rows: The rows in table order (combinations, matched single-task runs, reference rows).
        splits: The evaluation split of each task.
        protocol: The evaluation protocol of every row (`EvaluationProtocol.to_dict`).
    """

    seeds: list[int]
    rows: list[TableRow]
    splits: dict[str, str] = field(default_factory=dict)
    protocol: dict[str, Any] | None = None

    def row(self, name: str) -> TableRow:
        """The row called ``name``."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no row {name!r}; rows are {[row.name for row in self.rows]}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: every row's per-seed metrics and its mean, min and max."""
        return {
            "seeds": list(self.seeds),
            "splits": dict(self.splits),
            "protocol": self.protocol,
            "rows": [
                {
                    "name": row.name,
                    "kind": row.kind,
                    "tasks": list(row.tasks),
                    "updates": dict(row.updates),
                    "per_seed": [dict(run) for run in row.per_seed],
                    "output_dirs": list(row.output_dirs),
                    "trained_updates": list(row.trained_updates),
                    **row.summary(),
                }
                for row in self.rows
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Table1Result:
        """Reads the form written by `to_dict` (the summaries are recomputed from the per-seed metrics)."""
        rows = [
            TableRow(
                name=row["name"],
                kind=row["kind"],
                tasks=list(row.get("tasks", [])),
                updates={task: int(n) for task, n in row.get("updates", {}).items()},
                per_seed=[dict(run) for run in row.get("per_seed", [])],
                output_dirs=list(row.get("output_dirs", [])),
                trained_updates=[int(n) for n in row.get("trained_updates", [])],
            )
            for row in data["rows"]
        ]
        return cls(
            seeds=[int(seed) for seed in data["seeds"]],
            rows=rows,
            splits=dict(data.get("splits", {})),
            protocol=data.get("protocol"),
        )


def _cell(row: TableRow, key: str, width: int) -> str:
    summary = row.summary()
    if key not in summary["mean"]:
        return f"{'-':>{width}}"
    text = f"{summary['mean'][key]:.2f}"
    if len(row.per_seed) > 1:
        text += f" ({summary['min'][key]:.1f}-{summary['max'][key]:.1f})"
    return f"{text:>{width}}"


def format_table1(result: Table1Result) -> str:
    """Table 1's layout: one row per task combination, the matched single-task rows and the reference rows
    (columns VQA accuracy, ICR image annotation / image retrieval R@1, VG R@1 and the updates of each task), then
    the VQA accuracy per question type of the all-task model, the VQA-only model and the prior."""
    tasks = [task for task in _PAPER_ORDER if any(task in row.updates for row in result.rows)]
    several = len(result.seeds) > 1
    width = 18 if several else 13
    label = max(len(row.name) for row in result.rows) + 2
    updates_heading = "updates " + "/".join(TASK_LABELS.get(t, t) for t in tasks)
    updates_width = max(len(updates_heading), 6 * len(tasks)) + 2
    heading = f"{'':<{label}}" + "".join(f"{name:>{width}}" for name, _ in TABLE1_COLUMNS)
    lines = [heading + f"{updates_heading:>{updates_width}}"]
    sections = {"combination": None, "matched": "single task, updates matched to the all-task run:", "prior": ""}
    for kind, title in sections.items():
        rows = [row for row in result.rows if row.kind == kind]
        if not rows:
            continue
        if title is not None:
            lines.append(title or "reference rows (no training):")
        for row in rows:
            counts = "/".join(str(row.updates[t]) if t in row.updates else "-" for t in tasks) if row.updates else "-"
            cells = "".join(_cell(row, key, width) for _, key in TABLE1_COLUMNS)
            lines.append(f"{row.name:<{label}}" + cells + f"{counts:>{updates_width}}")
    seeds = ", ".join(str(seed) for seed in result.seeds)
    lines.append("")
    lines.append(
        f"seed{'s' if several else ''} {seeds}"
        + ("; mean (min-max) over seeds" if several else "")
        + f"; evaluation splits: {', '.join(f'{t} {s}' for t, s in result.splits.items())}"
        + (f"; protocol {result.protocol['name']}." if result.protocol else ".")
    )
    lines += textwrap.wrap(
        "Matched rows: each task trained alone for as many updates as it got in the all-task run, its lr_step "
        "scaled in proportion (updates / iterations).",
        width=116,
    )
    lines += textwrap.wrap(
        "Reference rows: VQA, the most frequent training answer of each question type; ICR and VG, the exact "
        "expectation of a random ranking (chance); VG, the largest box or the first box of the file.",
        width=116,
    )
    lines += _question_type_lines(result, width)
    return "\n".join(lines)


def _question_type_lines(result: Table1Result, width: int) -> list[str]:
    """The per-question-type VQA accuracy of the all-task model, the VQA-only model and the prior."""
    from ..evaluation.task_evaluation import QUESTION_TYPE_PREFIX

    combinations = [row for row in result.rows if row.kind == "combination" and "vqa" in row.tasks]
    columns = [combinations[-1]] if combinations and len(combinations[-1].tasks) > 1 else []
    columns += [row for row in combinations if row.tasks == ["vqa"]]
    columns += [row for row in result.rows if row.kind == "prior"]
    columns = [row for row in columns if any(key.startswith(QUESTION_TYPE_PREFIX) for key in row.summary()["mean"])]
    if not columns:
        return []
    kinds = sorted({key for row in columns for key in row.summary()["mean"] if key.startswith(QUESTION_TYPE_PREFIX)})
    label = max(len(key) - len(QUESTION_TYPE_PREFIX) for key in kinds) + 2
    names = ["prior" if row.kind == "prior" else row.name for row in columns]
    widths = [max(width, len(name) + 2) for name in names]
    lines = ["", "VQA accuracy per question type (prior: the most frequent training answer of the type):"]
    lines.append(f"{'':<{label}}" + "".join(f"{name:>{w}}" for name, w in zip(names, widths)))
    for key in kinds:
        name = key[len(QUESTION_TYPE_PREFIX) :] or "(no type)"
        lines.append(f"{name:<{label}}" + "".join(_cell(row, key, w) for row, w in zip(columns, widths)))
    return lines


def run_table1(
    base: TrainingArguments,
    seeds: Sequence[int],
    output_dir: str | Path,
    *,
    prepared: Any = None,
    log: Callable[[str], None] = print,
) -> Table1Result:
    """Trains every run of `table1_plan` for every seed and computes the reference rows.

    The data are prepared once (``prepared``, or `prepare_data` of ``base``). Each run is evaluated at its end by
    the trainer on the configuration's evaluation splits.

    Args:
        base: The configuration (its tasks, curriculum, data and optimiser).
        seeds: Training seeds (initialisation, data order, dropout, retrieval negatives).
        output_dir: Runs go to ``output_dir/seed<seed>/<row>``.
        prepared: Already prepared data of ``base``.
        log: Where progress lines go.
    """
    from ..evaluation.baselines import QuestionTypePrior, prior_metrics
    from .run import _layout, prepare_data, train_from_arguments

    if not seeds:
        raise ValueError("at least one seed is needed")
    prepared = prepared or prepare_data(base)
    plans = table1_plan(base)
    rows = [TableRow(plan.name, plan.kind, plan.tasks, plan.updates) for plan in plans]
    output_dir = Path(output_dir)
    for seed in seeds:
        for plan, row in zip(plans, rows):
            args = plan.build(output_dir / f"seed{seed}" / plan.name.replace("+", "_").replace(" ", "_"))
            args.seed = seed
            args.overwrite_output_dir = True
            for collator in prepared.collators.values():
                if hasattr(collator, "seed"):
                    collator.seed = seed  # the retrieval negatives, as prepare_data seeds them
            log(
                f"== seed {seed}: {plan.name} ("
                + ", ".join(f"{TASK_LABELS.get(t, t)} {n}" for t, n in plan.updates.items())
                + " updates)"
            )
            result = train_from_arguments(args, prepared)
            final = dict(result.evaluations[-1]) if result.evaluations else {}
            final.pop("update", None)
            final.pop("stage", None)
            row.per_seed.append(final)
            row.output_dirs.append(str(args.output_dir))
            row.trained_updates.append(int(result.updates))
    for collator in prepared.collators.values():
        if hasattr(collator, "seed"):
            collator.seed = base.seed
    vqa_prior = None
    if "vqa" in prepared.eval and prepared.answer_vocab:
        vqa_prior = QuestionTypePrior.from_corpus(_layout(base), base.data.splits("vqa")[0], prepared.answer_vocab)
    protocol = prepared.protocol
    retrieval = prepared.eval.get("retrieval")
    ranking = (
        protocol.task_options(
            "retrieval", caption_corpus=prepared.caption_corpus or "coco", num_images=len(retrieval.images)
        )
        if retrieval is not None
        else {"protocol": "full", "fold_size": protocol.retrieval_fold_size}
    )
    priors = prior_metrics(  # scored as the models are, under the run's protocol
        prepared.eval,
        vqa_prior=vqa_prior,
        max_regions=prepared.config.max_regions,
        legacy=protocol.legacy_vqa,
        box_matching=protocol.box_matching,
        retrieval_ranking=ranking["protocol"],
        fold_size=ranking["fold_size"],
    )
    rows += [TableRow(name, "prior", per_seed=[metrics]) for name, metrics in priors.items()]
    splits = {task: base.data.splits(task)[1] for task in _PAPER_ORDER if task in prepared.eval}
    return Table1Result(seeds=list(seeds), rows=rows, splits=splits, protocol=protocol.to_dict())


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``.

    Raises:
        argparse.ArgumentTypeError: If the list is empty or holds a non-integer.
    """
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed list {text!r}: use e.g. 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"invalid seed list {text!r}: give distinct integers, e.g. 0,1,2")
    return seeds


def _table1(args: argparse.Namespace) -> int:
    from .arguments import load_training_arguments
    from .plots import plot_table1

    base = load_training_arguments(args.config, args.overrides)
    seeds = args.seeds if args.seeds is not None else [base.seed]
    result = run_table1(base, seeds, args.output_dir)
    print("\n" + format_table1(result))
    chart = plot_table1(result, TABLE1_COLUMNS, Path(args.output_dir) / "table1.png")
    if chart is not None:
        print(f"\nwrote {chart}")
    if args.output_json:
        write_json_atomic(args.output_json, result.to_dict(), indent=2)
        print(f"\nwrote {args.output_json}")
    written = f"; the table in {args.output_json}" if args.output_json else " (--output-json FILE keeps the table)"
    print(f"table1: {len(result.rows)} rows x {len(seeds)} seed(s); runs in {args.output_dir}{written}")
    return 0


def _run(args: argparse.Namespace) -> int:
    try:
        return _table1(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"hvl experiment: error: {error}", file=sys.stderr)
        return 1


def add_commands(subparsers: Any) -> None:
    """Registers ``hvl experiment table1`` on the top-level sub-parsers of the ``hvl`` command."""
    experiment = subparsers.add_parser("experiment", help="the paper's experiments (Table 1)")
    commands = experiment.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    table1 = commands.add_parser(
        "table1",
        help="train every task combination (+ update-matched single tasks) and print Table 1 with prior rows",
        description="Train each task alone, each pair and all tasks with the configuration's curriculum restricted "
        "to them, and each task alone with as many updates as it got with all tasks; print Table 1 (VQA accuracy, "
        "ICR R@1 both ways, VG R@1) with the updates of every row and reference rows for chance and simple priors.",
    )
    table1.add_argument("config", help="training preset name or YAML file")
    table1.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, values in YAML syntax")
    table1.add_argument(
        "--seeds", type=parse_seeds, default=None, help="training seeds, e.g. 0,1,2 (default: the config's seed)"
    )
    table1.add_argument("--output-dir", default="outputs/table1", help="where the runs go (one folder per seed/row)")
    table1.add_argument("--output-json", default=None, help="write the table (per-seed metrics, mean, range) here")
    table1.set_defaults(func=_run)
