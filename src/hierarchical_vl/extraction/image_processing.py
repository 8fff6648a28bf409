"""Images into the detector's input: loading (PIL image, file path or array), the test-time resize and the
Caffe convention of channel order and mean subtraction.

The convention is applied in exactly one place, [`detector_input`]: the image is read as RGB, flipped to the
channel order of ``config.input_format`` (BGR for the bottom-up-attention model), resized, then
``(pixel - pixel_mean) / pixel_std`` per channel with ``pixel_mean`` given in that same order. Nothing else in the
package reorders channels or subtracts means.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .configuration_extractor import RegionFeatureExtractorConfig

__all__ = ["ImageGeometry", "detector_input", "load_rgb_image", "resized_geometry"]


def load_rgb_image(image: Any) -> np.ndarray:
    """An image as an (H, W, 3) uint8 RGB array.

    Args:
        image: A PIL image (any mode), a path to an image file, or an (H, W, 3) uint8 RGB array (or (H, W) grey).

    Raises:
        FileNotFoundError: The path does not exist.
        ValueError: The file is not a readable image, or the array has another shape or type.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image file {path} does not exist")
        try:
            with Image.open(path) as opened:
                return np.asarray(opened.convert("RGB"))
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"{path}: not a readable image ({error})") from None
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        array = image[..., None].repeat(3, axis=-1) if image.ndim == 2 else image
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise ValueError(f"an image array must be (H, W, 3) uint8 RGB, not {image.shape} {image.dtype}")
        return array
    raise TypeError(f"cannot read an image from a {type(image).__name__} (give a PIL image, a path or an array)")


@dataclass(frozen=True)
class ImageGeometry:
    """The original and resized size of one image, and the exact maps between their pixel coordinates.

    Attributes:
        height: Original height.
        width: Original width.
        resized_height: Height of the detector's input.
        resized_width: Width of the detector's input.
    """

    height: int
    width: int
    resized_height: int
    resized_width: int

    @property
    def scale_x(self) -> float:
        return self.resized_width / self.width

    @property
    def scale_y(self) -> float:
        return self.resized_height / self.height

    def to_resized(self, boxes: torch.Tensor) -> torch.Tensor:
        """Boxes (K, 4) in original pixels -> input pixels (edges map to edges: x' = x * resized_w / w)."""
        scale = boxes.new_tensor([self.scale_x, self.scale_y, self.scale_x, self.scale_y])
        return boxes * scale

    def to_original(self, boxes: torch.Tensor) -> torch.Tensor:
        """Boxes (K, 4) in input pixels -> original pixels (the inverse of `to_resized`)."""
        scale = boxes.new_tensor([self.width, self.height, self.width, self.height], dtype=torch.float64)
        scale = scale / boxes.new_tensor(
            [self.resized_width, self.resized_height, self.resized_width, self.resized_height], dtype=torch.float64
        )
        return (boxes.double() * scale).to(boxes.dtype)


def resized_geometry(height: int, width: int, min_size: int, max_size: int) -> ImageGeometry:
    """The test-time resize: the shorter side to ``min_size`` unless the longer would exceed ``max_size``, in
    which case the longer side to ``max_size``; sides rounded to whole pixels."""
    if height < 1 or width < 1:
        raise ValueError(f"an image must have a positive size, not {width}x{height}")
    scale = min_size / min(height, width)
    if scale * max(height, width) > max_size:
        scale = max_size / max(height, width)
    return ImageGeometry(height, width, max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5)))


def detector_input(rgb: np.ndarray, config: RegionFeatureExtractorConfig) -> tuple[torch.Tensor, ImageGeometry]:
    """The detector's input of one image: (3, h, w) float32 in ``config.input_format`` order, resized (bilinear,
    half-pixel centres), mean-subtracted and divided by ``pixel_std``.

    Args:
        rgb: (H, W, 3) uint8 RGB image (from [`load_rgb_image`]).
        config: The detector configuration (input format, means, sizes).

    Returns:
        The input tensor and the image's [`ImageGeometry`].
    """
    geometry = resized_geometry(rgb.shape[0], rgb.shape[1], config.min_size, config.max_size)
    image = torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1).float()  # (3, H, W) RGB
    if config.input_format == "BGR":
        image = image.flip(0)
    if (geometry.resized_height, geometry.resized_width) != (geometry.height, geometry.width):
        image = torch.nn.functional.interpolate(
            image[None], size=(geometry.resized_height, geometry.resized_width), mode="bilinear", align_corners=False
        )[0]
    mean = torch.tensor(config.pixel_mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(config.pixel_std, dtype=torch.float32)[:, None, None]
    return (image - mean) / std, geometry
