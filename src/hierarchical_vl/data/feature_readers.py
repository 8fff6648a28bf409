"""Readers for the region-feature files the community distributes.

Every reader yields one [`RegionFeatureRecord`] per image (id, width, height, boxes as x1 y1 x2 y2 in pixels,
features) and validates it on the way: a record whose arrays disagree with ``num_boxes``, whose feature width
differs from the rest of the file, that holds NaN or inf, whose boxes are reversed (``x2 < x1`` or ``y2 < y1``) or
lie more than 1% of the image size outside the image, that repeats an image id, or that cannot be decoded raises
[`RegionFeatureError`] naming the file, the line or key, and the problem. With ``skip_bad=True`` such records
are skipped instead and listed in ``reader.skipped``; nothing is ever dropped silently.

Formats:

* ``tsv``: bottom-up-attention TSV, columns ``image_id, image_w, image_h, num_boxes, boxes, features`` with boxes
  and features as base64 float32 (both the fixed 36-box and the adaptive 10-100-box releases).
* ``lxmert-tsv``: LXMERT's TSV, columns ``img_id, img_h, img_w, objects_id, objects_conf, attrs_id, attrs_conf,
  num_boxes, boxes, features`` (height before width; objects/attrs ids base64 int64, confidences base64 float32).
* ``hdf5``: one HDF5 file with concatenated ``image_features`` (R, F) / ``image_bb`` (R, 4) and per-image
  ``pos_boxes`` (N, 2) start/end rows (or the fixed-K layout (N, K, F) / (N, K, 4)), plus ``image_ids``,
  ``image_w`` and ``image_h`` (N,).
* ``npz-dir``: a directory of one ``<image_id>.npz`` per image (keys ``x``/``features``, ``bbox``/``boxes``,
  ``image_w``/``image_width``, ``image_h``/``image_height``), or of ``<image_id>.npy`` feature arrays each with an
  ``<image_id>_info.npy`` dict (``bbox``, ``image_width``, ``image_height``, ``num_boxes``).
* ``lmdb``: an LMDB environment keyed by image id, one pickled dict per image with the same keys (arrays, or
  base64 strings as in ViLBERT's stores).

The ``.npy`` info files and the LMDB values are pickles. They are read with a restricted unpickler that admits only
dicts, lists, tuples, numbers, strings, bytes and numpy arrays, scalars and dtypes; a pickle that refers to anything
else (a function, a class, a module) is refused with a [`RegionFeatureError`] naming the file and key, and nothing
in it is run. Every other ``np.load`` uses ``allow_pickle=False``.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..processing_hierarchical_vl import region_box_problem
from .feature_records import (
    _b64_array,
    _BadRecord,
    _decode_id,
    _key_location,
    _number,
    _numeric_image_id,
    _overlapping_rows,
    _sampled_width,
)

__all__ = [
    "FEATURE_FORMATS",
    "RegionFeatureError",
    "RegionFeatureReader",
    "RegionFeatureRecord",
    "SkippedRecord",
    "canonical_image_id",
    "detect_feature_format",
    "open_region_feature_reader",
]

_BOTTOM_UP_TSV_COLUMNS = ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features")
_LXMERT_TSV_COLUMNS = (
    "img_id",
    "img_h",
    "img_w",
    "objects_id",
    "objects_conf",
    "attrs_id",
    "attrs_conf",
    "num_boxes",
    "boxes",
    "features",
)
# LXMERT's per-region object/attribute columns and their base64 dtypes (read and written as record ``extras``).
_LXMERT_EXTRA_COLUMNS = (
    ("objects_id", np.int64),
    ("objects_conf", np.float32),
    ("attrs_id", np.int64),
    ("attrs_conf", np.float32),
)

# Key aliases of the dict-per-image stores (npz, npy info, LMDB, HDF5 datasets), in order of preference.
_FEATURE_KEYS = ("features", "x", "image_features", "feature")
_BOX_KEYS = ("boxes", "bbox", "image_bb", "bboxes")
_WIDTH_KEYS = ("image_w", "image_width", "img_w", "width")
_HEIGHT_KEYS = ("image_h", "image_height", "img_h", "height")
_NUM_BOXES_KEYS = ("num_boxes", "num_bbox")
_LMDB_RESERVED_KEYS = (b"keys", b"__keys__", b"__len__")

# The globals a pickled dict of numpy arrays refers to (numpy 1.x ``numpy.core``, 2.x ``numpy._core``), plus the
# harmless builtins of old protocols; everything else is refused by ``_RestrictedUnpickler``.
_NUMPY_PICKLE_NAMES = (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))
_PICKLE_GLOBALS = frozenset(
    [(f"numpy.{core}.{module}", name) for core in ("core", "_core") for module, name in _NUMPY_PICKLE_NAMES]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"), ("collections", "OrderedDict")]
    + [("builtins", name) for name in ("set", "frozenset", "bytearray", "complex")]
)


class RegionFeatureError(ValueError):
    """A region-feature record that cannot be used, with where it is and what is wrong.

    Attributes:
        file: The file (or directory / LMDB environment) holding the record.
        location: The line, key or entry, e.g. ``"line 17"`` or ``"key '42'"``.
        problem: What is wrong with it.
    """

    def __init__(self, file: str | os.PathLike, location: str, problem: str):
        self.file = str(file)
        self.location = location
        self.problem = problem
        super().__init__(f"{self.file}, {location}: {problem}")


@dataclass(frozen=True)
class SkippedRecord:
    """A record left out in ``skip_bad`` mode."""

    file: str
    location: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}, {self.location}: {self.problem}"


@dataclass(frozen=True)
class RegionFeatureRecord:
    """Region features of one image.

    Attributes:
        image_id: Canonical image id (see [`canonical_image_id`]).
        width: Image width in pixels.
        height: Image height in pixels.
        boxes: (K, 4) float32 boxes, x1 y1 x2 y2 in pixels.
        features: (K, F) float32 region features.
        extras: Per-region extra arrays of the source, e.g. LXMERT's ``objects_id`` (K,) int64.
    """

    image_id: str
    width: float
    height: float
    boxes: np.ndarray
    features: np.ndarray
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_boxes(self) -> int:
        return int(self.boxes.shape[0])


def canonical_image_id(image_id: Any) -> str:
    """The string key under which an image id is stored and looked up.

    Integers and digit strings map to the decimal form without leading zeros (``42``, ``"42"`` and ``"000042"``
    are one image); bytes are decoded; any other string is kept as is (after stripping whitespace).
    """
    if isinstance(image_id, (bytes, bytearray)):
        image_id = image_id.decode("utf-8")
    if isinstance(image_id, (int, np.integer)) and not isinstance(image_id, bool):
        return str(int(image_id))
    text = str(image_id).strip()
    if text.isdigit():
        return str(int(text))
    return text


class _UnsafePickleError(pickle.UnpicklingError):
    """A pickle that refers to something other than plain data and numpy arrays (and so could run code)."""


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain data and numpy arrays only: ``find_class`` admits the globals in ``_PICKLE_GLOBALS``."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_GLOBALS:
            raise _UnsafePickleError(
                f"the pickle refers to {module}.{name}, which is not plain data; refused without running it "
                "(feature pickles may hold only dicts, lists, tuples, numbers, strings, bytes and numpy arrays)"
            )
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core.") :]  # numpy 1.x pickles read with numpy 2.x
        return super().find_class(module, name)


def _restricted_loads(data: bytes) -> Any:
    """``pickle.loads`` that builds plain data and numpy arrays and refuses anything else (see the module doc)."""
    return _RestrictedUnpickler(io.BytesIO(data)).load()


def _load_npy_restricted(file: Path) -> np.ndarray:
    """Reads a ``.npy`` file; an object array (e.g. a dict saved with ``np.save``) is unpickled restrictedly."""
    with open(file, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        shape, dtype = None, None
        if version in read_header:
            shape, _, dtype = read_header[version](handle)
        if dtype is None or not dtype.hasobject:  # plain arrays (and other header versions): no pickle allowed
            handle.seek(0)
            return np.load(handle, allow_pickle=False)
        array = _restricted_loads(handle.read())
    if not isinstance(array, np.ndarray) or array.shape != tuple(shape):
        raise ValueError(f"the pickled payload is not the {shape} array its header announces")
    return array


class RegionFeatureReader(ABC):
    """Base class of the readers: validation, duplicate detection, skip mode and progress.

    Subclasses implement ``_entries``, yielding ``(location, payload, progress_units)`` (payload ``None`` for
    entries without data, such as a header line), and ``_parse``, turning a payload into a record or raising
    ``_BadRecord``.

    Args:
        path: The file or directory to read.
        feature_dim: Expected feature width; inferred from the first good record when ``None``.
        skip_bad: Skip bad records and list them in ``skipped`` instead of raising.
        numeric_ids: Reduce image ids to their trailing number (``COCO_val2014_000000000042`` -> ``42``), so that
            stores keyed by file names match the integer ids of the annotations.
    """

    format_name: ClassVar[str] = ""
    progress_unit: ClassVar[str] = "img"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        feature_dim: int | None = None,
        skip_bad: bool = False,
        numeric_ids: bool = False,
    ):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"region-feature source {self.path} does not exist")
        self.feature_dim = feature_dim
        self.skip_bad = skip_bad
        self.numeric_ids = numeric_ids
        self.skipped: list[SkippedRecord] = []
        self.progress_callback: Callable[[int], Any] | None = None

    # -- to implement -------------------------------------------------------------------------------------------
    @abstractmethod
    def _entries(self) -> Iterator[tuple[str, Any, int]]:
        """Yields ``(location, payload, progress_units)`` for every entry of the source."""

    @abstractmethod
    def _parse(self, payload: Any) -> RegionFeatureRecord:
        """Turns one payload into a record, or raises ``_BadRecord``."""

    @property
    def progress_total(self) -> int | None:
        """Total progress units (images, or bytes for TSV files), when known without reading the data."""
        return None

    # -- shared -------------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[RegionFeatureRecord]:
        seen: dict[str, str] = {}
        for location, payload, units in self._entries():
            if payload is None:  # nothing to read here (a blank line, a header)
                self._advance(units)
                continue
            try:
                record = self._parse(payload)
                record = self._check(record)
                if record.image_id in seen:
                    raise _BadRecord(
                        f"duplicate image id {record.image_id!r} (first seen at {seen[record.image_id]})",
                        record.image_id,
                    )
            except _BadRecord as bad:
                where = location if bad.image_id is None else f"{location} (image {bad.image_id!r})"
                if not self.skip_bad:
                    raise RegionFeatureError(self.path, where, bad.problem) from None
                self.skipped.append(SkippedRecord(str(self.path), where, bad.problem))
            else:
                seen[record.image_id] = location
                yield record
            self._advance(units)

    def _advance(self, units: int) -> None:
        if self.progress_callback is not None and units:
            self.progress_callback(units)

    def _image_id(self, raw: Any) -> str:
        if isinstance(raw, (bytes, bytearray)):
            raw = _decode_id(raw)  # a bad-record error, not a UnicodeDecodeError traceback
        if self.numeric_ids:
            try:
                return _numeric_image_id(canonical_image_id(raw))
            except ValueError as error:
                raise _BadRecord(str(error)) from None
        image_id = canonical_image_id(raw)
        if not image_id:
            raise _BadRecord("empty image id")
        return image_id

    def _check(self, record: RegionFeatureRecord) -> RegionFeatureRecord:
        """Validates shapes, sizes and values, and fixes the feature width on the first good record."""
        image_id = record.image_id
        boxes, features = record.boxes, record.features
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise _BadRecord(f"boxes have shape {boxes.shape}, expected (num_boxes, 4)", image_id)
        if features.ndim != 2 or features.shape[1] == 0:
            raise _BadRecord(f"features have shape {features.shape}, expected (num_boxes, dim)", image_id)
        if boxes.shape[0] != features.shape[0]:
            raise _BadRecord(f"{boxes.shape[0]} boxes but {features.shape[0]} feature rows", image_id)
        if boxes.shape[0] == 0:
            raise _BadRecord("no regions (num_boxes is 0)", image_id)
        if self.feature_dim is not None and features.shape[1] != self.feature_dim:
            raise _BadRecord(f"wrong feature width {features.shape[1]}, expected {self.feature_dim}", image_id)
        if not (np.isfinite(record.width) and np.isfinite(record.height) and record.width > 0 and record.height > 0):
            raise _BadRecord(f"invalid image size {record.width} x {record.height}", image_id)
        box_problem = region_box_problem(boxes, record.width, record.height)
        if box_problem is not None:
            raise _BadRecord(box_problem, image_id)
        if not np.isfinite(features).all():
            bad_rows = np.flatnonzero(~np.isfinite(features).all(axis=1))
            raise _BadRecord(f"features contain NaN or inf (region rows {bad_rows[:5].tolist()})", image_id)
        if np.abs(features).max() > np.finfo(np.float16).max:
            raise _BadRecord("feature values exceed the float16 range", image_id)
        if self.feature_dim is None:
            self.feature_dim = int(features.shape[1])
        return record


# ---------------------------------------------------------------------------------------------------------------
# TSV readers
# ---------------------------------------------------------------------------------------------------------------
class _TSVReader(RegionFeatureReader):
    """Base of the TSV readers: one image per line, the columns named by ``columns`` (file order).

    ``size_columns`` names the width and height columns; ``extra_columns`` the per-region ``(name, dtype)``
    columns kept in the record's ``extras``.
    """

    columns: ClassVar[tuple[str, ...]] = ()
    size_columns: ClassVar[tuple[str, str]] = ("image_w", "image_h")
    extra_columns: ClassVar[tuple[tuple[str, type], ...]] = ()
    progress_unit = "B"

    @property
    def progress_total(self) -> int | None:
        return self.path.stat().st_size

    def _entries(self) -> Iterator[tuple[str, Any, int]]:
        if self.feature_dim is None:
            self.feature_dim = _sampled_width(self.path, len(self.columns))  # a cut first line is then blamed
        with open(self.path, "rb") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    yield f"line {line_number}", None, len(line)
                    continue
                truncated = not line.endswith(b"\n")
                fields = line.rstrip(b"\r\n").split(b"\t")
                if line_number == 1 and fields[0].decode("utf-8", "replace") in ("image_id", "img_id"):
                    yield f"line {line_number}", None, len(line)  # header
                    continue
                yield f"line {line_number}", (fields, truncated), len(line)

    def _parse(self, payload: Any) -> RegionFeatureRecord:
        fields, truncated = payload
        try:
            if len(fields) != len(self.columns):
                raise _BadRecord(
                    f"{len(fields)} tab-separated columns, expected {len(self.columns)} ({', '.join(self.columns)})"
                )
            record = self._parse_fields(dict(zip(self.columns, fields)))
            if truncated and self.feature_dim is None:  # nothing else tells whether its last column is whole
                raise _BadRecord(
                    f"its feature width {record.features.shape[1]} is confirmed by no other line, so the features "
                    "may be cut short; pass feature_dim (--feature-dim) if the width is right",
                    record.image_id,
                )
            return record
        except _BadRecord as bad:
            if truncated:
                bad.problem = f"truncated line (no newline at end of file): {bad.problem}"
            raise

    def _parse_fields(self, row: dict[str, bytes]) -> RegionFeatureRecord:
        """Builds the record from the named columns of one line (the first column is the image id)."""
        image_id = self._image_id(row[self.columns[0]])
        # width and height, parsed in file order (a line with both malformed reports the first)
        size = {name: float(_number(row[name], name)) for name in self.columns if name in self.size_columns}
        width, height = (size[name] for name in self.size_columns)
        num_boxes, boxes, features = self._boxes_and_features(row, image_id)
        extras = {}
        for name, dtype in self.extra_columns:
            values = _b64_array(row[name], dtype, name, image_id)
            if values.size != num_boxes:
                raise _BadRecord(
                    f"num_boxes={num_boxes} disagrees with the {name} array ({values.size} values)", image_id
                )
            extras[name] = values
        return RegionFeatureRecord(image_id, width, height, boxes, features, extras)

    def _boxes_and_features(self, row: dict[str, bytes], image_id: str) -> tuple[int, np.ndarray, np.ndarray]:
        num_boxes = int(_number(row["num_boxes"], "num_boxes", int))
        boxes = _b64_array(row["boxes"], np.float32, "boxes", image_id)
        features = _b64_array(row["features"], np.float32, "features", image_id)
        if num_boxes <= 0:
            raise _BadRecord(f"num_boxes is {num_boxes}", image_id)
        if boxes.size != num_boxes * 4:
            raise _BadRecord(
                f"num_boxes={num_boxes} disagrees with the boxes array ({boxes.size} floats, expected {num_boxes * 4})",
                image_id,
            )
        if features.size % num_boxes:
            raise _BadRecord(
                f"num_boxes={num_boxes} disagrees with the features array ({features.size} floats "
                f"is not a multiple of {num_boxes})",
                image_id,
            )
        return num_boxes, boxes.reshape(num_boxes, 4), features.reshape(num_boxes, -1)


class _BottomUpTSVReader(_TSVReader):
    """Reads the bottom-up-attention TSV (36-box and adaptive 10-100-box releases).

    Lines are read as bytes and split on tabs, so the very long feature columns need no csv field-size limit.
    """

    format_name = "tsv"
    columns = _BOTTOM_UP_TSV_COLUMNS


class _LXMERTTSVReader(_TSVReader):
    """Reads LXMERT's TSV variant (height before width, extra object/attribute columns)."""

    format_name = "lxmert-tsv"
    columns = _LXMERT_TSV_COLUMNS
    size_columns = ("img_w", "img_h")
    extra_columns = _LXMERT_EXTRA_COLUMNS


