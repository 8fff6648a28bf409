"""Region features read from a streaming Parquet dataset, for corpora that are not on local disk.

[`StreamingRegionFeatures`] reads the rows of an export (local or a Hub dataset, see
`hierarchical_vl.data.parquet_features`) through a seeded shuffle buffer and hands them over in windows of images.
A window is a [`RegionFeatureWindow`]: an in-memory [`RegionFeatureStore`] of those images, so the collators read it
as they read a store (``region_rows``, ``read_rows``, ``boxes``, ``sizes``). The stream is resumable: its
``state_dict()`` records the epoch and the images already handed over, and a stream given that state replays the
shuffle (reading, not collating, the rows before that point) and goes on with the rest, identically.

[`StreamingBatches`] joins a stream with annotations: the annotations are encoded once against the stream's
[`~StreamingRegionFeatures.catalogue`] (ids, sizes and boxes of every image, read from those columns alone, no
features), and each window gives the batches of its own images' examples, shuffled by seed::

    stream = StreamingRegionFeatures("someone/coco-bottom-up", buffer_size=2000, seed=0, window_images=512)
    train = EncodedVQADataset(vqa["train"], stream.catalogue(), tokenizer)
    for batch in StreamingBatches(train, stream, VQACollator, batch_size=256):
        ...

A Hub dataset is downloaded into the Hub cache first, unless ``download=False``: then the shards are read over HTTP
in byte ranges as the stream goes (the catalogue fetches only the id, size and box columns). The shuffle buffer holds
``buffer_size`` images (36 x 2048 float16 regions are 147 KB each).

An image is seen once per epoch, so each example is too; the last batch of a window may be smaller than
``batch_size`` (the window's examples are not carried over: their regions leave with the window).
"""

from __future__ import annotations

import copy
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .feature_store import RegionFeatureStore
from .parquet_features import _COLUMNS, _batch_images, _iter_shard_images, _load_shards, _resolve_shards

__all__ = ["RegionFeatureWindow", "StreamingBatches", "StreamingRegionFeatures"]

_READ_ROWS = 64  # rows per Arrow batch read from the stream
_PREFETCH_ROWS = 256  # images decoded ahead by the reader thread

_Image = tuple[str, int, int, np.ndarray, np.ndarray]  # image id, width, height, boxes (K, 4), features (K, F)


class RegionFeatureWindow(RegionFeatureStore):
    """An in-memory region-feature store of some images of a stream (the store's interface, no files).

    Args:
        images: (image id, width, height, boxes (K, 4) float32 pixels, features (K, F)) of each image.
        feature_dim: Feature width F.
        source_positions: (W,) position of each image in the stream's input order (its catalogue index).
        name: What the window is called in messages.
        with_features: Hold the features; without them ``features`` is a read-only all-zero view that takes no
            memory (a catalogue: ids, sizes and boxes only).
    """

    def __init__(
        self,
        images: Sequence[_Image],
        feature_dim: int,
        source_positions: Sequence[int] | np.ndarray,
        *,
        name: str = "stream window",
        with_features: bool = True,
    ):
        self.path = Path(f"<{name}>")
        self.metadata = {}
        self.feature_dim = int(feature_dim)
        counts = np.asarray([len(image[3]) for image in images], dtype=np.int64)  # (W,)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # (W + 1,)
        num_rows = int(self.offsets[-1]) + 1
        if with_features:
            features = np.empty((num_rows, self.feature_dim), dtype=np.float16)  # (R + 1, F)
            for image, start, end in zip(images, self.offsets[:-1], self.offsets[1:]):
                features[start:end] = image[4]
            features[-1] = 0
        else:
            features = np.broadcast_to(np.zeros((1, self.feature_dim), np.float16), (num_rows, self.feature_dim))
        boxes = np.zeros((num_rows, 4), dtype=np.float32)  # (R + 1, 4)
        for image, start, end in zip(images, self.offsets[:-1], self.offsets[1:]):
            boxes[start:end] = image[3]
        self.features, self.boxes = features, boxes
        self.image_ids = np.asarray([image[0] for image in images], dtype=str)
        self.sizes = np.asarray([(image[1], image[2]) for image in images], dtype=np.float32).reshape(-1, 2)
        self.num_regions = counts
        self.padding_row = num_rows - 1
        self.source_positions = np.asarray(source_positions, dtype=np.int64)  # (W,)
        self._position = {image_id: i for i, image_id in enumerate(self.image_ids.tolist())}

    def __reduce__(self) -> tuple[Any, ...]:
        return object.__reduce_ex__(self, 2)  # the arrays themselves: a window has no files to reopen

    @property
    def checksums(self) -> None:
        return None

    def verify(self) -> None:
        return None


