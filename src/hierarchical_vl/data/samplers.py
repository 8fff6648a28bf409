"""Batch samplers that yield index batches for the encoded datasets."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch.utils.data


class DistinctImageBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Shuffled batches in which no two examples share an image (for in-batch retrieval negatives).

    Each epoch draws a permutation from ``(seed, epoch)`` and fills batches in that order; an example whose image is
    already in the current batch waits for the next batch. Every example is yielded once per epoch. ``len()`` is
    the count without waiting; the end of an epoch can need a few more, smaller batches when images repeat a lot.

    Args:
        image_keys: (M,) image of each example (e.g. ``EncodedCaptionDataset.caption_image``).
        batch_size: Examples per batch.
        shuffle: Shuffle each epoch (in dataset order otherwise).
        seed: Seed of the permutations.
        drop_last: Drop the last batch when it is smaller than ``batch_size``.
    """

    def __init__(self, image_keys: Any, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False):
        self.image_keys = np.asarray(image_keys)
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        distinct = len(np.unique(self.image_keys))
        if batch_size > distinct:
            raise ValueError(f"batch_size {batch_size} is larger than the {distinct} distinct images")
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch whose permutation the next iteration uses."""
        self.epoch = epoch

    def __len__(self) -> int:
        count = len(self.image_keys)
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.image_keys))
        else:
            order = np.arange(len(self.image_keys))
        keys = self.image_keys
        waiting: deque[int] = deque()
        batch: list[int] = []
        images: set[Any] = set()
        pending = deque(order.tolist())
        while pending or waiting:
            # Waiting examples first, each at most once per batch, then fresh ones.
            for _ in range(len(waiting)):
                if len(batch) == self.batch_size:
                    break
                index = waiting.popleft()
                if keys[index] in images:
                    waiting.append(index)
                else:
                    batch.append(index)
                    images.add(keys[index])
            while pending and len(batch) < self.batch_size:
                index = pending.popleft()
                if keys[index] in images:
                    waiting.append(index)
                else:
                    batch.append(index)
                    images.add(keys[index])
            if len(batch) == self.batch_size or (not pending and batch):
                if len(batch) == self.batch_size or not self.drop_last:
                    yield batch
                batch, images = [], set()