# ---------------------------------------------------------------------------------------------------------------
# Dict-per-image readers (npz / npy directory, LMDB) and HDF5
# ---------------------------------------------------------------------------------------------------------------
def _first_key(mapping: Mapping[str, Any], keys: Sequence[str]) -> str | None:
    for key in keys:
        if key in mapping:
            return key
    return None


def _record_from_mapping(mapping: Mapping[str, Any], image_id: str) -> RegionFeatureRecord:
    """Builds a record from a dict with any of the common key spellings (arrays or base64 strings)."""
    missing = [
        what
        for what, keys in (
            ("features", _FEATURE_KEYS),
            ("boxes", _BOX_KEYS),
            ("width", _WIDTH_KEYS),
            ("height", _HEIGHT_KEYS),
        )
        if _first_key(mapping, keys) is None
    ]
    if missing:
        raise _BadRecord(f"missing {', '.join(missing)} (keys present: {sorted(map(str, mapping))})", image_id)
    num_key = _first_key(mapping, _NUM_BOXES_KEYS)
    num_boxes = int(np.asarray(mapping[num_key]).reshape(-1)[0]) if num_key is not None else None

    def array(keys: Sequence[str], name: str) -> np.ndarray:
        value = mapping[_first_key(mapping, keys)]
        if isinstance(value, (bytes, str)):
            return _b64_array(value.encode() if isinstance(value, str) else value, np.float32, name, image_id)
        try:
            return np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError) as error:
            raise _BadRecord(f"{name} cannot be read as float32: {error}", image_id) from None

    boxes = array(_BOX_KEYS, "boxes")
    features = array(_FEATURE_KEYS, "features")
    if boxes.ndim == 1 and boxes.size % 4 == 0:
        boxes = boxes.reshape(-1, 4)  # flat, e.g. decoded from base64
    count = num_boxes if num_boxes is not None else (boxes.shape[0] if boxes.ndim == 2 else None)
    if num_boxes is not None and boxes.size != num_boxes * 4:
        raise _BadRecord(
            f"num_boxes={num_boxes} disagrees with the boxes array ({boxes.size} floats, expected {num_boxes * 4})",
            image_id,
        )
    if features.ndim == 1 and count:
        if features.size % count:
            raise _BadRecord(
                f"{count} boxes disagree with the features array ({features.size} floats is not a multiple of {count})",
                image_id,
            )
        features = features.reshape(count, -1)
    if num_boxes is not None and features.shape[0] != num_boxes:
        raise _BadRecord(f"num_boxes={num_boxes} disagrees with the features array (shape {features.shape})", image_id)
    width = float(np.asarray(mapping[_first_key(mapping, _WIDTH_KEYS)]).reshape(-1)[0])
    height = float(np.asarray(mapping[_first_key(mapping, _HEIGHT_KEYS)]).reshape(-1)[0])
    return RegionFeatureRecord(image_id, width, height, boxes, features)


