"""Bad annotation records are refused with the file, the record and the problem (issue 11, items 6 and 8)."""

from __future__ import annotations

import json

import pytest

from hierarchical_vl.data import load_flickr30k_entities, load_karpathy_captions, load_vqa
from hierarchical_vl.data.flickr30k_entities import (
    EntitiesFormatError,
    parse_entities_annotation,
    parse_entities_sentence,
)
from hierarchical_vl.data.json_stream import BadRecordError, JSONStreamError, iter_json_array

# --------------------------------------------------------------------------------------------------------------
# VQA rows
# --------------------------------------------------------------------------------------------------------------


def _vqa_files(tmp_path, questions=None, annotations=None):
    answers = [{"answer": "yes", "answer_confidence": "yes", "answer_id": i + 1} for i in range(10)]
    if questions is None:
        questions = [{"image_id": 100 + q, "question": f"q {q}?", "question_id": q} for q in (1, 2)]
    if annotations is None:
        annotations = [
            {
                "question_id": q,
                "image_id": 100 + q,
                "question_type": "is",
                "answer_type": "yes/no",
                "multiple_choice_answer": "yes",
                "answers": [dict(a) for a in answers],
            }
            for q in (1, 2)
        ]
    qfile = tmp_path / "v2_OpenEnded_mscoco_train2014_questions.json"
    afile = tmp_path / "v2_mscoco_train2014_annotations.json"
    qfile.write_text(json.dumps({"questions": questions}))
    afile.write_text(json.dumps({"annotations": annotations}))
    return {"train": (qfile, afile)}


def _good_vqa(tmp_path):
    files = _vqa_files(tmp_path)
    return files, json.loads(files["train"][0].read_text()), json.loads(files["train"][1].read_text())


def _load(files):
    return list(load_vqa(files, split="train", streaming=True, answer_vocab=["yes"]))


def test_good_vqa_rows_still_load(tmp_path):
    assert [r["question_id"] for r in _load(_vqa_files(tmp_path))] == [1, 2]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda q, a: a[1].update(answers=a[1]["answers"][:9]),
            r"annotation 2 \(question_id 2\): has 9 answers, not 10",
        ),
        (lambda q, a: a[0]["answers"].append(dict(a[0]["answers"][0])), r"annotation 1 .*has 11 answers, not 10"),
        (lambda q, a: q[1].update(question=None), r"question 2 \(question_id 2\): 'question' must be a str, not null"),
        (lambda q, a: q[0].pop("question"), r"question 1 \(question_id 1\): missing key 'question'"),
        (lambda q, a: q[0].update(image_id="101"), r"question 1 .*'image_id' must be an integer, not str '101'"),
        (lambda q, a: a[0].update(question_id=1.5), r"annotation 1 .*'question_id' must be an integer, not float"),
        (lambda q, a: a[0]["answers"][3].update(answer=7), r"annotation 1 .*answer 4 has no 'answer' string"),
        (lambda q, a: a[0].pop("multiple_choice_answer"), r"annotation 1 .*missing key 'multiple_choice_answer'"),
        (lambda q, a: a[0].update(question_type=3), r"annotation 1 .*'question_type' must be a string"),
        (lambda q, a: q.__setitem__(1, "oops"), r"question 2: not a JSON object but str"),
        (
            lambda q, a: q.append(dict(q[0])),
            r"questions\.json: question 3 \(question_id 1\): duplicate question_id",
        ),
    ],
)
def test_bad_vqa_records_are_refused_naming_file_and_record(tmp_path, edit, message):
    files, questions, annotations = _good_vqa(tmp_path)
    edit(questions["questions"], annotations["annotations"])
    files["train"][0].write_text(json.dumps(questions))
    files["train"][1].write_text(json.dumps(annotations))
    with pytest.raises(BadRecordError, match=message) as caught:
        _load(files)
    assert "train2014" in str(caught.value)


def test_duplicate_annotation_ids_are_refused(tmp_path):
    files, _, annotations = _good_vqa(tmp_path)
    annotations["annotations"][1]["question_id"] = 1
    files["train"][1].write_text(json.dumps(annotations))
    with pytest.raises(BadRecordError, match=r"annotations\.json: annotation 2 \(question_id 1\): duplicate"):
        _load(files)


def test_bad_annotation_is_refused_while_building_the_vocabulary(tmp_path):
    files, _, annotations = _good_vqa(tmp_path)
    del annotations["annotations"][0]["answers"][0]
    files["train"][1].write_text(json.dumps(annotations))
    with pytest.raises(BadRecordError, match="has 9 answers"):
        load_vqa(files, split="train", streaming=True)


def test_test_split_questions_are_checked(tmp_path):
    qfile = tmp_path / "q.json"
    qfile.write_text(json.dumps({"questions": [{"image_id": 1, "question_id": 5}]}))
    with pytest.raises(BadRecordError, match=r"q\.json: question 1 \(question_id 5\): missing key 'question'"):
        list(load_vqa({"test": (qfile, None)}, split="test", streaming=True, answer_vocab=["yes"]))


# --------------------------------------------------------------------------------------------------------------
# Karpathy splits
# --------------------------------------------------------------------------------------------------------------


def _karpathy(tmp_path, edit=None):
    images = [
        {
            "split": split,
            "filename": f"{1000 + i}.jpg",
            "imgid": i,
            "sentences": [
                {"raw": f"A dog {i}-{j}.", "tokens": ["a", "dog"], "sentid": 5 * i + j, "imgid": i} for j in range(2)
            ],
        }
        for i, split in enumerate(["train", "restval", "val", "test"])
    ]
    if edit is not None:
        edit(images)
    path = tmp_path / "dataset_flickr30k.json"
    path.write_text(json.dumps({"images": images, "dataset": "flickr30k"}))
    return path


