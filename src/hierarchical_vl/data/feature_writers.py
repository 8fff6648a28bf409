"""Writers of the community region-feature formats, the inverse of `hierarchical_vl.data.feature_readers`.

They produce files laid out exactly as the public releases are (the demo corpus uses them, and they export a store
to tools that expect those formats). Every writer goes through a temporary name in the destination's directory and
renames it into place, and refuses an image id its format cannot hold: one that is not a plain file name (see
[`check_file_name`]) in an npz directory, one with a tab or line break in a TSV file, an LMDB reserved key.
"""

from __future__ import annotations

import base64
import os
import pickle
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..atomic_files import atomic_path
from .feature_readers import _LMDB_RESERVED_KEYS, _LXMERT_EXTRA_COLUMNS, RegionFeatureRecord, _import_optional

__all__ = [
    "check_file_name",
    "write_bottom_up_tsv",
    "write_hdf5",
    "write_lmdb",
    "write_lxmert_tsv",
    "write_npz_directory",
]


def check_file_name(name: str, what: str = "image id") -> str:
    """Checks that an id read from a file can name a file inside one directory, and returns it.

    Args:
        name: The id, e.g. an image id that becomes ``<id>.npz`` or ``Sentences/<id>.txt``.
        what: What the id is, for the error message.

    Returns:
        ``name``.

    Raises:
        ValueError: If ``name`` is empty, ``.`` or ``..``, absolute, or holds a path separator or a NUL byte, any
            of which would name a file outside the directory (or none); the message names the id and the reason.
    """
    reason = None
    if not name:
        reason = "it is empty"
    elif "\0" in name:
        reason = "it contains a NUL byte"
    elif os.path.isabs(name) or name.startswith(("/", "\\")):
        reason = "it is an absolute path"
    elif "/" in name or "\\" in name:
        reason = "it contains a path separator"
    elif name in (".", ".."):
        reason = f"{name!r} names a directory"
    if reason is not None:
        raise ValueError(f"{what} {name!r} cannot be used as a file name: {reason}")
    return name


def _check_id(image_id: str, forbidden: str, format_name: str) -> str:
    """Refuses an empty image id, or one holding a character of ``forbidden`` (which ``format_name`` cannot hold)."""
    if not image_id:
        raise ValueError(f"image id {image_id!r} cannot be written to {format_name}: it is empty")
    bad = sorted({c for c in image_id if c in forbidden})
    if bad:
        raise ValueError(f"image id {image_id!r} cannot be written to {format_name}: it contains {bad}")
    return image_id


def _b64(array: np.ndarray, dtype: type) -> bytes:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes())


def _bottom_up_tsv_line(record: RegionFeatureRecord) -> bytes:
    """One line of the bottom-up-attention TSV (``image_id, image_w, image_h, num_boxes, boxes, features``)."""
    fields = [
        _check_id(record.image_id, "\t\r\n", "a TSV file").encode(),
        _number(record.width),
        _number(record.height),
        str(record.num_boxes).encode(),
        _b64(record.boxes, np.float32),
        _b64(record.features, np.float32),
    ]
    return b"\t".join(fields) + b"\n"


def _lxmert_tsv_line(record: RegionFeatureRecord) -> bytes:
    """One line of LXMERT's TSV (``img_id, img_h, img_w, objects_id, objects_conf, attrs_id, attrs_conf,
    num_boxes, boxes, features``); missing object/attribute arrays are written as zeros."""
    count = record.num_boxes
    fields = [
        _check_id(record.image_id, "\t\r\n", "a TSV file").encode(),
        _number(record.height),
        _number(record.width),
        *(_b64(record.extras.get(name, np.zeros(count, dtype)), dtype) for name, dtype in _LXMERT_EXTRA_COLUMNS),
        str(count).encode(),
        _b64(record.boxes, np.float32),
        _b64(record.features, np.float32),
    ]
    return b"\t".join(fields) + b"\n"


def _number(value: float) -> bytes:
    return (str(int(value)) if float(value).is_integer() else repr(float(value))).encode()


