"""A tiny corpus in the directory layout and the file formats of the real releases, as the paper presets expect it.

Written from the formats of DESIGN.md section 3, under one root::

    bottom_up/trainval/karpathy_train_resnet101_faster_rcnn_genome.tsv.0, .tsv.1   COCO train + restval images
    bottom_up/trainval/karpathy_{val,test}_resnet101_faster_rcnn_genome.tsv          COCO Karpathy val, test
    bottom_up/test2015/test2015_resnet101_faster_rcnn_genome.tsv                     COCO test2015
    bottom_up/flickr30k/flickr30k_resnet101_faster_rcnn_genome.tsv.0, .tsv.1         Flickr30k
    vqa2/v2_OpenEnded_mscoco_{train2014,val2014,test2015}_questions.json             (test2015: questions only)
    vqa2/v2_mscoco_{train2014,val2014}_annotations.json
    karpathy/dataset_coco.json, karpathy/dataset_flickr30k.json                      train/restval/val/test
    flickr30k_entities/Sentences/<id>.txt, Annotations/<id>.xml, train.txt, val.txt, test.txt
    glove/glove.840B.300d.txt

The image ids agree across the files as in the releases: the Karpathy COCO train images are the VQA train2014
images, its restval, val and test images are val2014 images with VQA val questions, the test2015 images have VQA
test questions only; the Flickr30k ids of the Karpathy Flickr30k file and of Flickr30k Entities are the same images
in the same splits. As in the releases, the two corpora number their images independently: `COLLIDING_ID` is a
COCO train image and a different Flickr30k train image (other boxes, other features). `ReleaseLayout` records what
was written, so tests can assert exact example counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hierarchical_vl.data.feature_readers import RegionFeatureRecord
from hierarchical_vl.data.feature_writers import write_bottom_up_tsv

COLLIDING_ID = 36979
"""An id of a COCO image and of another, Flickr30k image (real Flickr30k ids this small exist)."""
COCO_IMAGES = {
    "train2014/train": [9, 25, 30, 34, 36, 42, COLLIDING_ID],
    "val2014/restval": [73, 74, 133],
    "val2014/val": [136, 139],
    "val2014/test": [143, 164, 192],
    "test2015/": [1, 14],
}
"""COCO image ids by ``<COCO split>/<Karpathy split>`` (test2015 images are in no Karpathy split)."""
FLICKR30K_IMAGES = {
    "train": [1000092795, 10002456, 1000268201, 1000344755, COLLIDING_ID],
    "val": [1000366164, 1000523639],
    "test": [1000919630, 10010052],
}
"""Flickr30k image ids by split (Karpathy and Entities alike)."""
CAPTIONS_PER_IMAGE = 5
QUESTIONS = [  # (question, answer, answer type, question type)
    ("is there a dog?", "yes", "yes/no", "is there a"),
    ("is the dog black?", "no", "yes/no", "is the"),
    ("is it daytime?", "yes", "yes/no", "is it"),
    ("how many people are there?", "2", "number", "how many"),
    ("what color is the car?", "red", "other", "what color is the"),
]
"""The questions asked of every image: ``yes`` and ``no`` are the only answers seen more than 8 times in train."""
_COLORS = ("red", "black", "white", "blue")
_THINGS = ("dog", "car", "man", "woman")


@dataclass
class ReleaseLayout:
    """What `write_release_layout` wrote.

    Attributes:
        root: The corpus root (``data.root`` of the presets).
        coco: COCO image ids by ``<COCO split>/<Karpathy split>``.
        flickr30k: Flickr30k image ids by split.
        vqa_questions: Questions per VQA split (``train``, ``val``, ``test``).
        feature_files: The feature files by release directory (``trainval``, ``test2015``, ``flickr30k``).
        records: The region features written, by corpus (``coco``, ``flickr30k``) and image id.
    """

    root: Path
    coco: dict[str, list[int]] = field(default_factory=lambda: dict(COCO_IMAGES))
    flickr30k: dict[str, list[int]] = field(default_factory=lambda: dict(FLICKR30K_IMAGES))
    vqa_questions: dict[str, int] = field(default_factory=dict)
    feature_files: dict[str, list[Path]] = field(default_factory=dict)
    records: dict[str, dict[int, RegionFeatureRecord]] = field(default_factory=dict)

    def karpathy_coco(self, split: str) -> list[int]:
        """The COCO ids of a Karpathy split (``train``, ``restval``, ``val``, ``test``)."""
        return next(ids for key, ids in self.coco.items() if key.endswith(f"/{split}"))

    def coco_split(self, name: str) -> list[int]:
        """The COCO ids of a COCO split (``train2014``, ``val2014``, ``test2015``)."""
        return [i for key, ids in self.coco.items() if key.startswith(f"{name}/") for i in ids]


def _write_json(path: Path, payload: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload), encoding="utf-8")


def _records(rng: np.random.Generator, image_ids: list[int], feature_dim: int) -> list[RegionFeatureRecord]:
    records = []
    for image_id in image_ids:
        width, height = int(rng.integers(400, 640)), int(rng.integers(300, 480))
        count = int(rng.integers(4, 9))
        x1 = rng.uniform(0, width * 0.6, count)
        y1 = rng.uniform(0, height * 0.6, count)
        boxes = np.stack([x1, y1, x1 + rng.uniform(20, width * 0.4, count), y1 + rng.uniform(20, height * 0.4, count)])
        features = np.maximum(rng.standard_normal((count, feature_dim)), 0).astype(np.float32)
        records.append(
            RegionFeatureRecord(str(image_id), float(width), float(height), boxes.T.astype(np.float32), features)
        )
    return records


def _caption(rng: np.random.Generator) -> tuple[str, list[tuple[str, str, str]]]:
    """A caption and its phrases as ``(words, type, role)``, role ``person``, ``thing`` or ``scene``."""
    color, thing = _COLORS[int(rng.integers(len(_COLORS)))], _THINGS[int(rng.integers(len(_THINGS)))]
    phrases = [
        ("A man", "people", "person"),
        (f"a {color} {thing}", "other", "thing"),
        ("the street", "scene", "scene"),
    ]
    return f"{phrases[0][0]} walks past {phrases[1][0]} on {phrases[2][0]} .", phrases


def _entities_files(
    image_id: int, captions: list[list[tuple[str, str, str]]], records: RegionFeatureRecord
) -> tuple[str, str]:
    """``Sentences/<id>.txt`` and ``Annotations/<id>.xml`` of one image: chain 1 the person (boxed), 2 the thing
    (boxed twice: a phrase with several boxes), 3 the scene (no box)."""
    chains = {"person": 1, "thing": 2, "scene": 3}
    lines = []
    for phrases in captions:
        marked = [f"[/EN#{chains[role]}/{kind} {words}]" for words, kind, role in phrases]
        lines.append(f"{marked[0]} walks past {marked[1]} on {marked[2]} .")
    width, height = int(records.width), int(records.height)
    objects = []
    for chain, box in ((1, records.boxes[0]), (2, records.boxes[1]), (2, records.boxes[2])):
        x1, y1, x2, y2 = (int(v) + 1 for v in box)  # VOC: 1-based
        x2, y2 = min(max(x2, x1 + 1), width), min(max(y2, y1 + 1), height)
        objects.append(
            f"  <object>\n    <name>{chain}</name>\n    <bndbox>\n      <xmin>{x1}</xmin>\n      <ymin>{y1}</ymin>\n"
            f"      <xmax>{x2}</xmax>\n      <ymax>{y2}</ymax>\n    </bndbox>\n  </object>"
        )
    objects.append("  <object>\n    <name>3</name>\n    <nobndbox>1</nobndbox>\n    <scene>1</scene>\n  </object>")
    xml = (
        f"<annotation>\n  <filename>{image_id}.jpg</filename>\n  <size>\n    <width>{width}</width>\n"
        f"    <height>{height}</height>\n    <depth>3</depth>\n  </size>\n" + "\n".join(objects) + "\n</annotation>\n"
    )
    return "\n".join(lines) + "\n", xml


def _vqa_files(root: Path, layout: ReleaseLayout) -> None:
    question_id = 1
    for split, subtype in (("train", "train2014"), ("val", "val2014"), ("test", "test2015")):
        questions, annotations = [], []
        for image_id in layout.coco_split(subtype):
            for question, answer, answer_type, question_type in QUESTIONS:
                questions.append({"question_id": question_id, "image_id": image_id, "question": question})
                answers = [answer] * 9 + ["maybe" if answer_type == "yes/no" else answer]
                annotations.append(
                    {
                        "question_id": question_id,
                        "image_id": image_id,
                        "question_type": question_type,
                        "answer_type": answer_type,
                        "multiple_choice_answer": answer,
                        "answers": [
                            {"answer": a, "answer_confidence": "yes", "answer_id": n} for n, a in enumerate(answers, 1)
                        ],
                    }
                )
                question_id += 1
        header = {"info": {"version": "2.0"}, "license": {"name": "CC BY 4.0"}, "data_subtype": subtype}
        questions_file = root / "vqa2" / f"v2_OpenEnded_mscoco_{subtype}_questions.json"
        _write_json(
            questions_file, {**header, "task_type": "Open-Ended", "data_type": "mscoco", "questions": questions}
        )
        if split != "test":
            _write_json(root / "vqa2" / f"v2_mscoco_{subtype}_annotations.json", {**header, "annotations": annotations})
        layout.vqa_questions[split] = len(questions)


def write_release_layout(root: str | Path, *, feature_dim: int, glove_dim: int, seed: int = 0) -> ReleaseLayout:
    """Writes the tiny corpus under ``root`` in the releases' layout (see the module docstring).

    Args:
        root: The corpus root.
        feature_dim: Region feature width (the model's ``region_feature_dim``).
        glove_dim: Width of the GloVe vectors (the model's ``word_embedding_dim``).
        seed: Seed of the boxes, features and captions.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    layout = ReleaseLayout(root)
    coco_ids = [i for ids in layout.coco.values() for i in ids]
    flickr_ids = [i for ids in layout.flickr30k.values() for i in ids]
    written = _records(rng, coco_ids + flickr_ids, feature_dim)
    layout.records["coco"] = {int(r.image_id): r for r in written[: len(coco_ids)]}
    layout.records["flickr30k"] = records = {int(r.image_id): r for r in written[len(coco_ids) :]}

    # Bottom-up TSV files, split as the releases are.
    def tsv(directory: str, name: str, ids: list[int]) -> None:
        corpus = layout.records["flickr30k" if directory == "flickr30k" else "coco"]
        path = write_bottom_up_tsv(root / "bottom_up" / directory / name, [corpus[i] for i in ids])
        layout.feature_files.setdefault(directory, []).append(path)

    karpathy_train = layout.karpathy_coco("train") + layout.karpathy_coco("restval")
    half = len(karpathy_train) // 2
    tsv("trainval", "karpathy_train_resnet101_faster_rcnn_genome.tsv.0", karpathy_train[:half])
    tsv("trainval", "karpathy_train_resnet101_faster_rcnn_genome.tsv.1", karpathy_train[half:])
    tsv("trainval", "karpathy_val_resnet101_faster_rcnn_genome.tsv", layout.karpathy_coco("val"))
    tsv("trainval", "karpathy_test_resnet101_faster_rcnn_genome.tsv", layout.karpathy_coco("test"))
    tsv("test2015", "test2015_resnet101_faster_rcnn_genome.tsv", layout.coco_split("test2015"))
    tsv("flickr30k", "flickr30k_resnet101_faster_rcnn_genome.tsv.0", flickr_ids[:5])
    tsv("flickr30k", "flickr30k_resnet101_faster_rcnn_genome.tsv.1", flickr_ids[5:])

    _vqa_files(root, layout)

    # Karpathy split files and Flickr30k Entities.
    words: set[str] = set()
    sentence_id = 0
    coco_entries = []
    for key, ids in layout.coco.items():
        coco_split, karpathy_split = key.split("/")
        if not karpathy_split:
            continue
        for image_id in ids:
            sentences = []
            for _ in range(CAPTIONS_PER_IMAGE):
                raw, _phrases = _caption(rng)
                tokens = raw.lower().rstrip(" .").split()
                words.update(tokens)
                sentences.append({"tokens": tokens, "raw": raw, "imgid": len(coco_entries), "sentid": sentence_id})
                sentence_id += 1
            coco_entries.append(
                {
                    "filepath": coco_split,
                    "sentids": [s["sentid"] for s in sentences],
                    "filename": f"COCO_{coco_split}_{image_id:012d}.jpg",
                    "imgid": len(coco_entries),
                    "split": karpathy_split,
                    "sentences": sentences,
                    "cocoid": image_id,
                }
            )
    _write_json(root / "karpathy" / "dataset_coco.json", {"images": coco_entries, "dataset": "coco"})

    entities = root / "flickr30k_entities"
    flickr_entries = []
    for split, ids in layout.flickr30k.items():
        for image_id in ids:
            captions = [_caption(rng) for _ in range(CAPTIONS_PER_IMAGE)]
            sentences = []
            for raw, _phrases in captions:
                tokens = raw.lower().rstrip(" .").split()
                words.update(tokens)
                sentences.append({"tokens": tokens, "raw": raw, "imgid": len(flickr_entries), "sentid": sentence_id})
                sentence_id += 1
            flickr_entries.append(
                {
                    "sentids": [s["sentid"] for s in sentences],
                    "filename": f"{image_id}.jpg",
                    "imgid": len(flickr_entries),
                    "split": split,
                    "sentences": sentences,
                }
            )
            sentence_text, xml = _entities_files(image_id, [phrases for _raw, phrases in captions], records[image_id])
            (entities / "Sentences").mkdir(parents=True, exist_ok=True)
            (entities / "Annotations").mkdir(parents=True, exist_ok=True)
            (entities / "Sentences" / f"{image_id}.txt").write_text(sentence_text, encoding="utf-8")
            (entities / "Annotations" / f"{image_id}.xml").write_text(xml, encoding="utf-8")
        (entities / f"{split}.txt").write_text("\n".join(str(i) for i in ids) + "\n", encoding="utf-8")
    _write_json(root / "karpathy" / "dataset_flickr30k.json", {"images": flickr_entries, "dataset": "flickr30k"})

    # GloVe: the words of the captions and questions that the vectors cover, one line each.
    for question, *_ in QUESTIONS:
        words.update(question.rstrip("?").split())
    glove = root / "glove" / "glove.840B.300d.txt"
    glove.parent.mkdir(parents=True, exist_ok=True)
    lines = [" ".join([word, *(f"{v:.4f}" for v in rng.standard_normal(glove_dim))]) for word in sorted(words)]
    glove.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return layout
