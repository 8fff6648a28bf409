"""PNG plots of training runs: the per-task losses and the evaluation metrics over updates, and Table 1 as a chart.

Every run of [`train_from_arguments`] writes ``plots/losses.png`` and ``plots/metrics.png`` into its output
directory (next to the TensorBoard logs in ``logs/``), from the [`LossHistory`] of its updates and the trainer's
evaluations; ``hvl experiment table1`` adds ``table1.png``. Plots need matplotlib (drawn with its ``Agg`` backend,
no display): where it is missing one warning is logged and no plot is written.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..atomic_files import write_bytes_atomic
from ..tasks import TASK_SPECS
from ..training_records import card_metric_names
from .trainer import TrainerCallback, UpdateState

__all__ = ["PLOTS_DIR", "LossHistory", "plot_losses", "plot_metrics", "plot_table1", "write_training_plots"]

logger = logging.getLogger(__name__)

PLOTS_DIR = "plots"
"""The folder of a run's output directory that holds its plots."""

_SMOOTHING = 0.9
"""Weight of the running mean drawn over each task's raw losses (the progress bar's)."""

_warned = False


def _pyplot() -> Any:
    """``matplotlib.pyplot`` on the ``Agg`` backend, or ``None`` (one warning per process) without matplotlib."""
    global _warned
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        if not _warned:
            logger.warning("matplotlib is not installed: no plots are written (pip install matplotlib)")
            _warned = True
        return None
    return plt