def _write_lines(path: str | os.PathLike, lines: Iterable[bytes]) -> Path:
    """Writes the lines of a TSV file through a temporary name beside ``path``; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        for line in lines:
            handle.write(line)
    return path


def write_bottom_up_tsv(path: str | os.PathLike, records: Iterable[RegionFeatureRecord]) -> Path:
    """Writes records as a bottom-up-attention TSV (no header, as released).

    One line per image: ``image_id, image_w, image_h, num_boxes, boxes, features``, the arrays as base64 float32
    (the records' ``extras`` are not written).

    Args:
        path: The destination file; written under a temporary name beside it and renamed when complete.
        records: The images' records.

    Returns:
        ``path``.
    """
    return _write_lines(path, map(_bottom_up_tsv_line, records))


def write_lxmert_tsv(path: str | os.PathLike, records: Iterable[RegionFeatureRecord]) -> Path:
    """Writes records as LXMERT's TSV (no header, as released).

    One line per image: ``img_id, img_h, img_w, objects_id, objects_conf, attrs_id, attrs_conf, num_boxes, boxes,
    features``, the arrays as base64 (ids int64, the rest float32); the object and attribute columns come from the
    records' ``extras``, zeros where missing.

    Args:
        path: The destination file; written under a temporary name beside it and renamed when complete.
        records: The images' records.

    Returns:
        ``path``.
    """
    return _write_lines(path, map(_lxmert_tsv_line, records))


def write_hdf5(path: str | os.PathLike, records: Iterable[RegionFeatureRecord]) -> Path:
    """Writes records as one HDF5 file: ``image_features`` (R, F), ``image_bb`` (R, 4), ``pos_boxes`` (N, 2)
    start/end rows, ``image_ids`` (N,) strings, ``image_w``/``image_h`` (N,).

    Args:
        path: The destination file; written under a temporary name beside it and renamed when complete.
        records: The images' records.

    Returns:
        ``path``.
    """
    h5py = _import_optional("h5py", "HDF5")
    records = list(records)
    path = Path(path)
    for record in records:
        _check_id(record.image_id, "\0", "an HDF5 file")
    counts = np.array([r.num_boxes for r in records], dtype=np.int64)
    ends = np.cumsum(counts)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("image_features", data=np.concatenate([r.features for r in records]).astype(np.float32))
        f.create_dataset("image_bb", data=np.concatenate([r.boxes for r in records]).astype(np.float32))
        f.create_dataset("pos_boxes", data=np.stack([ends - counts, ends], axis=1))
        f.create_dataset("image_ids", data=np.array([r.image_id for r in records], dtype=h5py.string_dtype()))
        f.create_dataset("image_w", data=np.array([r.width for r in records], dtype=np.float32))
        f.create_dataset("image_h", data=np.array([r.height for r in records], dtype=np.float32))
    return path


def write_npz_directory(path: str | os.PathLike, records: Iterable[RegionFeatureRecord]) -> Path:
    """Writes one ``<image_id>.npz`` per image with keys ``x`` (K, F), ``bbox`` (K, 4), ``num_bbox``,
    ``image_w`` and ``image_h`` (the layout of the detectron2-based bottom-up extractors).

    Args:
        path: The destination directory; written under a temporary name beside it and renamed when complete.
        records: The images' records.

    Returns:
        ``path``.
    """
    path = Path(path)
    with atomic_path(path, directory=True) as tmp:
        for record in records:
            np.savez(
                tmp / f"{check_file_name(record.image_id)}.npz",
                x=record.features.astype(np.float32),
                bbox=record.boxes.astype(np.float32),
                num_bbox=np.int64(record.num_boxes),
                image_w=np.float32(record.width),
                image_h=np.float32(record.height),
            )
    return path


def write_lmdb(path: str | os.PathLike, records: Iterable[RegionFeatureRecord]) -> Path:
    """Writes an LMDB environment keyed by image id, one pickled dict per image (``image_id``, ``image_w``,
    ``image_h``, ``num_boxes``, ``boxes`` (K, 4), ``features`` (K, F)), plus the pickled id list under ``keys``.

    Args:
        path: The destination environment directory; written under a temporary name beside it and renamed when complete.
        records: The images' records.

    Returns:
        ``path``.
    """
    lmdb = _import_optional("lmdb", "LMDB")
    records = list(records)
    path = Path(path)
    size = sum(r.features.size * 4 + r.boxes.size * 4 + 1024 for r in records) * 2 + (1 << 20)
    with atomic_path(path, directory=True) as tmp:
        env = lmdb.open(str(tmp), map_size=size, subdir=True)
        with env.begin(write=True) as txn:
            for record in records:
                _check_id(record.image_id, "", "LMDB")
                if record.image_id.encode() in _LMDB_RESERVED_KEYS:
                    raise ValueError(f"image id {record.image_id!r} cannot be written to LMDB: it is a reserved key")
                value = {
                    "image_id": record.image_id,
                    "image_w": record.width,
                    "image_h": record.height,
                    "num_boxes": record.num_boxes,
                    "boxes": record.boxes.astype(np.float32),
                    "features": record.features.astype(np.float32),
                }
                txn.put(record.image_id.encode(), pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
            txn.put(b"keys", pickle.dumps([r.image_id.encode() for r in records]))
        env.close()
    return path