class _NpzDirectoryReader(RegionFeatureReader):
    """Reads a directory of one ``.npz`` (or ``.npy`` + ``_info.npy``) per image, in sorted file-name order.

    The image id is the file name without its suffix.
    """

    format_name = "npz-dir"

    def __init__(self, path: str | os.PathLike, **kwargs: Any):
        super().__init__(path, **kwargs)
        if not self.path.is_dir():
            raise NotADirectoryError(f"{self.path} is not a directory of .npz/.npy files")
        self._files = sorted(
            p
            for p in self.path.iterdir()
            if p.suffix == ".npz" or (p.suffix == ".npy" and not p.name.endswith("_info.npy"))
        )

    @property
    def progress_total(self) -> int | None:
        return len(self._files)

    def _entries(self) -> Iterator[tuple[str, Any, int]]:
        for file in self._files:
            yield f"file {file.name!r}", file, 1

    def _parse(self, payload: Any) -> RegionFeatureRecord:
        file: Path = payload
        stem = file.stem
        info_file = file.with_name(f"{stem}_info.npy")
        if file.suffix == ".npy" and not info_file.exists():
            raise _BadRecord(f"missing {info_file.name} next to the feature array")
        try:
            if file.suffix == ".npz":
                with np.load(file, allow_pickle=False) as archive:
                    mapping = {key: archive[key] for key in archive.files}
            else:
                info = _load_npy_restricted(info_file)
                mapping = dict(info.item() if info.dtype == object else info)
                mapping["features"] = np.load(file, allow_pickle=False)
        except _UnsafePickleError as error:
            raise _BadRecord(f"{info_file.name}: {error}") from None
        except (OSError, ValueError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, zlib.error) as error:
            kind = "truncated or damaged archive" if isinstance(error, (zipfile.BadZipFile, zlib.error)) else ""
            raise _BadRecord(f"cannot be read: {kind + ': ' if kind else ''}{error}") from None
        empty = sorted(str(key) for key, value in mapping.items() if np.size(value) == 0)
        if empty:
            raise _BadRecord(f"empty array(s) {', '.join(map(repr, empty))}")
        return _record_from_mapping(mapping, self._image_id(stem))


