"""Endless, resumable training batches of a task whose region features stream (``data.features`` naming a
Parquet export or a Hub dataset, see `hierarchical_vl.evaluation.evaluation_data.streamed_feature_source`).

`StreamedTaskBatches` turns the one-epoch `~hierarchical_vl.data.StreamingBatches` of a task into the interface the
trainer and the prefetcher use (``position``, ``batch(number)``, ``next``, ``state_dict``): epoch after epoch, the
stream's shuffle buffer seeded with ``(seed, epoch)``; a checkpoint's state resumes the exact batch sequence.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..data import StreamingBatches, StreamingRegionFeatures

__all__ = ["StreamedTaskBatches", "StreamedTaskData"]


@dataclass
class StreamedTaskData:
    """The pieces of a task's streamed training data.

    Args:
        dataset: The encoded training dataset, built on ``features.catalogue()``.
        features: The stream (each `StreamedTaskBatches` reads its own copy of it, from epoch 0).
        make_collator: Builds the task's collator for a window's view of ``dataset``.
    """

    dataset: Any
    features: StreamingRegionFeatures
    make_collator: Callable[[Any], Callable[[Any], dict[str, Any]]]


class StreamedTaskBatches:
    """Batches of one task read window by window from a feature stream, over as many epochs as asked.

    Each epoch hands out every example once (the images in the order of the stream's seeded shuffle buffer, each
    window's examples shuffled with ``(seed, epoch, window)``); the last batch of a window may be smaller than
    ``batch_size``. Batches are produced in order; the ones asked for again (a prefetcher dropping what it had
    prepared) are kept from ``position`` on. ``state_dict()`` is the stream's state before batch ``position``, so a
    run resumed from it goes on with exactly the batches it would have had.

    Args:
        task: Task name (for messages).
        data: The task's streamed data.
        batch_size: Examples per batch.
        seed: Run seed: the stream's shuffle buffer and the order of each window's examples.
        rank: This process's index.
        world_size: Number of processes (only 1: streamed batches are not sharded).

    Raises:
        ValueError: With more than one process.
    """

    def __init__(
        self, task: str, data: StreamedTaskData, batch_size: int, seed: int, rank: int = 0, world_size: int = 1
    ):
        if world_size != 1:
            raise ValueError(
                f"task {task!r}: streamed region features train on one process only, not {world_size}; convert "
                "the export into a local store (hvl data) to train on several"
            )
        self.task = task
        self.batch_size = int(batch_size)
        features = copy.copy(data.features)  # this object's own position in the stream, from epoch 0
        features.set_epoch(0)
        features.seed = int(seed)  # the run's seed shuffles the stream
        self.batches = StreamingBatches(data.dataset, features, data.make_collator, self.batch_size, seed=seed)
        self.num_examples = len(data.dataset)
        self.position = 0
        self._lock = threading.Lock()
        self._iterator: Iterator[dict[str, Any]] | None = None
        self._produced = 0  # batches taken from the stream so far
        self._kept: dict[int, dict[str, Any]] = {}  # number -> batch, for numbers >= position
        self._states: dict[int, dict[str, Any]] = {0: self.batches.state_dict()}  # number -> state before it

    def _pull(self) -> dict[str, Any]:
        """The next batch of the stream, starting the next epoch when one ends."""
        for _ in range(2):  # a new epoch gives a batch at once unless the task has no example
            if self._iterator is None:
                self._iterator = iter(self.batches)
            batch = next(self._iterator, None)
            if batch is not None:
                return batch
            self._iterator = None
        raise ValueError(f"task {self.task!r}: a whole epoch of the stream gave no training example")

    def batch(self, batch_number: int) -> dict[str, Any]:
        """Batch ``batch_number`` (from ``position`` on), without moving ``position``."""
        with self._lock:
            for number in [number for number in self._kept if number < self.position]:
                del self._kept[number]
            for number in [number for number in self._states if number < self.position]:
                del self._states[number]
            if batch_number < self.position:
                raise ValueError(
                    f"task {self.task!r}: batch {batch_number} of the stream was handed out already "
                    f"(position {self.position})"
                )
            while self._produced <= batch_number:
                self._kept[self._produced] = self._pull()
                self._produced += 1
                self._states[self._produced] = self.batches.state_dict()
            return dict(self._kept[batch_number])

    def __iter__(self) -> StreamedTaskBatches:
        return self

    def __next__(self) -> dict[str, Any]:
        batch = self.batch(self.position)
        self.position += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        """The position and the stream's state before batch ``position``."""
        with self._lock:
            stream = self._states.get(self.position)
            if stream is None:
                raise ValueError(f"task {self.task!r}: position {self.position} is ahead of the stream")
            return {
                "position": self.position,
                "batch_size": self.batch_size,
                "num_examples": self.num_examples,
                "stream": stream,
            }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resumes from a [`state_dict`]."""
        if "stream" not in state:
            raise ValueError(f"task {self.task!r}: the saved data state is not that of streamed features")
        if state["batch_size"] != self.batch_size or state["num_examples"] != self.num_examples:
            raise ValueError(
                f"task {self.task!r}: saved data state (batch {state['batch_size']}, {state['num_examples']} "
                f"examples) does not match this run (batch {self.batch_size}, {self.num_examples} examples)"
            )
        with self._lock:
            self.batches.load_state_dict(state["stream"])
            self.position = self._produced = int(state["position"])
            self._iterator = None
            self._kept = {}
            self._states = {self.position: self.batches.state_dict()}
