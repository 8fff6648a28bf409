"""The contamination guard on the demo corpus's clean and contaminated run configurations."""

from __future__ import annotations

import json

import pytest

from hierarchical_vl.data import (
    ContaminationError,
    SplitImages,
    check_contamination,
    find_contamination,
    run_splits,
)


def test_demo_clean_configuration_passes(demo, demo_datasets):
    clean = json.loads(demo.manifest.read_text())["clean_run"]
    names = {"vqa": {"train2014": "train", "val2014": "val"}}
    splits = run_splits(
        train={
            task: {s: demo_datasets[_dataset(task)][names.get(task, {}).get(s, s)] for s in chosen}
            for task, chosen in clean["train"].items()
        },
        evaluate={
            task: {s: demo_datasets[_dataset(task)][names.get(task, {}).get(s, s)] for s in chosen}
            for task, chosen in clean["eval"].items()
        },
    )
    report = check_contamination(splits)
    assert report.clean and not report and report.image_ids == []
    assert "no image is in both" in report.format()


def _dataset(task: str) -> str:
    return {"vqa": "vqa", "retrieval": "captions", "grounding": "entities"}[task]


def test_training_vqa_on_val_contaminates_retrieval_test(demo_datasets):
    vqa, captions = demo_datasets["vqa"], demo_datasets["captions"]
    splits = run_splits(
        train={"vqa": {"train": vqa["train"], "val": vqa["val"]}, "retrieval": {"train": captions["train"]}},
        evaluate={"retrieval": {"test": captions["test"]}, "vqa": {"val": vqa["val"]}},
    )
    expected = sorted(set(vqa["val"]["image_id"]) & set(captions["test"]["image_id"]))
    assert expected  # Karpathy test images are val2014 images with VQA val questions
    with pytest.raises(ContaminationError) as caught:
        check_contamination(splits)
    report = caught.value.report
    pairs = {(o.train, o.eval): o.image_ids for o in report.overlaps}
    assert pairs[("vqa/val", "retrieval/test")] == tuple(str(i) for i in expected)
    assert ("vqa/val", "vqa/val") in pairs  # also within one task
    assert "trained by vqa/val, evaluated by retrieval/test" in str(caught.value)
    assert "Refusing to start" in str(caught.value)
    allowed = check_contamination(splits, allow=True)
    assert allowed.image_ids == report.image_ids and allowed.to_dict()["clean"] is False


def test_ids_in_any_form():
    splits = [
        SplitImages.from_ids("vqa", "train", "train", [1, 2, "0003"]),
        SplitImages.from_ids("grounding", "test", "eval", ["3", 4]),
        SplitImages.from_rows("retrieval", "test", "eval", [{"image_id": 2}, {"image_id": 9}]),
    ]
    report = find_contamination(splits)
    assert report.image_ids == ["2", "3"]
    assert [(o.train, o.eval, o.image_ids) for o in report.overlaps] == [
        ("vqa/train", "grounding/test", ("3",)),
        ("vqa/train", "retrieval/test", ("2",)),
    ]
    with pytest.raises(ValueError, match="role"):
        SplitImages.from_ids("vqa", "train", "training", [1])
