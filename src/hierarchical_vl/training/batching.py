"""Deterministic, resumable batches for each task: the data order depends only on (seed, task, batch number).

`CyclingBatches` visits each epoch in a seeded random order; `LengthGroupedBatches` groups examples of similar
region and word counts into the same batches (less padding), with the same seeding and resumption. A task whose
region features stream gets `StreamedTaskBatches` (`hierarchical_vl.training.streamed_batches`) instead.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .streamed_batches import StreamedTaskBatches, StreamedTaskData

__all__ = ["CyclingBatches", "LengthGroupedBatches", "TaskDataSource", "make_task_batches"]


@dataclass
class TaskDataSource:
    """The training data of one task as the trainer sees it.

    Args:
        task: Task name.
        num_examples: Training examples (questions, image-caption pairs, captions with phrases).
        collate: Turns an array of example indices into a model batch (tensors, plus ``"metadata"``).
        sizes: `(num_examples, 2)` regions and words of each example (``EncodedDataset.example_sizes``), what
            `LengthGroupedBatches` groups by; ``None`` when not grouping.
        feature_store: The `RegionFeatureStore` whose rows the batches' ``region_feature_rows`` index, when
            ``collate`` leaves the feature gather to the trainer (``data.features_on_device``); ``None`` otherwise.
        stream: The task's streamed data when its region features stream (then ``collate`` is not used: each
            window of the stream has its own collator); ``None`` for a store.
    """

    task: str
    num_examples: int
    collate: Callable[[np.ndarray], dict[str, Any]]
    sizes: np.ndarray | None = None
    feature_store: Any = None
    stream: StreamedTaskData | None = None


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
        self._next_from_iterator = 0

    @property
    def batches_per_epoch(self) -> int:
        return max(1, self.source.num_examples // self.batch_size)

    def _order(self, epoch: int) -> np.ndarray:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            self._epoch_cache = (epoch, self._epoch_order(epoch))
        return self._epoch_cache[1]

    def _epoch_order(self, epoch: int) -> np.ndarray:
        """The examples of epoch ``epoch`` in batch order (its consecutive ``batch_size`` slices are the batches)."""
        rng = np.random.default_rng([self.seed, self._task_key, epoch])
        order = rng.permutation(self.source.num_examples)
        if order.size < self.batch_size:  # a tiny corpus: repeat it to fill one batch
            order = np.resize(order, self.batch_size)
        return order

    def indices(self, batch_number: int) -> np.ndarray:
        """This process's example indices of global batch ``batch_number``: `(batch_size / world_size,)`."""
        epoch, offset = divmod(batch_number, self.batches_per_epoch)
        batch = self._order(epoch)[offset * self.batch_size : (offset + 1) * self.batch_size]
        return batch[self.rank :: self.world_size]

    def _loader(self, start: int) -> Iterator:
        # Enough batches ahead for any run; workers collate in parallel and in order.
        dataset = _BatchesFromPosition(self, start, start + 10**9)
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

    def batch(self, batch_number: int) -> dict[str, Any]:
        """The collated batch ``batch_number`` of this process, without moving ``position``.

        Without workers it is collated here; with workers it comes from the DataLoader, which collates ahead in
        order (asking for batches out of order restarts it). Calls must not overlap (one thread at a time).
        """
        if not self.num_workers:
            return self.source.collate(self.indices(batch_number))
        if self._iterator is None or self._next_from_iterator != batch_number:
            self._iterator = None  # its workers stop; the new ones get this object without it
            self._iterator = self._loader(batch_number)
            self._next_from_iterator = batch_number
        batch = next(self._iterator)
        self._next_from_iterator += 1
        return batch

    def __iter__(self) -> CyclingBatches:
        return self

    def __next__(self) -> dict[str, Any]:
        batch = self.batch(self.position)
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


class LengthGroupedBatches(CyclingBatches):
    """`CyclingBatches` whose batches hold examples of similar size, for less padding (``data.group_by_length``).

    Epoch ``e`` starts from the order of `CyclingBatches` (the examples beyond its last whole batch are dropped,
    so the dropped ones are random); it is cut into megabatches of ``megabatch_batches`` batches, each megabatch
    is sorted by region count and then word count (``source.sizes``; a stable sort), cut into batches, and the
    epoch's batches are shuffled (seeded with the run seed, the task and the epoch). Every kept example is in
    exactly one batch per epoch, and the order still depends only on (seed, task, batch number): ``position``
    resumes it exactly, as for `CyclingBatches`.

    Args:
        source: The task's data, with ``sizes``.
        batch_size: Global batch size (split evenly across processes).
        seed: Run seed.
        rank: This process's index.
        world_size: Number of processes.
        num_workers: DataLoader workers that collate ahead.
        megabatch_batches: Batches per megabatch (more: less padding, batches less random).
    """

    def __init__(
        self,
        source: TaskDataSource,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        megabatch_batches: int = 50,
    ):
        if source.sizes is None:
            raise ValueError(f"task {source.task!r}: grouping by length needs the examples' sizes")
        sizes = np.asarray(source.sizes)
        if sizes.ndim == 1:
            sizes = sizes[:, None]
        if sizes.ndim != 2 or len(sizes) != source.num_examples:
            raise ValueError(
                f"task {source.task!r}: sizes of shape {tuple(np.shape(source.sizes))} for "
                f"{source.num_examples} examples; expected ({source.num_examples}, 2)"
            )
        if megabatch_batches < 1:
            raise ValueError(f"megabatch_batches must be positive, got {megabatch_batches}")
        super().__init__(source, batch_size, seed, rank, world_size, num_workers)
        self.sizes = sizes.astype(np.int64)  # (M, K): sorted by column 0, then 1, ...
        self.megabatch_batches = megabatch_batches

    def _epoch_order(self, epoch: int) -> np.ndarray:
        order = super()._epoch_order(epoch)[: self.batches_per_epoch * self.batch_size]  # (S,) whole batches
        span = self.megabatch_batches * self.batch_size
        grouped = []
        for start in range(0, order.size, span):
            members = order[start : start + span]
            keys = self.sizes[members]  # (m, K)
            grouped.append(members[np.lexsort(keys.T[::-1])])  # lexsort: last key is the primary one
        batches = np.concatenate(grouped).reshape(-1, self.batch_size)  # (batches, B)
        rng = np.random.default_rng([self.seed, self._task_key, epoch, 1])
        return batches[rng.permutation(len(batches))].reshape(-1)


def make_task_batches(
    source: TaskDataSource,
    batch_size: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    group_by_length: bool = False,
) -> CyclingBatches | StreamedTaskBatches:
    """The batches of one task: `StreamedTaskBatches` when its features stream, else `LengthGroupedBatches` with
    ``group_by_length``, else `CyclingBatches`. ``num_workers`` does not apply to a stream (it decodes on its own
    reader thread; the prefetcher collates ahead).

    Raises:
        ValueError: For streamed features with ``group_by_length`` (a stream's order is its shuffle buffer's).
    """
    if source.stream is not None:
        if group_by_length:
            raise ValueError(f"task {source.task!r}: data.group_by_length does not apply to streamed region features")
        return StreamedTaskBatches(source.task, source.stream, batch_size, seed, rank, world_size)
    if group_by_length:
        return LengthGroupedBatches(source, batch_size, seed, rank, world_size, num_workers)
    return CyclingBatches(source, batch_size, seed, rank, world_size, num_workers)
