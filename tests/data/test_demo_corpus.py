"""The demo corpus: real formats, deterministic by seed, learnable content, clean default splits."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np

from hierarchical_vl.cli import main as hvl
from hierarchical_vl.data import box_iou, generate_demo_corpus, open_region_feature_reader
from hierarchical_vl.data.demo_corpus import COLORS, SHAPES
from hierarchical_vl.data.flickr30k_entities import _read_split_list, parse_entities_annotation

from .conftest import DEMO_IMAGES


def _tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_by_seed(tmp_path):
    first = generate_demo_corpus(tmp_path / "a", num_images=12, seed=5, feature_dim=16)
    second = generate_demo_corpus(tmp_path / "b", num_images=12, seed=5, feature_dim=16)
    other = generate_demo_corpus(tmp_path / "c", num_images=12, seed=6, feature_dim=16)
    a, b = _tree(first.root), _tree(second.root)
    manifest = "manifest.json"
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a if k != manifest)
    assert _tree(other.root)["features/region_features.tsv"] != a["features/region_features.tsv"]


def test_real_layouts_and_sizes(demo):
    questions = json.loads(demo.vqa_questions["train2014"].read_text())
    annotations = json.loads(demo.vqa_annotations["train2014"].read_text())
    assert questions["data_subtype"] == "train2014" and questions["task_type"] == "Open-Ended"
    assert [q["question_id"] for q in questions["questions"]] == [a["question_id"] for a in annotations["annotations"]]
    assert all(len(a["answers"]) == 10 for a in annotations["annotations"])
    assert "test2015" in demo.vqa_questions and "test2015" not in demo.vqa_annotations
    karpathy = json.loads(demo.karpathy_captions.read_text())
    assert {i["split"] for i in karpathy["images"]} == {"train", "restval", "val", "test"}
    assert all(len(i["sentences"]) == 5 and "cocoid" in i for i in karpathy["images"])
    entities = demo.entities_root
    assert {p.name for p in entities.iterdir()} == {
        "Sentences",
        "Annotations",
        "train.txt",
        "val.txt",
        "test.txt",
    }
    ids = {str(i["cocoid"]) for i in karpathy["images"]}
    assert ids == set(
        _read_split_list(entities / "train.txt")
        + _read_split_list(entities / "val.txt")
        + _read_split_list(entities / "test.txt")
    )
    assert len(list(open_region_feature_reader(demo.features_tsv))) == DEMO_IMAGES


def test_grounding_boxes_have_a_matching_region(demo):
    regions = {r.image_id: r for r in open_region_feature_reader(demo.features_tsv)}
    for xml in sorted((demo.entities_root / "Annotations").glob("*.xml")):
        annotation = parse_entities_annotation(xml)
        boxes = np.array([b for bs in annotation.boxes.values() for b in bs], np.float32)
        iou = box_iou(boxes, regions[xml.stem].boxes)  # (G, K)
        assert (iou.max(axis=1) >= 0.5).all()  # a tight proposal on every object
        assert ((iou >= 0.5).sum(axis=1) <= 2).all()  # loose proposals stay below 0.5 (duplicate names aside)


def test_region_features_encode_object_attributes(tmp_path):
    """A ridge probe on one half of the images reads an object's colour and shape from its region's features on
    the other half, far above chance: the features carry the attributes the questions ask about."""
    paths = generate_demo_corpus(tmp_path, num_images=60, seed=0, feature_dim=256)
    regions = {r.image_id: r for r in open_region_feature_reader(paths.features_tsv)}
    karpathy = json.loads(paths.karpathy_captions.read_text())
    rows, colors, shapes = [], [], []
    for image in karpathy["images"]:
        annotation = parse_entities_annotation(paths.entities_root / "Annotations" / f"{image['cocoid']}.xml")
        record = regions[str(image["cocoid"])]
        for sentence in (paths.entities_root / "Sentences" / f"{image['cocoid']}.txt").read_text().splitlines():
            for chunk in sentence.split("[/EN#")[1:]:
                chain, _, words = chunk.split("]")[0].partition(" ")
                chain = chain.split("/")[0]
                words = words.split()
                if chain in annotation.boxes and len(annotation.boxes[chain]) == 1 and words[-1] in SHAPES:
                    best = int(box_iou(np.array(annotation.boxes[chain]), record.boxes)[0].argmax())
                    rows.append(record.features[best])
                    colors.append(COLORS.index(words[-2]))
                    shapes.append(SHAPES.index(words[-1]))
    features = np.stack(rows)
    half = len(rows) // 2
    for labels, classes in ((np.array(colors), len(COLORS)), (np.array(shapes), len(SHAPES))):
        targets = np.eye(classes)[labels]
        x = np.hstack([features, np.ones((len(features), 1))])
        weights = np.linalg.solve(x[:half].T @ x[:half] + 10 * np.eye(x.shape[1]), x[:half].T @ targets[:half])
        accuracy = (np.argmax(x[half:] @ weights, axis=1) == labels[half:]).mean()
        majority = Counter(labels[half:].tolist()).most_common(1)[0][1] / (len(labels) - half)
        assert accuracy > max(0.8, majority + 0.3), (accuracy, majority)


def test_demo_command(tmp_path, capsys):
    assert (
        hvl(
            [
                "data",
                "demo",
                str(tmp_path / "corpus"),
                "--images",
                "10",
                "--seed",
                "2",
                "--feature-dim",
                "8",
                "--feature-formats",
                "tsv",
                "hdf5",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "wrote the demo corpus (10 images, seed 2)" in out
    assert (tmp_path / "corpus" / "features" / "region_features.h5").exists()
    assert (tmp_path / "corpus" / "captions" / "dataset_coco.json").exists()
