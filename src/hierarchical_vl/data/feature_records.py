"""Record-level helpers of the region-feature readers: the bad-record signal, base64/number columns, the cheap
feature-width scan of TSV lines and the overlap check of HDF5 row tables."""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections import Counter
from collections.abc import Iterable

import numpy as np

__all__: list[str] = []

_TRAILING_DIGITS = re.compile(r"(\d+)(?:\.[A-Za-z0-9]+)?$")


def _numeric_image_id(name: str) -> str:
    """Reduces a file-style image name to its trailing number, e.g. ``COCO_val2014_000000000042`` -> ``"42"``.

    Raises:
        ValueError: If the name does not end in digits.
    """
    match = _TRAILING_DIGITS.search(str(name).strip())
    if match is None:
        raise ValueError(f"image id {name!r} does not end in a number")
    return str(int(match.group(1)))


class _BadRecord(Exception):
    """Raised while parsing one record; the reader turns it into an error or a skipped record."""

    def __init__(self, problem: str, image_id: str | None = None):
        super().__init__(problem)
        self.problem = problem
        self.image_id = image_id


def _b64_array(field_value: bytes, dtype: type, name: str, image_id: str | None = None) -> np.ndarray:
    """Decodes one base64 column; tolerates the ``b'...'`` wrapping some Python 3 writers left behind."""
    if field_value.startswith(b"b'") and field_value.endswith(b"'"):
        field_value = field_value[2:-1]
    try:
        raw = base64.b64decode(field_value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise _BadRecord(f"bad base64 in column {name!r}: {error}", image_id) from None
    itemsize = np.dtype(dtype).itemsize
    if len(raw) % itemsize:
        raise _BadRecord(
            f"column {name!r} holds {len(raw)} bytes, not a whole number of {np.dtype(dtype).name}", image_id
        )
    return np.frombuffer(raw, dtype=dtype)


def _number(value: bytes, name: str, kind: type = float) -> float | int:
    try:
        return kind(value)
    except ValueError:
        raise _BadRecord(f"column {name!r} is not a number: {value[:40]!r}") from None


def _decode_id(raw: bytes | bytearray) -> str:
    """Decodes a raw image id (TSV column, LMDB key) as UTF-8, or raises ``_BadRecord`` saying where it fails."""
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError as error:
        bad = bytes(raw)[error.start : error.end]
        raise _BadRecord(f"image id {bytes(raw)!r} is not UTF-8 text (byte {bad!r} at offset {error.start})") from None


def _key_location(key: bytes) -> str:
    """The location of an LMDB entry: its key as text, or as raw bytes when it is not UTF-8 (never replaced)."""
    try:
        return f"key {key.decode('utf-8')!r}"
    except UnicodeDecodeError:
        return f"key {key!r}"


def _line_feature_width(num_boxes: bytes, features: bytes) -> int | None:
    """The feature width a TSV line implies (float32 count of its base64 column / num_boxes), without decoding it;
    ``None`` when it cannot be told (a malformed line is reported when it is parsed)."""
    if features.startswith(b"b'") and features.endswith(b"'"):
        features = features[2:-1]
    try:
        count = int(num_boxes)
    except ValueError:
        return None
    size = len(features) // 4 * 3 - len(features[-2:]) + len(features[-2:].rstrip(b"="))
    if len(features) % 4 or count <= 0 or size % (4 * count):
        return None
    return size // (4 * count) or None


def _consensus_width(widths: Iterable[int | None]) -> int | None:
    """The width most of the sampled lines agree on (a tie goes to the larger: a line cut at a base64 boundary
    only ever reads narrower); ``None`` with fewer than two lines to compare."""
    counts = Counter(width for width in widths if width is not None)
    if sum(counts.values()) < 2:
        return None
    return max(counts, key=lambda width: (counts[width], width))


def _sampled_width(path: str | os.PathLike, num_columns: int, sample: int = 5) -> int | None:
    """The feature width most of a TSV file's first ``sample`` lines agree on (``num_columns`` columns, the last
    three ``num_boxes, boxes, features``), so that a cut first line is blamed rather than the good lines after it."""
    widths = []
    with open(path, "rb") as handle:
        for line in handle:
            fields = line.rstrip(b"\r\n").split(b"\t")
            if len(fields) == num_columns:
                widths.append(_line_feature_width(fields[-3], fields[-1]))
            if len(widths) == sample:
                break
    return _consensus_width(widths)


def _overlapping_rows(rows: np.ndarray, total: int) -> dict[int, tuple[int, str]]:
    """Entries of an HDF5 row table (N, 2) whose valid ``[start, end)`` ranges overlap another entry's, mapped to
    ``(other entry, description)`` (out-of-range or empty ranges are left to the per-record check)."""
    starts, ends = rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64)
    valid = np.flatnonzero((starts >= 0) & (starts < ends) & (ends <= total))
    found: dict[int, tuple[int, str]] = {}
    reach, holder = -1, -1
    for index in valid[np.argsort(starts[valid], kind="stable")].tolist():
        if starts[index] < reach:
            text = (
                f"row range [{starts[index]}, {ends[index]}) overlaps entry {holder}'s "
                f"[{starts[holder]}, {ends[holder]})"
            )
            found.setdefault(index, (holder, text))
            found.setdefault(holder, (index, text))
        if ends[index] > reach:
            reach, holder = int(ends[index]), index
    return found
