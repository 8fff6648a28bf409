"""The fast region-feature store every reader converts into.

A store is a directory:

* ``features.f16`` -- (R + 1, F) float16, C order, raw bytes read through ``np.memmap``; row R is all zeros and
  serves as padding, so that a padded batch is one fancy-index gather;
* ``boxes.npy`` -- (R + 1, 4) float32 boxes x1 y1 x2 y2 in pixels (row R zeros);
* ``index.npz`` -- ``image_ids`` (N,) unicode, ``offsets`` (N + 1,) int64 first row of each image,
  ``sizes`` (N, 2) float32 image width and height;
* ``store.json`` -- format version, counts, feature width, sources, the identity of each source when it was
  converted (``source_identity``: path, size, modification time and a hash of its first and last MiB, see
  [`source_identity`]), the corpus of each source when the sources were named per corpus (``source_corpora``: the
  store's ids are then corpus image ids, ``coco/42``), the records skipped while converting and ``sha256``, the
  SHA-256 of each data file (absent in stores of older versions; ``hvl features verify`` recomputes them).

Opening a store validates its metadata and index (counts, offsets, duplicate ids, file lengths) without reading the
features. The directory is written under a temporary name next to the destination and renamed into place when
complete, so a store is either whole or absent; a writer holds ``flock`` on ``<destination>.lock`` meanwhile, so a
second conversion into the same destination fails at once ([`StoreBusyError`]), and a full disk is reported as one
[`DiskFullError`] line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

try:  # POSIX: conversions to one destination are serialised with flock
    import fcntl
except ImportError:  # elsewhere there is no lock
    fcntl = None

from ..atomic_files import DiskFullError, discard, disk_full, file_sha256, publish, temporary_sibling
from .corpora import corpus_image_id
from .feature_readers import (
    RegionFeatureError,
    RegionFeatureRecord,
    SkippedRecord,
    canonical_image_id,
    open_region_feature_reader,
)

__all__ = [
    "ConversionReport",
    "DiskFullError",
    "StoreBusyError",
    "RegionFeatureStore",
    "RegionFeatureStoreWriter",
    "convert_region_features",
    "source_changes",
    "source_identity",
]

_STORE_FORMAT = "hierarchical-vl-region-store"
_STORE_VERSION = 1
_FEATURES_FILE = "features.f16"
_BOXES_FILE = "boxes.npy"
_INDEX_FILE = "index.npz"
_META_FILE = "store.json"
_HASHED_BYTES = 1 << 20  # the first and the last MiB of each source file
_CHECKSUM_KEY = "sha256"  # store.json: {member file: SHA-256 hex}; absent in stores of older versions
_CHUNK = 8 << 20
_REQUIRED_KEYS = ("format", "version", "num_images", "num_regions", "feature_dim")


class StoreBusyError(FileExistsError):
    """Another process is writing the same store destination (it holds ``<destination>.lock``)."""


def _lock_destination(path: Path) -> tuple[Path, int]:
    """Takes an exclusive ``flock`` on ``<path>.lock``, failing at once if another process holds it."""
    lock = path.with_name(path.name + ".lock")
    while True:
        handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            raise StoreBusyError(
                f"another conversion is writing {path} (it holds {lock}); wait for it to finish or choose another "
                "destination"
            ) from None
        try:  # the holder before us may have removed the file after we opened it: lock the one at the path
            if os.fstat(handle).st_ino == os.stat(lock).st_ino:
                return lock, handle
        except FileNotFoundError:
            pass
        os.close(handle)


def _unlock_destination(lock: Path, handle: int) -> None:
    try:
        lock.unlink(missing_ok=True)  # while still holding it, so no one locks a file about to vanish
    finally:
        os.close(handle)


def _file_digest(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(_HASHED_BYTES))
        if size > _HASHED_BYTES:
            handle.seek(max(_HASHED_BYTES, size - _HASHED_BYTES))
            digest.update(handle.read(_HASHED_BYTES))
    return digest.hexdigest()


def _one_identity(source: Path) -> dict[str, Any]:
    if source.is_dir():  # an npz/npy directory or an LMDB environment: every file's size and time
        digest = hashlib.sha256()
        size = mtime = count = 0
        for item in sorted(p for p in source.rglob("*") if p.is_file()):
            stat = item.stat()
            digest.update(f"{item.relative_to(source).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            size, mtime, count = size + stat.st_size, max(mtime, stat.st_mtime_ns), count + 1
        identity = {"kind": "directory", "size": size, "mtime_ns": mtime, "files": count}
        return {"path": str(source.resolve()), **identity, "sha256": digest.hexdigest()}
    stat = source.stat()
    identity = {"kind": "file", "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return {"path": str(source.resolve()), **identity, "sha256_head_tail": _file_digest(source, stat.st_size)}


def source_identity(sources: str | os.PathLike | Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """The identity of region-feature sources, as a conversion records it in ``store.json``.

    A file is identified by its absolute path, size, modification time (ns) and the SHA-256 of its first and last
    MiB; a directory by its path, total size, newest modification time, file count and a hash of every file's
    relative path, size and time. Cheap for any size, and any edit changes the size, the time or the hash.

    Args:
        sources: The files or directories a store is converted from.

    Returns:
        One dict per source, JSON-serialisable.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    return [_one_identity(Path(source)) for source in sources]


