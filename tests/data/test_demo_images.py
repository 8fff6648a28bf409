"""The demo corpus's scene pictures: objects drawn at their boxes, and nothing else of the corpus changed."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hierarchical_vl.cli import main as hvl
from hierarchical_vl.data import generate_demo_corpus, open_region_feature_reader
from hierarchical_vl.data.demo_corpus import COLORS, SHAPES
from hierarchical_vl.data.demo_images import OBJECT_RGB, demo_image_path, draw_demo_scene
from hierarchical_vl.data.flickr30k_entities import parse_entities_annotation


def _tree(root, skip=("images",)):
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] not in skip
    }


@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_fills_its_box_with_its_colour(shape):
    box = (40, 30, 120, 110)
    floor = np.asarray(draw_demo_scene(200, 160, []))
    picture = np.asarray(draw_demo_scene(200, 160, [("purple", shape, box)]))
    assert picture.shape == (160, 200, 3)
    assert tuple(picture[70, 80]) == OBJECT_RGB["purple"]  # the centre of the box
    inside = picture[30:111, 40:121]
    changed = (inside != floor[30:111, 40:121]).any(axis=2).mean()
    assert changed > 0.4  # the object covers much of its box
    outside = np.ones(picture.shape[:2], bool)
    outside[30:111, 40:121] = False
    assert (picture[outside] == floor[outside]).all()  # and nothing outside it


def test_every_colour_word_has_a_colour_and_bad_objects_are_refused():
    assert set(OBJECT_RGB) == set(COLORS)
    with pytest.raises(ValueError, match="colour 'pink'"):
        draw_demo_scene(50, 50, [("pink", "cube", (1, 1, 20, 20))])
    with pytest.raises(ValueError, match="shape 'torus'"):
        draw_demo_scene(50, 50, [("red", "torus", (1, 1, 20, 20))])
    with pytest.raises(ValueError, match="empty"):
        draw_demo_scene(50, 50, [("red", "cube", (20, 1, 20, 20))])


def test_the_pictures_change_no_other_file(tmp_path):
    """Same directory, with and without pictures: every other file is byte-identical (the generator's random
    numbers are not touched), and the pictures follow from the seed."""
    root = tmp_path / "corpus"
    paths = generate_demo_corpus(root, num_images=12, seed=4, feature_dim=8, write_images=False)
    assert paths.images is None and not (root / "images").exists()
    without = _tree(root)
    paths = generate_demo_corpus(root, num_images=12, seed=4, feature_dim=8)
    assert paths.images == root / "images"
    assert _tree(root) == without
    pictures = _tree(root, skip=())
    again = tmp_path / "again"
    generate_demo_corpus(again, num_images=12, seed=4, feature_dim=8)
    assert {k: v for k, v in _tree(again, skip=()).items() if k.startswith("images")} == {
        k: v for k, v in pictures.items() if k.startswith("images")
    }


def test_one_picture_per_image_showing_the_annotated_objects(tmp_path):
    paths = generate_demo_corpus(tmp_path, num_images=12, seed=2, feature_dim=8)
    records = {r.image_id: r for r in open_region_feature_reader(paths.features_tsv)}
    assert sorted(p.stem for p in paths.images.iterdir()) == sorted(records)
    for image_id, record in records.items():
        with Image.open(demo_image_path(paths.root, image_id)) as picture:
            assert picture.size == (int(record.width), int(record.height))
            pixels = np.asarray(picture.convert("RGB"))
        floor = np.asarray(draw_demo_scene(int(record.width), int(record.height), []))
        annotation = paths.entities_root / "Annotations" / f"{image_id}.xml"
        if not annotation.exists():  # test2015 images have no Entities annotation
            continue
        for boxes in parse_entities_annotation(annotation).boxes.values():
            for x1, y1, x2, y2 in np.asarray(boxes, int):
                inside = (pixels[y1 : y2 + 1, x1 : x2 + 1] != floor[y1 : y2 + 1, x1 : x2 + 1]).any(axis=2)
                assert inside.mean() > 0.4, f"image {image_id}: box {(x1, y1, x2, y2)} shows no object"


def test_command_line_writes_pictures_unless_told_not_to(tmp_path, capsys):
    assert hvl(["data", "demo", str(tmp_path / "a"), "--images", "10", "--feature-dim", "8"]) == 0
    assert "scene pictures" in capsys.readouterr().out
    assert len(list((tmp_path / "a" / "images").glob("*.png"))) == 10
    assert hvl(["data", "demo", str(tmp_path / "b"), "--images", "10", "--feature-dim", "8", "--no-images"]) == 0
    assert not (tmp_path / "b" / "images").exists()
