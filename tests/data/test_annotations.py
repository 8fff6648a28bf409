"""Annotation loaders: VQA 2.0, Karpathy captions, Flickr30k Entities, and the JSON array streamer."""

from __future__ import annotations

import json

import datasets
import pytest

from hierarchical_vl.data import (
    build_vqa_answer_vocab,
    entities_phrase_counts,
    iter_json_array,
    karpathy_test_folds,
    load_flickr30k_entities,
    load_karpathy_captions,
    load_vqa,
    vqa_answer_vocab,
    vqa_soft_score,
)
from hierarchical_vl.data.flickr30k_entities import parse_entities_annotation, parse_entities_sentence
from hierarchical_vl.data.json_stream import JSONStreamError

# --------------------------------------------------------------------------------------------------------------
# VQA 2.0
# --------------------------------------------------------------------------------------------------------------


def _answers(*pairs: tuple[str, int]) -> list[dict]:
    texts = [text for text, count in pairs for _ in range(count)]
    assert len(texts) == 10
    return [{"answer": t, "answer_confidence": "yes", "answer_id": i + 1} for i, t in enumerate(texts)]


def _write_vqa(tmp_path, shuffle_questions: bool = False):
    """``multiple_choice_answer`` "2" 10 times, "yes" 9 times, "blue" 8 times (so "blue" misses the more-than-8
    cut); question 500 has the 10 answers 3 x "2", 6 x "yes", 1 x "blue"."""
    questions, annotations = [], []
    for qid in range(1, 27):
        mca = "2" if qid <= 9 else "yes" if qid <= 18 else "blue"
        questions.append({"image_id": 100 + qid, "question": f"question {qid}?", "question_id": qid})
        annotations.append(
            {
                "question_id": qid,
                "image_id": 100 + qid,
                "question_type": "what",
                "answer_type": "other",
                "multiple_choice_answer": mca,
                "answers": _answers((mca, 10)),
            }
        )
    questions.append({"image_id": 7, "question": "How many dogs are there?", "question_id": 500})
    annotations.append(
        {
            "question_id": 500,
            "image_id": 7,
            "question_type": "how many",
            "answer_type": "number",
            "multiple_choice_answer": "2",
            "answers": _answers(("2", 3), ("yes", 6), ("blue", 1)),
        }
    )
    if shuffle_questions:
        questions = questions[::-1]
    (tmp_path / "v2_OpenEnded_mscoco_train2014_questions.json").write_text(
        json.dumps(
            {
                "info": {},
                "task_type": "Open-Ended",
                "data_type": "mscoco",
                "data_subtype": "train2014",
                "questions": questions,
            }
        )
    )
    (tmp_path / "v2_mscoco_train2014_annotations.json").write_text(
        json.dumps({"info": {}, "data_subtype": "train2014", "annotations": annotations})
    )
    (tmp_path / "v2_OpenEnded_mscoco_test2015_questions.json").write_text(
        json.dumps({"questions": [{"image_id": 9, "question": "What is it?", "question_id": 9000}]})
    )
    return tmp_path


def test_soft_score_table():
    assert [vqa_soft_score(c) for c in range(6)] == [0.0, 0.3, 0.6, 0.9, 1.0, 1.0]


@pytest.mark.parametrize("shuffle_questions", [False, True])
def test_vqa_vocabulary_soft_scores_and_types(tmp_path, hf_cache, shuffle_questions):
    directory = _write_vqa(tmp_path, shuffle_questions)
    assert build_vqa_answer_vocab(directory / "v2_mscoco_train2014_annotations.json") == ["2", "yes"]
    vqa = load_vqa(directory, cache_dir=hf_cache)
    assert set(vqa) == {"train", "test"}
    vocab = vqa_answer_vocab(vqa["train"])
    assert vocab == ["2", "yes"]
    row = next(r for r in vqa["train"] if r["question_id"] == 500)
    scores = dict(zip((vocab[i] for i in row["labels"]), row["scores"]))
    assert scores["2"] == pytest.approx(0.9)  # 3 annotators said "2"
    assert scores["yes"] == pytest.approx(1.0)  # 6 annotators
    assert "blue" not in scores  # out of the vocabulary
    assert (row["question"], row["question_type"], row["answer_type"]) == (
        "How many dogs are there?",
        "how many",
        "number",
    )
    assert len(row["answers"]) == 10 and row["answers"][0] == {
        "answer": "2",
        "answer_confidence": "yes",
        "answer_id": 1,
    }
    test_row = vqa["test"][0]
    assert test_row["question_id"] == 9000 and test_row["answers"] == [] and test_row["labels"] == []


