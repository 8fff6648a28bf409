"""One image as its detected regions, and the lookup of an image given as an array, a record or an id.

An image reaches the model as its bottom-up-attention region features: an `(T, F)` array, a record
``{"features", "boxes", "width", "height"}`` as a feature store returns it, an [`ImageRegions`], or an image id
looked up in a feature store (any object whose ``store[image_id]`` returns such a record and raises ``KeyError``
for unknown ids, e.g. a [`RegionFeatureStore`] or a plain dict). [`resolve_image`] turns any of these into
[`ImageRegions`].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["ImageRegions", "UnknownImageError", "resolve_image"]


class UnknownImageError(KeyError):
    """An image id that the feature store does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


@dataclass
class ImageRegions:
    """The detected regions of one image.

    Attributes:
        features: `(T, F)` region features (float16 or float32).
        boxes: `(T, 4)` boxes x1, y1, x2, y2 in pixels, or ``None``.
        width: Image width in pixels, or ``None``.
        height: Image height in pixels, or ``None``.
        image_id: The id the regions were looked up under, or ``None``.
    """

    features: np.ndarray
    boxes: np.ndarray | None = None
    width: float | None = None
    height: float | None = None
    image_id: Any = None

    def __post_init__(self) -> None:
        name = "image" if self.image_id is None else f"image {self.image_id!r}"
        if self.features is None:
            raise ValueError(f"{name} has no region features")
        self.features = _to_numpy(self.features)
        if self.features.ndim != 2:
            raise ValueError(f"region features of {name} must be (regions, width), got {self.features.shape}")
        if self.features.shape[0] < 1:
            raise ValueError(f"{name} has no region (0 rows of region features)")
        if self.boxes is not None:
            self.boxes = _to_numpy(self.boxes).astype(np.float32, copy=False)
            if self.boxes.shape != (self.features.shape[0], 4):
                raise ValueError(
                    f"{name}: boxes must be (regions, 4) = ({self.features.shape[0]}, 4), got {self.boxes.shape}"
                )
        for field_name in ("width", "height"):
            value = getattr(self, field_name)
            if value is not None:
                value = float(value)
                if not value > 0:
                    raise ValueError(f"{name}: {field_name} must be positive, got {value}")
                setattr(self, field_name, value)

    @property
    def num_regions(self) -> int:
        """Number of regions T."""
        return int(self.features.shape[0])

    @property
    def size(self) -> tuple[float, float] | None:
        """``(width, height)`` when both are known."""
        if self.width is None or self.height is None:
            return None
        return (self.width, self.height)

    @classmethod
    def from_record(cls, record: Any, image_id: Any = None) -> ImageRegions:
        """Regions from a feature-store record.

        Args:
            record: A mapping (or an object with attributes) holding ``features`` (or ``region_features``) and
                optionally ``boxes`` (or ``region_boxes``), ``width``, ``height`` and ``image_id``.
            image_id: The id to record, overriding the record's own.

        Raises:
            ValueError: The record has no region features, or they are malformed.
        """
        if isinstance(record, Mapping):
            get = record.get
        else:

            def get(key, default=None):
                return getattr(record, key, default)

        image_id = get("image_id", image_id) if image_id is None else image_id
        features = get("features")
        if features is None:
            features = get("region_features")
        if features is None:
            name = "the record" if image_id is None else f"the record of image {image_id!r}"
            raise ValueError(f"{name} has no region features (no 'features' entry)")
        boxes = get("boxes")
        if boxes is None:
            boxes = get("region_boxes")
        return cls(features, boxes, get("width"), get("height"), image_id)

    @classmethod
    def from_store(cls, store: Any, image_id: Any) -> ImageRegions:
        """Regions of ``image_id`` read from a feature store.

        Args:
            store: Any object with ``store[image_id]`` -> record, raising ``KeyError`` for unknown ids.
            image_id: The image to read.

        Raises:
            UnknownImageError: The store does not hold ``image_id`` (a ``KeyError``).
        """
        try:
            record = store[image_id]
        except KeyError:
            where = getattr(store, "path", None)
            where = f" at {where}" if where is not None else f" ({type(store).__name__})"
            raise UnknownImageError(f"image id {image_id!r} is not in the feature store{where}") from None
        return cls.from_record(record, image_id=image_id)


def resolve_image(image: Any, feature_store: Any = None) -> ImageRegions:
    """Turn any accepted description of an image into [`ImageRegions`].

    Args:
        image: An [`ImageRegions`]; a record (mapping with ``features`` and optionally ``boxes``, ``width``,
            ``height``); an `(T, F)` array or tensor of region features; or an image id (``str`` or ``int``)
            looked up in ``feature_store``.
        feature_store: Where image ids are looked up.

    Raises:
        ValueError: No features were given, or they are malformed.
        UnknownImageError: The image id is not in the store (a ``KeyError``).
        TypeError: ``image`` is of a kind that holds no region features.
    """
    if isinstance(image, ImageRegions):
        return image
    if image is None:
        raise ValueError(
            "no region features given: pass an image as region features (an array (regions, width), a record "
            "with 'features', or ImageRegions) or as an image id together with a feature store"
        )
    if isinstance(image, (str, int, np.integer)):
        if feature_store is None:
            raise ValueError(
                f"image {image!r} is an image id, but no feature store was given to look it up in "
                "(pass feature_store=...)"
            )
        return ImageRegions.from_store(feature_store, image)
    if isinstance(image, Mapping) or (hasattr(image, "features") and not hasattr(image, "ndim")):
        return ImageRegions.from_record(image)
    if isinstance(image, (np.ndarray, torch.Tensor, list, tuple)):
        return ImageRegions(image)
    raise TypeError(f"cannot read region features from a {type(image).__name__}")
