"""Flickr30k Entities (phrase grounding) as ``datasets`` datasets, from ``Sentences/``, ``Annotations/`` and the
split lists ``train.txt``, ``val.txt``, ``test.txt``.

One row per sentence: ``image_id``, ``sentence_index`` (line in ``Sentences/<id>.txt``), ``sentence`` (the words
joined by single spaces, brackets removed), image ``width`` and ``height``, and the ``phrases``, each with its text,
chain id (``phrase_id``), ``phrase_types``, word span (``first_word_index``, ``last_word_index``, inclusive),
character span (``char_start``, ``char_end``, end exclusive) in ``sentence``, ground-truth ``boxes`` and
``box_status``:

* ``box``: the chain has one or more boxes -- the phrase is grounded;
* ``scene`` / ``nobndbox``: the annotation marks the chain as scene / without box;
* ``notvisual``: chain 0 of non-visual phrases;
* ``missing``: the chain is not in the annotation file.

Only ``box`` phrases take part in grounding; the others are kept in the rows and counted by
[`entities_phrase_counts`]. Boxes follow the dataset's own utilities: the 1-based VOC ``xmin ymin xmax ymax``
each minus 1, i.e. 0-based pixel coordinates.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .feature_writers import check_file_name
from .generator_datasets import _features, _load_splits
from .json_stream import non_utf8_message

__all__ = [
    "BOX_STATUSES",
    "ENTITIES_SPLITS",
    "EntitiesAnnotation",
    "EntitiesFormatError",
    "EntitiesPhrase",
    "entities_phrase_counts",
    "load_flickr30k_entities",
    "parse_entities_annotation",
    "parse_entities_sentence",
]

ENTITIES_SPLITS = ("train", "val", "test")
BOX_STATUSES = ("box", "scene", "nobndbox", "notvisual", "missing")


class EntitiesFormatError(ValueError):
    """A malformed Flickr30k Entities file, with the file, the line or element, and the problem."""


@dataclass
class EntitiesPhrase:
    phrase: str
    phrase_id: str
    phrase_types: list[str]
    first_word_index: int
    last_word_index: int
    char_start: int
    char_end: int


@dataclass
class EntitiesAnnotation:
    """Parsed ``Annotations/<id>.xml``: image size, boxes per chain id, chains flagged scene / without box."""

    width: int
    height: int
    boxes: dict[str, list[list[float]]] = field(default_factory=dict)
    scene: set[str] = field(default_factory=set)
    nobox: set[str] = field(default_factory=set)


def parse_entities_sentence(
    line: str, *, file: str = "<sentence>", line_number: int = 0
) -> tuple[str, list[EntitiesPhrase]]:
    """Parses one line of ``Sentences/<id>.txt``.

    ``[/EN#18/people A man] with [/EN#19/clothing pierced ears] .`` gives the sentence ``A man with pierced ears .``
    and two phrases (chain ``18``, words 0-1, characters 0-5; chain ``19``, words 3-4).

    Args:
        line: The line.
        file: File name for error messages.
        line_number: Line number for error messages.

    Returns:
        The sentence (words joined by single spaces) and its phrases.

    Raises:
        EntitiesFormatError: On an unclosed or malformed phrase (e.g. the tag ``[/EN18/people`` without ``#``).
    """
    words: list[str] = []
    phrases: list[EntitiesPhrase] = []
    current: dict[str, Any] | None = None

    def fail(problem: str) -> EntitiesFormatError:
        return EntitiesFormatError(f"{file}, line {line_number}: {problem}: {line.strip()[:120]!r}")

    for token in line.split():
        if token.startswith("[/") and not token.startswith("[/EN#"):
            raise fail(f"malformed phrase tag {token!r} (expected [/EN#<chain>/<type>...)")
        if current is None and token.startswith("[/EN#"):
            parts = token[1:].split("/")
            if len(parts) < 3 or not parts[1].startswith("EN#"):
                raise fail(f"malformed phrase tag {token!r}")
            current = {"phrase_id": parts[1][3:], "phrase_types": parts[2:], "first": len(words)}
            continue
        if current is not None and token.startswith("[/EN#"):
            raise fail("phrase opened inside another phrase")
        closes = current is not None and token.endswith("]")
        words.append(token[:-1] if closes else token)
        if closes:
            phrases.append(
                EntitiesPhrase(
                    "", current["phrase_id"], current["phrase_types"], current["first"], len(words) - 1, 0, 0
                )
            )
            current = None
    if current is not None:
        raise fail("phrase is not closed")
    starts, position = [], 0
    for word in words:
        starts.append(position)
        position += len(word) + 1
    for p in phrases:
        if p.last_word_index < p.first_word_index:
            raise fail(f"empty phrase of chain {p.phrase_id}")
        p.char_start = starts[p.first_word_index]
        p.char_end = starts[p.last_word_index] + len(words[p.last_word_index])
        p.phrase = " ".join(words[p.first_word_index : p.last_word_index + 1])
    return " ".join(words), phrases


def parse_entities_annotation(path: str | os.PathLike) -> EntitiesAnnotation:
    """Parses ``Annotations/<id>.xml``; boxes become 0-based (each VOC coordinate minus 1).

    Args:
        path: The annotation file.

    Returns:
        The image size, the boxes of every chain id and the chains flagged scene or without box.

    Raises:
        EntitiesFormatError: On unreadable XML, a malformed object, or a box that is not finite or has
            xmax < xmin or ymax < ymin.
    """
    path = Path(path)
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        raise EntitiesFormatError(f"{path}: not well-formed XML ({error})") from None
    try:
        size = root.find("size")
        width = int(size.findtext("width"))
        height = int(size.findtext("height"))
    except (AttributeError, TypeError, ValueError):
        raise EntitiesFormatError(f"{path}: missing or malformed <size>") from None
    annotation = EntitiesAnnotation(width, height)
    for number, obj in enumerate(root.findall("object"), start=1):
        names = [n.text.strip() for n in obj.findall("name") if n.text]
        box = obj.find("bndbox")
        if box is not None:
            try:
                coords = [float(box.findtext(tag)) - 1.0 for tag in ("xmin", "ymin", "xmax", "ymax")]
            except (TypeError, ValueError):
                raise EntitiesFormatError(f"{path}: <object> {number} has a malformed <bndbox>") from None
            problem = _box_problem(coords)
            if problem:
                raise EntitiesFormatError(f"{path}: <object> {number} ({', '.join(names)}): <bndbox> {problem}")
            for name in names:
                annotation.boxes.setdefault(name, []).append(coords)
            continue
        try:
            scene = int(obj.findtext("scene") or 0) > 0
            nobox = int(obj.findtext("nobndbox") or 0) > 0
        except ValueError:
            raise EntitiesFormatError(f"{path}: <object> {number} has a malformed <scene> or <nobndbox>") from None
        for name in names:
            if scene:
                annotation.scene.add(name)
            elif nobox:
                annotation.nobox.add(name)
    return annotation


def _box_problem(coords: list[float]) -> str | None:
    """What is wrong with an ``x1 y1 x2 y2`` box (not finite, or x2 < x1, y2 < y1), or ``None``."""
    if not all(math.isfinite(c) for c in coords):
        return f"has a coordinate that is not a finite number: {coords}"
    x1, y1, x2, y2 = coords
    if x2 < x1:
        return f"has xmax < xmin ({x2 + 1:g} < {x1 + 1:g})"
    if y2 < y1:
        return f"has ymax < ymin ({y2 + 1:g} < {y1 + 1:g})"
    return None


def _box_status(phrase: EntitiesPhrase, annotation: EntitiesAnnotation) -> str:
    if phrase.phrase_id in annotation.boxes:
        return "box"
    if phrase.phrase_id in annotation.scene:
        return "scene"
    if phrase.phrase_id in annotation.nobox:
        return "nobndbox"
    if phrase.phrase_id == "0" or "notvisual" in phrase.phrase_types:
        return "notvisual"
    return "missing"


_ENTITIES_FEATURES = {
    "image_id": "int64",
    "sentence_index": "int32",
    "sentence": "string",
    "width": "int32",
    "height": "int32",
    "phrases": [
        {
            "phrase": "string",
            "phrase_id": "string",
            "phrase_types": ["string"],
            "first_word_index": "int32",
            "last_word_index": "int32",
            "char_start": "int32",
            "char_end": "int32",
            "boxes": [("float32", 4)],
            "box_status": "string",
        }
    ],
}
"""The features of the Flickr30k Entities rows (a `_features` spec)."""


def _read_split_list(path: str | os.PathLike) -> list[str]:
    """Image ids (file names without suffix) of a split list, one per line.

    Raises:
        ValueError: If a line is not a plain file name (``../x``, ``/abs/path``, ...), naming the file and line;
            such a list is refused before any file it names is opened.
    """
    names = []
    for line_number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if line.strip():
            try:
                names.append(check_file_name(line.strip()))
            except ValueError as error:
                raise ValueError(f"{path}, line {line_number}: {error}") from None
    return names


def _generate_entities(root: str, split: str) -> Iterator[dict[str, Any]]:
    root_path = Path(root)
    for image_name in _read_split_list(root_path / f"{split}.txt"):
        sentence_file = root_path / "Sentences" / f"{image_name}.txt"
        try:
            image_id = int(image_name)
        except ValueError:
            raise EntitiesFormatError(
                f"{root_path / f'{split}.txt'}: image name {image_name!r} is not a Flickr30k image number"
            ) from None
        annotation = parse_entities_annotation(root_path / "Annotations" / f"{image_name}.xml")
        try:
            lines = sentence_file.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise EntitiesFormatError(non_utf8_message(sentence_file)) from None
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            sentence, phrases = parse_entities_sentence(line, file=str(sentence_file), line_number=line_number)
            rows = []
            for p in phrases:
                status = _box_status(p, annotation)
                rows.append(
                    {
                        "phrase": p.phrase,
                        "phrase_id": p.phrase_id,
                        "phrase_types": p.phrase_types,
                        "first_word_index": p.first_word_index,
                        "last_word_index": p.last_word_index,
                        "char_start": p.char_start,
                        "char_end": p.char_end,
                        "boxes": annotation.boxes.get(p.phrase_id, []) if status == "box" else [],
                        "box_status": status,
                    }
                )
            yield {
                "image_id": image_id,
                "sentence_index": line_number - 1,
                "sentence": sentence,
                "width": annotation.width,
                "height": annotation.height,
                "phrases": rows,
            }


def load_flickr30k_entities(
    root: str | os.PathLike,
    *,
    split: str | None = None,
    streaming: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> Any:
    """Loads Flickr30k Entities sentences with their phrases and ground-truth boxes.

    Args:
        root: Directory with ``Sentences/``, ``Annotations/`` and ``train.txt``/``val.txt``/``test.txt``.
        split: ``train``, ``val`` or ``test``; all three (a ``DatasetDict``) when ``None``.
        streaming: Return ``IterableDataset`` (``IterableDatasetDict``) that read the files lazily.
        cache_dir: Cache directory of the map-style datasets.

    Returns:
        ``Dataset``/``IterableDataset`` for one split, else ``DatasetDict``/``IterableDatasetDict``.
    """
    features = _features(_ENTITIES_FEATURES)
    root = Path(root)
    for required in ("Sentences", "Annotations"):
        if not (root / required).is_dir():
            raise FileNotFoundError(f"{root} has no {required}/ directory (not a Flickr30k Entities root)")
    names = [split] if split is not None else [s for s in ENTITIES_SPLITS if (root / f"{s}.txt").exists()]
    for name in names:
        if not (root / f"{name}.txt").exists():
            raise FileNotFoundError(f"no split list {root / f'{name}.txt'}")
        _read_split_list(root / f"{name}.txt")  # refuses a list naming files outside Sentences/ and Annotations/
    splits = {
        name: (
            {"root": str(root), "split": name},
            (root / f"{name}.txt", root / "Sentences", root / "Annotations"),
        )
        for name in names
    }
    return _load_splits(_generate_entities, features, splits, split=split, streaming=streaming, cache_dir=cache_dir)


def entities_phrase_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Counts phrases by ``box_status`` (grounded ``box`` phrases and the excluded ones), plus ``sentences``."""
    counts: Counter[str] = Counter({status: 0 for status in BOX_STATUSES})
    sentences = 0
    for row in rows:
        sentences += 1
        counts.update(p["box_status"] for p in row["phrases"])
    return {"sentences": sentences, **counts}
