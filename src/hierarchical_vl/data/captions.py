"""Captions for image-caption retrieval from the Karpathy split files (``dataset_coco.json``,
``dataset_flickr30k.json``), as ``datasets`` datasets.

One row per caption: ``image_id`` (``cocoid`` for COCO, the number in the file name for Flickr30k), ``filename``,
``filepath`` (COCO only), ``karpathy_split`` (the file's own split, including ``restval``), ``sentence_id``,
``caption`` (the raw text) and ``tokens``. The ``train`` split includes the ``restval`` images, as is standard.
COCO's "1K test" is the mean over 5 folds of 1000 test images; [`karpathy_test_folds`] gives the folds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

from .generator_datasets import _features, _load_splits
from .json_stream import iter_json_array

__all__ = ["KARPATHY_SPLITS", "karpathy_test_folds", "load_karpathy_captions"]

KARPATHY_SPLITS = ("train", "val", "test")
_SPLIT_MEMBERS = {"train": ("train", "restval"), "val": ("val",), "test": ("test",)}
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


def _karpathy_image_id(entry: dict[str, Any]) -> int:
    """The dataset's image id of a Karpathy entry: ``cocoid``, else the number in the file name."""
    if "cocoid" in entry:
        return int(entry["cocoid"])
    match = _NUMBER_IN_NAME.search(entry.get("filename", ""))
    if match is None:
        raise ValueError(
            f"cannot tell the image id of Karpathy entry {entry.get('filename')!r} (imgid {entry.get('imgid')})"
        )
    return int(match.group(1))


def _generate_captions(path: str, split: str) -> Iterator[dict[str, Any]]:
    members = _SPLIT_MEMBERS[split]
    for entry in iter_json_array(path, "images"):
        if entry["split"] not in members:
            continue
        image_id = _karpathy_image_id(entry)
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
        split: ``train`` (with ``restval``), ``val`` or ``test``; all three (a ``DatasetDict``) when ``None``.
        streaming: Return ``IterableDataset`` (``IterableDatasetDict``) that stream the file.
        cache_dir: Cache directory of the map-style datasets.

    Returns:
        ``Dataset``/``IterableDataset`` for one split, else ``DatasetDict``/``IterableDatasetDict``.
    """
    features = _features(_CAPTION_FEATURES)
    if split is not None and split not in KARPATHY_SPLITS:
        raise KeyError(f"no Karpathy split {split!r}; choose from {KARPATHY_SPLITS}")
    splits = {
        name: ({"path": str(path), "split": name}, (path, name))
        for name in ([split] if split is not None else KARPATHY_SPLITS)
    }
    return _load_splits(_generate_captions, features, splits, split=split, streaming=streaming, cache_dir=cache_dir)


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
