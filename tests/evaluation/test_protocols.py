"""The evaluation protocols: their fields, overrides, the corpus of a Karpathy file and the first-N-images cap."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from hierarchical_vl.data import generate_demo_corpus, load_karpathy_captions, load_vqa
from hierarchical_vl.data.vqa import normalize_answer_text
from hierarchical_vl.evaluation import PROTOCOLS, EvaluationProtocol, caption_corpus, evaluation_protocol, first_images
from hierarchical_vl.metrics import normalize_vqa_answer


def test_the_two_named_protocols():
    assert list(PROTOCOLS) == ["current", "paper"]
    # current = the defaults of every evaluation function and of training.
    assert PROTOCOLS["current"].to_dict() == {
        "name": "current",
        "vqa_metric": "current",
        "box_matching": "any",
        "coco_retrieval": "full",
        "flickr30k_retrieval": "full",
        "retrieval_fold_size": 1000,
        "eval_max_images": None,
        "answer_pool_splits": None,
        "answer_normalization": "text",
    }
    assert PROTOCOLS["paper"].to_dict() == {
        "name": "paper",
        "vqa_metric": "legacy",
        "box_matching": "merged",
        "coco_retrieval": "both",
        "flickr30k_retrieval": "full",
        "retrieval_fold_size": 1000,
        "eval_max_images": 1000,
        "answer_pool_splits": ["train", "val"],
        "answer_normalization": "official",
    }
    json.dumps(PROTOCOLS["paper"].to_dict())
    assert PROTOCOLS["paper"].legacy_vqa and not PROTOCOLS["current"].legacy_vqa
    assert PROTOCOLS["paper"].answer_normalizer() is normalize_vqa_answer
    assert PROTOCOLS["current"].answer_normalizer() is normalize_answer_text
    assert evaluation_protocol("paper") is PROTOCOLS["paper"]
    assert evaluation_protocol(PROTOCOLS["current"]) is PROTOCOLS["current"]
    with pytest.raises(ValueError, match=r"unknown evaluation protocol 'cvpr'; choose from \['current', 'paper'\]"):
        evaluation_protocol("cvpr")
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROTOCOLS["paper"].box_matching = "any"


def test_task_options_per_task():
    paper, current = PROTOCOLS["paper"], PROTOCOLS["current"]
    assert paper.task_options("vqa") == {"legacy": True}
    assert current.task_options("vqa") == {"legacy": False}
    assert paper.task_options("grounding") == {"box_matching": "merged"}
    assert current.task_options("grounding") == {"box_matching": "any"}
    assert paper.task_options("retrieval", caption_corpus="coco", num_images=5000) == {
        "protocol": "both",
        "fold_size": 1000,
    }
    assert paper.task_options("retrieval", caption_corpus="coco", num_images=1000)["protocol"] == "both"
    assert paper.task_options("retrieval", caption_corpus="flickr30k", num_images=1000)["protocol"] == "full"
    assert current.task_options("retrieval", caption_corpus="coco", num_images=5000)["protocol"] == "full"
    with pytest.raises(ValueError, match="corpus must be one of"):
        paper.task_options("retrieval", caption_corpus="vg")


def test_fold_ranking_falls_back_on_a_split_of_another_size(caplog):
    with caplog.at_level(logging.WARNING, logger="hierarchical_vl.evaluation.protocols"):
        assert PROTOCOLS["paper"].retrieval_protocol("coco", 1500) == "full"
        assert PROTOCOLS["paper"].retrieval_protocol("coco", 30) == "full"
    assert "needs a multiple of 1000 images, the split has 1500" in caplog.text
    assert PROTOCOLS["paper"].retrieval_protocol("coco", 2000) == "both"


def test_overrides_are_named_and_checked():
    current = PROTOCOLS["current"]
    legacy = current.with_overrides(vqa_metric="legacy")
    assert legacy.name == "current+vqa_metric=legacy" and legacy.vqa_metric == "legacy"
    assert current.with_overrides(vqa_metric="current") is current
    pool = current.with_overrides(answer_pool_splits=["train", "val"], eval_max_images=3)
    assert pool.name == "current+answer_pool_splits=train,val+eval_max_images=3"
    assert pool.answer_pool_splits == ("train", "val")
    with pytest.raises(ValueError, match="unknown protocol field"):
        current.with_overrides(name="mine")
    with pytest.raises(ValueError, match="box_matching must be one of"):
        current.with_overrides(box_matching="union")
    with pytest.raises(ValueError, match="eval_max_images must be a positive integer"):
        EvaluationProtocol(name="x", eval_max_images=0)
    with pytest.raises(ValueError, match="answer_pool_splits must be a non-empty list"):
        EvaluationProtocol(name="x", answer_pool_splits="train")
    with pytest.raises(ValueError, match="retrieval_fold_size must be a positive integer"):
        EvaluationProtocol(name="x", retrieval_fold_size=0)


def _karpathy(path, images):
    path.write_text(json.dumps({"images": images}))
    return path


def test_caption_corpus_from_the_file(tmp_path):
    sentence = {"tokens": ["a"], "raw": "a", "imgid": 0, "sentid": 0}
    coco = {"filename": "COCO_val2014_1.jpg", "imgid": 0, "split": "test", "sentences": [sentence], "cocoid": 1}
    flickr = {"filename": "1000092795.jpg", "imgid": 0, "split": "test", "sentences": [sentence]}
    # The entries decide, whatever the file is called.
    assert caption_corpus(_karpathy(tmp_path / "captions.json", [coco])) == "coco"
    assert caption_corpus(_karpathy(tmp_path / "dataset_coco.json", [flickr])) == "flickr30k"
    path_only = {**flickr, "filepath": "val2014"}
    assert caption_corpus(_karpathy(tmp_path / "other.json", [path_only])) == "coco"
    # A file without entries is named by its name.
    assert caption_corpus(_karpathy(tmp_path / "dataset_flickr30k.json", [])) == "flickr30k"
    assert caption_corpus(_karpathy(tmp_path / "dataset_coco_small.json", [])) == "coco"
    with pytest.raises(ValueError, match="names neither COCO nor Flickr30k"):
        caption_corpus(_karpathy(tmp_path / "empty.json", []))


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    return generate_demo_corpus(tmp_path_factory.mktemp("tiny"), num_images=24, seed=1, feature_dim=8)


def test_first_images_keeps_the_first_n_images_with_all_their_rows(tiny_corpus, tmp_path):
    captions = load_karpathy_captions(tiny_corpus.karpathy_captions, split="train", cache_dir=tmp_path)
    order = list(dict.fromkeys(captions["image_id"]))
    kept = first_images(captions, 3)
    assert list(dict.fromkeys(kept["image_id"])) == order[:3]  # file order
    per_image = {image: list(captions["image_id"]).count(image) for image in order[:3]}
    assert len(kept) == sum(per_image.values()) == 5 * 3  # every caption of the kept images
    assert first_images(captions, None) is captions
    assert first_images(captions, len(order) + 10) is captions
    questions = load_vqa(tiny_corpus.vqa_questions["train2014"].parent, split="train", cache_dir=tmp_path)
    kept = first_images(questions, 2)
    images = set(kept["image_id"])
    assert len(images) == 2 and len(kept) == sum(1 for image in questions["image_id"] if image in images)
    # Plain rows: an image's later rows come along, other images' rows do not.
    rows = [{"image_id": i, "n": n} for n, i in enumerate([3, 3, 1, 2, 3, 1, 5])]
    assert [row["n"] for row in first_images(rows, 2)] == [0, 1, 2, 4, 5]
    with pytest.raises(ValueError, match="positive integer"):
        first_images(rows, 0)
