"""The demo corpus's question kinds: answers that depend on the regions, spread so that the per-kind prior does not
solve them, every answer in the answer pool, and region features that carry them; and a corpus that is the same
bit for bit whatever the number of BLAS / torch threads of the process that writes it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

import hierarchical_vl
from hierarchical_vl.data import box_iou, build_vqa_answer_vocab, generate_demo_corpus, open_region_feature_reader
from hierarchical_vl.data.demo_corpus import POSITIONS, _position_word
from hierarchical_vl.data.flickr30k_entities import parse_entities_annotation

_SOURCE_ROOT = Path(hierarchical_vl.__file__).resolve().parents[1]

_GENERATE = """
import sys, torch
torch.set_num_threads(int(sys.argv[2]))
from hierarchical_vl.data import generate_demo_corpus
generate_demo_corpus(sys.argv[1], num_images=12, seed=0)
"""


def _checksums(root: Path) -> dict[str, str]:
    sums = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name == "manifest.json":  # records its own paths; the rest must match
            manifest = json.loads(data)
            manifest.pop("paths")
            data = json.dumps(manifest, sort_keys=True).encode()
        sums[str(path.relative_to(root))] = hashlib.sha256(data).hexdigest()
    return sums


def test_corpus_is_bit_identical_whatever_the_thread_count(tmp_path):
    """With 2048-d features a BLAS product rounds differently with 1 and 2 threads; the corpus must not."""
    sums = []
    for threads in (1, 2):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(_SOURCE_ROOT), os.environ.get("PYTHONPATH", "")]))
        env.update({name: str(threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
        out = tmp_path / f"threads{threads}"
        subprocess.run([sys.executable, "-c", _GENERATE, str(out), str(threads)], env=env, check=True, timeout=300)
        sums.append(_checksums(out))
    assert "features/region_features.tsv" in sums[0]
    assert sums[0] == sums[1]


@pytest.mark.parametrize(
    ("box", "word"),
    [
        ((10, 200, 60, 260), "left"),  # centre (35, 230) of a 600 x 480 image
        ((520, 180, 580, 260), "right"),
        ((270, 10, 330, 70), "top"),
        ((250, 400, 330, 470), "bottom"),
        ((260, 200, 340, 280), "middle"),
        ((20, 10, 120, 110), "left"),  # a corner: the larger offset, here horizontal (-0.38 vs -0.37)
        ((200, 380, 260, 470), "bottom"),  # -0.12 across, +0.39 down
    ],
)
def test_position_words(box, word):
    assert _position_word(box, 600, 480) == word


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The demo's default size (300 images) with narrow features: the question and answer content of the demo."""
    return generate_demo_corpus(tmp_path_factory.mktemp("kinds"), num_images=300, seed=0, feature_dim=8)


def _annotations(corpus, split):
    return json.loads(corpus.vqa_annotations[split].read_text())["annotations"]


def test_every_kind_has_spread_answers_that_the_answer_pool_holds(corpus):
    train = _annotations(corpus, "train2014")
    by_type = defaultdict(Counter)
    for record in train:
        by_type[record["question_type"]][record["multiple_choice_answer"]] += 1
    assert set(by_type) == {
        "what color is the",
        "what shape is the",
        "what size is the",
        "where is the",
        "how many",
        "is there a",
    }
    assert set(by_type["where is the"]) == set(POSITIONS) == {"left", "right", "top", "bottom", "middle"}
    assert set(by_type["how many"]) == {"0", "1", "2", "3", "4", "5"}
    yes, no = by_type["is there a"]["yes"], by_type["is there a"]["no"]
    assert abs(yes - no) / (yes + no) < 0.1
    for question_type, answers in by_type.items():
        share = answers.most_common(1)[0][1] / sum(answers.values())  # what the per-kind prior gets right
        assert share < (0.6 if len(answers) == 2 else 0.4), (question_type, answers)
    pool = set(build_vqa_answer_vocab(corpus.vqa_annotations["train2014"]))  # the default: seen > 8 times
    assert pool >= {answer for answers in by_type.values() for answer in answers}


def test_count_and_position_answers_follow_the_scene(corpus):
    questions = json.loads(corpus.vqa_questions["train2014"].read_text())["questions"]
    text = {q["question_id"]: q["question"] for q in questions}
    checked = Counter()
    for record in _annotations(corpus, "train2014"):
        annotation = parse_entities_annotation(corpus.entities_root / "Annotations" / f"{record['image_id']}.xml")
        objects = np.unique(np.array([b for bs in annotation.boxes.values() for b in bs]), axis=0)  # (O, 4)
        question = text[record["question_id"]]
        if question == "How many objects are there?":
            assert record["multiple_choice_answer"] == str(len(objects))
            checked["count"] += 1
        if record["question_type"] == "where is the":
            words = {_position_word(box, annotation.width, annotation.height) for box in objects}
            assert record["multiple_choice_answer"] in words
            checked["position"] += 1
    assert checked["count"] > 20 and checked["position"] > 100


def test_region_features_encode_the_position_word(tmp_path):
    """A ridge probe on one half of the objects reads the position word from the features of each object's tight
    region on the other half: 'where' is recoverable from what the regions carry, without boxes."""
    paths = generate_demo_corpus(tmp_path, num_images=60, seed=0, feature_dim=256)
    rows, labels = [], []
    for record in open_region_feature_reader(paths.features_tsv):
        xml = paths.entities_root / "Annotations" / f"{record.image_id}.xml"
        if not xml.exists():  # test2015 images have no Entities annotation
            continue
        annotation = parse_entities_annotation(xml)
        objects = np.unique(np.array([b for bs in annotation.boxes.values() for b in bs], np.float32), axis=0)
        best = box_iou(objects, record.boxes).argmax(axis=1)  # (O,) the tight proposal of each object
        rows += [record.features[k] for k in best]
        labels += [POSITIONS.index(_position_word(box, record.width, record.height)) for box in objects]
    features, labels = np.stack(rows), np.array(labels)
    half = len(labels) // 2
    x = np.hstack([features, np.ones((len(features), 1))])
    targets = np.eye(len(POSITIONS))[labels]
    weights = np.linalg.solve(x[:half].T @ x[:half] + 10 * np.eye(x.shape[1]), x[:half].T @ targets[:half])
    accuracy = (np.argmax(x[half:] @ weights, axis=1) == labels[half:]).mean()
    majority = Counter(labels[half:].tolist()).most_common(1)[0][1] / (len(labels) - half)
    assert accuracy > max(0.85, majority + 0.4), (accuracy, majority)
