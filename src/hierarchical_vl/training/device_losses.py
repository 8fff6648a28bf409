"""Training losses kept on the device: no host synchronisation per update, values read at log intervals only.

Reading a loss (``float(loss)``, ``loss.item()``, ``math.isfinite``) makes the host wait for the accelerator to
finish the update. `DeviceLosses` keeps what the loop needs -- each task's running loss and the first non-finite
loss -- as device tensors and reads them only when asked ([`DeviceLosses.running`], [`DeviceLosses.check`]). The
running loss is computed in float64 with the same operations as Python floats, so the values read are the ones a
loop reading every loss would have.
"""

from __future__ import annotations

import torch

__all__ = ["DeviceLosses"]


class DeviceLosses:
    """Each task's running loss (``0.9 * running + 0.1 * loss``) and the first non-finite loss, on the device."""

    def __init__(self) -> None:
        self._running: dict[str, torch.Tensor] = {}  # task -> () float64
        self._first_bad: torch.Tensor | None = None  # () int64: index into _unchecked of the first bad loss, or -1
        self._bad_loss: torch.Tensor | None = None  # () float64: that loss
        self._unchecked: list[tuple[int, str, str]] = []  # (update, task, stage) since the last check

    def add(self, update: int, task: str, stage: str, loss: torch.Tensor) -> None:
        """Records the loss of one update (a 0-d tensor; nothing is read from the device).

        Args:
            update: The update's number in the run.
            task: Its task.
            stage: Its curriculum stage.
            loss: Its loss.
        """
        value = loss.detach().to(torch.float64)  # ()
        previous = self._running.get(task)
        self._running[task] = value if previous is None else 0.9 * previous + 0.1 * value
        position = len(self._unchecked)
        self._unchecked.append((update, task, stage))
        if self._first_bad is None:
            self._first_bad = torch.full((), -1, dtype=torch.int64, device=value.device)
            self._bad_loss = torch.zeros((), dtype=torch.float64, device=value.device)
        new_bad = ~torch.isfinite(value) & (self._first_bad < 0)
        self._first_bad = torch.where(new_bad, position, self._first_bad)
        self._bad_loss = torch.where(new_bad, value, self._bad_loss)

    def check(self) -> None:
        """Reads whether a loss since the last check was not finite.

        Raises:
            FloatingPointError: Naming the first such loss, its task, update and stage.
        """
        if self._first_bad is None or not self._unchecked:
            return
        position = int(self._first_bad)
        if position >= 0:
            update, task, stage = self._unchecked[position]
            raise FloatingPointError(f"the {task} loss became {float(self._bad_loss)} at update {update} ({stage})")
        self._unchecked.clear()

    def running(self) -> dict[str, float]:
        """Each task's running loss, read from the device."""
        return {task: float(value) for task, value in self._running.items()}
