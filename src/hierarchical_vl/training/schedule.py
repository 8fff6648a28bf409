"""Algorithm 1 of the paper: periodic task switching and the step learning-rate schedule, as pure objects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["TaskSwitchingSchedule", "TaskTiming", "step_decay_learning_rate"]


@dataclass(frozen=True)
class TaskTiming:
    """Per-task numbers found by the single-task grid search (paper Sec. 4.2) and then frozen.

    Args:
        task: Task name.
        iterations: ``#iter_i``, the task's number of updates when trained alone.
        lr_step: ``#step_i``, the task's learning-rate step size when trained alone.
        batch_size: ``bs_i``, the task's batch size.
    """

    task: str
    iterations: int
    lr_step: int
    batch_size: int

    def __post_init__(self) -> None:
        for name in ("iterations", "lr_step", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"task {self.task!r}: {name} must be a positive integer, got {value!r}")


def _apportion(count: int, shares: dict[str, float]) -> dict[str, int]:
    """``count`` split in proportion to ``shares`` (summing to 1) by largest remainders, ties to the earlier name."""
    exact = {name: count * share for name, share in shares.items()}
    parts = {name: int(value) for name, value in exact.items()}
    order = sorted(exact, key=lambda name: -(exact[name] - parts[name]))  # stable: earlier names first on ties
    for name in order[: count - sum(parts.values())]:
        parts[name] += 1
    return parts


def step_decay_learning_rate(update: int, base_lr: float, step_size: int, decay: float = 0.5) -> float:
    """The step schedule: the learning rate multiplied by ``decay`` (halved) every ``step_size`` updates.

    Args:
        update: The update (0-based).
        base_lr: The learning rate at update 0.
        step_size: Updates between decays.
        decay: The factor applied at each step.

    Returns:
        ``base_lr * decay ** floor(update / step_size)``.

    Raises:
        ValueError: If ``step_size`` is not positive.
    """
    if step_size < 1:
        raise ValueError(f"step_size must be positive, got {step_size}")
    return base_lr * decay ** (update // step_size)


class TaskSwitchingSchedule:
    """The update sequence of Algorithm 1 for the tasks of one curriculum stage.

    With ``alpha_i = iter_i / sum_j iter_j`` each cycle of ``C`` updates gives task ``i`` ``round(C * alpha_i)``
    consecutive updates, in the order the tasks are given; there are ``floor(sum_j iter_j / C)`` cycles. The
    learning-rate step size of the stage is ``sum_j step_j`` (halving, ``decay`` 0.5). ``C * alpha_i`` is rounded
    to the nearest integer (at least 1) so that every task is trained in every cycle; the paper leaves rounding
    unspecified. The schedule is an iterator over task names whose position can be saved and restored.

    When ``sum_j iter_j`` is not a multiple of the cycle, the whole cycles leave iterations over (``not_run``; 300
    iterations with ``C = 40`` run 280 updates). By default they are not run, as Algorithm 1 has it; with
    ``partial_cycle`` they are run after the last whole cycle as one partial cycle, each task getting its share
    ``alpha_i`` of them (largest remainders, ties to the earlier task), in the same order. [`summary`] describes
    either.

    Args:
        tasks: The stage's tasks with their timings, in switching order.
        cycle_length: ``C``, the updates of one cycle.
        base_lr: The learning rate at the start of the stage.
        decay: Factor applied every ``sum_j step_j`` updates.
        partial_cycle: Run the iterations the whole cycles leave over as a last partial cycle.
    """

    def __init__(
        self,
        tasks: Sequence[TaskTiming],
        cycle_length: int,
        base_lr: float = 1e-3,
        decay: float = 0.5,
        partial_cycle: bool = False,
    ):
        if not tasks:
            raise ValueError("a schedule needs at least one task")
        names = [timing.task for timing in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"tasks must be distinct, got {names}")
        if not isinstance(cycle_length, int) or cycle_length < 1:
            raise ValueError(f"cycle_length must be a positive integer, got {cycle_length!r}")
        total = sum(timing.iterations for timing in tasks)
        if cycle_length > total:
            raise ValueError(f"cycle_length {cycle_length} exceeds the stage's total iterations {total}")
        self.tasks = list(tasks)
        self.cycle_length = cycle_length
        self.base_lr = base_lr
        self.decay = decay
        self.alphas = {timing.task: timing.iterations / total for timing in tasks}
        self.updates_per_cycle = {
            timing.task: max(1, round(cycle_length * self.alphas[timing.task])) for timing in tasks
        }
        self.num_cycles = total // cycle_length
        self.lr_step = sum(timing.lr_step for timing in tasks)
        self._cycle = [name for name in names for _ in range(self.updates_per_cycle[name])]
        self.total_iterations = total
        self.partial_cycle = partial_cycle
        left_over = max(0, total - len(self._cycle) * self.num_cycles)
        self.partial_updates = _apportion(left_over, self.alphas) if partial_cycle else dict.fromkeys(names, 0)
        self._tail = [name for name in names for _ in range(self.partial_updates[name])]
        self.position = 0

    def __len__(self) -> int:
        return len(self._cycle) * self.num_cycles + len(self._tail)

    @property
    def not_run(self) -> int:
        """Iterations (``sum_j iter_j``) that the schedule does not run: what the whole cycles leave over, unless
        ``partial_cycle``; negative when rounding ``C * alpha_i`` up gives more updates than iterations."""
        return self.total_iterations - len(self)

    def task_updates(self) -> dict[str, int]:
        """The updates each task gets in the whole schedule."""
        return {
            name: self.updates_per_cycle[name] * self.num_cycles + self.partial_updates[name]
            for name in self.updates_per_cycle
        }

    def decay_updates(self) -> list[int]:
        """The updates (0-based) at which the learning rate is multiplied by ``decay``."""
        return list(range(self.lr_step, len(self), self.lr_step))

    def summary(self, name: str = "") -> str:
        """The schedule in a few lines: tasks, updates per task (in all and per cycle), cycle, learning rate.

        Args:
            name: The stage's name, to start the first line with.
        """
        cycle = len(self._cycle)
        per_task = ", ".join(
            f"{task} {count} ({self.updates_per_cycle[task]}/cycle"
            + (f" + {self.partial_updates[task]} in the partial cycle)" if self._tail else ")")
            for task, count in self.task_updates().items()
        )
        decays = self.decay_updates()
        shown = ", ".join(str(update) for update in decays[:8]) + (
            f", ... ({len(decays)} in all)" if len(decays) > 8 else ""
        )
        lines = [
            f"{name + ': ' if name else ''}{len(self)} updates of {'+'.join(self.updates_per_cycle)}: {per_task}",
            f"  cycle {self.cycle_length} (C) -> {cycle} updates x {self.num_cycles} cycles"
            + (f" + a partial cycle of {len(self._tail)}" if self._tail else ""),
            f"  learning rate {self.base_lr:g}, x{self.decay:g} every {self.lr_step} updates"
            + (f" (at update {shown})" if decays else " (never within the stage)"),
        ]
        return "\n".join(lines)

    def task_at(self, update: int) -> str:
        """The task trained at update ``update`` (0-based)."""
        if not 0 <= update < len(self):
            raise IndexError(f"update {update} is outside the schedule's {len(self)} updates")
        whole = len(self._cycle) * self.num_cycles
        if update >= whole:
            return self._tail[update - whole]
        return self._cycle[update % len(self._cycle)]

    def learning_rate(self, update: int | None = None) -> float:
        """The learning rate of update ``update`` (the current position by default)."""
        return step_decay_learning_rate(
            self.position if update is None else update, self.base_lr, self.lr_step, self.decay
        )

    def sequence(self) -> list[str]:
        """The whole update sequence ``S`` of Algorithm 1."""
        return self._cycle * self.num_cycles + self._tail

    def batch_size(self, task: str) -> int:
        """The batch size of ``task``."""
        for timing in self.tasks:
            if timing.task == task:
                return timing.batch_size
        raise KeyError(task)

    @property
    def finished(self) -> bool:
        return self.position >= len(self)

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.finished:
            raise StopIteration
        task = self.task_at(self.position)
        self.position += 1
        return task

    def state_dict(self) -> dict:
        """The position and a fingerprint of the schedule's definition."""
        return {
            "position": self.position,
            "sequence_length": len(self),
            "cycle": list(self._cycle),
            "lr_step": self.lr_step,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a position saved by [`state_dict`]; refuses the state of a different schedule."""
        if state.get("cycle") != self._cycle or state.get("sequence_length") != len(self):
            raise ValueError(
                "the saved schedule does not match this one (different tasks, iterations or cycle length): "
                f"saved cycle {state.get('cycle')} x {state.get('sequence_length')}, "
                f"this cycle {self._cycle} x {len(self)}"
            )
        position = int(state["position"])
        if not 0 <= position <= len(self):
            raise ValueError(f"saved position {position} is outside the schedule's {len(self)} updates")
        self.position = position
