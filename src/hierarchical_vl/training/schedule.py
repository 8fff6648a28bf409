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

    Args:
        tasks: The stage's tasks with their timings, in switching order.
        cycle_length: ``C``, the updates of one cycle.
        base_lr: The learning rate at the start of the stage.
        decay: Factor applied every ``sum_j step_j`` updates.
    """

    def __init__(self, tasks: Sequence[TaskTiming], cycle_length: int, base_lr: float = 1e-3, decay: float = 0.5):
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
        self.position = 0

    def __len__(self) -> int:
        return len(self._cycle) * self.num_cycles

    def task_at(self, update: int) -> str:
        """The task trained at update ``update`` (0-based)."""
        if not 0 <= update < len(self):
            raise IndexError(f"update {update} is outside the schedule's {len(self)} updates")
        return self._cycle[update % len(self._cycle)]

    def learning_rate(self, update: int | None = None) -> float:
        """The learning rate of update ``update`` (the current position by default)."""
        return step_decay_learning_rate(
            self.position if update is None else update, self.base_lr, self.lr_step, self.decay
        )

    def sequence(self) -> list[str]:
        """The whole update sequence ``S`` of Algorithm 1."""
        return self._cycle * self.num_cycles

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
