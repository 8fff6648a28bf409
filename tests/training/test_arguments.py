import pytest

from hierarchical_vl.training.arguments import (
    TrainingArguments,
    apply_overrides,
    available_training_presets,
    load_training_arguments,
)


def test_presets_load_and_follow_the_paper():
    assert {"demo", "paper_run1", "paper_run2", "single_vqa", "single_retrieval", "single_grounding"} <= set(
        available_training_presets()
    )
    run1 = load_training_arguments("paper_run1")
    assert [stage.tasks for stage in run1.curriculum] == [
        ["grounding"], ["grounding", "retrieval"], ["grounding", "retrieval", "vqa"]
    ]
    assert run1.optimizer.lr == 1e-3 and run1.optimizer.betas == (0.9, 0.99) and run1.optimizer.decay == 0.5
    assert run1.data.vqa_train_splits == ["train"] and not run1.data.allow_contamination
    run2 = load_training_arguments("paper_run2")
    assert run2.data.vqa_train_splits == ["train", "val"]


def test_overrides_reach_nested_fields(tmp_path):
    args = load_training_arguments(
        "demo", ["tasks.vqa.batch_size=8", "curriculum.0.cycle_length=7", "data.vqa_train_splits=[train, val]", "seed=3"]
    )
    assert args.tasks["vqa"].batch_size == 8 and args.curriculum[0].cycle_length == 7
    assert args.data.vqa_train_splits == ["train", "val"] and args.seed == 3
    args.save(tmp_path / "args.yaml")
    again = load_training_arguments(tmp_path / "args.yaml")
    assert again.to_dict() == args.to_dict()
    assert apply_overrides({"a": {"b": 1}}, ["a.c=[1, 2]"]) == {"a": {"b": 1, "c": [1, 2]}}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"tasks": {"vqa": {}}, "curriculum": [{"tasks": ["retrieval"]}]}, "no entry in 'tasks'"),
        ({"tasks": {"captioning": {}}, "curriculum": [{"tasks": ["captioning"]}]}, "unknown task"),
        ({"tasks": {"vqa": {"iters": 3}}, "curriculum": [{"tasks": ["vqa"]}]}, "unknown field"),
        ({"tasks": {"vqa": {}}, "curriculum": []}, "at least one stage"),
    ],
)
def test_invalid_arguments(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainingArguments(**changes)


def test_unknown_preset():
    with pytest.raises(ValueError, match="neither a YAML file nor a training preset"):
        load_training_arguments("nope")


def test_parse_layers():
    from hierarchical_vl.training.commands import parse_layers

    assert parse_layers("1-5") == [1, 2, 3, 4, 5] and parse_layers("2,3,5") == [2, 3, 5]
