"""Raw images where region features are expected: a lookup that runs the extractor on a PIL image, an image file
path or an (H, W, 3) uint8 array, and otherwise looks ids up in a feature store as before."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .image_sources import IMAGE_SUFFIXES

__all__ = ["DETECTOR_FOLDER", "RawImageLookup", "detector_beside", "is_raw_image"]

DETECTOR_FOLDER = "detector"
"""The sub-folder of a model checkpoint that holds its region-feature extractor (``save_pretrained`` format)."""


def is_raw_image(image: Any) -> bool:
    """Whether ``image`` is a picture rather than region features or an id: a PIL image, an (H, W, 3) uint8
    array, or a path to an existing file with an image suffix."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        return True
    if isinstance(image, np.ndarray):
        return image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    return False


def detector_beside(checkpoint: str | os.PathLike | None) -> Path | None:
    """The ``detector/`` folder saved beside a model checkpoint, if there is one."""
    if not checkpoint:
        return None
    folder = Path(checkpoint) / DETECTOR_FOLDER
    return folder if (folder / "config.json").is_file() else None


class RawImageLookup:
    """A feature store that also understands raw images.

    ``lookup[image_id]`` is the wrapped store's record; [`regions`] turns a raw image into its record by running
    the extractor (results of the same path are kept, so a path asked for twice is extracted once).

    Args:
        extractor: A [`RegionFeatureExtractor`].
        store: The feature store of image ids (or ``None``).
    """

    def __init__(self, extractor: Any, store: Any = None):
        self.extractor = extractor
        self.store = store
        self.path = getattr(store, "path", None)
        self._cache: dict[str, dict[str, Any]] = {}

    def __getitem__(self, image_id: Any) -> Any:
        if self.store is None:
            raise KeyError(image_id)
        return self.store[image_id]

    def regions(self, image: Any) -> dict[str, Any]:
        """``{"features", "boxes", "width", "height", "image_id"}`` of a raw image (see [`is_raw_image`])."""
        key = str(Path(image).resolve()) if isinstance(image, (str, os.PathLike)) else None
        if key is not None and key in self._cache:
            return self._cache[key]
        result = self.extractor(image)[0]
        record = {
            "features": result.features,
            "boxes": result.boxes,
            "width": result.width,
            "height": result.height,
            "image_id": str(image) if key is not None else None,
        }
        if key is not None:
            self._cache[key] = record
        return record
