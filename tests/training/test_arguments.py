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
        ["grounding"],
        ["grounding", "retrieval"],
        ["grounding", "retrieval", "vqa"],
    ]
    assert run1.optimizer.lr == 1e-3 and run1.optimizer.betas == (0.9, 0.99) and run1.optimizer.decay == 0.5
    assert run1.data.vqa_train_splits == ["train"] and not run1.data.allow_contamination
    run2 = load_training_arguments("paper_run2")
    assert run2.data.vqa_train_splits == ["train", "val"]


def test_overrides_reach_nested_fields(tmp_path):
    args = load_training_arguments(
        "demo",
        [
            "tasks.vqa.batch_size=8",
            "curriculum.0.cycle_length=7",
            "data.vqa_train_splits=[train, val]",
            "seed=3",
        ],
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


def test_old_task_layer_moves_into_the_model_configuration(tmp_path):
    with pytest.warns(FutureWarning, match=r"tasks\.vqa\.layer is deprecated"):
        args = load_training_arguments("demo", ["tasks.vqa.layer=3", "tasks.retrieval.layer=null"])
    assert args.model_overrides["task_layers"] == {"vqa": 3} and args.task_layers == {"vqa": 3}
    assert "layer" not in args.to_dict()["tasks"]["vqa"]
    args.save(tmp_path / "args.yaml")
    again = load_training_arguments(tmp_path / "args.yaml")  # the new shape: no warning
    assert again.to_dict() == args.to_dict()
    with pytest.raises(ValueError, match="contradicts"), pytest.warns(FutureWarning):
        load_training_arguments("demo", ["tasks.vqa.layer=3", "model_overrides.task_layers.vqa=4"])
    with pytest.raises(ValueError, match="unknown task"):
        load_training_arguments("demo", ["model_overrides.task_layers.captioning=2"])


def test_build_config_is_the_one_source_of_caps_and_layers():
    from hierarchical_vl import HierarchicalVLTokenizer
    from hierarchical_vl.training.run import build_config

    tokenizer = HierarchicalVLTokenizer.from_texts(["a red cube"])
    args = load_training_arguments("demo", ["model_overrides.task_layers.retrieval=4", "data.max_question_words=9"])
    assert args.data.max_caption_words is None and args.data.input_caps() == {
        "max_regions": 36,
        "max_question_words": 9,
    }
    config = build_config(args, tokenizer, ["yes", "no"])
    assert (config.max_regions, config.max_question_words, config.max_caption_words) == (36, 9, 32)
    assert config.task_layers == {"grounding": 2, "retrieval": 4, "vqa": 5}
    assert config.vocab_size == len(tokenizer) and config.id2label == {0: "yes", 1: "no"}
    single = load_training_arguments("single_grounding", ["model_overrides.task_layers.retrieval=4"])
    assert build_config(single, tokenizer, []).task_layers == {"grounding": 2}  # only the trained tasks


def test_corpus_fields_are_checked():
    args = load_training_arguments(
        "demo",
        [
            "data.features={coco: [bottom_up/trainval], flickr30k: bottom_up/flickr30k}",
            "data.captions_file={coco: a.json, flickr30k: b.json}",
            "data.caption_eval_corpus=flickr30k",
            "data.task_corpora={vqa: coco, grounding: flickr30k}",
        ],
    )
    assert args.data.features == {"coco": ["bottom_up/trainval"], "flickr30k": "bottom_up/flickr30k"}
    assert args.data.task_corpora == {"vqa": "coco", "grounding": "flickr30k"}
    for override, problem in (
        ("data.task_corpora={captioning: coco}", "unknown task"),
        ("data.task_corpora={vqa: co/co}", "not a corpus name"),
        ("data.features={co co: x}", "not a corpus name"),
        ("data.features={}", "names no corpus"),
        ("data.caption_eval_corpus=coco", None),
    ):
        if problem is None:
            assert load_training_arguments("demo", [override]).data.caption_eval_corpus == "coco"
            continue
        with pytest.raises(ValueError, match=problem):
            load_training_arguments("demo", [override])