class _LMDBReader(RegionFeatureReader):
    """Reads an LMDB environment keyed by image id with one pickled dict per image (in key order)."""

    format_name = "lmdb"

    def __init__(self, path: str | os.PathLike, **kwargs: Any):
        super().__init__(path, **kwargs)
        lmdb = _import_optional("lmdb", "LMDB")
        self._env = lmdb.open(
            str(self.path),
            readonly=True,
            lock=False,
            readahead=False,
            subdir=self.path.is_dir(),
            max_readers=64,
        )

    @property
    def progress_total(self) -> int | None:
        return int(self._env.stat()["entries"])

    def _entries(self) -> Iterator[tuple[str, Any, int]]:
        with self._env.begin(buffers=False) as txn:
            for key, value in txn.cursor():
                if key in _LMDB_RESERVED_KEYS:
                    continue
                yield _key_location(key), (key, value), 1

    def _parse(self, payload: Any) -> RegionFeatureRecord:
        key, value = payload
        image_id = self._image_id(key)
        try:
            mapping = _restricted_loads(value)
        except _UnsafePickleError as error:
            raise _BadRecord(str(error), image_id) from None
        except Exception as error:  # any unpickling failure is a bad record
            raise _BadRecord(f"value cannot be unpickled: {type(error).__name__}: {error}", image_id) from None
        if not isinstance(mapping, Mapping):
            raise _BadRecord(f"value is a {type(mapping).__name__}, expected a dict", image_id)
        return _record_from_mapping(mapping, image_id)

    def close(self) -> None:
        self._env.close()


