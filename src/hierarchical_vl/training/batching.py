"""Deterministic, resumable batches for each task: the data order depends only on (seed, task, batch number)."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["CyclingBatches", "TaskDataSource"]


@dataclass
class TaskDataSource:
    """The training data of one task as the trainer sees it.

    Args:
        task: Task name.
        num_examples: Training examples (questions, image-caption pairs, captions with phrases).
        collate: Turns an array of example indices into a model batch (tensors, plus ``"metadata"``).
    """

    task: str
    num_examples: int
    collate: Callable[[np.ndarray], dict[str, Any]]


class _BatchesFromPosition(Dataset):
    def __init__(self, batches: CyclingBatches, start: int, stop: int):
        self.batches, self.start, self.stop = batches, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.batches.source.collate(self.batches.indices(self.start + index))


class CyclingBatches:
    """Endless, seeded batches of one task, sharded across processes.

    Epoch ``e`` visits the examples in the order ``permutation(seed, task, e)``; global batch ``b`` is the
    ``b % batches_per_epoch``-th slice of epoch ``b // batches_per_epoch`` (the incomplete tail is dropped, so
    every batch has the same size), and process ``rank`` takes every ``world_size``-th example of it. Restoring
    ``position`` therefore restores the exact data order, on any number of workers.

    Args:
        source: The task's data.
        batch_size: Global batch size (split evenly across processes).
        seed: Run seed.
        rank: This process's index.
        world_size: Number of processes.
        num_workers: DataLoader workers that collate ahead.
    """

    def __init__(
        self,
        source: TaskDataSource,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
    ):
        if source.num_examples < 1:
            raise ValueError(f"task {source.task!r} has no training example")
        if batch_size % world_size:
            raise ValueError(
                f"task {source.task!r}: batch size {batch_size} is not divisible by {world_size} processes"
            )
        self.source = source
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.num_workers = num_workers
        self.position = 0
        self._task_key = zlib.crc32(source.task.encode())
        self._epoch_cache: tuple[int, np.ndarray] | None = None
        self._iterator: Iterator | None = None

    @property
    def batches_per_epoch(self) -> int:
        return max(1, self.source.num_examples // self.batch_size)

    def _order(self, epoch: int) -> np.ndarray:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            rng = np.random.default_rng([self.seed, self._task_key, epoch])
            order = rng.permutation(self.source.num_examples)
            if order.size < self.batch_size:  # a tiny corpus: repeat it to fill one batch
                order = np.resize(order, self.batch_size)
            self._epoch_cache = (epoch, order)
        return self._epoch_cache[1]

    def indices(self, batch_number: int) -> np.ndarray:
        """This process's example indices of global batch ``batch_number``: `(batch_size / world_size,)`."""
        epoch, offset = divmod(batch_number, self.batches_per_epoch)
        batch = self._order(epoch)[offset * self.batch_size : (offset + 1) * self.batch_size]
        return batch[self.rank :: self.world_size]

    def _loader(self) -> Iterator:
        # Enough batches ahead for any run; workers collate in parallel and in order.
        dataset = _BatchesFromPosition(self, self.position, self.position + 10**9)
        generator = torch.Generator().manual_seed(self.seed)
        return iter(
            DataLoader(
                dataset,
                batch_size=None,
                shuffle=False,
                num_workers=self.num_workers,
                generator=generator,
                persistent_workers=False,
            )
        )

    def __iter__(self) -> CyclingBatches:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._iterator is None:
            self._iterator = self._loader()
        batch = next(self._iterator)
        self.position += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        return {
            "position": self.position,
            "batch_size": self.batch_size,
            "num_examples": self.source.num_examples,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["batch_size"] != self.batch_size or state["num_examples"] != self.source.num_examples:
            raise ValueError(
                f"task {self.source.task!r}: saved data state (batch {state['batch_size']}, "
                f"{state['num_examples']} examples) does not match this run (batch {self.batch_size}, "
                f"{self.source.num_examples} examples)"
            )
        self.position = int(state["position"])
        self._iterator = None
