"""Streaming the items of one array inside a large JSON object file (VQA and Karpathy files are single documents).

[`iter_json_array`] reads the file in growing chunks and decodes one array item at a time with the standard
library's decoder, so memory holds one item (plus the other, small top-level values), not the whole file.
"""

from __future__ import annotations

import codecs
import json
import os
import re
from collections.abc import Iterator
from typing import Any

__all__ = ["BadRecordError", "JSONStreamError", "iter_json_array", "non_utf8_location", "non_utf8_message"]

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class JSONStreamError(ValueError):
    """Malformed JSON, with the file and the character offset."""


class BadRecordError(ValueError):
    """A well-formed file holding a record that is refused: names the file, the record and the problem."""


def non_utf8_location(path: str | os.PathLike) -> tuple[int, int] | None:
    """Where a file first stops being UTF-8.

    Args:
        path: The file.

    Returns:
        The (1-based line, 0-based byte offset) of the first byte that is not valid UTF-8, or ``None`` when the
        whole file decodes.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, line = 0, 1
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(1 << 20)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError:
                # Locate the bad byte exactly by decoding this chunk (plus any held-back bytes) alone.
                pending = decoder.getstate()[0]
                data = pending + chunk
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError as error:
                    start = offset - len(pending) + error.start
                    return line + data[: error.start].count(b"\n"), start
                return line, offset  # pragma: no cover - the chunk decodes alone but not incrementally
            if not chunk:
                return None
            line += chunk.count(b"\n")
            offset += len(chunk)


def non_utf8_message(path: str | os.PathLike) -> str:
    """``"<file>, line N: not UTF-8 (byte 0x.. at offset M)"`` for a file that does not decode."""
    where = non_utf8_location(path)
    if where is None:
        return f"{os.fspath(path)}: not UTF-8"
    line, offset = where
    with open(path, "rb") as handle:
        handle.seek(offset)
        byte = handle.read(1)
    return f"{os.fspath(path)}, line {line}: not UTF-8 (byte 0x{byte.hex()} at byte offset {offset})"


class _Scanner:
    def __init__(self, handle: Any, path: str, chunk_size: int):
        self.handle = handle
        self.path = path
        self.chunk_size = chunk_size
        self.buffer = ""
        self.position = 0
        self.consumed = 0  # characters dropped from the front of the buffer
        self.eof = False

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            chunk = self.handle.read(max(self.chunk_size, len(self.buffer) - self.position))
        except UnicodeDecodeError:
            raise JSONStreamError(non_utf8_message(self.path)) from None
        if not chunk:
            self.eof = True
            return False
        self.consumed += self.position
        self.buffer = self.buffer[self.position :] + chunk
        self.position = 0
        return True

    def error(self, problem: str) -> JSONStreamError:
        return JSONStreamError(f"{self.path}: {problem} at character {self.consumed + self.position}")

    def peek(self) -> str:
        """The next non-whitespace character ('' at the end of the file)."""
        while True:
            self.position = _WHITESPACE.match(self.buffer, self.position).end()
            if self.position < len(self.buffer):
                return self.buffer[self.position]
            if not self._fill():
                return ""

    def expect(self, characters: str) -> str:
        char = self.peek()
        if not char or char not in characters:
            raise self.error(f"expected one of {characters!r}, found {char or 'end of file'!r}")
        self.position += 1
        return char

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buffer, self.position)
            except json.JSONDecodeError as error:
                if self._fill():
                    continue
                raise self.error(f"invalid JSON ({error.msg})") from None
            # A number or literal ending at the buffer's end may continue in the next chunk.
            if end == len(self.buffer) and self._fill():
                continue
            self.position = end
            return value


def iter_json_array(path: str | os.PathLike, key: str, *, chunk_size: int = 1 << 20) -> Iterator[Any]:
    """Yields the items of the array under the top-level ``key`` of a JSON object file, one at a time.

    Args:
        path: A file holding one JSON object, e.g. ``{"info": {...}, "questions": [{...}, ...]}``.
        key: The top-level key of the array.
        chunk_size: Characters read at a time (the buffer grows for larger items).

    Yields:
        The array's items, decoded, in file order.

    Raises:
        JSONStreamError: On malformed JSON, bytes that are not UTF-8 (with the line), or when the key is missing or
            not an array.
    """
    path = os.fspath(path)
    with open(path, encoding="utf-8") as handle:
        scanner = _Scanner(handle, path, chunk_size)
        scanner.expect("{")
        if scanner.peek() == "}":
            raise scanner.error(f"no top-level key {key!r}")
        while True:
            name = scanner.value()
            if not isinstance(name, str):
                raise scanner.error("expected an object key")
            scanner.expect(":")
            if name == key:
                if scanner.peek() != "[":
                    raise scanner.error(f"top-level {key!r} is not an array")
                scanner.expect("[")
                if scanner.peek() == "]":
                    return
                while True:
                    yield scanner.value()
                    if scanner.expect(",]") == "]":
                        return
            scanner.value()  # another top-level value: read and drop
            if scanner.expect(",}") == "}":
                raise scanner.error(f"no top-level key {key!r}")
