"""VQA accuracy: normalisation, the leave-one-out formula, both official code versions, submissions."""

from __future__ import annotations

import json
import random
from fractions import Fraction
from pathlib import Path

import pytest

from hierarchical_vl.metrics import (
    normalize_vqa_answer,
    read_vqa_submission,
    vqa_accuracy,
    vqa_question_accuracy,
    write_vqa_submission,
)


def _answers(matching: int, answer: str = "2", other: str = "3") -> list[str]:
    return [answer] * matching + [other] * (10 - matching)


# --- the formula -------------------------------------------------------------------------------------------------


def _by_hand(matching: int) -> float:
    """Average over the 10 annotators of min(1, matches among the other 9 / 3), with exact fractions."""
    total = Fraction(0)
    for _ in range(matching):  # an annotator who gave the answer sees matching - 1 matches among the others
        total += min(Fraction(1), Fraction(matching - 1, 3))
    for _ in range(10 - matching):  # the others see all the matches
        total += min(Fraction(1), Fraction(matching, 3))
    return float(total / 10)


@pytest.mark.parametrize(
    ("matching", "expected"),
    [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (5, 1.0), (10, 1.0)],
)
def test_question_accuracy_by_number_of_matching_annotators(matching, expected):
    # 1 annotator: 9 of the 10 subsets hold the match -> 9/10 * 1/3 = 0.3
    # 2: 2 subsets hold 1 match, 8 hold 2 -> (2/3 + 16/3) / 10 = 0.6
    # 3: 3 subsets hold 2 matches, 7 hold 3 -> (2 + 7) / 10 = 0.9;  4 or more: every subset holds >= 3 -> 1
    assert _by_hand(matching) == pytest.approx(expected, abs=1e-12)
    answers = _answers(matching) if matching < 10 else ["2"] * 10
    assert vqa_question_accuracy("2", answers) == pytest.approx(expected, abs=1e-12)
    assert vqa_question_accuracy("2", answers, legacy=True) == pytest.approx(expected, abs=1e-12)


def test_question_accuracy_matches_a_transcription_of_the_official_loop():
    # The official loop removes one answer record at a time and counts equal answers among the rest.
    rng = random.Random(0)
    pool = ["yes", "no", "2", "two", "red", "a dog", "dog"]
    for _ in range(200):
        answers = [rng.choice(pool) for _ in range(10)]
        prediction = rng.choice(pool)
        records = [{"answer": normalize_vqa_answer(a), "answer_id": i + 1} for i, a in enumerate(answers)]
        if len(set(answers)) == 1:
            records = [{"answer": a, "answer_id": i + 1} for i, a in enumerate(answers)]
            pred = prediction
        else:
            pred = normalize_vqa_answer(prediction)
        accs = []
        for record in records:
            others = [item for item in records if item != record]
            accs.append(min(1, float(len([item for item in others if item["answer"] == pred])) / 3))
        assert vqa_question_accuracy(prediction, answers) == float(sum(accs)) / len(accs)


def test_answer_records_are_accepted():
    records = [{"answer": a, "answer_confidence": "yes", "answer_id": i} for i, a in enumerate(_answers(2))]
    assert vqa_question_accuracy("2", records) == pytest.approx(0.6)


# --- normalisation -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,000", "1000"),  # digit-comma-digit: the comma is deleted, the number stays whole
        ("1,000 people, 3", "1000 people 3"),  # a digit-comma-digit anywhere deletes every mark
        ("red,white", "red white"),  # no space next to it and no digit-comma-digit: replaced by a space
        ("red, white", "red white"),  # next to a space: deleted
        ("black-and-white", "black and white"),
        ("left - right", "left right"),
        ("3.5", "3.5"),  # a period followed by a digit stays
        ("yes.", "yes"),
        ("mr. smith", "mr smith"),
        ("Yes", "yes"),
        ("  yes\n", "yes"),
        ("yes\tsir", "yes sir"),
        ("don't", "don't"),  # the apostrophe is not a punctuation mark of the table
        ("dont", "don't"),  # contractions are restored
        ("Dont know", "don't know"),
        ("it's", "it's"),
        ("its", "its"),
        ("two", "2"),
        ("Two dogs", "2 dogs"),
        ("none", "0"),
        ("ten", "10"),
        ("eleven", "eleven"),  # only zero..ten (and none) are mapped
        ("a dog", "dog"),
        ("The Dog", "dog"),
        ("an apple", "apple"),
        ("the", ""),
        ("what?!", "what"),
        ("(hat)", "hat"),
        ('"stop"', "stop"),
        ("@home", "home"),
        ("a/b", "b"),  # "/" replaced by a space, then the article "a" is dropped
    ],
)
def test_normalize_vqa_answer(text, expected):
    assert normalize_vqa_answer(text) == expected


