"""The annotation loaders' cache is keyed by what changes the rows: the files' contents and the normaliser."""

from __future__ import annotations

import json
import os

from hierarchical_vl.data import load_vqa


def _answers(*pairs):
    answers = [answer for answer, count in pairs for _ in range(count)]
    return [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)]


def _write(directory, second_answer="blue"):
    questions = [{"image_id": 1, "question": "What color is it?", "question_id": 10}]
    annotations = [
        {
            "question_id": 10,
            "image_id": 1,
            "question_type": "what color",
            "answer_type": "other",
            "multiple_choice_answer": "red",
            "answers": _answers(("red", 7), (second_answer, 3)),
        }
    ]
    (directory / "v2_OpenEnded_mscoco_train2014_questions.json").write_text(json.dumps({"questions": questions}))
    path = directory / "v2_mscoco_train2014_annotations.json"
    path.write_text(json.dumps({"annotations": annotations}))
    return path


def _scores(dataset):
    row = dataset[0]
    return {label: round(score, 4) for label, score in zip(row["labels"], row["scores"])}


def test_two_different_lambdas_do_not_share_a_cache(tmp_path):
    _write(tmp_path)
    cache = tmp_path / "cache"
    vocab = ["red", "blue"]
    plain = load_vqa(tmp_path, split="train", answer_vocab=vocab, normalize=lambda a: a, cache_dir=cache)
    merged = load_vqa(
        tmp_path, split="train", answer_vocab=vocab, normalize=lambda a: "red" if a == "blue" else a, cache_dir=cache
    )
    assert _scores(plain) == {0: 1.0, 1: 0.9}
    assert _scores(merged) == {0: 1.0}  # every annotator now said "red": blue gets no score


def test_an_edit_that_keeps_size_and_time_is_seen(tmp_path):
    path = _write(tmp_path, second_answer="blue")
    cache = tmp_path / "cache"
    stat = path.stat()
    first = load_vqa(tmp_path, split="train", answer_vocab=["red", "blue", "pink"], cache_dir=cache)
    _write(tmp_path, second_answer="pink")  # same length as "blue"
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    second = load_vqa(tmp_path, split="train", answer_vocab=["red", "blue", "pink"], cache_dir=cache)
    assert _scores(first) == {0: 1.0, 1: 0.9} and _scores(second) == {0: 1.0, 2: 0.9}