def test_good_karpathy_file_still_loads(tmp_path):
    rows = list(load_karpathy_captions(_karpathy(tmp_path), split="train+restval", streaming=True))
    assert [r["sentence_id"] for r in rows] == [0, 1, 5, 6]
    rows = list(load_karpathy_captions(_karpathy(tmp_path), split="train", streaming=True))
    assert [r["sentence_id"] for r in rows] == [0, 1]  # train alone: no restval


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m[2].update(split="validation"), r"image entry 3 \('1002\.jpg'\): split 'validation' is not one"),
        (lambda m: m[3].update(filename="1000.jpg"), r"image entry 4 \('1000\.jpg'\): duplicate image id 1000"),
        (lambda m: m[3]["sentences"][0].update(sentid=1), r"image entry 4 .*duplicate sentence id 1"),
        (lambda m: m[1].pop("split"), r"image entry 2 .*missing key 'split'"),
        (lambda m: m[0]["sentences"][1].pop("raw"), r"image entry 1 .*sentence 2: missing key 'raw'"),
        (lambda m: m[0]["sentences"][1].update(sentid="x1"), r"sentence 2: 'sentid' must be an integer, not 'x1'"),
        (lambda m: m[0].update(cocoid="abc"), r"image entry 1 .*'cocoid' must be an integer, not 'abc'"),
        (lambda m: m[0].update(filename="dog.jpg"), r"image entry 1 .*cannot tell the image id"),
    ],
)
def test_bad_karpathy_entries_are_refused(tmp_path, edit, message):
    path = _karpathy(tmp_path, edit)
    with pytest.raises(BadRecordError, match=message) as caught:
        list(load_karpathy_captions(path, split="test", streaming=True))
    assert "dataset_flickr30k.json" in str(caught.value)


# --------------------------------------------------------------------------------------------------------------
# Flickr30k Entities
# --------------------------------------------------------------------------------------------------------------


def test_malformed_entities_tag_names_file_and_line():
    with pytest.raises(EntitiesFormatError, match=r"s\.txt, line 4: malformed phrase tag '\[/EN18/people'"):
        parse_entities_sentence("[/EN18/people A man] with a hat .", file="s.txt", line_number=4)
    sentence, phrases = parse_entities_sentence("[/EN#18/people A man] with a hat .")
    assert sentence == "A man with a hat ." and phrases[0].phrase == "A man"


_XML = """<annotation><size><width>500</width><height>375</height><depth>3</depth></size>
  <object><name>9</name><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>
</annotation>"""


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ((111, 21, 11, 121), r"<object> 1 \(9\): <bndbox> has xmax < xmin \(11 < 111\)"),
        ((11, 121, 111, 21), r"<bndbox> has ymax < ymin"),
        ((11, "nan", 111, 121), r"<bndbox> has a coordinate that is not a finite number"),
        ((11, 21, "inf", 121), r"not a finite number"),
    ],
)
def test_bad_entities_boxes_are_refused(tmp_path, box, message):
    path = tmp_path / "77.xml"
    path.write_text(_XML.format(*box))
    with pytest.raises(EntitiesFormatError, match=message) as caught:
        parse_entities_annotation(path)
    assert "77.xml" in str(caught.value)
    path.write_text(_XML.format(11, 21, 11, 121))  # a zero-width box is still accepted
    assert parse_entities_annotation(path).boxes["9"] == [[10.0, 20.0, 10.0, 120.0]]


def _entities_root(tmp_path, sentence_bytes: bytes, image="77"):
    (tmp_path / "Sentences").mkdir()
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Sentences" / f"{image}.txt").write_bytes(sentence_bytes)
    (tmp_path / "Annotations" / f"{image}.xml").write_text(_XML.format(11, 21, 111, 121))
    (tmp_path / "test.txt").write_text(f"{image}\n")
    return tmp_path


def test_non_utf8_entities_sentence_file_names_file_and_line(tmp_path):
    root = _entities_root(tmp_path, b"[/EN#9/people A man] .\n[/EN#9/people A caf\xe9 man] .\n")
    with pytest.raises(EntitiesFormatError, match=r"77\.txt, line 2: not UTF-8 \(byte 0xe9"):
        list(load_flickr30k_entities(root, split="test", streaming=True))


def test_non_numeric_entities_image_name_is_named(tmp_path):
    root = _entities_root(tmp_path, b"[/EN#9/people A man] .\n", image="abc")
    with pytest.raises(EntitiesFormatError, match=r"test\.txt: image name 'abc' is not a Flickr30k image number"):
        list(load_flickr30k_entities(root, split="test", streaming=True))


def test_malformed_entities_scene_flag_is_named(tmp_path):
    path = tmp_path / "1.xml"
    path.write_text(
        "<annotation><size><width>5</width><height>5</height></size>"
        "<object><name>3</name><scene>yes</scene></object></annotation>"
    )
    with pytest.raises(EntitiesFormatError, match=r"1\.xml: <object> 1 has a malformed <scene>"):
        parse_entities_annotation(path)


# --------------------------------------------------------------------------------------------------------------
# JSON encoding
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [4, 1 << 20])
def test_non_utf8_json_names_file_and_line(tmp_path, chunk_size):
    path = tmp_path / "questions.json"
    path.write_bytes(b'{"questions": [\n{"question": "a"},\n{"question": "caf\xe9"}\n]}\n')
    with pytest.raises(JSONStreamError, match=r"questions\.json, line 3: not UTF-8 \(byte 0xe9 at byte offset 52\)"):
        list(iter_json_array(path, "questions", chunk_size=chunk_size))
