"""Captions for image-caption retrieval from the Karpathy split files (``dataset_coco.json``,
``dataset_flickr30k.json``), as ``datasets`` datasets.

One row per caption: ``image_id`` (``cocoid`` for COCO, the number in the file name for Flickr30k), ``filename``,
``filepath`` (COCO only), ``karpathy_split`` (the file's own split, including ``restval``), ``sentence_id``,
``caption`` (the raw text) and ``tokens``. COCO's "1K test" is the mean over 5 folds of 1000 test images;
[`karpathy_test_folds`] gives the folds.

Each split is exactly the images the file marks with it. COCO's file (123,287 images) holds:

* ``train``: 82,783 images, all of COCO train2014 -- what the paper trains retrieval on;
* ``restval``: 30,504 COCO val2014 images in neither val nor test;
* ``val``: 5,000 COCO val2014 images;
* ``test``: 5,000 COCO val2014 images (the "5K test"; its 5 folds of 1000 are the "1K test").

``train+restval`` names both training parts at once (113,287 COCO images, the common practice of later work and
what ``train`` meant in version 0.1 of this package). Flickr30k's file has no ``restval`` images.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

from .generator_datasets import _features, _load_splits
from .json_stream import BadRecordError, iter_json_array

__all__ = [
    "KARPATHY_SPLITS",
    "KARPATHY_SPLIT_VALUES",
    "KARPATHY_TRAIN_AND_RESTVAL",
    "BadRecordError",
    "karpathy_test_folds",
    "load_karpathy_captions",
]

KARPATHY_SPLITS = ("train", "restval", "val", "test")
"""The splits of a Karpathy file, each exactly the images the file marks with it (what ``split=None`` loads)."""
KARPATHY_SPLIT_VALUES = ("train", "val", "test", "restval")
"""The values of an entry's ``split`` field in the Karpathy files."""
KARPATHY_TRAIN_AND_RESTVAL = "train+restval"
"""The split name of the ``train`` and ``restval`` images together (``train`` of version 0.1)."""
_SPLIT_MEMBERS = {
    **{split: (split,) for split in KARPATHY_SPLITS},
    KARPATHY_TRAIN_AND_RESTVAL: ("train", "restval"),
}
"""Split name -> the ``split`` values of the file entries it holds."""
_NUMBER_IN_NAME = re.compile(r"(\d+)\.[A-Za-z]+$")


_CAPTION_FEATURES = {
    "image_id": "int64",
    "filename": "string",
    "filepath": "string",
    "karpathy_split": "string",
    "sentence_id": "int64",
    "caption": "string",
    "tokens": ["string"],
}
"""The features of the caption rows (a `_features` spec)."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _karpathy_image_id(entry: dict[str, Any], fail: Any = None) -> int:
    """The dataset's image id of a Karpathy entry: ``cocoid``, else the number in the file name."""
    if fail is None:

        def fail(problem: str) -> ValueError:
            return ValueError(problem)

    if "cocoid" in entry:
        cocoid = entry["cocoid"]
        if _is_int(cocoid) or (isinstance(cocoid, str) and cocoid.strip().isdigit()):
            return int(cocoid)
        raise fail(f"'cocoid' must be an integer, not {cocoid!r:.60}")
    filename = entry.get("filename", "")
    match = _NUMBER_IN_NAME.search(filename) if isinstance(filename, str) else None
    if match is None:
        raise fail(f"cannot tell the image id of Karpathy entry {entry.get('filename')!r} (imgid {entry.get('imgid')})")
    return int(match.group(1))


def _checked_entries(path: str) -> Iterator[tuple[dict[str, Any], int]]:
    """The image entries of a Karpathy file with their image ids, every entry checked (all splits).

    Refuses, naming the file, the entry and the problem: a non-object entry, a missing ``split`` or ``sentences``,
    a split value outside train/val/test/restval, a bad image id, a sentence without integer ``sentid`` or string
    ``raw``, and image or sentence ids met twice in the file.
    """
    image_ids: set[int] = set()
    sentence_ids: set[int] = set()
    for number, entry in enumerate(iter_json_array(path, "images"), start=1):

        def fail(problem: str, number: int = number, entry: Any = entry) -> BadRecordError:
            name = entry.get("filename") if isinstance(entry, dict) else None
            which = f"image entry {number}" + (f" ({name!r})" if name is not None else "")
            return BadRecordError(f"{path}: {which}: {problem}")

        if not isinstance(entry, dict):
            raise fail(f"not a JSON object but {type(entry).__name__}")
        for key in ("split", "sentences"):
            if key not in entry:
                raise fail(f"missing key {key!r}")
        if entry["split"] not in KARPATHY_SPLIT_VALUES:
            raise fail(f"split {entry['split']!r:.60} is not one of {', '.join(KARPATHY_SPLIT_VALUES)}")
        for key in ("filename", "filepath"):
            if key in entry and not isinstance(entry[key], str):
                raise fail(f"{key!r} must be a string, not {entry[key]!r:.60}")
        image_id = _karpathy_image_id(entry, fail)
        if image_id in image_ids:
            raise fail(f"duplicate image id {image_id}")
        image_ids.add(image_id)
        if not isinstance(entry["sentences"], list):
            raise fail("'sentences' must be a list")
        for index, sentence in enumerate(entry["sentences"], start=1):
            if not isinstance(sentence, dict):
                raise fail(f"sentence {index} is not a JSON object")
            for key in ("sentid", "raw"):
                if key not in sentence:
                    raise fail(f"sentence {index}: missing key {key!r}")
            if not _is_int(sentence["sentid"]):
                raise fail(f"sentence {index}: 'sentid' must be an integer, not {sentence['sentid']!r:.60}")
            if not isinstance(sentence["raw"], str):
                raise fail(f"sentence {index}: 'raw' must be a string, not {sentence['raw']!r:.60}")
            tokens = sentence.get("tokens", [])
            if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                raise fail(f"sentence {index}: 'tokens' must be a list of strings")
            if sentence["sentid"] in sentence_ids:
                raise fail(f"duplicate sentence id {sentence['sentid']}")
            sentence_ids.add(sentence["sentid"])
        yield entry, image_id