def _prefetched(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """The items, produced ``depth`` ahead by a background thread (Parquet decoding releases the GIL, so reading
    overlaps the consumer's work); the producer's errors are raised here, and stopping early stops the thread."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put((done, None))
        except BaseException as error:  # handed to the consumer
            buffer.put((done, error))

    thread = threading.Thread(target=produce, name="region-feature-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.1)


def _shuffled(items: Iterator[Any], buffer_size: int, rng: np.random.Generator) -> Iterator[Any]:
    """The items through a shuffle buffer: once it holds ``buffer_size`` items each new one takes the place of a
    random one, which goes out; at the end the rest go out in random order. The choices depend only on the
    generator and the count of items, so a replay with the same seed gives the same order."""
    if buffer_size <= 1:
        yield from items
        return
    buffer: list[Any] = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        slot = int(rng.integers(buffer_size))
        yield buffer[slot]
        buffer[slot] = item
    for slot in rng.permutation(len(buffer)):
        yield buffer[int(slot)]


class StreamingRegionFeatures:
    """Windows of images from a streaming region-feature dataset, through a seeded, resumable shuffle buffer.

    Args:
        source: An export directory, Parquet files, a Hub dataset id (see
            `hierarchical_vl.data.parquet_features.load_region_features`) or a ``datasets.IterableDataset`` of
            such rows.
        split: The split to stream.
        buffer_size: Images in the shuffle buffer (1 or 0: the stored order).
        seed: Seed of the shuffle; epoch e shuffles with ``(seed, e)``.
        window_images: Images per window.
        **load_options: ``download`` (``False``: stream a Hub dataset over HTTP without a local copy),
            ``revision``, ``token``, ``endpoint``, ``cache_dir`` (see ``load_region_features``).
    """

    def __init__(
        self,
        source: Any,
        *,
        split: str = "train",
        buffer_size: int = 1000,
        seed: int = 0,
        window_images: int = 256,
        **load_options: Any,
    ):
        if window_images < 1:
            raise ValueError(f"window_images must be positive, got {window_images}")
        self.source = source
        self.split = split
        self.load_options = load_options
        self._shards = None  # the shards, when the stream found them itself (the catalogue reads them directly)
        if hasattr(source, "with_format") and hasattr(source, "iter"):
            self.dataset = source
        else:
            token, cache_dir = load_options.get("token"), load_options.get("cache_dir")
            self._shards = _resolve_shards(source, split, **load_options)
            self.dataset = _load_shards(
                self._shards, split, streaming=True, columns=None, cache_dir=cache_dir, token=token
            )
        self.feature_dim = int(self.dataset.features["features"].feature.length)
        self.buffer_size = int(buffer_size)
        self.seed = int(seed)
        self.window_images = int(window_images)
        self.epoch = 0
        self.images_emitted = 0  # images of this epoch handed over in windows
        self._catalogue: RegionFeatureWindow | None = None

    def _input(self, columns: Sequence[str] | None = None) -> Iterator[tuple[int, _Image]]:
        """(input position, image) of every row in stored order.

        Shards the stream resolved itself are read with pyarrow, record batch by record batch and only the given
        columns (what ``self.dataset`` reads, without its per-batch conversions: half the time for 2048-d rows);
        a ``datasets.IterableDataset`` given as the source is read through its Arrow format.
        """
        if self._shards is not None:
            images = _prefetched(_iter_shard_images(self._shards, _READ_ROWS, columns or _COLUMNS), _PREFETCH_ROWS)
        else:
            dataset = self.dataset if columns is None else self.dataset.select_columns(list(columns))
            images = self._dataset_images(dataset)
        yield from enumerate(images)

    def _dataset_images(self, dataset: Any) -> Iterator[_Image]:
        row = 0
        for table in dataset.with_format("arrow").iter(batch_size=_READ_ROWS):
            yield from _batch_images(table, f"{self.source} (stream)", row)
            row += table.num_rows

    def _ordered(self) -> Iterator[tuple[int, _Image]]:
        """This epoch's shuffled images, after the ones already handed over."""
        rng = np.random.default_rng([self.seed, self.epoch])
        items = self._input()
        if self.buffer_size > 1:  # own copies: a view would keep its whole Arrow batch alive while buffered
            items = ((p, (i, w, h, boxes.copy(), features.copy())) for p, (i, w, h, boxes, features) in items)
        order = _shuffled(items, self.buffer_size, rng)
        for _ in range(self.images_emitted):  # replay up to the resume point without building windows
            if next(order, None) is None:
                break
        return order

    def __iter__(self) -> Iterator[RegionFeatureWindow]:
        """Yields this epoch's windows from where the stream stands; at the end the next epoch begins."""
        pending: list[tuple[int, _Image]] = []
        for item in self._ordered():
            pending.append(item)
            if len(pending) == self.window_images:
                yield self._window(pending)
                pending = []
        if pending:
            yield self._window(pending)
        self.epoch += 1
        self.images_emitted = 0

    def _window(self, items: list[tuple[int, _Image]]) -> RegionFeatureWindow:
        window = RegionFeatureWindow(
            [image for _, image in items],
            self.feature_dim,
            [position for position, _ in items],
            name=f"{self.source} epoch {self.epoch} images {self.images_emitted}-{self.images_emitted + len(items)}",
        )
        self.images_emitted += len(items)
        return window

    def state_dict(self) -> dict[str, int]:
        """Where the stream stands: the seed, buffer size and window size it shuffles with, the epoch, and the
        images of the epoch handed over in windows so far."""
        return {
            "seed": self.seed,
            "buffer_size": self.buffer_size,
            "window_images": self.window_images,
            "epoch": self.epoch,
            "images_emitted": self.images_emitted,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resumes from a [`state_dict`]: the next iteration gives the rest of that epoch's windows."""
        self.seed = int(state["seed"])
        self.buffer_size = int(state["buffer_size"])
        self.window_images = int(state.get("window_images", self.window_images))
        self.epoch = int(state["epoch"])
        self.images_emitted = int(state["images_emitted"])

    def set_epoch(self, epoch: int) -> None:
        """Starts epoch ``epoch`` from its beginning."""
        self.epoch, self.images_emitted = int(epoch), 0

    def catalogue(self) -> RegionFeatureWindow:
        """Ids, sizes and boxes of every image of the stream, in stored order, without features (the ``features``
        column is not read): the store the annotations are encoded against, whose index is the input position."""
        if self._catalogue is None:
            items = [image for _, image in self._input(["image_id", "width", "height", "boxes"])]
            self._catalogue = RegionFeatureWindow(
                items, self.feature_dim, np.arange(len(items)), name=f"{self.source} catalogue", with_features=False
            )
        return self._catalogue

    def images(self, image_ids: Iterable[Any]) -> RegionFeatureWindow:
        """An in-memory store of the named images, read in one pass in stored order (stopping once all are found;
        the shuffle state is left as it is): the few images of an evaluation split.

        Args:
            image_ids: The images to keep (ids as the stream names them; ids not in the stream are left out, for
                the dataset encoded on the result to report).
        """
        wanted = {str(image_id) for image_id in image_ids}
        kept: list[tuple[int, _Image]] = []
        if wanted:
            for position, (image_id, width, height, boxes, features) in self._input():
                if image_id in wanted:
                    kept.append((position, (image_id, width, height, boxes.copy(), features.copy())))
                    if len(kept) == len(wanted):
                        break
        return RegionFeatureWindow(
            [image for _, image in kept],
            self.feature_dim,
            [position for position, _ in kept],
            name=f"{self.source} {len(kept)} images",
        )


class StreamingBatches:
    """Collated batches of an encoded dataset whose regions come window by window from a stream.

    Args:
        dataset: An encoded dataset (``EncodedVQADataset``, ``EncodedCaptionDataset``, ``EncodedGroundingDataset``)
            built on ``features.catalogue()``.
        features: The stream.
        collator: A collator class or factory, called with a window's view of the dataset (e.g. ``VQACollator``
            or ``functools.partial(VQACollator, max_regions=36)``).
        batch_size: Examples per batch.
        seed: Seed of the order of each window's examples.
        drop_last: Leave out each window's last batch when it is smaller than ``batch_size``.
    """

    def __init__(
        self,
        dataset: Any,
        features: StreamingRegionFeatures,
        collator: Callable[[Any], Callable[[np.ndarray], dict[str, Any]]],
        batch_size: int,
        *,
        seed: int = 0,
        drop_last: bool = False,
    ):
        catalogue = features.catalogue()
        if dataset.store is not catalogue and not (
            len(dataset.store) == len(catalogue) and np.array_equal(dataset.store.image_ids, catalogue.image_ids)
        ):
            raise ValueError(
                "encode the dataset against the stream's catalogue() (a store with the stream's images in its order), "
                "so that its image indices are stream positions"
            )
        self.dataset, self.features, self.collator = dataset, features, collator
        self.batch_size, self.seed, self.drop_last = int(batch_size), int(seed), drop_last
        image_index = np.asarray(dataset.image_index, dtype=np.int64)  # (M,) catalogue positions
        self._order = np.argsort(image_index, kind="stable")  # examples grouped by image
        counts = np.bincount(image_index, minlength=len(catalogue))  # (N,)
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # (N + 1,)
        self._num_images = len(catalogue)
        self._window_state = features.state_dict()
        self._batches_in_window = 0

    def view(self, window: RegionFeatureWindow) -> Any:
        """The dataset with its store indices pointing into ``window`` (-1 for images outside it); shares arrays."""
        lookup = np.full(self._num_images, -1, dtype=np.int64)  # (N,) catalogue position -> window index
        lookup[window.source_positions] = np.arange(len(window))
        view = copy.copy(self.dataset)
        view.store = window
        view.image_index = lookup[self.dataset.image_index]
        if hasattr(self.dataset, "images_store_index"):  # retrieval: the distinct images' store indices
            view.images_store_index = lookup[self.dataset.images_store_index]
        return view

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Yields the batches of the stream's windows from where they stand (one epoch of the stream)."""
        skip = self._batches_in_window
        self._window_state = self.features.state_dict()
        for window in self.features:
            examples = np.concatenate(
                [self._order[self._starts[p] : self._starts[p + 1]] for p in window.source_positions]
            )  # (E,) examples of the window's images
            state = self._window_state  # the stream's state before this window: the key of its order
            rng = np.random.default_rng([self.seed, state["epoch"], state["images_emitted"]])
            examples = examples[rng.permutation(len(examples))]
            collate = self.collator(self.view(window))
            stop = len(examples) - (len(examples) % self.batch_size if self.drop_last else 0)
            for number, first in enumerate(range(0, stop, self.batch_size)):
                if number < skip:
                    continue
                self._batches_in_window = number + 1
                yield collate(examples[first : first + self.batch_size])
            skip = 0
            self._batches_in_window = 0
            self._window_state = self.features.state_dict()

    def state_dict(self) -> dict[str, Any]:
        """The stream's state at the start of the current window and the batches of that window already given."""
        return {"features": dict(self._window_state), "batches_in_window": self._batches_in_window}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resumes from a [`state_dict`]: the next iteration goes on with the next batch."""
        self.features.load_state_dict(state["features"])
        self._window_state = dict(state["features"])
        self._batches_in_window = int(state["batches_in_window"])
