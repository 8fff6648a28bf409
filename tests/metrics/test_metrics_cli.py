"""``hvl metrics vqa`` on tiny official-format files."""

from __future__ import annotations

import json

import pytest

from hierarchical_vl import cli


@pytest.fixture
def metrics_cli(monkeypatch):
    """``cli.main`` with only the metrics commands registered, so these tests do not depend on other groups."""
    assert "hierarchical_vl.metrics.commands" in cli._COMMAND_MODULES
    monkeypatch.setattr(cli, "_COMMAND_MODULES", ("hierarchical_vl.metrics.commands",))
    return cli.main


def _answer_records(answers):
    return [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)]


@pytest.fixture
def vqa_files(tmp_path):
    questions = {
        "info": {},
        "task_type": "Open-Ended",
        "data_type": "mscoco",
        "data_subtype": "val2014",
        "questions": [
            {"question_id": 1000, "image_id": 1, "question": "Is it sunny?"},
            {"question_id": 1001, "image_id": 1, "question": "How many dogs?"},
            {"question_id": 2000, "image_id": 2, "question": "What color is the car?"},
        ],
    }
    annotations = {
        "annotations": [
            {
                "question_id": 1000,
                "image_id": 1,
                "question_type": "is it",
                "answer_type": "yes/no",
                "multiple_choice_answer": "yes",
                "answers": _answer_records(["yes"] * 10),
            },
            {
                "question_id": 1001,
                "image_id": 1,
                "question_type": "how many",
                "answer_type": "number",
                "multiple_choice_answer": "2",
                "answers": _answer_records(["2"] * 2 + ["two"] * 2 + ["3"] * 6),
            },
            {
                "question_id": 2000,
                "image_id": 2,
                "question_type": "what color is the",
                "answer_type": "other",
                "multiple_choice_answer": "red",
                "answers": _answer_records(["red"] * 1 + ["blue"] * 9),
            },
        ]
    }
    predictions = [
        {"question_id": 1000, "answer": "Yes"},  # current: 0 (identical answers, no normalisation); legacy: 1
        {"question_id": 1001, "answer": "two"},  # current: 1 (4 answers become "2"); legacy: 0.6
        {"question_id": 2000, "answer": "red."},  # both: 0.3
    ]
    paths = {}
    for name, data in (("questions", questions), ("annotations", annotations), ("predictions", predictions)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(data), encoding="utf-8")
    return paths


def _args(paths, *extra):
    return [
        "metrics",
        "vqa",
        "--predictions",
        str(paths["predictions"]),
        "--questions",
        str(paths["questions"]),
        "--annotations",
        str(paths["annotations"]),
        *extra,
    ]


def test_metrics_vqa_current(metrics_cli, vqa_files, tmp_path, capsys):
    output = tmp_path / "out" / "vqa.json"
    assert metrics_cli(_args(vqa_files, "--output", str(output))) == 0
    result = json.loads(output.read_text(encoding="utf-8"))
    assert result["overall"] == round(100 * (0.0 + 1.0 + 0.3) / 3, 2) == 43.33
    assert result["per_answer_type"] == {"yes/no": 0.0, "number": 100.0, "other": 30.0}
    assert result["counts"] == {"overall": 3, "yes/no": 1, "number": 1, "other": 1}
    assert result["legacy"] is False
    printed = capsys.readouterr().out
    assert "current official normalisation" in printed
    assert "overall" in printed and "43.33" in printed
    assert "number" in printed and "100.00" in printed


def test_metrics_vqa_legacy(metrics_cli, vqa_files, tmp_path, capsys):
    output = tmp_path / "vqa_legacy.json"
    assert metrics_cli(_args(vqa_files, "--legacy", "--output", str(output))) == 0
    result = json.loads(output.read_text(encoding="utf-8"))
    assert result["overall"] == round(100 * (1.0 + 0.6 + 0.3) / 3, 2) == 63.33
    assert result["per_answer_type"] == {"yes/no": 100.0, "number": 60.0, "other": 30.0}
    assert result["legacy"] is True
    assert "legacy (pre-2021)" in capsys.readouterr().out


def test_metrics_vqa_missing_prediction_is_an_error(metrics_cli, vqa_files, capsys):
    vqa_files["predictions"].write_text(json.dumps([{"question_id": 1000, "answer": "yes"}]), encoding="utf-8")
    assert metrics_cli(_args(vqa_files)) == 2
    assert "2 question(s) without a prediction" in capsys.readouterr().err


def test_metrics_vqa_bad_submission_names_the_file(metrics_cli, vqa_files, capsys):
    vqa_files["predictions"].write_text('[{"question_id": "1000", "answer": "yes"}]', encoding="utf-8")
    assert metrics_cli(_args(vqa_files)) == 2
    err = capsys.readouterr().err
    assert "predictions.json: record 0: question_id must be an integer" in err


def test_metrics_vqa_annotation_for_unknown_question(metrics_cli, vqa_files, capsys):
    questions = json.loads(vqa_files["questions"].read_text(encoding="utf-8"))
    questions["questions"] = questions["questions"][:2]
    vqa_files["questions"].write_text(json.dumps(questions), encoding="utf-8")
    assert metrics_cli(_args(vqa_files)) == 2
    assert "annotations[2] (question 2000): the question is not in" in capsys.readouterr().err


def test_metrics_vqa_missing_file(metrics_cli, vqa_files, tmp_path, capsys):
    vqa_files["annotations"] = tmp_path / "nope.json"
    assert metrics_cli(_args(vqa_files)) == 2
    assert "nope.json" in capsys.readouterr().err


def test_metrics_vqa_requires_its_arguments(metrics_cli):
    with pytest.raises(SystemExit):
        metrics_cli(["metrics", "vqa", "--predictions", "x.json"])
