"""Image ids kept apart by corpus: a COCO image 36979 is not the Flickr30k image 36979.

COCO and Flickr30k number their images independently (COCO ids reach about 581,000, Flickr30k ids such as 36979
exist too), so one region store holding both corpora keys each image by its corpus: ``coco/36979`` and
``flickr30k/36979`` (`corpus_image_id`). Such a store is converted from region features named per corpus
(``data.features: {coco: ..., flickr30k: ...}``, see
``hierarchical_vl.evaluation.evaluation_data.open_region_store``), and the annotation rows of each task take the
same form (`with_corpus_image_ids`) before they are encoded against it or checked for contamination, so that ids
are only ever compared within one corpus.

Each task reads the images of one corpus (`DEFAULT_TASK_CORPORA`: VQA 2.0 questions are on COCO images, Flickr30k
Entities on Flickr30k images); retrieval reads the corpus of each of its Karpathy files.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from .feature_readers import canonical_image_id

__all__ = [
    "CORPUS_SEPARATOR",
    "DEFAULT_TASK_CORPORA",
    "check_corpus_name",
    "corpus_image_id",
    "with_corpus_image_ids",
]

CORPUS_SEPARATOR = "/"
"""Between the corpus and the image id in the keys of a store converted per corpus (``flickr30k/36979``)."""

DEFAULT_TASK_CORPORA: Mapping[str, str] = {"vqa": "coco", "grounding": "flickr30k"}
"""The corpus whose images each task's annotations refer to, unless configured otherwise (retrieval: the corpus
of each Karpathy file)."""

_CORPUS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_corpus_name(name: Any, what: str = "corpus name") -> str:
    """``name`` if it can name a corpus (letters, digits, ``_``, ``.``, ``-``; no separator, no space).

    Args:
        name: The candidate name.
        what: What the name is, for the error message (e.g. ``"data.features key"``).

    Raises:
        ValueError: If it cannot.
    """
    if not isinstance(name, str) or not _CORPUS_NAME.fullmatch(name):
        raise ValueError(
            f"{what} {name!r} is not a corpus name: use letters, digits, '_', '.' or '-' (e.g. coco, flickr30k)"
        )
    return name


def corpus_image_id(corpus: str, image_id: Any) -> str:
    """The key of image ``image_id`` of ``corpus`` in a store converted per corpus: ``"<corpus>/<canonical id>"``.

    Args:
        corpus: The corpus name (``coco``, ``flickr30k``).
        image_id: The image id within the corpus, in any form
            [`~hierarchical_vl.data.feature_readers.canonical_image_id`] accepts (``36979``, ``"036979"``).
    """
    return f"{corpus}{CORPUS_SEPARATOR}{canonical_image_id(image_id)}"


def _corpus_ids(batch: dict[str, list], corpus: str) -> dict[str, list]:
    return {"image_id": [corpus_image_id(corpus, image_id) for image_id in batch["image_id"]]}


def with_corpus_image_ids(rows: Any, corpus: str) -> Any:
    """Annotation rows whose ``image_id`` is the corpus image id (`corpus_image_id`), a string.

    Args:
        rows: A ``datasets.Dataset`` or ``IterableDataset`` (as the annotation loaders return them), or a list of
            dicts.
        corpus: The corpus of the rows' images.

    Returns:
        Rows of the same kind, every other field unchanged.
    """
    if hasattr(rows, "map") and hasattr(rows, "column_names"):
        import datasets

        features = rows.features.copy() if getattr(rows, "features", None) is not None else None
        if features is not None:
            features["image_id"] = datasets.Value("string")
        options: dict[str, Any] = {"batched": True, "features": features}
        if isinstance(rows, datasets.Dataset):
            options["desc"] = f"{corpus} image ids"
        return rows.map(functools.partial(_corpus_ids, corpus=corpus), **options)
    return [{**row, "image_id": corpus_image_id(corpus, row["image_id"])} for row in rows]