class _HDF5Reader(RegionFeatureReader):
    """Reads one HDF5 file with concatenated regions and per-image start/end rows.

    Datasets (aliases in brackets): ``image_features`` [features] (R, F) and ``image_bb`` [boxes] (R, 4) with
    ``pos_boxes`` [rows] (N, 2) start/end rows, or the fixed-K layout (N, K, F) / (N, K, 4) without row table;
    ``image_ids`` (N,) ints or strings; ``image_w`` [image_width, widths] and ``image_h`` [image_height, heights]
    (N,). Files without ``image_ids`` (e.g. with a separate id -> index pickle) take ``image_ids=`` in order.
    """

    format_name = "hdf5"

    def __init__(self, path: str | os.PathLike, *, image_ids: Sequence[Any] | None = None, **kwargs: Any):
        super().__init__(path, **kwargs)
        h5py = _import_optional("h5py", "HDF5")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as error:
            raise RegionFeatureError(self.path, "file", f"not a readable HDF5 file: {error}") from None
        f = self._file

        def dataset(names: Sequence[str], what: str, required: bool = True) -> Any:
            for name in names:
                if name in f:
                    return f[name]
            if required:
                raise RegionFeatureError(self.path, "file", f"no {what} dataset (looked for {', '.join(names)})")
            return None

        self._features = dataset(("image_features", "features"), "feature")
        self._boxes = dataset(("image_bb", "boxes"), "box")
        rows = dataset(("pos_boxes", "rows"), "row table", required=self._features.ndim == 2)
        self._rows_table = rows[()] if rows is not None else None  # (N, 2) start, end
        self._widths = dataset(("image_w", "image_width", "widths"), "image width")[()]
        self._heights = dataset(("image_h", "image_height", "heights"), "image height")[()]
        if image_ids is None:
            ids = dataset(("image_ids", "image_id", "ids"), "image id")[()]
            image_ids = [i.decode("utf-8") if isinstance(i, bytes) else i for i in ids.tolist()]
        self._ids = list(image_ids)
        count = len(self._ids)
        lengths = {"image ids": count, "widths": len(self._widths), "heights": len(self._heights)}
        if self._rows_table is not None:
            lengths["row table"] = len(self._rows_table)
        else:
            lengths["feature blocks"] = self._features.shape[0]
        if len(set(lengths.values())) != 1:
            raise RegionFeatureError(self.path, "file", f"per-image datasets disagree in length: {lengths}")
        self._overlaps: dict[int, tuple[int, str]] = {}
        if self._rows_table is not None:
            self._overlaps = _overlapping_rows(np.asarray(self._rows_table).reshape(-1, 2), self._features.shape[0])
        if self._overlaps and not self.skip_bad:
            index, (other, text) = min(self._overlaps.items())
            where = f"entries {index} and {other} (images {self._ids[index]!r} and {self._ids[other]!r})"
            raise RegionFeatureError(self.path, where, f"overlapping row ranges in the row table: {text}")
        if self._boxes.shape[:-1] != self._features.shape[:-1]:
            raise RegionFeatureError(
                self.path,
                "file",
                f"boxes {self._boxes.shape} and features {self._features.shape} disagree in their rows",
            )

    @property
    def progress_total(self) -> int | None:
        return len(self._ids)

    def _entries(self) -> Iterator[tuple[str, Any, int]]:
        for index in range(len(self._ids)):
            yield f"entry {index}", index, 1

    def _parse(self, payload: Any) -> RegionFeatureRecord:
        index: int = payload
        image_id = self._image_id(self._ids[index])
        if self._rows_table is None:
            features = np.asarray(self._features[index], dtype=np.float32)
            boxes = np.asarray(self._boxes[index], dtype=np.float32)
        else:
            if index in self._overlaps:
                raise _BadRecord(self._overlaps[index][1], image_id)
            start, end = (int(v) for v in self._rows_table[index])
            total = self._features.shape[0]
            if not 0 <= start < end <= total:
                raise _BadRecord(f"row range [{start}, {end}) is empty or outside the {total} feature rows", image_id)
            features = np.asarray(self._features[start:end], dtype=np.float32)
            boxes = np.asarray(self._boxes[start:end], dtype=np.float32)
        return RegionFeatureRecord(image_id, float(self._widths[index]), float(self._heights[index]), boxes, features)

    def close(self) -> None:
        self._file.close()