def test_punctuation_only_normalisation_keeps_case_articles_and_number_words():
    assert normalize_vqa_answer("The two Dogs.", digits_and_articles=False) == "The two Dogs"
    assert normalize_vqa_answer("black-and-white", digits_and_articles=False) == "black and white"


def test_period_strip_quirk_removes_at_most_32_periods():
    # The official call passes re.UNICODE (32) as the count argument of re.sub.
    assert normalize_vqa_answer("." * 40) == "." * 8


def test_normalize_rejects_non_strings():
    with pytest.raises(TypeError, match="strings"):
        normalize_vqa_answer(3)


def test_normalised_forms_match_when_annotators_disagree():
    assert vqa_question_accuracy("Two.", ["2"] * 4 + ["3"] * 6) == 1.0
    assert vqa_question_accuracy("1,000", ["1000"] * 4 + ["100"] * 6) == 1.0
    assert vqa_question_accuracy("dont know", ["don't know"] * 4 + ["no"] * 6) == 1.0
    assert vqa_question_accuracy("a dog", ["dog"] * 2 + ["the dog"] * 2 + ["cat"] * 6) == 1.0


def test_identical_answers_are_not_normalised():
    # All 10 identical: the current code compares raw (stripped) strings.
    assert vqa_question_accuracy("yes", ["yes"] * 10) == 1.0
    assert vqa_question_accuracy(" yes\n", ["yes"] * 10) == 1.0  # whitespace cleaning still applies
    assert vqa_question_accuracy("Yes", ["yes"] * 10) == 0.0
    assert vqa_question_accuracy("yes.", ["yes"] * 10) == 0.0
    assert vqa_question_accuracy("A", ["A"] * 10) == 1.0  # text read in the image survives
    # One differing answer switches normalisation on.
    assert vqa_question_accuracy("Yes", ["yes"] * 9 + ["no"]) == 1.0


# --- legacy vs current -------------------------------------------------------------------------------------------


def test_legacy_normalises_the_prediction_even_when_answers_are_identical():
    assert vqa_question_accuracy("Yes", ["yes"] * 10, legacy=False) == 0.0
    assert vqa_question_accuracy("Yes", ["yes"] * 10, legacy=True) == 1.0
    # ... which breaks answers that normalisation changes: "A" becomes "" (article dropped).
    assert vqa_question_accuracy("A", ["A"] * 10, legacy=False) == 1.0
    assert vqa_question_accuracy("A", ["A"] * 10, legacy=True) == 0.0


def test_legacy_only_punctuation_processes_the_human_answers():
    answers = ["the dog"] * 4 + ["cat"] * 6
    assert vqa_question_accuracy("the dog", answers, legacy=False) == 1.0  # both become "dog"
    assert vqa_question_accuracy("the dog", answers, legacy=True) == 0.0  # "dog" vs unprocessed "the dog"
    answers = ["2"] * 2 + ["two"] * 2 + ["3"] * 6
    assert vqa_question_accuracy("two", answers, legacy=False) == 1.0  # 4 answers normalise to "2"
    assert vqa_question_accuracy("two", answers, legacy=True) == pytest.approx(0.6)  # "2" matches 2 of them
    answers = ["yes."] * 4 + ["no"] * 6  # punctuation is processed in both versions
    assert vqa_question_accuracy("yes", answers, legacy=True) == 1.0
    assert vqa_question_accuracy("yes", answers, legacy=False) == 1.0


def test_legacy_does_not_strip_the_human_answers():
    answers = ["dog "] * 4 + ["cat"] * 6
    assert vqa_question_accuracy("dog", answers, legacy=False) == 1.0
    assert vqa_question_accuracy("dog", answers, legacy=True) == 0.0


# --- corpus level ------------------------------------------------------------------------------------------------


def test_vqa_accuracy_overall_and_per_answer_type_with_dicts():
    predictions = {11: "yes", 12: "2", 13: "red", 14: "no"}
    references = {
        11: ["yes"] * 10,  # 1.0
        12: _answers(1),  # 0.3
        13: ["red"] * 2 + ["blue"] * 8,  # 0.6
        14: ["yes"] * 9 + ["no"],  # 0.3
    }
    answer_types = {11: "yes/no", 12: "number", 13: "other", 14: "yes/no"}
    result = vqa_accuracy(predictions, references, answer_types)
    assert result["overall"] == round(100 * (1.0 + 0.3 + 0.6 + 0.3) / 4, 2) == 55.0
    assert result["per_answer_type"] == {"yes/no": 65.0, "number": 30.0, "other": 60.0}
    assert list(result["per_answer_type"]) == ["yes/no", "number", "other"]
    assert result["counts"] == {"overall": 4, "yes/no": 2, "number": 1, "other": 1}


