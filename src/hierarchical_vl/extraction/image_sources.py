"""The images to extract: files, directories, list files and the image lists of COCO / Karpathy annotation files;
and the given boxes of a boxes file (JSON, or Flickr30k Entities ``Annotations/``)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["IMAGE_SUFFIXES", "ImageSource", "collect_images", "read_given_boxes"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_TRAILING_NUMBER = re.compile(r"(\d+)$")


class ImageSource(NamedTuple):
    """One image to extract: its id (canonical form) and its file."""

    image_id: str
    path: Path


def _id_of_file(path: Path) -> str:
    """The image id of a file: the number its stem ends with (``COCO_val2014_000000000042.jpg`` -> ``42``,
    ``1000092795.jpg`` -> ``1000092795``), else the stem."""
    from ..data.feature_readers import canonical_image_id

    match = _TRAILING_NUMBER.search(path.stem)
    return canonical_image_id(match.group(1) if match else path.stem)


def _from_annotation_file(path: Path, image_root: Path) -> list[ImageSource]:
    from ..data.captions import _karpathy_image_id
    from ..data.feature_readers import canonical_image_id

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a JSON annotation file ({error})") from None
    entries = data.get("images") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: no 'images' list (expected a COCO or Karpathy annotation file)")
    sources = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: image entry {number} is not a JSON object")
        if "file_name" in entry and "id" in entry:  # COCO instances/captions
            image_id, relative = entry["id"], entry["file_name"]
        elif "filename" in entry:  # Karpathy dataset_coco.json / dataset_flickr30k.json
            image_id = _karpathy_image_id(entry, lambda problem, n=number: ValueError(f"{path}: entry {n}: {problem}"))
            relative = os.path.join(entry.get("filepath", ""), entry["filename"])
        else:
            raise ValueError(f"{path}: image entry {number} has neither 'file_name'+'id' (COCO) nor 'filename'")
        sources.append(ImageSource(canonical_image_id(image_id), image_root / relative))
    return sources


def collect_images(sources: Sequence[str | os.PathLike], *, image_root: str | os.PathLike | None = None):
    """The images named by ``sources``, in order, each once.

    Args:
        sources: Image files; directories (their image files, recursively, sorted); list files (``.txt``/``.lst``,
            one image path per line relative to the list file, ``#`` comments); COCO or Karpathy annotation
            files (``.json``; their image list, relative to ``image_root``).
        image_root: Where the file names of annotation files are looked up (default: the annotation's folder).

    Returns:
        A list of [`ImageSource`] ``(image_id, path)``.

    Raises:
        FileNotFoundError: A source does not exist.
        ValueError: Two images have the same id (both are named), or a list/annotation file is malformed.
    """
    found: list[ImageSource] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            found.extend(ImageSource(_id_of_file(p), p) for p in files)
        elif not path.is_file():
            raise FileNotFoundError(f"image source {path} does not exist")
        elif path.suffix.lower() == ".json":
            found.extend(_from_annotation_file(path, Path(image_root) if image_root else path.parent))
        elif path.suffix.lower() in (".txt", ".lst"):
            for line in path.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    image = Path(line) if os.path.isabs(line) else path.parent / line
                    found.append(ImageSource(_id_of_file(image), image))
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            found.append(ImageSource(_id_of_file(path), path))
        else:
            raise ValueError(f"{path}: not an image, a directory, a list file (.txt) or an annotation file (.json)")
    seen: dict[str, Path] = {}
    for image_id, image_path in found:
        if image_id in seen:
            raise ValueError(f"image id {image_id!r} names two images: {seen[image_id]} and {image_path}")
        seen[image_id] = image_path
    return found


def read_given_boxes(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Boxes to pool, per image id, in original pixels x1 y1 x2 y2.

    Args:
        path: A JSON file ``{image_id: [[x1, y1, x2, y2], ...]}``, or a Flickr30k Entities ``Annotations``
            directory (every ground-truth box of each ``<id>.xml``, chains in file order, repeats removed).

    Raises:
        ValueError: A record is malformed (the file and image are named).
    """
    from ..data.feature_readers import canonical_image_id

    path = Path(path)
    boxes: dict[str, np.ndarray] = {}
    if path.is_dir():
        from ..data.flickr30k_entities import parse_entities_annotation

        for xml in sorted(path.glob("*.xml")):
            annotation = parse_entities_annotation(xml)
            unique: list[list[float]] = []
            for chain_boxes in annotation.boxes.values():
                unique.extend(box for box in chain_boxes if box not in unique)
            if unique:
                boxes[canonical_image_id(xml.stem)] = np.asarray(unique, dtype=np.float32)
        return boxes
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, FileNotFoundError) as error:
        raise ValueError(f"{path}: not a readable boxes JSON file ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object {{image_id: [[x1, y1, x2, y2], ...]}}")
    for image_id, values in data.items():
        array = np.asarray(values, dtype=np.float32) if isinstance(values, list) else np.zeros((0, 3))
        if array.ndim != 2 or array.shape[1] != 4 or array.shape[0] == 0 or not np.isfinite(array).all():
            raise ValueError(f"{path}: image {image_id!r}: expected a non-empty list of [x1, y1, x2, y2] boxes")
        if (array[:, 2] < array[:, 0]).any() or (array[:, 3] < array[:, 1]).any():
            raise ValueError(f"{path}: image {image_id!r}: a box has x2 < x1 or y2 < y1")
        boxes[canonical_image_id(image_id)] = array
    return boxes
