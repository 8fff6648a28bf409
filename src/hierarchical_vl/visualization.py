"""Pictures of what the model attended to, in the manner of the paper's Figure 2 (Pillow only).

* [`render_attention`] / [`render_regions`]: the retrieval or VQA decoder's summary attention: the ``top_k`` regions
  drawn as boxes whose line width is proportional to their weight, the most attended region in
  [`HIGHLIGHT_COLOUR`], and the words below the image on a background whose shade is their weight.
* [`render_grounding`]: the grounding decoder's best regions for one phrase (line width proportional to the score,
  the best region highlighted) with the phrase's words shaded in the caption.

Boxes are drawn on the image when one is given (a path or a ``PIL.Image``), otherwise on a blank canvas of the
image's size. The picture is as wide as the image and as tall as the image plus a band for the words (see
[`word_band_height`]; no band when there are neither words nor a title). [`save_png`] writes atomically.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .atomic_files import atomic_path

__all__ = [
    "BAND_LINE_HEIGHT",
    "BAND_PADDING",
    "CANVAS_COLOUR",
    "HIGHLIGHT_COLOUR",
    "MAX_LINE_WIDTH",
    "REGION_COLOUR",
    "WORD_COLOUR",
    "render_attention",
    "render_grounding",
    "render_regions",
    "save_png",
    "word_band_height",
]

HIGHLIGHT_COLOUR = (230, 25, 75)
"""Outline of the most attended (or best scoring) region."""
REGION_COLOUR = (255, 200, 0)
"""Outline of the other drawn regions."""
WORD_COLOUR = (70, 130, 230)
"""Background of the most attended word; less attended words get a lighter shade, down to white."""
CANVAS_COLOUR = (250, 250, 250)
"""Background when no image file is given."""
MAX_LINE_WIDTH = 6
"""Line width of the top region; the others get ``max(1, round(MAX_LINE_WIDTH * weight / top weight))``."""
BAND_LINE_HEIGHT = 18
"""Height of one line of words in the band under the image."""
BAND_PADDING = 4
"""Margin around the words in the band."""

_WHITE = (255, 255, 255)
_TEXT = (0, 0, 0)
_WORD_GAP = 4


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        return ImageFont.load_default()


def _layout(words: Sequence[str], width: int, font, first_line: int = 0) -> tuple[list[tuple[int, int, int]], int]:
    """Flow ``words`` into lines ``width`` pixels wide: ``(line, x, text width)`` of each word, and lines used."""
    placed, line, x = [], first_line, BAND_PADDING
    for word in words:
        text_width = int(math.ceil(font.getlength(word))) + 2
        if x > BAND_PADDING and x + text_width > width - BAND_PADDING:
            line, x = line + 1, BAND_PADDING
        placed.append((line, x, text_width))
        x += text_width + _WORD_GAP
    return placed, (line - first_line + 1) if words else 0


def _title_lines(title: str | None, width: int, font) -> list[str]:
    if not title:
        return []
    lines, current = [], ""
    for word in title.split():
        candidate = f"{current} {word}".strip()
        if current and font.getlength(candidate) > width - 2 * BAND_PADDING:
            lines.append(current)
            current = word
        else:
            current = candidate
    return lines + [current]


def word_band_height(words: Sequence[str] | None, width: int, title: str | None = None) -> int:
    """Height in pixels of the band of words under a picture.

    Args:
        words: The words shown (``None`` for none).
        width: The picture's width in pixels.
        title: The title line(s), if any.

    Returns:
        ``2 * BAND_PADDING + BAND_LINE_HEIGHT`` per line of title and words; 0 when there are neither.
    """
    font = _font()
    lines = len(_title_lines(title, width, font)) + _layout(list(words or []), width, font)[1]
    return 0 if lines == 0 else 2 * BAND_PADDING + lines * BAND_LINE_HEIGHT


def _blend(weight: float) -> tuple[int, int, int]:
    weight = min(max(float(weight), 0.0), 1.0)
    return tuple(int(round(w + (c - w) * weight)) for w, c in zip(_WHITE, WORD_COLOUR))


def _base_image(
    image: str | os.PathLike | Image.Image | None,
    image_size: Sequence[float] | None,
    boxes: np.ndarray | None,
) -> tuple[Image.Image, np.ndarray]:
    """The picture to draw on and the scale `(4,)` from box coordinates to its pixels."""
    if image is not None:
        picture = image.copy() if isinstance(image, Image.Image) else Image.open(image)
        picture = picture.convert("RGB")
        if image_size is not None:
            sx, sy = picture.width / float(image_size[0]), picture.height / float(image_size[1])
        else:
            sx = sy = 1.0
        return picture, np.array([sx, sy, sx, sy])
    if image_size is None:
        if boxes is None or not len(boxes):
            raise ValueError("give the image, its size or region boxes to know how large the picture is")
        image_size = (float(boxes[:, 2].max()), float(boxes[:, 3].max()))
    width, height = (max(1, int(math.ceil(float(value)))) for value in image_size)
    return Image.new("RGB", (width, height), CANVAS_COLOUR), np.ones(4)


def _draw_boxes(draw: ImageDraw.ImageDraw, boxes: np.ndarray, weights: np.ndarray, width: int, height: int) -> None:
    """Boxes `(K, 4)` in picture pixels, best first; line width proportional to weight, the first highlighted."""
    top = float(weights[0]) if len(weights) and weights[0] > 0 else 1.0
    for rank in range(len(boxes) - 1, -1, -1):  # the best box last, on top
        x1, y1, x2, y2 = boxes[rank]
        x1, x2 = sorted((min(max(x1, 0), width - 1), min(max(x2, 0), width - 1)))
        y1, y2 = sorted((min(max(y1, 0), height - 1), min(max(y2, 0), height - 1)))
        line = MAX_LINE_WIDTH if rank == 0 else max(1, int(round(MAX_LINE_WIDTH * float(weights[rank]) / top)))
        colour = HIGHLIGHT_COLOUR if rank == 0 else REGION_COLOUR
        draw.rectangle([int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2))], outline=colour, width=line)


def _draw_band(
    picture: Image.Image,
    top: int,
    words: Sequence[str],
    word_weights: Sequence[float] | None,
    title: str | None,
) -> None:
    draw = ImageDraw.Draw(picture)
    font = _font()
    draw.rectangle([0, top, picture.width - 1, picture.height - 1], fill=_WHITE)
    titles = _title_lines(title, picture.width, font)
    for line, text in enumerate(titles):
        draw.text((BAND_PADDING, top + BAND_PADDING + line * BAND_LINE_HEIGHT + 2), text, fill=_TEXT, font=font)
    weights = np.asarray(word_weights if word_weights is not None else np.zeros(len(words)), dtype=np.float64)
    scale = weights.max() if len(weights) and weights.max() > 0 else 1.0
    placed, _ = _layout(words, picture.width, font, first_line=len(titles))
    for word, weight, (line, x, text_width) in zip(words, weights, placed):
        y = top + BAND_PADDING + line * BAND_LINE_HEIGHT
        draw.rectangle([x, y + 1, x + text_width, y + BAND_LINE_HEIGHT - 2], fill=_blend(weight / scale))
        draw.text((x + 1, y + 2), word, fill=_TEXT, font=font)


def render_regions(
    boxes: Sequence[Sequence[float]] | np.ndarray,
    weights: Sequence[float] | np.ndarray,
    *,
    image: str | os.PathLike | Image.Image | None = None,
    image_size: Sequence[float] | None = None,
    words: Sequence[str] | None = None,
    word_weights: Sequence[float] | None = None,
    title: str | None = None,
    top_k: int = 5,
) -> Image.Image:
    """Draw the ``top_k`` regions by weight (the top one in [`HIGHLIGHT_COLOUR`]) and the words shaded by weight.

    Args:
        boxes: `(T, 4)` boxes x1, y1, x2, y2 in pixels of an image of ``image_size``.
        weights: `(T,)` weight (attention or score) of each region.
        image: The image file or picture; without it, a blank canvas of ``image_size``.
        image_size: ``(width, height)`` the boxes refer to; boxes are rescaled when ``image`` has another size.
            Without image and size, the canvas just holds the boxes.
        words: Words to show under the image.
        word_weights: Their weights (shade relative to the largest).
        title: A line over the words (e.g. the question and the answer).
        top_k: Regions to draw.

    Returns:
        An RGB picture as wide as the image and ``word_band_height(words, width, title)`` taller.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)  # (T, 4)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)  # (T,)
    if len(boxes) != len(weights):
        raise ValueError(f"got {len(boxes)} boxes but {len(weights)} weights")
    if word_weights is not None and words is not None and len(word_weights) < len(words):
        raise ValueError(f"got {len(words)} words but {len(word_weights)} word weights")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    base, scale = _base_image(image, image_size, boxes)
    order = np.argsort(-weights, kind="stable")[:top_k]
    _draw_boxes(ImageDraw.Draw(base), boxes[order] * scale, weights[order], base.width, base.height)
    words = list(words or [])
    band = word_band_height(words, base.width, title)
    if band == 0:
        return base
    picture = Image.new("RGB", (base.width, base.height + band), _WHITE)
    picture.paste(base, (0, 0))
    _draw_band(picture, base.height, words, word_weights, title)
    return picture