def test_vqa_vocabulary_threshold(tmp_path):
    directory = _write_vqa(tmp_path)
    annotations = directory / "v2_mscoco_train2014_annotations.json"
    assert "blue" not in build_vqa_answer_vocab(annotations)  # 8 times: not more than 8
    assert "blue" in build_vqa_answer_vocab(annotations, min_count=8)


def test_vqa_vocabulary_is_saved_with_the_dataset(demo_datasets, tmp_path):
    train = demo_datasets["vqa"]["train"]
    train.save_to_disk(tmp_path / "vqa_train")
    assert vqa_answer_vocab(datasets.load_from_disk(tmp_path / "vqa_train")) == vqa_answer_vocab(train)
    assert isinstance(train.features["labels"].feature, datasets.ClassLabel)
    for column in (
        "question_id",
        "image_id",
        "question",
        "question_type",
        "answer_type",
        "answers",
        "scores",
    ):
        assert column in train.features


def test_vqa_demo_has_ten_answers_and_all_answer_types(demo_datasets):
    train = demo_datasets["vqa"]["train"]
    assert all(len(a) == 10 for a in train["answers"])
    assert set(train["answer_type"]) == {"yes/no", "number", "other"}


@pytest.mark.parametrize("name", ["vqa", "captions", "entities"])
def test_streaming_equals_map_style(demo, demo_datasets, name):
    loaders = {
        "vqa": lambda: load_vqa(demo.vqa_questions["train2014"].parent, streaming=True),
        "captions": lambda: load_karpathy_captions(demo.karpathy_captions, streaming=True),
        "entities": lambda: load_flickr30k_entities(demo.entities_root, streaming=True),
    }
    streamed = loaders[name]()
    assert isinstance(streamed, datasets.IterableDatasetDict)
    for split, mapped in demo_datasets[name].items():
        assert list(streamed[split]) == list(mapped), (name, split)


# --------------------------------------------------------------------------------------------------------------
# Karpathy captions
# --------------------------------------------------------------------------------------------------------------


def _karpathy_entry(imgid: int, split: str, coco: bool = True) -> dict:
    sentences = [
        {"tokens": ["a", "dog"], "raw": f"A dog {imgid}-{k}.", "imgid": imgid, "sentid": imgid * 5 + k}
        for k in range(5)
    ]
    entry = {
        "filename": f"{1000 + imgid}.jpg",
        "imgid": imgid,
        "split": split,
        "sentences": sentences,
        "sentids": [s["sentid"] for s in sentences],
    }
    if coco:
        entry.update({"cocoid": 50 + imgid, "filepath": "val2014", "filename": f"COCO_val2014_{50 + imgid:012d}.jpg"})
    return entry


def test_karpathy_splits_are_the_files_and_restval_is_named(tmp_path, hf_cache):
    splits = ["train", "restval", "val", "test", "test"]
    coco = tmp_path / "dataset_coco.json"
    coco.write_text(json.dumps({"images": [_karpathy_entry(i, s) for i, s in enumerate(splits)], "dataset": "coco"}))
    captions = load_karpathy_captions(coco, cache_dir=hf_cache)
    assert list(captions) == ["train", "restval", "val", "test"]
    assert {r["image_id"] for r in captions["train"]} == {50}  # the paper's train: no restval
    assert set(captions["restval"]["karpathy_split"]) == {"restval"} and captions["restval"][0]["image_id"] == 51
    both = load_karpathy_captions(coco, split="train+restval", cache_dir=hf_cache)
    assert {r["image_id"] for r in both} == {50, 51} and sorted(set(both["karpathy_split"])) == ["restval", "train"]
    assert len(list(load_karpathy_captions(coco, split="train", streaming=True))) == captions["train"].num_rows
    with pytest.raises(KeyError, match="train\\+restval"):
        load_karpathy_captions(coco, split="trainval")
    assert captions["test"].num_rows == 10 and captions["val"][0]["caption"] == "A dog 2-0."
    flickr = tmp_path / "dataset_flickr30k.json"
    flickr.write_text(
        json.dumps(
            {
                "images": [_karpathy_entry(i, s, coco=False) for i, s in enumerate(splits)],
                "dataset": "flickr30k",
            }
        )
    )
    assert set(load_karpathy_captions(flickr, split="test", cache_dir=hf_cache)["image_id"]) == {1003, 1004}
    entries = [_karpathy_entry(i, s, coco=False) for i, s in enumerate(["train", "val", "test"])]
    flickr.write_text(json.dumps({"images": entries, "dataset": "flickr30k"}))  # as Flickr30k's: no restval
    assert list(load_karpathy_captions(flickr, cache_dir=hf_cache)) == ["train", "val", "test"]
    with pytest.raises(ValueError, match="dataset_flickr30k.json: no images of the Karpathy split 'restval'"):
        load_karpathy_captions(flickr, split="restval", cache_dir=hf_cache)


