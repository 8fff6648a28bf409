"""Training progress: a tqdm bar on a terminal, a plain line every few seconds elsewhere (log files), or nothing.

Redrawn bars fill log files (each redraw is a line there), so when standard error is not a terminal, or with
``progress: lines``, `StageProgress` logs one ``INFO`` line every ``progress_every`` seconds instead:
stage, task, updates done of the stage's total, the running losses, the rate and the time left::

    [stage3-grounding+retrieval+vqa] vqa: update 120/280 (43%), loss grounding 0.412 vqa 3.061, 4.1 updates/s, ETA 39s

The losses are the ones the trainer last read (at its ``log_every`` interval): the progress never reads the device.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping

from tqdm.auto import tqdm

__all__ = ["PROGRESS_MODES", "StageProgress", "progress_mode"]

logger = logging.getLogger(__name__)

PROGRESS_MODES = (True, False, "bar", "lines")
"""Values of ``progress``: ``true`` (a bar on a terminal, lines otherwise), ``false``, ``bar`` or ``lines``."""


def progress_mode(progress: bool | str, enabled: bool = True, stream=None) -> str:
    """The progress shown: ``bar``, ``lines`` or ``off``.

    Args:
        progress: The ``progress`` argument (one of `PROGRESS_MODES`).
        enabled: ``False`` on the processes that show none (all but the local main process).
        stream: The stream a bar would draw on (standard error by default), tested with ``isatty``.
    """
    if not enabled or progress is False:
        return "off"
    if progress is True:
        stream = sys.stderr if stream is None else stream
        return "bar" if getattr(stream, "isatty", lambda: False)() else "lines"
    if progress not in ("bar", "lines"):
        raise ValueError(f"progress must be one of true, false, bar, lines; got {progress!r}")
    return progress


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class StageProgress:
    """The progress of one curriculum stage.

    Args:
        stage: The stage's name.
        total: Updates of the stage.
        initial: Updates already done (a resumed run).
        mode: ``bar``, ``lines`` or ``off`` (`progress_mode`).
        every_seconds: Seconds between two lines in ``lines`` mode (the first comes after that long, the last at
            `close` when the stage is complete).
        clock: The time source (``time.monotonic``), for tests.
    """

    def __init__(
        self,
        stage: str,
        total: int,
        initial: int = 0,
        mode: str = "bar",
        every_seconds: float = 30.0,
        clock=time.monotonic,
    ):
        self.stage = stage
        self.total = total
        self.done = initial
        self.mode = mode
        self.every_seconds = every_seconds
        self._clock = clock
        self._start = clock()
        self._start_done = initial
        self._last_line = self._start
        self._task = ""
        self._losses: dict[str, float] = {}
        self.lines_written = 0
        self._line_done = initial
        self._bar = tqdm(total=total, initial=initial, desc=stage, dynamic_ncols=True) if mode == "bar" else None

    def update(self, task: str) -> None:
        """One update of ``task`` is done."""
        self.done += 1
        self._task = task
        if self._bar is not None:
            self._bar.update(1)
        elif self.mode == "lines" and self._clock() - self._last_line >= self.every_seconds:
            self._write_line()

    def set_losses(self, losses: Mapping[str, float], learning_rate: float) -> None:
        """The running losses just read (at a log interval) and the learning rate."""
        self._losses = dict(losses)
        if self._bar is not None:
            self._bar.set_postfix(
                task=self._task, lr=f"{learning_rate:.1e}", **{k: f"{v:.3f}" for k, v in losses.items()}
            )

    def line(self) -> str:
        """The progress line of now."""
        elapsed = self._clock() - self._start
        rate = (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0
        percent = 100 * self.done / self.total if self.total else 100.0
        parts = [f"[{self.stage}] {self._task}: update {self.done}/{self.total} ({percent:.0f}%)"]
        if self._losses:
            parts.append("loss " + " ".join(f"{task} {value:.3f}" for task, value in self._losses.items()))
        parts.append(f"{rate:.2f} updates/s")
        if rate > 0 and self.done < self.total:
            parts.append(f"ETA {_duration((self.total - self.done) / rate)}")
        return ", ".join(parts)

    def _write_line(self) -> None:
        logger.info("%s", self.line())
        self.lines_written += 1
        self._last_line = self._clock()
        self._line_done = self.done

    def close(self) -> None:
        """Ends the stage's progress (a last line when lines were due and the stage is complete)."""
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "lines" and self.done >= self.total and self.done > self._line_done:
            self._write_line()