def render_attention(
    attention: Mapping[str, Any],
    *,
    image: str | os.PathLike | Image.Image | None = None,
    title: str | None = None,
    top_k: int = 5,
) -> Image.Image:
    """Draws a decoder's attention as the predictors return it; see [`render_regions`].

    Args:
        attention: ``VQAPredictor.predict(..., return_attention=True)["attention"]`` or
            ``RetrievalPredictor.explain(...)["attention"]``.
        image: The image (a path or a ``PIL.Image``); a blank canvas of the image's size when ``None``.
        title: Text above the words; none when ``None``.
        top_k: Regions drawn.

    Returns:
        The picture.

    Raises:
        ValueError: If the attention has no region boxes.
    """
    if attention.get("boxes") is None:
        raise ValueError("the attention has no region boxes to draw; give the image's boxes with its features")
    return render_regions(
        attention["boxes"],
        attention["region_weights"],
        image=image,
        image_size=attention.get("image_size"),
        words=attention.get("words"),
        word_weights=attention.get("word_weights"),
        title=title,
        top_k=top_k,
    )


def render_grounding(
    caption: str,
    phrase: Mapping[str, Any],
    *,
    image: str | os.PathLike | Image.Image | None = None,
    image_size: Sequence[float] | None = None,
    title: str | None = None,
) -> Image.Image:
    """Draw the best regions of one grounded phrase, the best in [`HIGHLIGHT_COLOUR`], with the phrase's words
    shaded in the caption.

    Args:
        caption: The caption the phrase belongs to.
        phrase: One entry of ``GroundingPredictor.predict``: ``{"phrase", "span", "boxes": [{"score", "box"}]}``.
        image: The image file or picture; without it, a blank canvas of ``image_size``.
        image_size: ``(width, height)`` the boxes refer to.
        title: A line over the caption (default: the phrase and its best score).
    """
    found = [entry for entry in phrase["boxes"] if entry.get("box") is not None]
    if len(found) != len(phrase["boxes"]):
        raise ValueError("the grounding result has no region boxes to draw; give the image's boxes with its features")
    start, end = phrase["span"]
    words, weights = [], []
    for match in re.finditer(r"\S+", caption):
        words.append(match.group())
        weights.append(1.0 if match.start() < end and match.end() > start else 0.0)
    if title is None:
        best = f", best {found[0]['score']:.2f}" if found else ", not grounded"
        title = f'"{phrase["phrase"]}"{best}'
    return render_regions(
        [entry["box"] for entry in found],
        [entry["score"] for entry in found],
        image=image,
        image_size=image_size,
        words=words,
        word_weights=weights,
        title=title,
        top_k=max(1, len(found)),
    )


def save_png(picture: Image.Image, path: str | os.PathLike) -> Path:
    """Writes ``picture`` as a PNG at ``path`` atomically (through `hierarchical_vl.atomic_files`).

    Args:
        picture: The picture.
        path: The destination file.

    Returns:
        The path written.
    """
    with atomic_path(path) as temporary:
        picture.save(temporary, format="PNG")
    return Path(path)
