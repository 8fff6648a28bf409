"""Attention and grounding pictures: sizes, the highlighted top region, shaded words, atomic PNG writes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hierarchical_vl.pipelines import GroundingPredictor, RetrievalPredictor, VQAPredictor
from hierarchical_vl.visualization import (
    BAND_LINE_HEIGHT,
    BAND_PADDING,
    CANVAS_COLOUR,
    HIGHLIGHT_COLOUR,
    MAX_LINE_WIDTH,
    REGION_COLOUR,
    WORD_COLOUR,
    render_attention,
    render_grounding,
    render_regions,
    save_png,
    word_band_height,
)


def _edge_pixels(picture: Image.Image, box, inset: int = 0) -> list[tuple[int, int, int]]:
    """Pixels along the four edges of ``box`` (x1, y1, x2, y2, in picture pixels), ``inset`` pixels inside."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1, x2, y2 = x1 + inset, y1 + inset, x2 - inset, y2 - inset
    pixels = picture.load()
    points = [(x, y1) for x in range(x1, x2 + 1)] + [(x, y2) for x in range(x1, x2 + 1)]
    points += [(x1, y) for y in range(y1, y2 + 1)] + [(x2, y) for y in range(y1, y2 + 1)]
    return [pixels[point] for point in points]


def _assert_highlighted(picture: Image.Image, box) -> None:
    for inset in range(MAX_LINE_WIDTH):  # the whole line width of the top box
        assert set(_edge_pixels(picture, box, inset)) == {HIGHLIGHT_COLOUR}


BOXES = np.array([[2, 2, 30, 20], [40, 10, 60, 40], [10, 25, 35, 45]], dtype=np.float32)  # in a 64 x 48 image
WEIGHTS = np.array([0.2, 0.7, 0.1])


def test_blank_canvas_size_highlight_and_line_widths():
    picture = render_regions(BOXES, WEIGHTS, image_size=(64, 48), top_k=3)
    assert picture.size == (64, 48)  # no words, no title: no band
    _assert_highlighted(picture, BOXES[1])
    # Box 0 (weight 0.2 of 0.7) is drawn 2 pixels wide in the other colour, box 2 one pixel wide.
    pixels = picture.load()
    assert pixels[2, 10] == pixels[3, 10] == REGION_COLOUR and pixels[4, 10] == CANVAS_COLOUR
    assert pixels[10, 35] == REGION_COLOUR and pixels[11, 35] == CANVAS_COLOUR
    # top_k=1 draws only the top region.
    single = render_regions(BOXES, WEIGHTS, image_size=(64, 48), top_k=1)
    assert single.load()[2, 10] == CANVAS_COLOUR


def test_words_band_and_shades():
    words = ["what", "color", "is", "it"]
    weights = [0.1, 0.6, 0.0, 0.3]
    picture = render_regions(BOXES, WEIGHTS, image_size=(200, 48), words=words, word_weights=weights)
    band = word_band_height(words, 200)
    assert band == 2 * BAND_PADDING + BAND_LINE_HEIGHT  # one line fits in 200 pixels
    assert picture.size == (200, 48 + band)
    _assert_highlighted(picture, BOXES[1])
    pixels = picture.load()
    top = 48 + BAND_PADDING + 1  # first row of the word backgrounds
    row = [pixels[x, top] for x in range(picture.width)]
    assert WORD_COLOUR in row  # "color", the most attended word, in full shade
    assert (255, 255, 255) in row
    shades = {colour for colour in row if colour != (255, 255, 255)}
    assert len(shades) == 3  # "what", "color", "it"; "is" (weight 0) stays white

    titled = render_regions(BOXES, WEIGHTS, image_size=(200, 48), words=words, word_weights=weights, title="Q: A")
    assert titled.size == (200, 48 + word_band_height(words, 200, "Q: A"))
    assert titled.height == picture.height + BAND_LINE_HEIGHT
    narrow = word_band_height(words * 5, 60)
    assert narrow > 2 * BAND_PADDING + 2 * BAND_LINE_HEIGHT  # wraps onto several lines


def test_drawn_on_an_image_file_with_rescaled_boxes(tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (128, 96), (10, 120, 40)).save(path)
    picture = render_regions(BOXES, WEIGHTS, image=path, image_size=(64, 48), words=["a"], word_weights=[1.0])
    assert picture.size == (128, 96 + word_band_height(["a"], 128))
    _assert_highlighted(picture, BOXES[1] * 2)  # the file is twice the size the boxes refer to
    assert picture.load()[100, 5] == (10, 120, 40)  # the photo shows through


def test_vqa_and_retrieval_attention_pictures(checkpoints, store, tmp_path):
    vqa = VQAPredictor.from_pretrained(checkpoints["vqa"], feature_store=store)
    result = vqa.predict("what color is the cat ?", "img3", top_k=1, return_attention=True)
    attention = result["attention"]
    path = save_png(render_attention(attention, title="Q: what color is the cat ?"), tmp_path / "vqa" / "att.png")
    picture = Image.open(path).convert("RGB")
    assert picture.width == 64
    assert picture.height == 48 + word_band_height(attention["words"], 64, "Q: what color is the cat ?")
    top = int(np.argmax(attention["region_weights"]))
    _assert_highlighted(picture, attention["boxes"][top])

    retrieval = RetrievalPredictor.from_pretrained(checkpoints["retrieval"], feature_store=store)
    explained = retrieval.explain("img1", "a black cat sits on a red mat")
    picture = render_attention(explained["attention"])
    top = int(np.argmax(explained["attention"]["region_weights"]))
    _assert_highlighted(picture, explained["attention"]["boxes"][top])

    no_boxes = dict(attention, boxes=None)
    with pytest.raises(ValueError, match="no region boxes"):
        render_attention(no_boxes)


def test_grounding_picture_highlights_the_best_box(checkpoints, store, tmp_path):
    caption = "two dogs play with a ball in the park"
    predictor = GroundingPredictor.from_pretrained(checkpoints["grounding"], feature_store=store)
    result = predictor.predict(caption, "img1", ["two dogs", "a ball"], top_k=3)
    for index, phrase in enumerate(result):
        picture = render_grounding(caption, phrase, image_size=(64, 48))
        assert picture.width == 64 and picture.height > 48
        _assert_highlighted(picture, phrase["boxes"][0]["box"])
        save_png(picture, tmp_path / f"phrase{index}.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["phrase0.png", "phrase1.png"]


def test_save_png_is_atomic_and_replaces(tmp_path):
    target = tmp_path / "out.png"
    save_png(Image.new("RGB", (5, 4), (1, 2, 3)), target)
    save_png(Image.new("RGB", (7, 6), (4, 5, 6)), target)
    assert Image.open(target).size == (7, 6)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]

    class Broken:
        def save(self, *args, **kwargs):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_png(Broken(), target)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    assert Image.open(target).size == (7, 6)