def test_coco_1k_test_folds():
    ids = [i for i in range(5000) for _ in range(5)]  # 5 captions per image, in file order
    folds = karpathy_test_folds(ids)
    assert len(folds) == 5 and folds[0] == list(range(1000)) and folds[4][-1] == 4999
    assert karpathy_test_folds([3, 3, 1, 2]) == [[3, 1, 2]]  # fewer than a fold: one fold


def test_demo_captions_distinguish_images(demo_datasets):
    train = demo_datasets["captions"]["train"]
    by_image: dict[int, set[str]] = {}
    for row in train:
        by_image.setdefault(row["image_id"], set()).add(row["caption"])
    assert all(len(c) >= 3 for c in by_image.values())  # 5 captions, mostly different
    all_captions = [c for cs in by_image.values() for c in cs]
    owners = {c: i for i, cs in by_image.items() for c in cs}
    assert len(owners) == len(all_captions)  # no caption is shared by two images


# --------------------------------------------------------------------------------------------------------------
# Flickr30k Entities
# --------------------------------------------------------------------------------------------------------------


def test_entities_sentence_spans():
    sentence, phrases = parse_entities_sentence(
        "[/EN#18/people A man] with [/EN#19/clothing/other pierced ears] is wearing [/EN#20/clothing glasses] ."
    )
    assert sentence == "A man with pierced ears is wearing glasses ."
    assert [(p.phrase, p.phrase_id, p.phrase_types, p.first_word_index, p.last_word_index) for p in phrases] == [
        ("A man", "18", ["people"], 0, 1),
        ("pierced ears", "19", ["clothing", "other"], 3, 4),
        ("glasses", "20", ["clothing"], 7, 7),
    ]
    assert [sentence[p.char_start : p.char_end] for p in phrases] == ["A man", "pierced ears", "glasses"]


def test_entities_malformed_sentence_names_file_and_line():
    with pytest.raises(ValueError, match=r"s\.txt, line 3: phrase is not closed"):
        parse_entities_sentence("[/EN#1/people a man walks", file="s.txt", line_number=3)


ANNOTATION_XML = """<annotation>
  <filename>77.jpg</filename>
  <size><width>500</width><height>375</height><depth>3</depth></size>
  <object><name>5</name><name>9</name>
    <bndbox><xmin>11</xmin><ymin>21</ymin><xmax>111</xmax><ymax>121</ymax></bndbox></object>
  <object><name>5</name>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>50</xmax><ymax>60</ymax></bndbox></object>
  <object><name>6</name><nobndbox>1</nobndbox><scene>1</scene></object>
  <object><name>7</name><nobndbox>1</nobndbox><scene>0</scene></object>
</annotation>
"""


def _write_entities(root, sentence_lines: list[str]):
    (root / "Sentences").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "Sentences" / "77.txt").write_text("\n".join(sentence_lines) + "\n")
    (root / "Annotations" / "77.xml").write_text(ANNOTATION_XML)
    (root / "test.txt").write_text("77\n")
    return root