def _generate_captions(path: str, split: str) -> Iterator[dict[str, Any]]:
    members = _SPLIT_MEMBERS[split]
    for entry, image_id in _checked_entries(path):
        if entry["split"] not in members:
            continue
        for sentence in entry["sentences"]:
            yield {
                "image_id": image_id,
                "filename": entry.get("filename", ""),
                "filepath": entry.get("filepath", ""),
                "karpathy_split": entry["split"],
                "sentence_id": sentence["sentid"],
                "caption": sentence["raw"],
                "tokens": sentence.get("tokens", []),
            }


def load_karpathy_captions(
    path: str | os.PathLike,
    *,
    split: str | None = None,
    streaming: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> Any:
    """Loads the captions of a Karpathy split file.

    Args:
        path: ``dataset_coco.json`` or ``dataset_flickr30k.json``.
        split: ``train``, ``restval``, ``val`` or ``test`` -- exactly the images the file marks so, ``train`` without
            ``restval`` (COCO: 82,783 images, the paper's training set) -- or ``train+restval`` for both (113,287
            COCO images; what ``train`` meant in version 0.1). When ``None``, a ``DatasetDict`` of ``train``,
            ``restval`` (where the file has it: Flickr30k's has not), ``val`` and ``test``.
        streaming: Return ``IterableDataset`` (``IterableDatasetDict``) that stream the file.
        cache_dir: Cache directory of the map-style datasets.

    Returns:
        ``Dataset``/``IterableDataset`` for one split, else ``DatasetDict``/``IterableDatasetDict``.

    Raises:
        KeyError: If ``split`` is not one of the names above.
        ValueError: If the file has no images of ``split`` (map-style only; a stream of it is empty).
        BadRecordError: (while the rows are generated) On an entry with a missing key or bad value, a split value
            outside train/val/test/restval, or an image or sentence id repeated in the file.
    """
    features = _features(_CAPTION_FEATURES)
    if split is not None and split not in _SPLIT_MEMBERS:
        raise KeyError(f"no Karpathy split {split!r}; choose from {', '.join(_SPLIT_MEMBERS)}")
    if split is not None:
        names = [split]
    else:  # restval only where the file has it (Flickr30k's has none)
        names = [name for name in KARPATHY_SPLITS if name != "restval" or "restval" in _split_values(path)]
    splits = {  # the members in the fingerprint: a cache of 0.1's ``train`` (with restval) is not reused
        name: ({"path": str(path), "split": name}, (path, name, _SPLIT_MEMBERS[name])) for name in names
    }
    try:
        return _load_splits(_generate_captions, features, splits, split=split, streaming=streaming, cache_dir=cache_dir)
    except ValueError:  # ``datasets`` refuses a split without rows, in its own words: name the file and split
        if split is None or set(_SPLIT_MEMBERS[split]) & _split_values(path):
            raise
        found = ", ".join(sorted(_split_values(path))) or "none"
        raise ValueError(f"{path}: no images of the Karpathy split {split!r} (the file's splits: {found})") from None


def _split_values(path: str | os.PathLike) -> set[str]:
    """The ``split`` values of a Karpathy file's entries."""
    return {entry.get("split") for entry in iter_json_array(path, "images") if isinstance(entry, dict)}


def karpathy_test_folds(image_ids: Iterable[Any], fold_size: int = 1000) -> list[list[int]]:
    """Splits test images into the folds of the COCO "1K test" protocol, in file order.

    Args:
        image_ids: The ``image_id`` column of the test captions, e.g. ``dataset["image_id"]`` (repeats are
            collapsed in order of first appearance).
        fold_size: Images per fold (1000: the 5000 COCO test images give 5 folds).

    Returns:
        Lists of image ids, one per full fold; one fold with every image when there are fewer than ``fold_size``.
    """
    ordered = list(dict.fromkeys(int(i) for i in image_ids))
    if len(ordered) < fold_size:
        return [ordered]
    return [ordered[start : start + fold_size] for start in range(0, len(ordered) - fold_size + 1, fold_size)]
