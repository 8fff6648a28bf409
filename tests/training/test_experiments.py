"""``hvl experiment table1``: the seven task combinations, the update-matched single-task runs, the reference rows,
the update counts and the mean and range over seeds, on a tiny corpus."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch
import yaml

from hierarchical_vl.cli import main
from hierarchical_vl.evaluation.baselines import PRIOR_NAMES
from hierarchical_vl.training.arguments import TrainingArguments, load_training_arguments
from hierarchical_vl.training.experiments import (
    TABLE1_COLUMNS,
    Table1Result,
    combination_arguments,
    format_table1,
    single_task_arguments,
    table1_plan,
    updates_per_task,
)

COMBINATIONS = ["VQA", "ICR", "VG", "VQA+ICR", "VQA+VG", "ICR+VG", "VQA+ICR+VG"]
MATCHED = ["VQA (matched)", "ICR (matched)", "VG (matched)"]


def _config(corpus, output_dir) -> dict:
    return {
        "output_dir": str(output_dir),
        "seed": 0,
        "model_preset": "tiny",
        "model_overrides": {"region_feature_dim": 32},
        "tasks": {
            "grounding": {"iterations": 4, "lr_step": 2, "batch_size": 4},
            "retrieval": {"iterations": 6, "lr_step": 3, "batch_size": 4},
            "vqa": {"iterations": 6, "lr_step": 4, "batch_size": 4},
        },
        "curriculum": [
            {"name": "g", "tasks": ["grounding"], "cycle_length": 2},
            {"name": "gr", "tasks": ["grounding", "retrieval"], "cycle_length": 5},
            {"name": "all", "tasks": ["grounding", "retrieval", "vqa"], "cycle_length": 4},
        ],
        "data": {"root": str(corpus), "min_answer_frequency": 0, "max_regions": 12},
        "log_with": [],
        "progress": False,
        "eval_batch_size": 64,
    }


def test_a_combination_keeps_the_curriculum_of_its_tasks_without_empty_or_repeated_stages(tmp_path):
    base = TrainingArguments(**_config(tmp_path, tmp_path / "out"))
    stages = lambda args: [(stage.tasks, stage.cycle_length, stage.evaluate) for stage in args.curriculum]  # noqa: E731
    vqa_vg = combination_arguments(base, ["vqa", "grounding"], tmp_path / "a")
    assert stages(vqa_vg) == [(["grounding"], 2, []), (["grounding", "vqa"], 4, ["vqa", "grounding"])]
    assert set(vqa_vg.tasks) == {"grounding", "vqa"} and vqa_vg.output_dir == str(tmp_path / "a")
    icr_vg = combination_arguments(base, ["retrieval", "grounding"], tmp_path / "b")
    assert stages(icr_vg) == [(["grounding"], 2, []), (["grounding", "retrieval"], 5, ["retrieval", "grounding"])]
    vqa_icr = combination_arguments(base, ["vqa", "retrieval"], tmp_path / "c")
    assert stages(vqa_icr) == [(["retrieval"], 5, []), (["retrieval", "vqa"], 4, ["vqa", "retrieval"])]
    assert stages(combination_arguments(base, ["grounding"], tmp_path / "d")) == [(["grounding"], 2, ["grounding"])]
    with pytest.raises(ValueError, match="not in the configuration"):
        combination_arguments(base, ["captioning"], tmp_path / "e")


def test_matched_single_task_runs_get_the_updates_of_the_all_task_run_and_a_scaled_lr_step(tmp_path):
    base = TrainingArguments(**_config(tmp_path, tmp_path / "out"))
    together = updates_per_task(base)
    plan = {run.name: run for run in table1_plan(base)}
    assert list(plan) == COMBINATIONS + MATCHED
    assert plan["VQA+ICR+VG"].updates == together
    for task, label in (("vqa", "VQA"), ("retrieval", "ICR"), ("grounding", "VG")):
        matched = plan[f"{label} (matched)"].build(tmp_path / label)
        assert updates_per_task(matched) == {task: together[task]} == plan[f"{label} (matched)"].updates
        factor = together[task] / base.tasks[task].iterations
        assert matched.tasks[task].lr_step == max(1, round(base.tasks[task].lr_step * factor))
        alone = single_task_arguments(base, task, tmp_path / "x")
        assert plan[label].updates == updates_per_task(alone)
        assert alone.tasks[task] == base.tasks[task]
    # The lower tasks of the curriculum get more updates with all tasks than alone (the confound the rows fix).
    assert together["grounding"] > plan["VG"].updates["grounding"]


@pytest.fixture(scope="module")
def table(tiny_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("table1")
    config = root / "table1.yaml"
    config.write_text(yaml.safe_dump(_config(tiny_corpus, root / "unused")))
    output = root / "table1.json"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            code = main(
                [
                    "experiment",
                    "table1",
                    str(config),
                    "tasks.vqa.batch_size=5",
                    "--seeds",
                    "0,1",
                    "--output-dir",
                    str(root / "runs"),
                    "--output-json",
                    str(output),
                ]
            )
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    return {"config": config, "json": json.loads(output.read_text()), "root": root, "printed": printed.getvalue()}


def test_table1_has_every_row_with_its_update_counts(table):
    data = table["json"]
    names = [row["name"] for row in data["rows"]]
    assert names == COMBINATIONS + MATCHED + [name for name in PRIOR_NAMES if name in names]
    assert set(PRIOR_NAMES) <= set(names)
    base = load_training_arguments(table["config"], ["tasks.vqa.batch_size=5"])
    assert base.tasks["vqa"].batch_size == 5  # the override reached the runs' configuration
    plan = {run.name: run for run in table1_plan(base)}
    for row in data["rows"]:
        if row["kind"] == "prior":
            assert row["updates"] == {} and len(row["per_seed"]) == 1
            continue
        assert row["updates"] == plan[row["name"]].updates == updates_per_task(plan[row["name"]].build(table["root"]))
        assert row["trained_updates"] == [sum(row["updates"].values())] * 2  # what the trainer really did
        assert len(row["per_seed"]) == 2 and len(set(row["output_dirs"])) == 2
        for task in ("vqa", "retrieval", "grounding"):
            present = any(key.startswith(f"{task}/") for key in row["per_seed"][0])
            assert present == (task in row["tasks"]), (row["name"], task)
    printed = table["printed"]
    assert "updates VQA/ICR/VG" in printed and "matched" in printed and "VQA accuracy per question type" in printed


def test_table1_mean_and_range_over_seeds(table):
    for row in table["json"]["rows"]:
        if row["kind"] == "prior":
            assert row["mean"] == row["min"] == row["max"] == row["per_seed"][0]
            continue
        for _, key in TABLE1_COLUMNS:
            if key not in row["per_seed"][0]:
                assert key not in row["mean"]
                continue
            values = [run[key] for run in row["per_seed"]]
            assert row["mean"][key] == round(sum(values) / 2, 2)
            assert row["min"][key] == min(values) and row["max"][key] == max(values)
    # Different seeds train different models.
    vqa = table["json"]["rows"][0]
    assert vqa["per_seed"][0] != vqa["per_seed"][1]


def test_table1_json_round_trips_and_formats(table):
    data = table["json"]
    result = Table1Result.from_dict(data)
    assert result.to_dict() == data
    assert result.seeds == [0, 1] and result.splits == {"vqa": "val", "retrieval": "test", "grounding": "test"}
    assert data["protocol"]["name"] == "current" and data["protocol"]["box_matching"] == "any"
    text = format_table1(result)
    assert "protocol current." in text
    lines = text.splitlines()
    all_tasks = next(line for line in lines if line.startswith("VQA+ICR+VG "))
    mean = result.row("VQA+ICR+VG").summary()["mean"]
    assert f"{mean['vqa/overall']:.2f} (" in all_tasks
    assert all_tasks.split()[-1] == "/".join(
        str(result.row("VQA+ICR+VG").updates[t]) for t in ("vqa", "retrieval", "grounding")
    )
    chance = next(line for line in lines if line.startswith("chance "))
    assert chance.split()[1] == "-"  # no VQA chance row: its prior is the question-type row
    prior = result.row("most frequent answer per question type").per_seed[0]
    assert any(key.startswith("vqa/question_type/") for key in prior)
    assert not list(table["root"].glob("*.tmp"))


def test_bad_seed_lists_are_refused(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["experiment", "table1", "demo", "--seeds", "0,0"])
    assert "distinct integers" in capsys.readouterr().err
    assert main(["experiment", "table1", str(tmp_path / "missing.yaml")]) == 1
    assert "does not exist" in capsys.readouterr().err
