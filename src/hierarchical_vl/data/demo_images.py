"""Pictures of the demo corpus's scenes: each object drawn at its box with its colour and shape (Pillow only).

The demo corpus describes every image by its objects (colour, shape, size, box) and region features computed from
them; [`draw_demo_scene`] paints the same objects, so that a picture shown beside a prediction or under an attention
map shows what the regions and the annotations talk about. Drawing uses no randomness: the pictures follow from
the scenes alone and writing them changes nothing else the generator writes.

* cube: a front square with a lighter top and a darker side face (a box seen from above and to the right);
* sphere: a disc with a highlight;
* cylinder: a body between two ellipses, the top one lighter;
* cone: a triangle on an elliptic base.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from ..atomic_files import atomic_path

__all__ = [
    "DEMO_IMAGE_FOLDER",
    "OBJECT_RGB",
    "demo_image_path",
    "draw_demo_scene",
    "write_demo_images",
]

DEMO_IMAGE_FOLDER = "images"
"""The folder of a demo corpus that holds one ``<image_id>.png`` per scene."""

OBJECT_RGB = {
    "red": (205, 40, 40),
    "green": (40, 160, 70),
    "blue": (45, 85, 210),
    "yellow": (235, 200, 35),
    "purple": (140, 60, 175),
    "gray": (128, 128, 128),
}
"""Fill colour of each colour word of the corpus."""

_FLOOR_TOP = (214, 210, 200)
_FLOOR_BOTTOM = (168, 164, 154)
_OUTLINE = (30, 30, 30)

DemoObject = tuple[str, str, Sequence[float]]
"""``(colour, shape, (x1, y1, x2, y2))`` of one object, box in 0-based pixels."""


def _shade(rgb: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    """``rgb`` darkened (factor < 1) or lightened towards white (factor > 1)."""
    if factor <= 1:
        return tuple(int(round(c * factor)) for c in rgb)
    return tuple(int(round(c + (255 - c) * (factor - 1))) for c in rgb)


def _floor(width: int, height: int) -> Image.Image:
    """A vertical gradient, lighter at the top, like a table seen from above."""
    picture = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(picture)
    for y in range(height):
        t = y / max(1, height - 1)
        draw.line(
            [(0, y), (width - 1, y)], fill=tuple(int(round(a + (b - a) * t)) for a, b in zip(_FLOOR_TOP, _FLOOR_BOTTOM))
        )
    return picture


def _cube(draw: ImageDraw.ImageDraw, x1: float, y1: float, x2: float, y2: float, rgb) -> None:
    depth = 0.25 * min(x2 - x1, y2 - y1)  # the receding faces take a quarter of the box
    front = [x1, y1 + depth, x2 - depth, y2]
    top = [(x1, y1 + depth), (x1 + depth, y1), (x2, y1), (x2 - depth, y1 + depth)]
    side = [(x2 - depth, y1 + depth), (x2, y1), (x2, y2 - depth), (x2 - depth, y2)]
    draw.polygon(top, fill=_shade(rgb, 1.35), outline=_OUTLINE)
    draw.polygon(side, fill=_shade(rgb, 0.65), outline=_OUTLINE)
    draw.rectangle(front, fill=rgb, outline=_OUTLINE)


def _sphere(draw: ImageDraw.ImageDraw, x1: float, y1: float, x2: float, y2: float, rgb) -> None:
    draw.ellipse([x1, y1, x2, y2], fill=rgb, outline=_OUTLINE)
    w, h = x2 - x1, y2 - y1
    draw.ellipse([x1 + 0.22 * w, y1 + 0.18 * h, x1 + 0.42 * w, y1 + 0.36 * h], fill=_shade(rgb, 1.6))


def _cylinder(draw: ImageDraw.ImageDraw, x1: float, y1: float, x2: float, y2: float, rgb) -> None:
    cap = 0.12 * (y2 - y1)  # half the height of the elliptic ends
    draw.ellipse([x1, y2 - 2 * cap, x2, y2], fill=_shade(rgb, 0.8), outline=_OUTLINE)
    draw.rectangle([x1, y1 + cap, x2, y2 - cap], fill=rgb)
    draw.line([(x1, y1 + cap), (x1, y2 - cap)], fill=_OUTLINE)
    draw.line([(x2, y1 + cap), (x2, y2 - cap)], fill=_OUTLINE)
    draw.ellipse([x1, y1, x2, y1 + 2 * cap], fill=_shade(rgb, 1.35), outline=_OUTLINE)


def _cone(draw: ImageDraw.ImageDraw, x1: float, y1: float, x2: float, y2: float, rgb) -> None:
    base = 0.1 * (y2 - y1)  # half the height of the elliptic base
    draw.ellipse([x1, y2 - 2 * base, x2, y2], fill=_shade(rgb, 0.8), outline=_OUTLINE)
    draw.polygon([((x1 + x2) / 2, y1), (x2, y2 - base), (x1, y2 - base)], fill=rgb, outline=_OUTLINE)


_PAINTERS = {"cube": _cube, "sphere": _sphere, "cylinder": _cylinder, "cone": _cone}


def draw_demo_scene(width: int, height: int, objects: Iterable[DemoObject]) -> Image.Image:
    """Paints one scene of the demo corpus.

    Args:
        width: Picture width in pixels.
        height: Picture height in pixels.
        objects: ``(colour, shape, box)`` of each object, box x1, y1, x2, y2 in 0-based pixels; drawn in order.
            Colours are the keys of [`OBJECT_RGB`], shapes ``cube``, ``sphere``, ``cylinder`` or ``cone``.

    Returns:
        An RGB picture of ``width`` x ``height`` whose objects fill their boxes.

    Raises:
        ValueError: If a colour or a shape is unknown, or a box is empty.
    """
    picture = _floor(int(width), int(height))
    draw = ImageDraw.Draw(picture)
    for colour, shape, box in objects:
        if colour not in OBJECT_RGB:
            raise ValueError(f"unknown colour {colour!r}; choose from {sorted(OBJECT_RGB)}")
        if shape not in _PAINTERS:
            raise ValueError(f"unknown shape {shape!r}; choose from {sorted(_PAINTERS)}")
        x1, y1, x2, y2 = (float(value) for value in box)
        if not (x2 > x1 and y2 > y1):
            raise ValueError(f"the box {list(box)} of a {colour} {shape} is empty")
        _PAINTERS[shape](draw, x1, y1, x2, y2, OBJECT_RGB[colour])
    return picture


def demo_image_path(root: str | os.PathLike, image_id: str | int) -> Path:
    """Where the picture of ``image_id`` lies in a demo corpus: ``root/images/<image_id>.png``."""
    return Path(root) / DEMO_IMAGE_FOLDER / f"{image_id}.png"


def write_demo_images(
    root: str | os.PathLike, scenes: Iterable[tuple[int | str, int, int, Iterable[DemoObject]]]
) -> Path:
    """Writes the picture of every scene as ``root/images/<image_id>.png``, each file atomically.

    Args:
        root: The corpus directory.
        scenes: ``(image_id, width, height, objects)`` of each scene (see [`draw_demo_scene`]).

    Returns:
        The image folder.
    """
    folder = Path(root) / DEMO_IMAGE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for image_id, width, height, objects in scenes:
        picture = draw_demo_scene(width, height, objects)
        with atomic_path(demo_image_path(root, image_id)) as temporary:
            picture.save(temporary, format="PNG")
    return folder