def test_vqa_accuracy_per_question_type():
    predictions = {11: "yes", 12: "2", 13: "red", 14: "no", 15: "2"}
    references = {
        11: ["yes"] * 10,  # 1.0
        12: _answers(1),  # 0.3
        13: ["red"] * 2 + ["blue"] * 8,  # 0.6
        14: ["yes"] * 9 + ["no"],  # 0.3
        15: _answers(2),  # 0.6
    }
    answer_types = {11: "yes/no", 12: "number", 13: "other", 14: "yes/no", 15: "number"}
    question_types = {11: "is there a", 12: "how many", 13: "what color is the", 14: "is there a", 15: "how many"}
    result = vqa_accuracy(predictions, references, answer_types, question_types=question_types)
    assert result["per_question_type"] == {
        "how many": round(100 * (0.3 + 0.6) / 2, 2),
        "is there a": round(100 * (1.0 + 0.3) / 2, 2),
        "what color is the": 60.0,
    }
    assert result["question_type_counts"] == {"how many": 2, "is there a": 2, "what color is the": 1}
    # The rest of the result is as without question types, and lists work like dicts.
    plain = vqa_accuracy(predictions, references, answer_types)
    assert {k: v for k, v in result.items() if "question_type" not in k} == plain
    assert "per_question_type" not in plain
    ids = list(references)
    by_list = vqa_accuracy(
        [predictions[q] for q in ids],
        [references[q] for q in ids],
        question_types=[question_types[q] for q in ids],
    )
    assert by_list["per_question_type"] == result["per_question_type"]
    # Rounded like the per-answer-type accuracies: 1/3 of the questions right -> 33.33.
    thirds = vqa_accuracy(["2"] * 3, [_answers(4), _answers(0), _answers(0)], question_types=["how many"] * 3)
    assert thirds["per_question_type"] == {"how many": 33.33}


@pytest.mark.parametrize(
    ("predictions", "references", "question_types", "message"),
    [
        (["a"], [_answers(1)], ["x", "y"], "2 question types but 1 references"),
        ({1: "a"}, {1: _answers(1)}, {2: "how many"}, "question_types has no entry"),
        ({1: "a"}, {1: _answers(1)}, ["how many"], "question_types must be a dict"),
        (["a"], [_answers(1)], [None], "question type must be a string"),
    ],
)
def test_vqa_accuracy_question_type_errors(predictions, references, question_types, message):
    with pytest.raises(ValueError, match=message):
        vqa_accuracy(predictions, references, question_types=question_types)


def test_vqa_accuracy_rounds_like_the_official_code():
    result = vqa_accuracy(["2", "2", "2"], [_answers(4), _answers(1), _answers(2)])
    assert result["overall"] == round(100 * (1.0 + 0.3 + 0.6) / 3, 2) == 63.33
    assert result["per_answer_type"] == {}
    assert result["counts"] == {"overall": 3}


def test_vqa_accuracy_lists_and_dicts_agree_and_order_follows_references():
    refs = {3: _answers(3), 1: _answers(1), 2: _answers(2)}
    preds = {1: "2", 2: "2", 3: "2"}
    by_dict = vqa_accuracy(preds, refs, {1: "number", 2: "other", 3: "number"})
    by_list = vqa_accuracy(["2", "2", "2"], [_answers(3), _answers(1), _answers(2)], ["number", "number", "other"])
    assert by_dict == by_list
    assert by_dict["per_answer_type"] == {"number": 60.0, "other": 60.0}


def test_vqa_accuracy_legacy_flag_is_passed_through():
    assert vqa_accuracy(["Yes"], [["yes"] * 10])["overall"] == 0.0
    assert vqa_accuracy(["Yes"], [["yes"] * 10], legacy=True)["overall"] == 100.0


def test_unknown_answer_types_are_listed_after_the_standard_ones():
    result = vqa_accuracy(["2", "2"], [_answers(4), _answers(0)], ["zzz", "number"])
    assert list(result["per_answer_type"]) == ["number", "zzz"]
    assert result["per_answer_type"] == {"number": 0.0, "zzz": 100.0}