def test_entities_voc_boxes_are_converted_and_phrases_without_boxes_counted(tmp_path, hf_cache):
    annotation = parse_entities_annotation(_write_entities(tmp_path / "e", []) / "Annotations" / "77.xml")
    assert annotation.boxes["9"] == [[10.0, 20.0, 110.0, 120.0]]  # VOC 1-based (11, 21, 111, 121) minus 1
    assert annotation.boxes["5"] == [[10.0, 20.0, 110.0, 120.0], [0.0, 0.0, 49.0, 59.0]]  # two boxes
    root = _write_entities(
        tmp_path / "f",
        [
            "[/EN#5/people Two men] stand on [/EN#6/scene the beach] near [/EN#7/other a shadow] .",
            "[/EN#9/people A man] looks at [/EN#0/notvisual something] and [/EN#8/other a kite] .",
        ],
    )
    rows = list(load_flickr30k_entities(root, split="test", cache_dir=hf_cache))
    assert [r["sentence"] for r in rows] == [
        "Two men stand on the beach near a shadow .",
        "A man looks at something and a kite .",
    ]
    first = rows[0]["phrases"]
    assert [p["box_status"] for p in first] == ["box", "scene", "nobndbox"]
    assert first[0]["boxes"] == [[10.0, 20.0, 110.0, 120.0], [0.0, 0.0, 49.0, 59.0]]
    assert first[1]["boxes"] == [] and first[2]["boxes"] == []
    assert [p["box_status"] for p in rows[1]["phrases"]] == ["box", "notvisual", "missing"]
    assert (rows[0]["width"], rows[0]["height"]) == (500, 375)
    assert entities_phrase_counts(rows) == {
        "sentences": 2,
        "box": 2,
        "scene": 1,
        "nobndbox": 1,
        "notvisual": 1,
        "missing": 1,
    }


def test_demo_entities_exercise_every_exclusion(demo_datasets):
    counts = entities_phrase_counts(demo_datasets["entities"]["train"])
    assert counts["box"] > 0 and counts["scene"] > 0 and counts["nobndbox"] > 0 and counts["notvisual"] > 0
    multi_box = [p for r in demo_datasets["entities"]["train"] for p in r["phrases"] if len(p["boxes"]) > 1]
    assert multi_box  # group phrases ("the two cubes") refer to several boxes


# --------------------------------------------------------------------------------------------------------------
# JSON streaming
# --------------------------------------------------------------------------------------------------------------


def test_json_array_streaming_across_chunk_boundaries(tmp_path):
    payload = {
        "info": {"note": "questions [not this]", "n": [1, 2, 3]},
        "count": 123456,
        "questions": [{"question_id": i, "question": "é" * (i % 7), "x": 1.5e-3 * i} for i in range(200)],
        "after": True,
    }
    path = tmp_path / "q.json"
    path.write_text(json.dumps(payload, indent=1))
    for chunk_size in (1, 7, 64, 1 << 20):
        assert list(iter_json_array(path, "questions", chunk_size=chunk_size)) == payload["questions"]
    with pytest.raises(JSONStreamError, match="no top-level key 'annotations'"):
        list(iter_json_array(path, "annotations", chunk_size=16))
    with pytest.raises(JSONStreamError, match="'count' is not an array"):
        list(iter_json_array(path, "count"))
    path.write_text('{"questions": [{"question_id": 1}, {"question_id": 2')
    with pytest.raises(JSONStreamError, match=r"q\.json: invalid JSON"):
        list(iter_json_array(path, "questions"))


def test_vqa_questions_and_annotations_must_match(tmp_path, hf_cache):
    directory = _write_vqa(tmp_path)
    annotations = json.loads((directory / "v2_mscoco_train2014_annotations.json").read_text())
    annotations["annotations"] = annotations["annotations"][:-2]
    (directory / "v2_mscoco_train2014_annotations.json").write_text(json.dumps(annotations))
    with pytest.raises(ValueError, match=r"questions\.json: 2 questions have no annotation in"):
        list(load_vqa(directory, split="train", streaming=True))
    annotations["annotations"][0]["image_id"] = 999
    (directory / "v2_mscoco_train2014_annotations.json").write_text(json.dumps(annotations))
    with pytest.raises(ValueError, match="question 1 is on image 999"):
        list(load_vqa(directory, split="train", streaming=True, answer_vocab=["2"]))


def test_features_spec_builds_the_explicit_datasets_features():
    from hierarchical_vl.data.generator_datasets import _features

    labels = datasets.ClassLabel(names=["a", "b"])
    spec = {"id": "int64", "tokens": ["string"], "boxes": [("float32", 4)], "items": [{"x": "int32"}], "y": [labels]}
    assert _features(spec) == datasets.Features(
        {
            "id": datasets.Value("int64"),
            "tokens": datasets.List(datasets.Value("string")),
            "boxes": datasets.List(datasets.List(datasets.Value("float32"), length=4)),
            "items": datasets.List({"x": datasets.Value("int32")}),
            "y": datasets.List(labels),
        }
    )
    assert list(_features(spec)) == list(spec)