def _save(figure: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    figure.clear()
    import matplotlib.pyplot as plt

    plt.close(figure)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(path, buffer.getvalue())


def _title(task: str) -> str:
    return TASK_SPECS[task].title if task in TASK_SPECS else task


class LossHistory(TrainerCallback):
    """Keeps ``(update, task, loss)`` of every update of a run (a few bytes per update)."""

    def __init__(self) -> None:
        self.losses: list[tuple[int, str, float]] = []

    def on_update_end(self, trainer: Any, state: UpdateState) -> None:
        self.losses.append((state.update, state.task, state.loss))


def plot_losses(
    losses: Sequence[Sequence[Any]], path: str | os.PathLike, stage_updates: Mapping[str, int] | None = None
) -> Path | None:
    """Each task's training loss over the updates (log scale): the raw losses, faint, and their running mean.

    Args:
        losses: ``(update, task, loss)`` per update.
        path: The PNG to write.
        stage_updates: Updates of each curriculum stage, in order; the stage ends are marked.

    Returns:
        ``path``, or ``None`` without matplotlib or losses.
    """
    plt = _pyplot()
    if plt is None or not losses:
        return None
    by_task: dict[str, tuple[list[int], list[float]]] = {}
    for update, task, loss in losses:
        updates, values = by_task.setdefault(str(task), ([], []))
        updates.append(int(update))
        values.append(float(loss))
    figure, axes = plt.subplots(figsize=(7, 4))
    for index, (task, (updates, values)) in enumerate(sorted(by_task.items())):
        color = f"C{index}"
        smooth, running = [], values[0]
        for value in values:
            running = _SMOOTHING * running + (1 - _SMOOTHING) * value
            smooth.append(running)
        axes.plot(updates, values, color=color, alpha=0.25, linewidth=0.8)
        axes.plot(updates, smooth, color=color, linewidth=1.8, label=_title(task))
    end = 0
    for stage, updates_of_stage in list((stage_updates or {}).items())[:-1]:
        end += int(updates_of_stage)
        axes.axvline(end, color="gray", linestyle="--", linewidth=0.8)
        axes.annotate(
            f"end of {stage}",
            (end, 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            fontsize="x-small",
            color="gray",
        )
    if all(loss > 0 for _, _, loss in losses):
        axes.set_yscale("log")
    axes.set_xlabel("update")
    axes.set_ylabel("loss (binary cross-entropy)")
    axes.set_title("Training loss per task")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return _save(figure, Path(path))


def plot_metrics(evaluations: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path | None:
    """The evaluation metrics over the updates, one panel per task.

    Args:
        evaluations: The trainer's evaluation records (``{"update", "stage", "task/metric": value}``).
        path: The PNG to write.

    Returns:
        ``path``, or ``None`` without matplotlib or evaluations.
    """
    plt = _pyplot()
    series: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    for record in evaluations:
        for name in card_metric_names(record):
            task = name.split("/", 1)[0]
            updates, values = series.setdefault(task, {}).setdefault(name.split("/", 1)[1], ([], []))
            updates.append(int(record.get("update", 0)))
            values.append(float(record[name]))
    if plt is None or not series:
        return None
    tasks = [task for task in TASK_SPECS if task in series]
    figure, panels = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.8), squeeze=False)
    for axes, task in zip(panels[0], tasks):
        for metric, (updates, values) in series[task].items():
            axes.plot(updates, values, marker="o", linewidth=1.5, label=metric)
        axes.set_title(_title(task))
        axes.set_xlabel("update")
        axes.set_ylabel("%")
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    figure.tight_layout()
    return _save(figure, Path(path))


def write_training_plots(
    output_dir: str | os.PathLike,
    losses: Sequence[Sequence[Any]],
    evaluations: Sequence[Mapping[str, Any]],
    stage_updates: Mapping[str, int] | None = None,
) -> list[Path]:
    """Write ``plots/losses.png`` and ``plots/metrics.png`` (when there are evaluations) of a run.

    Args:
        output_dir: The run's output directory.
        losses: ``(update, task, loss)`` per update.
        evaluations: The trainer's evaluation records.
        stage_updates: Updates of each curriculum stage, in order (marked on the loss plot).

    Returns:
        The files written (none without matplotlib).
    """
    directory = Path(output_dir) / PLOTS_DIR
    written = [
        plot_losses(losses, directory / "losses.png", stage_updates),
        plot_metrics(evaluations, directory / "metrics.png"),
    ]
    return [path for path in written if path is not None]


def plot_table1(result: Any, columns: Sequence[tuple[str, str]], path: str | os.PathLike) -> Path | None:
    """Table 1 as a grouped bar chart: one group per column, one bar per row (mean over seeds, with the min-max
    range when there are several).

    Args:
        result: A ``Table1Result``.
        columns: ``(heading, flat metric key)`` of the columns.
        path: The PNG to write.

    Returns:
        ``path``, or ``None`` without matplotlib or rows.
    """
    plt = _pyplot()
    rows = [row for row in result.rows if row.per_seed]
    if plt is None or not rows:
        return None
    width = 0.8 / len(rows)
    figure, axes = plt.subplots(figsize=(min(14.0, max(8.0, 0.18 * len(columns) * len(rows) + 4)), 4.5))
    for index, row in enumerate(rows):
        summary = row.summary()
        means = [summary["mean"].get(key, math.nan) for _, key in columns]  # a row without the metric: no bar
        errors = [
            [means[i] - summary["min"].get(key, means[i]) for i, (_, key) in enumerate(columns)],
            [summary["max"].get(key, means[i]) - means[i] for i, (_, key) in enumerate(columns)],
        ]
        positions = [column + (index - (len(rows) - 1) / 2) * width for column in range(len(columns))]
        hatch = "//" if row.kind == "prior" else None
        axes.bar(
            positions,
            means,
            width,
            label=row.name,
            hatch=hatch,
            yerr=errors if len(row.per_seed) > 1 else None,
            capsize=2,
        )
    axes.set_xticks(range(len(columns)), [heading for heading, _ in columns])
    axes.set_ylabel("%")
    seeds = ", ".join(str(seed) for seed in result.seeds)
    axes.set_title(f"Table 1 (seed{'s' if len(result.seeds) > 1 else ''} {seeds})")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize="x-small", ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    return _save(figure, Path(path))