@pytest.mark.parametrize(
    ("predictions", "references", "answer_types", "message"),
    [
        ([], [], None, "empty"),
        (["a"], [_answers(1), _answers(1)], None, "1 predictions but 2 references"),
        (["a"], [["a"] * 9], None, "expected 10 human answers, got 9"),
        (["a"], [["a"] * 11], None, "expected 10 human answers, got 11"),
        (["a"], ["a" * 10], None, "expected a list"),
        ([3], [_answers(1)], None, "must be a string"),
        (["a"], [[1] * 10], None, "answers must be strings"),
        ({1: "a"}, {1: _answers(1), 2: _answers(1)}, None, r"1 question\(s\) without a prediction"),
        ({1: "a", 5: "b"}, {1: _answers(1)}, None, "unknown questions"),
        ({1: "a"}, [_answers(1)], None, "must be a dict"),
        (["a"], {1: _answers(1)}, None, "must be a dict"),
        ({1: "a"}, {1: _answers(1)}, {2: "other"}, "no entry"),
        (["a"], [_answers(1)], ["x", "y"], "2 answer types but 1 references"),
    ],
)
def test_vqa_accuracy_errors(predictions, references, answer_types, message):
    with pytest.raises(ValueError, match=message):
        vqa_accuracy(predictions, references, answer_types)


def test_errors_name_the_question():
    with pytest.raises(ValueError, match="question 42"):
        vqa_accuracy({42: "a"}, {42: ["a"] * 3})


# --- submission files --------------------------------------------------------------------------------------------


def test_submission_round_trip(tmp_path):
    predictions = {1: "yes", 20: "2", 300: "don't know", 4: "café"}
    path = write_vqa_submission(predictions, tmp_path / "sub" / "results.json")
    assert json.loads(path.read_text(encoding="utf-8")) == [
        {"question_id": 1, "answer": "yes"},
        {"question_id": 20, "answer": "2"},
        {"question_id": 300, "answer": "don't know"},
        {"question_id": 4, "answer": "café"},
    ]
    assert read_vqa_submission(path) == predictions
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary file left behind


def test_submission_accepts_pairs_and_records(tmp_path):
    import numpy as np

    pairs = [(np.int64(7), "no"), (8, "yes")]
    assert read_vqa_submission(write_vqa_submission(pairs, tmp_path / "a.json")) == {7: "no", 8: "yes"}
    records = [{"question_id": 7, "answer": "no"}]
    assert read_vqa_submission(write_vqa_submission(records, tmp_path / "b.json")) == {7: "no"}


@pytest.mark.parametrize(
    ("predictions", "message"),
    [
        ({1: "a", "2": "b"}, "question_id must be an int"),
        ({True: "a"}, "question_id must be an int"),
        ({1: 2}, "answer must be a string"),
        ([(1, "a"), (1, "b")], "question 1 is predicted twice"),
        ([{"question_id": 1}], "needs 'question_id' and 'answer'"),
        ([(1, "a", "b")], "expected a"),
    ],
)
def test_write_submission_errors(tmp_path, predictions, message):
    with pytest.raises(ValueError, match=message):
        write_vqa_submission(predictions, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = write_vqa_submission({1: "old"}, tmp_path / "results.json")

    def broken_write(self, *args, **kwargs):  # the temporary file exists, its content never arrives
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_vqa_submission({1: "new"}, path)
    monkeypatch.undo()
    assert read_vqa_submission(path) == {1: "old"}
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[{", "not valid JSON"),
        ('{"question_id": 1, "answer": "a"}', "got a JSON dict"),
        ('[{"question_id": 1, "answer": "a"}, 3]', "record 1: expected an object"),
        ('[{"question_id": 1}]', r"record 0: missing field\(s\) \['answer'\]"),
        ('[{"answer": "a"}]', r"record 0: missing field\(s\) \['question_id'\]"),
        ('[{"question_id": "1", "answer": "a"}]', "record 0: question_id must be an integer"),
        ('[{"question_id": 1.0, "answer": "a"}]', "record 0: question_id must be an integer"),
        ('[{"question_id": true, "answer": "a"}]', "record 0: question_id must be an integer"),
        ('[{"question_id": 1, "answer": 2}]', r"record 0 \(question 1\): answer must be a string"),
        (
            '[{"question_id": 1, "answer": "a"}, {"question_id": 1, "answer": "b"}]',
            "record 1: question 1 appears",
        ),
    ],
)
def test_read_submission_errors_name_the_file_and_record(tmp_path, content, message):
    path = tmp_path / "bad_results.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as info:
        read_vqa_submission(path)
    assert "bad_results.json" in str(info.value)
