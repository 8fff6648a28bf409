"""Batches prepared ahead: while update ``u`` runs, the batch of update ``u + 1`` is collated, pinned and copied.

`BatchPrefetcher` knows the task of every coming batch (the schedule's, ``task_at(u + 1)``) and prepares the next
``depth`` batches on one background thread: collated from the store, pinned (on CUDA) and copied to the device
with ``non_blocking=True`` on a side stream. The batches are the ones `CyclingBatches` defines for each position, so
training is bit-exact with the synchronous loop; a task's ``position`` counts only the batches handed out, so a
checkpoint records the batches actually consumed and a batch prepared but never used is simply prepared again
after resumption.

`DeviceRegionFeatures` keeps a whole float16 store on the accelerator (``data.features_on_device``): the collators
then emit store rows (``region_feature_rows``) and the features are gathered on the device.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from ..data.collators import REGION_FEATURE_ROWS
from .batching import CyclingBatches

__all__ = ["BatchPrefetcher", "DeviceRegionFeatures"]

logger = logging.getLogger(__name__)

_COPY_CHUNK_BYTES = 256 << 20


class DeviceRegionFeatures:
    """A copy of a `RegionFeatureStore`'s float16 features on a device, gathered there by store row.

    The copy is made once, in chunks of 256 MiB read from the memory map. On a CPU device it is a copy in memory
    and the gather works the same way.

    Args:
        store: The region-feature store.
        device: Where the copy lives.

    Raises:
        MemoryError: If the accelerator has too little free memory for the store (naming the store and the sizes).
    """

    def __init__(self, store: Any, device: torch.device | str):
        self.device = torch.device(device)
        source = store.features  # (R + 1, F) float16 memory map
        rows, width = source.shape
        needed = rows * width * 2
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            if needed > free:
                raise MemoryError(
                    f"data.features_on_device: the store {store.path} needs {needed / 2**30:.1f} GiB on "
                    f"{self.device} and only {free / 2**30:.1f} GiB are free"
                )
        self.features = torch.empty((rows, width), dtype=torch.float16, device=self.device)  # (R + 1, F)
        step = max(1, _COPY_CHUNK_BYTES // max(1, width * 2))
        for start in range(0, rows, step):
            chunk = torch.from_numpy(np.array(source[start : start + step]))  # (c, F), a writable copy
            if self.device.type == "cuda":
                chunk = chunk.pin_memory()
            self.features[start : start + step].copy_(chunk)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        logger.info("region features of %s on %s (%.2f GiB)", store.path, self.device, needed / 2**30)

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """(B, T, F) float16 features of (B, T) int64 store rows (on this device)."""
        return self.features.index_select(0, rows.reshape(-1)).reshape(*rows.shape, self.features.shape[1])


class BatchPrefetcher:
    """Hands out each task's batches in the order of a known task sequence, preparing the coming ones ahead.

    [`start`] gives the task of every coming batch; [`next`] then returns the next batch of a task (on
    ``device``, metadata removed, features gathered where the task has a `DeviceRegionFeatures`) and advances that
    task's ``position``. Asking for a batch the sequence did not announce is answered correctly, synchronously,
    and ends the prefetching until the next [`start`]. All collation runs on one background thread (or, with
    ``depth=0`` or off the announced sequence, in the calling thread once the background work is done), so a
    `CyclingBatches` is never used by two threads at once.

    Args:
        batches: The batches of each task.
        device: Where batches go.
        depth: Batches prepared ahead (0: each batch is prepared when it is asked for).
        device_features: The on-device features of the tasks whose collators emit ``region_feature_rows``.
    """

    def __init__(
        self,
        batches: Mapping[str, CyclingBatches],
        device: torch.device | str,
        depth: int = 1,
        device_features: Mapping[str, DeviceRegionFeatures] | None = None,
    ):
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        self.batches = batches
        self.device = torch.device(device)
        self.depth = depth
        self.device_features = dict(device_features or {})
        self._cuda = self.device.type == "cuda"
        self._stream = torch.cuda.Stream(self.device) if self._cuda and depth else None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-prefetch") if depth else None
        self._pending: deque[tuple[tuple[str, int], Future]] = deque()
        self._coming: Iterator[str] | None = None
        self._planned: dict[str, int] = {}

    def start(self, tasks: Iterable[str]) -> None:
        """Announces the task of every coming batch, in order, from the tasks' current positions.

        Batches prepared for an earlier announcement are dropped.
        """
        self._drop_pending()
        if self._executor is None:
            return
        self._coming = iter(tasks)
        self._planned = {task: batches.position for task, batches in self.batches.items()}
        self._fill()

    def next(self, task: str) -> dict[str, torch.Tensor]:
        """The next batch of ``task`` on the device; advances ``batches[task].position``."""
        batches = self.batches[task]
        key = (task, batches.position)
        if self._pending and self._pending[0][0] == key:
            _, future = self._pending.popleft()
            batch = self._receive(future.result())
        else:
            if self._coming is not None:
                logger.debug("batch %s was not announced; preparing it synchronously from now on", key)
            self._drop_pending()
            self._coming = None
            batch = self._receive(self._prepare(task, batches.position, stream=None))
        batches.position += 1
        self._fill()
        return batch

    def close(self) -> None:
        """Stops the background thread (prepared batches are dropped; the positions stay those handed out)."""
        self._drop_pending()
        self._coming = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # ----------------------------------------------------------------------------------------------------------
    def _fill(self) -> None:
        if self._coming is None or self._executor is None:
            return
        while len(self._pending) < self.depth:
            task = next(self._coming, None)
            if task is None:
                self._coming = None
                return
            number = self._planned[task]
            self._planned[task] = number + 1
            future = self._executor.submit(self._prepare, task, number, self._stream)
            self._pending.append(((task, number), future))

    def _drop_pending(self) -> None:
        while self._pending:
            _, future = self._pending.popleft()
            if not future.cancel():
                future.exception()  # wait for it: the batches are then free for this thread

    def _prepare(self, task: str, number: int, stream: torch.cuda.Stream | None) -> tuple[dict, Any]:
        """Batch ``number`` of ``task`` collated and sent to the device (on ``stream``, with an event to wait on)."""
        batch = self.batches[task].batch(number)
        batch.pop("metadata", None)
        if not self._cuda:
            batch = {key: value.to(self.device) for key, value in batch.items()}
            return self._gather(task, batch), None
        if stream is None:  # the calling thread, on its current stream
            batch = {key: value.pin_memory().to(self.device, non_blocking=True) for key, value in batch.items()}
            return self._gather(task, batch), None
        with torch.cuda.device(self.device), torch.cuda.stream(stream):  # this thread's device and stream
            batch = {key: value.pin_memory().to(self.device, non_blocking=True) for key, value in batch.items()}
            batch = self._gather(task, batch)
            event = torch.cuda.Event()
            event.record(stream)
        return batch, event

    def _gather(self, task: str, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        rows = batch.pop(REGION_FEATURE_ROWS, None)  # (B, T)
        if rows is None:
            return batch
        features = self.device_features.get(task)
        if features is None:
            raise ValueError(f"task {task!r}: the batches hold store rows but no on-device features were given")
        batch["region_features"] = features.gather(rows)  # (B, T, F)
        return batch

    def _receive(self, prepared: tuple[dict, Any]) -> dict[str, torch.Tensor]:
        batch, event = prepared
        if event is not None:  # made on the side stream: order the current stream after it, keep memory alive
            current = torch.cuda.current_stream(self.device)
            current.wait_event(event)
            for value in batch.values():
                value.record_stream(current)
        return batch
