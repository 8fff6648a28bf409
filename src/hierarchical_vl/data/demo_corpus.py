"""A small synthetic corpus written in the real file formats, learnable and deterministic by seed.

Each image holds 2-5 objects with a colour, a shape and a size at some position. Its 10-36 regions are detector-like
proposals: a tight box on every object, one or two loose boxes that overlap an object with IoU < 0.5, and
background boxes. A region's 2048-d feature is a fixed random projection (drawn from the seed) of what it sees --
the attributes of the object it overlaps, weighted by the overlap, and its own position and size -- plus noise and
a ReLU, as detector features are non-negative. So:

* VQA questions ("what color is the cube?", "how many spheres are there?", "is there a red cylinder?", ...) can only
  be answered from the right regions; each has 10 answers with some annotator noise, and answer and question types;
* captions mention 2-3 objects with attributes and positions, so different images' captions differ;
* Flickr30k Entities phrases point at the objects' boxes (some at several), and some phrases have no box (scene,
  nobndbox, notvisual) to exercise their exclusion;
* a picture of every scene (``images/<image_id>.png``, the objects drawn at their boxes, see
  `hierarchical_vl.data.demo_images`), so that predictions and attention maps can be shown on something real.
  Drawing draws no random numbers: every other file is the same with or without the pictures.

Images are split as the real data are: COCO train2014 images (VQA train, Karpathy train), val2014 images (VQA val on
Karpathy val and test images, Karpathy restval without VQA questions) and a few test2015 images (VQA test questions,
no annotations, not in the caption files). The configuration recorded in the manifest (train on VQA train, Karpathy
train + restval and Entities train; evaluate on VQA val, Karpathy test and Entities test) is free of contamination,
while training VQA on train + val and evaluating retrieval on Karpathy test is not.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic_files import write_text_atomic
from ..metrics.grounding import box_iou
from .demo_images import write_demo_images
from .feature_readers import FEATURE_FORMATS, RegionFeatureRecord
from .feature_writers import (
    write_bottom_up_tsv,
    write_hdf5,
    write_lmdb,
    write_lxmert_tsv,
    write_npz_directory,
)

__all__ = ["COLORS", "POSITIONS", "SHAPES", "SIZES", "DemoCorpusPaths", "generate_demo_corpus"]

COLORS = ("red", "green", "blue", "yellow", "purple", "gray")
SHAPES = ("cube", "sphere", "cylinder", "cone")
SIZES = ("small", "large")
POSITIONS = ("left", "right", "top", "bottom", "middle")
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five")

# Attribute vector of a region: colour, shape, size one-hots and objectness (weighted by the overlap with the
# object), then the region's own position word (one-hot), centre and extent.
_ATTRIBUTE_DIM = len(COLORS) + len(SHAPES) + len(SIZES) + 1 + len(POSITIONS) + 4
# Weight of the colour/shape/size one-hots relative to the geometry entries, so that what the questions, captions
# and phrases talk about dominates a region's feature.
_ATTRIBUTE_SALIENCE = 2.0


@dataclass
class _DemoObject:
    color: str
    shape: str
    size: str
    box: tuple[int, int, int, int]  # x1 y1 x2 y2, 0-based pixels
    position: str
    chain_id: int = 0


@dataclass
class _DemoImage:
    image_id: int
    width: int
    height: int
    coco_split: str  # train2014 | val2014 | test2015
    karpathy_split: str | None  # train | restval | val | test | None (test2015)
    objects: list[_DemoObject] = field(default_factory=list)


@dataclass
class DemoCorpusPaths:
    """Where [`generate_demo_corpus`] wrote each part of the corpus.

    Attributes:
        root: The corpus directory.
        manifest: ``manifest.json``: seed, sizes, attribute vocabulary, splits and the clean run configuration.
        features_tsv: Bottom-up-attention TSV with the regions of every image.
        vqa_questions: VQA 2.0 question files by split (``train2014``, ``val2014``, ``test2015``).
        vqa_annotations: VQA 2.0 annotation files by split (``train2014``, ``val2014``; none for test).
        karpathy_captions: Karpathy-style ``dataset_coco.json`` (5 captions per image).
        entities_root: Flickr30k Entities directory (``Sentences/``, ``Annotations/``, ``train/val/test.txt``).
        extra_features: Other feature formats written from the same content, by format name.
        images: The folder of scene pictures (``images/<image_id>.png``), or ``None`` when they were not written.
            Not recorded in the manifest, which is the same with or without them.
    """

    root: Path
    manifest: Path
    features_tsv: Path
    vqa_questions: dict[str, Path]
    vqa_annotations: dict[str, Path]
    karpathy_captions: Path
    entities_root: Path
    extra_features: dict[str, Path] = field(default_factory=dict)
    images: Path | None = None


# ---------------------------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------------------------
def _clip_box(box: np.ndarray, width: int, height: int) -> np.ndarray:
    x1, y1, x2, y2 = box
    x1, x2 = np.clip([x1, x2], 0, width - 1)
    y1, y2 = np.clip([y1, y2], 0, height - 1)
    return np.array([x1, y1, max(x2, x1 + 2), max(y2, y1 + 2)], dtype=np.float32)


def _position_word(box: tuple[float, ...] | np.ndarray, width: float, height: float) -> str:
    """Where a box lies: ``middle`` when its centre is in the central third of the image both ways, else the side
    (left, right, top, bottom) of the larger offset of its centre from the image centre, in fractions of the image
    size."""
    dx = ((box[0] + box[2]) / 2 / width) - 0.5
    dy = ((box[1] + box[3]) / 2 / height) - 0.5
    if max(abs(dx), abs(dy)) < 1 / 6:
        return "middle"
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "top" if dy < 0 else "bottom"


# ---------------------------------------------------------------------------------------------------------------
# Scenes and regions
# ---------------------------------------------------------------------------------------------------------------
def _split_plan(num_images: int) -> list[tuple[str, str | None]]:
    """(coco split, Karpathy split) of each image, in image order."""
    if num_images < 10:
        raise ValueError("the demo corpus needs at least 10 images")
    test2015 = max(1, round(0.06 * num_images))
    val = max(2, round(0.10 * num_images))
    test = max(2, round(0.17 * num_images))
    restval = max(1, round(0.11 * num_images))
    train = num_images - test2015 - val - test - restval
    return (
        [("train2014", "train")] * train
        + [("val2014", "restval")] * restval
        + [("val2014", "val")] * val
        + [("val2014", "test")] * test
        + [("test2015", None)] * test2015
    )


def _make_objects(rng: np.random.Generator, width: int, height: int) -> list[_DemoObject]:
    objects: list[_DemoObject] = []
    placed: list[np.ndarray] = []
    for _ in range(int(rng.integers(2, 6))):
        size = SIZES[int(rng.integers(len(SIZES)))]
        for _attempt in range(50):
            side = int(rng.integers(50, 90)) if size == "small" else int(rng.integers(120, 180))
            box_w = int(side * rng.uniform(0.8, 1.2))
            box_h = int(side * rng.uniform(0.8, 1.2))
            x1 = int(rng.integers(0, width - box_w))
            y1 = int(rng.integers(0, height - box_h))
            box = np.array([x1, y1, x1 + box_w, y1 + box_h], dtype=np.float32)
            if not placed or box_iou(box[None], np.stack(placed)).max() < 0.05:
                break
        else:
            continue
        placed.append(box)
        objects.append(
            _DemoObject(
                color=COLORS[int(rng.integers(len(COLORS)))],
                shape=SHAPES[int(rng.integers(len(SHAPES)))],
                size=size,
                box=tuple(int(v) for v in box),
                position=_position_word(box, width, height),
            )
        )
    return objects


def _jitter(
    rng: np.random.Generator,
    box: np.ndarray,
    width: int,
    height: int,
    target: tuple[float, float],
    scale: float,
) -> np.ndarray:
    """A perturbed copy of ``box`` whose IoU with it falls in ``target`` (best effort)."""
    w, h = box[2] - box[0], box[3] - box[1]
    candidate = box
    for _ in range(100):
        shift = rng.normal(0, scale, 4) * np.array([w, h, w, h])
        candidate = _clip_box(box + shift, width, height)
        if target[0] <= box_iou(candidate[None], box[None])[0, 0] < target[1]:
            return candidate
    return candidate


def _make_regions(rng: np.random.Generator, image: _DemoImage, min_regions: int, max_regions: int) -> np.ndarray:
    """(K, 4) float32 proposal boxes: a tight and 1-2 loose boxes per object, then background boxes."""
    boxes = []
    for obj in image.objects:
        box = np.array(obj.box, dtype=np.float32)
        boxes.append(_jitter(rng, box, image.width, image.height, (0.7, 1.01), 0.04))
        for _ in range(int(rng.integers(1, 3))):
            boxes.append(_jitter(rng, box, image.width, image.height, (0.15, 0.45), 0.35))
    count = int(rng.integers(max(min_regions, len(boxes)), max(max_regions, len(boxes)) + 1))
    while len(boxes) < count:
        w = rng.uniform(0.1, 0.6) * image.width
        h = rng.uniform(0.1, 0.6) * image.height
        x1 = rng.uniform(0, image.width - w)
        y1 = rng.uniform(0, image.height - h)
        boxes.append(_clip_box(np.array([x1, y1, x1 + w, y1 + h]), image.width, image.height))
    boxes = np.stack(boxes).astype(np.float32)
    return boxes[rng.permutation(len(boxes))]


def _region_attributes(image: _DemoImage, boxes: np.ndarray) -> np.ndarray:
    """(K, A) attribute vectors of the regions (see ``_ATTRIBUTE_DIM``)."""
    attributes = np.zeros((len(boxes), _ATTRIBUTE_DIM), dtype=np.float32)
    object_boxes = np.array([obj.box for obj in image.objects], dtype=np.float32)
    overlap = box_iou(boxes, object_boxes)  # (K, O)
    best = overlap.argmax(axis=1)
    for k, box in enumerate(boxes):
        obj = image.objects[int(best[k])]
        weight = float(overlap[k, best[k]])
        if weight > 0.1:
            salience = _ATTRIBUTE_SALIENCE * weight
            attributes[k, COLORS.index(obj.color)] = salience
            attributes[k, len(COLORS) + SHAPES.index(obj.shape)] = salience
            attributes[k, len(COLORS) + len(SHAPES) + SIZES.index(obj.size)] = salience
            attributes[k, len(COLORS) + len(SHAPES) + len(SIZES)] = weight
        offset = len(COLORS) + len(SHAPES) + len(SIZES) + 1
        attributes[k, offset + POSITIONS.index(_position_word(box, image.width, image.height))] = 1.0
        offset += len(POSITIONS)
        attributes[k, offset : offset + 4] = [
            (box[0] + box[2]) / 2 / image.width,
            (box[1] + box[3]) / 2 / image.height,
            (box[2] - box[0]) / image.width,
            (box[3] - box[1]) / image.height,
        ]
    return attributes


def _region_features(
    rng: np.random.Generator, attributes: np.ndarray, projection: np.ndarray, noise: float
) -> np.ndarray:
    """(K, F) float32 features: ReLU(attributes @ projection + noise).

    The product is accumulated in float64 one attribute at a time, in a fixed order, instead of by a BLAS matrix
    product, whose blocking (and so its float rounding) depends on the number of threads: the corpus is the same
    bit for bit whatever the thread settings of the process that writes it.
    """
    signal = np.zeros((len(attributes), projection.shape[1]), dtype=np.float64)  # (K, F)
    for column, weights in zip(attributes.T.astype(np.float64), projection.astype(np.float64)):
        signal += column[:, None] * weights[None, :]
    return np.maximum(signal + rng.normal(0.0, noise, signal.shape), 0.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# VQA
# ---------------------------------------------------------------------------------------------------------------
_ANSWER_POOLS = {
    "color": COLORS,
    "shape": SHAPES,
    "size": SIZES,
    "position": POSITIONS,
    "count": ("0", "1", "2", "3", "4", "5"),
    "exist": ("yes", "no"),
}
_RARE_ANSWERS = ("not sure", "cant tell", "reddish", "ball", "block", "many", "maybe")


def _unique(objects: list[_DemoObject], key: Any) -> list[_DemoObject]:
    counts = Counter(key(o) for o in objects)
    return [o for o in objects if counts[key(o)] == 1]


def _question_candidates(rng: np.random.Generator, image: _DemoImage) -> list[tuple[str, str, str, str]]:
    """(kind, question, question type, answer) for every question the image supports."""
    objects = image.objects
    out = []
    for obj in _unique(objects, lambda o: o.shape):
        out.append(("color", f"What color is the {obj.shape}?", "what color is the", obj.color))
    for obj in _unique(objects, lambda o: o.color):
        out.append(("shape", f"What shape is the {obj.color} object?", "what shape is the", obj.shape))
    for obj in _unique(objects, lambda o: (o.color, o.shape)):
        out.append(("size", f"What size is the {obj.color} {obj.shape}?", "what size is the", obj.size))
        out.append(("position", f"Where is the {obj.color} {obj.shape}?", "where is the", obj.position))
    out.append(("count", "How many objects are there?", "how many", str(len(objects))))
    shapes = Counter(o.shape for o in objects)
    for shape in sorted(shapes):
        out.append(("count", f"How many {shape}s are there?", "how many", str(shapes[shape])))
    missing = [shape for shape in SHAPES if shape not in shapes]
    if missing:  # one absent shape: "0" stays an answer without drowning the others
        out.append(("count", f"How many {missing[int(rng.integers(len(missing)))]}s are there?", "how many", "0"))
    present = {(o.color, o.shape) for o in objects}
    for color, shape in sorted(present):
        out.append(("exist", f"Is there a {color} {shape}?", "is there a", "yes"))
    absent = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in present]
    for index in rng.permutation(len(absent))[: len(present)]:
        color, shape = absent[int(index)]
        out.append(("exist", f"Is there a {color} {shape}?", "is there a", "no"))
    return out


def _answer_type(kind: str) -> str:
    return {"count": "number", "exist": "yes/no"}.get(kind, "other")


def _annotator_answers(rng: np.random.Generator, kind: str, answer: str) -> list[dict[str, Any]]:
    """10 answers: mostly the right one, some from the same pool, a few rare strings."""
    pool = _ANSWER_POOLS[kind]
    answers = []
    for index in range(10):
        draw = rng.random()
        if draw < 0.86:
            text, confidence = answer, "yes"
        elif draw < 0.97:
            text, confidence = pool[int(rng.integers(len(pool)))], "maybe"
        else:
            text, confidence = _RARE_ANSWERS[int(rng.integers(len(_RARE_ANSWERS)))], "no"
        answers.append({"answer": text, "answer_confidence": confidence, "answer_id": index + 1})
    return answers


def _vqa_records(rng: np.random.Generator, image: _DemoImage, per_image: int) -> list[tuple[dict, dict]]:
    candidates = _question_candidates(rng, image)
    by_kind: dict[str, list] = {}
    for candidate in candidates:
        by_kind.setdefault(candidate[0], []).append(candidate)
    chosen: list[tuple[str, str, str, str]] = []
    kinds = list(by_kind)
    while len(chosen) < per_image and any(by_kind.values()):
        kind = kinds[int(rng.integers(len(kinds)))]
        if by_kind[kind]:
            chosen.append(by_kind[kind].pop(int(rng.integers(len(by_kind[kind])))))
    records = []
    for index, (kind, question, question_type, answer) in enumerate(chosen):
        question_id = image.image_id * 1000 + index
        answers = _annotator_answers(rng, kind, answer)
        counts = Counter(a["answer"] for a in answers)
        majority = max(counts.items(), key=lambda item: (item[1], item[0] == answer))[0]
        records.append(
            (
                {"image_id": image.image_id, "question": question, "question_id": question_id},
                {
                    "question_type": question_type,
                    "multiple_choice_answer": majority,
                    "answers": answers,
                    "image_id": image.image_id,
                    "answer_type": _answer_type(kind),
                    "question_id": question_id,
                },
            )
        )
    return records


# ---------------------------------------------------------------------------------------------------------------
# Captions and Entities sentences
# ---------------------------------------------------------------------------------------------------------------
_Segment = tuple[list[str], "tuple[int, str] | None"]  # words, and (chain id, type) when they form a phrase
_POSITION_PHRASES = {
    "left": ["on", "the", "left"],
    "right": ["on", "the", "right"],
    "top": ["at", "the", "top"],
    "bottom": ["at", "the", "bottom"],
    "middle": ["in", "the", "middle"],
}


def _caption(
    rng: np.random.Generator,
    image: _DemoImage,
    scene_chain: int,
    nobox_chain: int,
    group_chains: dict[str, int],
) -> list[_Segment]:
    """One caption: 2-3 of the image's objects with attributes and positions, sometimes a group, a scene, a
    shadow without box or a non-visual phrase."""
    objects = image.objects
    count = min(len(objects), int(rng.integers(2, 4)))
    picked = [objects[int(i)] for i in rng.permutation(len(objects))[:count]]
    segments: list[_Segment] = []
    style = int(rng.integers(3))
    if style:
        segments.append((["there", "is"] if style == 1 else ["an", "image", "with"], None))
    for index, obj in enumerate(picked):
        if index:
            segments.append((["and"] if index == len(picked) - 1 else [","], None))
        size = [obj.size] if rng.random() < 0.6 else []
        segments.append((["a", *size, obj.color, obj.shape], (obj.chain_id, "other")))
        if rng.random() < 0.7:
            segments.append((_POSITION_PHRASES[obj.position], None))
    groups = [shape for shape in group_chains if rng.random() < 0.5]
    if groups:
        number = sum(o.shape == groups[0] for o in objects)
        segments.append((["with"], None))
        segments.append((["the", _NUMBER_WORDS[number], f"{groups[0]}s"], (group_chains[groups[0]], "other")))
    extra = rng.random()
    if extra < 0.25:
        segments += [(["on"], None), (["the", "floor"], (scene_chain, "scene"))]
    elif extra < 0.4:
        segments += [(["near"], None), (["a", "shadow"], (nobox_chain, "other"))]
    elif extra < 0.5:
        segments += [(["in"], None), (["the", "picture"], (0, "notvisual"))]
    segments.append((["."], None))
    return segments


def _render(segments: list[_Segment]) -> tuple[str, str, list[str]]:
    """Karpathy raw text, Flickr30k Entities sentence line and Karpathy tokens of a caption."""
    words = [w for segment_words, _ in segments for w in segment_words]
    raw = " ".join(words[:-1]).replace(" ,", ",") + "."
    entity_line = " ".join(
        " ".join(ws) if entity is None else f"[/EN#{entity[0]}/{entity[1]} {' '.join(ws)}]" for ws, entity in segments
    )
    return raw[0].upper() + raw[1:], entity_line, [w for w in words if w.isalnum()]


def _annotation_xml(image: _DemoImage, scene_chain: int, nobox_chain: int, group_chains: dict[str, int]) -> str:
    lines = [
        "<annotation>",
        f"  <filename>{image.image_id}.jpg</filename>",
        f"  <size>\n    <width>{image.width}</width>\n    <height>{image.height}</height>\n"
        "    <depth>3</depth>\n  </size>",
    ]
    for obj in image.objects:
        names = [obj.chain_id] + ([group_chains[obj.shape]] if group_chains.get(obj.shape) else [])
        x1, y1, x2, y2 = (v + 1 for v in obj.box)  # VOC coordinates are 1-based
        lines.append("  <object>")
        lines += [f"    <name>{name}</name>" for name in names]
        lines.append(
            f"    <bndbox>\n      <xmin>{x1}</xmin>\n      <ymin>{y1}</ymin>\n      <xmax>{x2}</xmax>\n"
            f"      <ymax>{y2}</ymax>\n    </bndbox>"
        )
        lines.append("  </object>")
    for chain, scene in ((scene_chain, 1), (nobox_chain, 0)):
        lines.append(
            f"  <object>\n    <name>{chain}</name>\n    <nobndbox>1</nobndbox>\n    <scene>{scene}</scene>\n  </object>"
        )
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------------------------------------------
def _write_json(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload))


def generate_demo_corpus(
    out_dir: str | os.PathLike,
    num_images: int = 300,
    seed: int = 0,
    *,
    feature_dim: int = 2048,
    min_regions: int = 10,
    max_regions: int = 36,
    questions_per_image: int = 8,
    feature_noise: float = 1.0,
    feature_formats: tuple[str, ...] = ("tsv",),
    write_images: bool = True,
) -> DemoCorpusPaths:
    """Writes the demo corpus in the real file formats.

    Args:
        out_dir: Directory to write into (created; existing demo files are replaced).
        num_images: Images in the corpus (at least 10); 6% are test2015 images with VQA test questions only.
        seed: Seed of everything: scenes, the feature projection, noise, questions, answers and captions.
        feature_dim: Region feature width (2048 like bottom-up attention; tests use fewer).
        min_regions: Fewest regions per image (10 in the adaptive bottom-up release).
        max_regions: Most regions per image (``min_regions == max_regions == 36`` gives the fixed-36 layout).
        questions_per_image: VQA questions per image (fewer when an image supports fewer).
        feature_noise: Standard deviation of the Gaussian noise added to the projected attributes.
        feature_formats: Region-feature formats to write, any of [`FEATURE_FORMATS`]; the bottom-up TSV is always
            written.
        write_images: Also write a picture of every scene, ``images/<image_id>.png``; the other files do not
            depend on it.

    Returns:
        The written paths.
    """
    unknown = set(feature_formats) - set(FEATURE_FORMATS)
    if unknown:
        raise ValueError(f"unknown feature formats {sorted(unknown)}; choose from {FEATURE_FORMATS}")
    if not 1 <= min_regions <= max_regions:
        raise ValueError("need 1 <= min_regions <= max_regions")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    projection = rng.normal(0.0, 1.0, (_ATTRIBUTE_DIM, feature_dim)).astype(np.float32)  # (A, F)

    ids = rng.choice(np.arange(1, 600_000), size=num_images, replace=False)
    images: list[_DemoImage] = []
    chain = 1
    for image_id, (coco_split, karpathy_split) in zip(ids, _split_plan(num_images)):
        width, height = int(rng.integers(480, 641)), int(rng.integers(360, 481))
        image = _DemoImage(int(image_id), width, height, coco_split, karpathy_split)
        image.objects = _make_objects(rng, width, height)
        for obj in image.objects:
            obj.chain_id = chain
            chain += 1
        images.append(image)

    # Region features.
    records = []
    for image in images:
        boxes = _make_regions(rng, image, min_regions, max_regions)
        features = _region_features(rng, _region_attributes(image, boxes), projection, feature_noise)
        records.append(
            RegionFeatureRecord(str(image.image_id), float(image.width), float(image.height), boxes, features)
        )
    features_tsv = write_bottom_up_tsv(root / "features" / "region_features.tsv", records)
    writers = {
        "lxmert-tsv": ("region_features_lxmert.tsv", write_lxmert_tsv),
        "hdf5": ("region_features.h5", write_hdf5),
        "npz-dir": ("region_features_npz", write_npz_directory),
        "lmdb": ("region_features.lmdb", write_lmdb),
    }
    extra_features = {}
    for name in feature_formats:
        if name in writers:
            file_name, writer = writers[name]
            extra_features[name] = writer(root / "features" / file_name, records)

    # VQA 2.0.
    vqa_questions, vqa_annotations = {}, {}
    for split in ("train2014", "val2014", "test2015"):
        questions, annotations = [], []
        for image in images:
            if image.coco_split != split or image.karpathy_split == "restval":
                continue
            for question, annotation in _vqa_records(rng, image, questions_per_image):
                questions.append(question)
                annotations.append(annotation)
        header = {
            "info": {"description": "hierarchical-vl demo corpus", "version": "2.0"},
            "license": {"name": "CC BY 4.0"},
            "data_subtype": split,
        }
        vqa_questions[split] = root / "vqa" / f"v2_OpenEnded_mscoco_{split}_questions.json"
        _write_json(
            vqa_questions[split],
            {**header, "task_type": "Open-Ended", "data_type": "mscoco", "questions": questions},
        )
        if split != "test2015":
            vqa_annotations[split] = root / "vqa" / f"v2_mscoco_{split}_annotations.json"
            _write_json(vqa_annotations[split], {**header, "annotations": annotations})

    # Captions (Karpathy) and Flickr30k Entities.
    entities_root = root / "flickr30k_entities"
    karpathy_images = []
    split_lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    sentence_id = 0
    for index, image in enumerate(img for img in images if img.karpathy_split is not None):
        scene_chain, nobox_chain = chain, chain + 1
        chain += 2
        shapes = Counter(o.shape for o in image.objects)
        group_chains = {}
        for shape, count in sorted(shapes.items()):
            if count >= 2:
                group_chains[shape] = chain
                chain += 1
        sentences, entity_lines = [], []
        for _ in range(5):
            raw, entity_line, tokens = _render(_caption(rng, image, scene_chain, nobox_chain, group_chains))
            sentences.append({"tokens": tokens, "raw": raw, "imgid": index, "sentid": sentence_id})
            entity_lines.append(entity_line)
            sentence_id += 1
        prefix = image.coco_split
        karpathy_images.append(
            {
                "filepath": prefix,
                "sentids": [s["sentid"] for s in sentences],
                "filename": f"COCO_{prefix}_{image.image_id:012d}.jpg",
                "imgid": index,
                "split": image.karpathy_split,
                "sentences": sentences,
                "cocoid": image.image_id,
            }
        )
        write_text_atomic(entities_root / "Sentences" / f"{image.image_id}.txt", "\n".join(entity_lines) + "\n")
        write_text_atomic(
            entities_root / "Annotations" / f"{image.image_id}.xml",
            _annotation_xml(image, scene_chain, nobox_chain, group_chains),
        )
        split_lists["train" if image.karpathy_split == "restval" else image.karpathy_split].append(str(image.image_id))
    karpathy_captions = root / "captions" / "dataset_coco.json"
    _write_json(karpathy_captions, {"images": karpathy_images, "dataset": "coco"})
    for split, names in split_lists.items():
        write_text_atomic(entities_root / f"{split}.txt", "\n".join(names) + "\n")

    image_folder = None
    if write_images:  # no random numbers drawn: the scenes are drawn as they are
        scenes = [(i.image_id, i.width, i.height, [(o.color, o.shape, o.box) for o in i.objects]) for i in images]
        image_folder = write_demo_images(root, scenes)

    manifest = root / "manifest.json"
    paths = DemoCorpusPaths(
        root,
        manifest,
        features_tsv,
        vqa_questions,
        vqa_annotations,
        karpathy_captions,
        entities_root,
        extra_features,
        image_folder,
    )
    _write_json(
        manifest,
        {
            "generator": "hierarchical_vl.data.generate_demo_corpus",
            "seed": seed,
            "num_images": num_images,
            "feature_dim": feature_dim,
            "regions_per_image": [min_regions, max_regions],
            "questions_per_image": questions_per_image,
            "feature_noise": feature_noise,
            "attributes": {"colors": COLORS, "shapes": SHAPES, "sizes": SIZES, "positions": POSITIONS},
            "image_splits": {
                f"{coco}/{karpathy}": n
                for (coco, karpathy), n in sorted(
                    Counter((i.coco_split, str(i.karpathy_split)) for i in images).items()
                )
            },
            "clean_run": {
                "train": {"vqa": ["train2014"], "retrieval": ["train"], "grounding": ["train"]},
                "eval": {"vqa": ["val2014"], "retrieval": ["test"], "grounding": ["test"]},
            },
            "paths": {
                key: str(value) if isinstance(value, Path) else {k: str(v) for k, v in value.items()}
                for key, value in asdict(paths).items()
                if key != "images"  # the manifest is the same with or without the pictures
            },
        },
    )
    return paths