def source_changes(
    recorded: Sequence[Mapping[str, Any]], sources: str | os.PathLike | Sequence[str | os.PathLike]
) -> list[str]:
    """How ``sources`` differ from the identity a store recorded (empty when they are the same).

    Args:
        recorded: A store's ``source_identity`` metadata.
        sources: The sources as they are now.

    Returns:
        One line per difference, e.g. ``"/data/f.tsv: size 1200 -> 800"``.
    """
    current = source_identity(sources)
    if [item.get("path") for item in recorded] != [item["path"] for item in current]:
        return [f"sources {[item.get('path') for item in recorded]} -> {[item['path'] for item in current]}"]
    changes = []
    for old, new in zip(recorded, current):
        for key, value in new.items():
            if key != "path" and old.get(key) != value:
                detail = "content changed" if key.startswith("sha256") else f"{key} {old.get(key)} -> {value}"
                changes.append(f"{new['path']}: {detail}")
    return changes


def _read_metadata(meta_file: Path) -> dict[str, Any]:
    try:
        metadata = json.loads(meta_file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise RegionFeatureError(meta_file, f"byte {error.start}", "not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise RegionFeatureError(
            meta_file, f"line {error.lineno} column {error.colno}", f"not valid JSON: {error.msg}"
        ) from None
    if not isinstance(metadata, dict):
        raise RegionFeatureError(meta_file, "top level", f"expected a JSON object, found {type(metadata).__name__}")
    missing = [key for key in _REQUIRED_KEYS if key not in metadata]
    if missing:
        raise RegionFeatureError(meta_file, "keys", f"missing {', '.join(missing)}")
    if metadata.get("format") != _STORE_FORMAT or metadata.get("version") != _STORE_VERSION:
        raise ValueError(f"{meta_file}: not a version-{_STORE_VERSION} {_STORE_FORMAT}")
    for key, least in (("num_images", 0), ("num_regions", 0), ("feature_dim", 1)):
        value = metadata[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise RegionFeatureError(meta_file, f"key {key!r}", f"expected an integer >= {least}, found {value!r}")
    checksums = metadata.get(_CHECKSUM_KEY)
    if checksums is not None and not (
        isinstance(checksums, dict) and all(isinstance(v, str) for v in checksums.values())
    ):
        raise RegionFeatureError(meta_file, f"key {_CHECKSUM_KEY!r}", "expected an object of file name: hex digest")
    return metadata


def _member_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        raise RegionFeatureError(path, "file", "missing (the store is incomplete)") from None


def _open_boxes(path: Path, num_rows: int) -> np.ndarray:
    _member_size(path)
    try:
        boxes = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:  # a bad header, or "mmap length is greater than file size"
        raise RegionFeatureError(
            path, "file", f"not a readable .npy array ({error}); it is truncated or damaged"
        ) from None
    if boxes.shape != (num_rows, 4) or boxes.dtype.kind != "f":
        raise RegionFeatureError(
            path, "shape", f"{boxes.shape} {boxes.dtype}, but {_META_FILE} implies ({num_rows}, 4) float boxes"
        )
    return boxes


def _read_index(path: Path, metadata: Mapping[str, Any], num_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    _member_size(path)
    try:
        with np.load(path, allow_pickle=False) as index:
            image_ids, offsets, sizes = index["image_ids"], index["offsets"], index["sizes"]
    except KeyError as error:
        raise RegionFeatureError(path, "arrays", f"missing {error}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise RegionFeatureError(
            path, "file", f"not a readable .npz archive ({error}); it is truncated or damaged"
        ) from None
    count = int(metadata["num_images"])
    if image_ids.shape != (count,) or image_ids.dtype.kind != "U":
        raise RegionFeatureError(
            path, "image_ids", f"{image_ids.shape} {image_ids.dtype}, but {_META_FILE} says {count} string ids"
        )
    if offsets.shape != (count + 1,) or offsets.dtype.kind not in "iu":
        raise RegionFeatureError(path, "offsets", f"{offsets.shape} {offsets.dtype}, expected ({count + 1},) integers")
    if sizes.shape != (count, 2):
        raise RegionFeatureError(path, "sizes", f"shape {sizes.shape}, expected ({count}, 2)")
    offsets = offsets.astype(np.int64, copy=False)
    if count and (offsets[0] != 0 or offsets[-1] != num_rows - 1):
        raise RegionFeatureError(
            path, "offsets", f"run from {offsets[0]} to {offsets[-1]}, expected 0 to {num_rows - 1} (num_regions)"
        )
    decreasing = np.flatnonzero(np.diff(offsets) < 0)
    if decreasing.size:
        i = int(decreasing[0])
        raise RegionFeatureError(path, "offsets", f"decrease at image {i} ({offsets[i]} -> {offsets[i + 1]})")
    if not np.isfinite(sizes).all():
        raise RegionFeatureError(path, "sizes", "image widths or heights are NaN or infinite")
    counts = np.diff(offsets)
    for key, value in (("min_regions", counts.min()), ("max_regions", counts.max())) if count else ():
        if key in metadata and metadata[key] != int(value):
            raise RegionFeatureError(path, key, f"{int(value)} in the index, {metadata[key]!r} in {_META_FILE}")
    return image_ids, offsets, sizes


class RegionFeatureStore(Mapping[str, dict]):
    """Random access to the region features of many images, by image id or by image index.

    ``store[image_id]`` gives ``{"image_id", "features" (K, F) float16, "boxes" (K, 4) float32 pixels,
    "width", "height"}``; [`~RegionFeatureStore.region_rows`] and [`~RegionFeatureStore.read_rows`] build a padded
    batch from image indices with one fancy-index gather.
    Ids are looked up in canonical form, so ``store[42]`` and ``store["42"]`` are the same image. The store pickles
    by path (DataLoader workers reopen the memory map instead of copying it).

    Args:
        path: Directory written by [`RegionFeatureStoreWriter`] or [`convert_region_features`].
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta_file = self.path / _META_FILE
        if not meta_file.exists():
            raise FileNotFoundError(f"{self.path} is not a region-feature store (no {_META_FILE})")
        self.metadata: dict[str, Any] = _read_metadata(meta_file)
        self.feature_dim = int(self.metadata["feature_dim"])
        num_rows = int(self.metadata["num_regions"]) + 1
        features_file = self.path / _FEATURES_FILE
        expected = num_rows * self.feature_dim * np.dtype(np.float16).itemsize
        actual = _member_size(features_file)
        if actual != expected:
            raise RegionFeatureError(
                features_file,
                "length",
                f"{actual} bytes, but {_META_FILE} implies {expected} ({num_rows - 1} regions + a padding row of "
                f"width {self.feature_dim} in float16); the file is {'truncated' if actual < expected else 'too long'}",
            )
        self.features = np.memmap(features_file, dtype=np.float16, mode="r", shape=(num_rows, self.feature_dim))
        self.boxes = _open_boxes(self.path / _BOXES_FILE, num_rows)  # (R + 1, 4)
        self.image_ids, self.offsets, self.sizes = _read_index(self.path / _INDEX_FILE, self.metadata, num_rows)
        self.num_regions = self.offsets[1:] - self.offsets[:-1]  # (N,)
        self.padding_row = num_rows - 1
        self._position = {image_id: i for i, image_id in enumerate(self.image_ids.tolist())}
        if len(self._position) != len(self.image_ids):
            seen: set[str] = set()
            repeated = next(i for i in self.image_ids.tolist() if i in seen or seen.add(i))
            raise RegionFeatureError(self.path / _INDEX_FILE, "image_ids", f"duplicate image id {repeated!r}")

    @property
    def checksums(self) -> dict[str, str] | None:
        """The SHA-256 of each data file recorded at conversion, or ``None`` for a store of an older version."""
        recorded = self.metadata.get(_CHECKSUM_KEY)
        return dict(recorded) if isinstance(recorded, Mapping) else None

    def verify(self) -> list[str] | None:
        """Recomputes the SHA-256 of every data file and compares it with the one recorded at conversion.

        Reads every byte of the store (unlike opening it, which checks the index only).

        Returns:
            One line per file that differs (empty when all match), or ``None`` when the store records no
            checksums (written by an older version).
        """
        recorded = self.checksums
        if recorded is None:
            return None
        problems = []
        for name in (_FEATURES_FILE, _BOXES_FILE, _INDEX_FILE):
            path = self.path / name
            if name not in recorded:
                problems.append(f"{path}: no checksum recorded in {_META_FILE}")
                continue
            actual = file_sha256(path)
            if actual != recorded[name]:
                problems.append(
                    f"{path}: sha256 {actual} differs from {recorded[name]} recorded at conversion (changed or damaged)"
                )
        return problems

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (str(self.path),)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.image_ids.tolist())

    def __contains__(self, image_id: object) -> bool:
        return canonical_image_id(image_id) in self._position

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, images={len(self)}, regions={self.padding_row}, "
            f"feature_dim={self.feature_dim})"
        )

    @property
    def max_regions(self) -> int:
        """Most regions of any image in the store."""
        return int(self.num_regions.max()) if len(self) else 0

    @property
    def skipped(self) -> list[str]:
        """Records left out when the store was converted (as ``file, location: problem`` lines)."""
        return list(self.metadata.get("skipped", []))

    def index_of(self, image_id: Any) -> int:
        """Returns the image index (row of ``image_ids``) of an image id."""
        try:
            return self._position[canonical_image_id(image_id)]
        except KeyError:
            raise KeyError(f"image {image_id!r} is not in the region-feature store {self.path}") from None

    def indices(self, image_ids: Iterable[Any], *, missing: str = "raise") -> np.ndarray:
        """Image indices of many image ids.

        Args:
            image_ids: Ids in any form [`canonical_image_id`] accepts.
            missing: ``"raise"`` to fail on ids not in the store (listing some), or ``"mark"`` to return -1 for them.

        Returns:
            (M,) int64 image indices.
        """
        if not isinstance(image_ids, (Sequence, np.ndarray)):
            image_ids = list(image_ids)
        position = self._position
        result = np.fromiter(
            (position.get(canonical_image_id(i), -1) for i in image_ids), dtype=np.int64, count=len(image_ids)
        )
        if missing == "raise" and (result < 0).any():
            absent = [image_ids[i] for i in np.flatnonzero(result < 0)[:5]]
            raise KeyError(
                f"{int((result < 0).sum())} image ids are not in the region-feature store {self.path}, e.g. {absent}"
            )
        return result

    def __getitem__(self, image_id: Any) -> dict[str, Any]:
        index = self.index_of(image_id)
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        width, height = (float(v) for v in self.sizes[index])
        return {
            "image_id": str(self.image_ids[index]),
            "features": self.features[start:end],  # (K, F) float16, read-only view
            "boxes": np.asarray(self.boxes[start:end]),  # (K, 4) float32 pixels
            "width": width,
            "height": height,
        }

    def region_rows(self, image_indices: np.ndarray, max_regions: int | None = 100) -> tuple[np.ndarray, np.ndarray]:
        """Store rows of the regions of a batch of images, padded with the all-zero padding row.

        Args:
            image_indices: (B,) image indices.
            max_regions: Cap on regions per image (the first ones are kept); ``None`` for no cap.

        Returns:
            rows (B, T) int64 and mask (B, T) int64, T = most regions in the batch after the cap.
        """
        image_indices = np.asarray(image_indices, dtype=np.int64)
        starts = self.offsets[image_indices]  # (B,)
        counts = self.num_regions[image_indices]  # (B,)
        if max_regions is not None:
            counts = np.minimum(counts, max_regions)
        width = int(counts.max()) if counts.size else 0
        steps = np.arange(width, dtype=np.int64)  # (T,)
        mask = steps[None, :] < counts[:, None]  # (B, T)
        rows = np.where(mask, starts[:, None] + steps[None, :], self.padding_row)  # (B, T)
        return rows, mask.astype(np.int64)

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """Reads region features by store row with one fancy-index gather of the memory map.

        Args:
            rows: (B, T) store rows (from [`region_rows`]).

        Returns:
            (B, T, F) float16 features (a new array; numpy allocates it with transparent huge pages, which makes
            filling tens of megabytes much cheaper than with a fresh torch allocation).
        """
        return np.asarray(self.features[rows.reshape(-1)]).reshape(*rows.shape, self.feature_dim)

    def normalized_boxes(self, rows: np.ndarray, image_indices: np.ndarray) -> np.ndarray:
        """(B, T, 4) float32 boxes of the given rows divided by their image's width and height, in [0, 1]."""
        sizes = self.sizes[np.asarray(image_indices, dtype=np.int64)]  # (B, 2)
        scale = np.concatenate([sizes, sizes], axis=1)[:, None, :]  # (B, 1, 4) w h w h
        return np.clip(self.boxes[rows] / scale, 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------
def _is_store(path: Path) -> bool:
    """Whether ``path`` is a store directory (its ``store.json`` says so, or it has a store's index and features)."""
    if not path.is_dir() or path.is_symlink():
        return False
    try:
        return json.loads((path / _META_FILE).read_text()).get("format") == _STORE_FORMAT
    except (OSError, ValueError, AttributeError):
        return (path / _INDEX_FILE).is_file() and (path / _FEATURES_FILE).is_file()


class RegionFeatureStoreWriter:
    """Writes a [`RegionFeatureStore`] atomically, one image at a time.

    Use as a context manager: the store appears at ``path`` only when the block exits without an error; on error
    the temporary directory is removed.

    Args:
        path: Destination directory (must not exist unless ``overwrite``).
        feature_dim: Feature width; taken from the first record when ``None``.
        overwrite: Replace an existing store at ``path``.
        metadata: Extra fields for ``store.json``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        feature_dim: int | None = None,
        overwrite: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ):
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists; pass overwrite=True (--overwrite) to replace it")
        if self.path.exists() and not _is_store(self.path):
            raise FileExistsError(
                f"{self.path} exists and is not a region-feature store (no {_META_FILE} of format {_STORE_FORMAT!r}); "
                "overwrite replaces only a store, so nothing was deleted: choose another destination"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _lock_destination(self.path)  # a second writer of the same destination fails here
        self.feature_dim = feature_dim
        self.overwrite = overwrite
        self.metadata = dict(metadata or {})
        self.skipped: list[SkippedRecord] = []
        self._closed = True  # until the files below exist, so that abort() only releases the lock
        self._features = None
        try:
            self._tmp = temporary_sibling(self.path, directory=True)
            self._features = open(self._tmp / _FEATURES_FILE, "wb")
        except BaseException as error:
            _unlock_destination(*self._lock)
            self._raise_disk_full(error)
            raise
        self._features_hash = hashlib.sha256()
        self._boxes: list[np.ndarray] = []
        self._ids: list[str] = []
        self._seen: set[str] = set()
        self._offsets = [0]
        self._sizes: list[tuple[float, float]] = []
        self._closed = False

    def _raise_disk_full(self, error: BaseException) -> None:
        """Re-raises an ``ENOSPC`` error as a one-line [`DiskFullError`] (after the caller cleaned up)."""
        full = disk_full(
            error, f"disk full while writing {self.path}; nothing was published; the previous store (if any) is intact"
        )
        if full is not None and full is not error:
            raise full from error

    def __enter__(self) -> RegionFeatureStoreWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def add(
        self,
        image_id: Any,
        boxes: np.ndarray,
        features: np.ndarray,
        width: float,
        height: float,
    ) -> None:
        """Appends one image.

        Args:
            image_id: The image id (stored in canonical form).
            boxes: (K, 4) boxes x1 y1 x2 y2 in pixels.
            features: (K, F) features (any float dtype; stored as float16).
            width: Image width in pixels.
            height: Image height in pixels.
        """
        key = canonical_image_id(image_id)
        if key in self._seen:
            raise ValueError(f"duplicate image id {key!r}")
        features = np.asarray(features)
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if features.ndim != 2 or features.shape[0] != boxes.shape[0] or features.shape[0] == 0:
            raise ValueError(f"image {key!r}: features {features.shape} and boxes {boxes.shape} do not match")
        if self.feature_dim is None:
            self.feature_dim = int(features.shape[1])
        elif features.shape[1] != self.feature_dim:
            raise ValueError(f"image {key!r}: feature width {features.shape[1]}, expected {self.feature_dim}")
        half = np.ascontiguousarray(features, dtype=np.float16)
        if not np.isfinite(half).all():
            raise ValueError(f"image {key!r}: features are NaN, inf or beyond the float16 range")
        data = half.tobytes()
        try:
            self._features.write(data)
        except OSError as error:
            self.abort()
            self._raise_disk_full(error)
            raise
        self._features_hash.update(data)
        self._boxes.append(boxes)
        self._ids.append(key)
        self._seen.add(key)
        self._offsets.append(self._offsets[-1] + features.shape[0])
        self._sizes.append((float(width), float(height)))

    @property
    def num_images(self) -> int:
        return len(self._ids)

    @property
    def num_regions(self) -> int:
        return int(self._offsets[-1])

    def add_record(self, record: RegionFeatureRecord) -> None:
        """Appends one record of a reader."""
        self.add(record.image_id, record.boxes, record.features, record.width, record.height)

    def close(self) -> Path:
        """Finishes the files and renames the temporary directory into place.

        Returns:
            The store directory.
        """
        if self._closed:
            return self.path
        if not self._ids:
            self.abort()
            raise ValueError(f"no images were written to {self.path}")
        try:
            padding = np.zeros(self.feature_dim, dtype=np.float16).tobytes()
            self._features.write(padding)  # the padding row
            self._features_hash.update(padding)
            self._features.close()  # flushed; publish() below fsyncs every file before the rename
            boxes = np.concatenate(self._boxes + [np.zeros((1, 4), np.float32)], axis=0)
            np.save(self._tmp / _BOXES_FILE, boxes)
            np.savez(
                self._tmp / _INDEX_FILE,
                image_ids=np.asarray(self._ids, dtype=str),
                offsets=np.asarray(self._offsets, dtype=np.int64),
                sizes=np.asarray(self._sizes, dtype=np.float32).reshape(-1, 2),
            )
            counts = np.diff(self._offsets)
            meta = {
                "format": _STORE_FORMAT,
                "version": _STORE_VERSION,
                "num_images": len(self._ids),
                "num_regions": int(self._offsets[-1]),
                "feature_dim": int(self.feature_dim),
                "feature_dtype": "float16",
                "min_regions": int(counts.min()),
                "max_regions": int(counts.max()),
                **self.metadata,
                "skipped": [str(s) for s in self.skipped],
                _CHECKSUM_KEY: {  # the features hashed while written, the two small files read back once
                    _FEATURES_FILE: self._features_hash.hexdigest(),
                    _BOXES_FILE: file_sha256(self._tmp / _BOXES_FILE),
                    _INDEX_FILE: file_sha256(self._tmp / _INDEX_FILE),
                },
            }
            (self._tmp / _META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
            publish(self._tmp, self.path, overwrite=self.overwrite)
        except BaseException as error:
            self.abort()
            self._raise_disk_full(error)
            raise
        self._closed = True
        _unlock_destination(*self._lock)
        return self.path

    def abort(self) -> None:
        """Removes the temporary files; the destination is left untouched."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self._features.closed:
                self._features.close()
        except OSError:  # e.g. ENOSPC again while flushing: the temporary goes anyway
            pass
        finally:
            discard(self._tmp)
            _unlock_destination(*self._lock)


@dataclass
class ConversionReport:
    """What [`convert_region_features`] wrote and what it left out.

    Attributes:
        path: The store directory.
        num_images: Images written.
        num_regions: Regions written.
        feature_dim: Feature width.
        skipped: Records left out in ``skip_bad`` mode.
    """

    path: Path
    num_images: int
    num_regions: int
    feature_dim: int
    skipped: list[SkippedRecord] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"wrote {self.num_images} images, {self.num_regions} regions of width {self.feature_dim} to {self.path}",
            f"skipped {len(self.skipped)} records",
        ]
        lines += [f"  skipped {record}" for record in self.skipped]
        return "\n".join(lines)


def convert_region_features(
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    destination: str | os.PathLike,
    *,
    format: str = "auto",
    feature_dim: int | None = None,
    skip_bad: bool = False,
    numeric_ids: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    corpora: Sequence[str | None] | None = None,
) -> ConversionReport:
    """Converts one or more region-feature sources (e.g. the split TSV files of a release) into one store.

    Args:
        sources: Files or directories, read in order.
        destination: Store directory to write.
        format: Source format ([`~hierarchical_vl.data.feature_readers.FEATURE_FORMATS`]) or ``"auto"``.
        feature_dim: Expected feature width; inferred from the first good record when ``None``.
        skip_bad: Skip bad records (listed in the report and in ``store.json``) instead of raising.
        numeric_ids: Reduce image ids to their trailing number (``COCO_val2014_000000000042`` -> ``42``).
        overwrite: Replace an existing store.
        progress: Show a progress bar per source.
        corpora: The corpus of each source (``None`` for none): its images are stored under their corpus image
            id (``flickr30k/36979``, see `~hierarchical_vl.data.corpora.corpus_image_id`), so that two corpora may
            number images alike; recorded in ``store.json`` as ``source_corpora``.

    Returns:
        A [`ConversionReport`].

    Raises:
        RegionFeatureError: On a bad record (without ``skip_bad``), naming the file, line or key and the problem,
            including an image id repeated across sources.
    """
    from tqdm.auto import tqdm

    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    sources = [Path(s) for s in sources]
    if corpora is not None and len(corpora) != len(sources):
        raise ValueError(f"got {len(sources)} region-feature sources but corpora for {len(corpora)}")
    identity = source_identity(sources)  # before reading: a source edited meanwhile then reads as changed
    metadata: dict[str, Any] = {"sources": [str(s) for s in sources], "source_identity": identity}
    if corpora is not None and any(corpus is not None for corpus in corpora):
        metadata["source_corpora"] = list(corpora)
    writer = RegionFeatureStoreWriter(destination, feature_dim=feature_dim, overwrite=overwrite, metadata=metadata)
    with writer:
        first_seen: dict[str, str] = {}
        for number, source in enumerate(sources):
            corpus = corpora[number] if corpora is not None else None
            reader = open_region_feature_reader(
                source, format, feature_dim=writer.feature_dim, skip_bad=skip_bad, numeric_ids=numeric_ids
            )
            unit = reader.progress_unit
            read = 0  # records of this source, good or bad (duplicates included)
            try:
                with tqdm(
                    total=reader.progress_total,
                    desc=f"converting {source.name}",
                    unit=unit,
                    unit_scale=unit == "B",
                    disable=not progress,
                    dynamic_ncols=True,
                ) as bar:
                    reader.progress_callback = bar.update
                    for record in reader:
                        read += 1
                        if corpus is not None:
                            record = dataclasses.replace(record, image_id=corpus_image_id(corpus, record.image_id))
                        if record.image_id in first_seen:
                            where = f"image {record.image_id!r}"
                            problem = f"duplicate image id (already in {first_seen[record.image_id]})"
                            if not skip_bad:
                                raise RegionFeatureError(source, where, problem)
                            writer.skipped.append(SkippedRecord(str(source), where, problem))
                            continue
                        first_seen[record.image_id] = str(source)
                        writer.add_record(record)
                        bar.set_postfix(skipped=len(writer.skipped) + len(reader.skipped), refresh=False)
            finally:
                close = getattr(reader, "close", None)
                if close is not None:
                    close()
            writer.skipped.extend(reader.skipped)
            if not read and not reader.skipped:  # an empty shard is an error, not a silent no-op
                problem = "no records (the source is empty)"
                if not skip_bad:
                    raise RegionFeatureError(source, "file", problem)
                writer.skipped.append(SkippedRecord(str(source), "file", problem))
    return ConversionReport(
        writer.path, writer.num_images, writer.num_regions, int(writer.feature_dim), list(writer.skipped)
    )