def _import_optional(module: str, what: str) -> Any:
    """Imports an optional dependency (``h5py``, ``lmdb``) or raises an ImportError that names the extra."""
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(
            f"{what} region features need the optional package {module!r}: pip install 'hierarchical-vl[stores]'"
        ) from None


_READERS: dict[str, type[RegionFeatureReader]] = {
    reader.format_name: reader
    for reader in (_BottomUpTSVReader, _LXMERTTSVReader, _HDF5Reader, _NpzDirectoryReader, _LMDBReader)
}

FEATURE_FORMATS: tuple[str, ...] = tuple(_READERS)
"""The region-feature formats: the names [`open_region_feature_reader`] accepts (plus ``"auto"``). This is the
package's one list of them; the command line's choices and help texts are derived from it."""


def detect_feature_format(path: str | os.PathLike) -> str:
    """Guesses the format of a region-feature source from its name and first bytes.

    Args:
        path: A file or directory.

    Returns:
        One of [`FEATURE_FORMATS`].

    Raises:
        ValueError: If the format cannot be told.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "data.mdb").exists():
            return "lmdb"
        if any(p.suffix in (".npz", ".npy") for p in path.iterdir()):
            return "npz-dir"
        raise ValueError(f"{path}: a directory with neither data.mdb (LMDB) nor .npz/.npy files")
    suffixes = "".join(path.suffixes).lower()
    if path.suffix.lower() in (".h5", ".hdf5", ".hdf"):
        return "hdf5"
    if path.suffix.lower() in (".mdb", ".lmdb"):
        return "lmdb"
    with open(path, "rb") as handle:
        head = handle.read(8)
        if head.startswith(b"\x89HDF"):
            return "hdf5"
        handle.seek(0)
        first = handle.readline(1 << 16)
    if ".tsv" in suffixes or b"\t" in first:
        columns = first.split(b"\t")
        if columns[0].strip() == b"img_id" or len(columns) == len(_LXMERT_TSV_COLUMNS):
            return "lxmert-tsv"
        return "tsv"
    raise ValueError(f"{path}: cannot tell the region-feature format; pass format= explicitly")


def open_region_feature_reader(
    path: str | os.PathLike,
    format: str = "auto",
    *,
    feature_dim: int | None = None,
    skip_bad: bool = False,
    numeric_ids: bool = False,
    **kwargs: Any,
) -> RegionFeatureReader:
    """Opens a reader for one region-feature source.

    Args:
        path: File or directory.
        format: One of [`FEATURE_FORMATS`] or ``"auto"`` (see [`detect_feature_format`]).
        feature_dim: Expected feature width (inferred from the first good record when ``None``).
        skip_bad: Skip and list bad records instead of raising.
        numeric_ids: Reduce image ids to their trailing number.
        **kwargs: Passed to the reader (e.g. ``image_ids=`` for HDF5 files without ids).

    Returns:
        The reader: iterate over it for [`RegionFeatureRecord`] objects; ``reader.skipped`` lists what
        ``skip_bad`` left out.

    Raises:
        ValueError: If the format is unknown or cannot be detected.
        FileNotFoundError: If ``path`` does not exist.
    """
    if format == "auto":
        format = detect_feature_format(path)
    if format not in _READERS:
        raise ValueError(f"unknown region-feature format {format!r}; choose from {', '.join(FEATURE_FORMATS)}")
    return _READERS[format](path, feature_dim=feature_dim, skip_bad=skip_bad, numeric_ids=numeric_ids, **kwargs)
