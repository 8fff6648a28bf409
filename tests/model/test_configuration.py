import pytest

from hierarchical_vl import HierarchicalVLConfig, available_presets


def test_defaults_are_the_papers_model():
    config = HierarchicalVLConfig()
    assert (config.hidden_size, config.num_layers, config.num_attention_heads, config.num_null_tokens) == (
        1024,
        5,
        4,
        3,
    )
    assert (config.word_embedding_dim, config.lstm_hidden_size, config.lstm_num_layers) == (300, 450, 2)
    assert (config.hidden_dropout, config.lstm_dropout, config.summary_glimpses) == (0.3, 0.1, 4)
    assert config.task_layers == {"grounding": 2, "retrieval": 3, "vqa": 5}
    assert config.num_answers == 3129 and config.region_feature_dim == 2048
    assert config.max_regions == 100 and config.max_question_words == 14
    assert config.model_type == "hierarchical_vl"


def test_paper_preset_equals_defaults():
    paper = HierarchicalVLConfig.from_preset("paper").to_diff_dict()
    default = HierarchicalVLConfig().to_diff_dict()
    assert paper == default
    assert {"paper", "tiny", "demo"} <= set(available_presets())


def test_answer_labels_define_the_answer_pool():
    config = HierarchicalVLConfig(id2label={0: "yes", 1: "no", 2: "2"})
    assert config.num_answers == 3 and config.label2id == {"yes": 0, "no": 1, "2": 2}
    assert HierarchicalVLConfig(num_answers=7).num_answers == 7


def test_round_trip(tmp_path):
    config = HierarchicalVLConfig.from_preset("tiny", id2label={0: "red", 1: "blue"})
    config.save_pretrained(tmp_path)
    loaded = HierarchicalVLConfig.from_pretrained(tmp_path)
    assert loaded.task_layers == config.task_layers and loaded.id2label == {0: "red", 1: "blue"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"task_layers": {"vqa": 6}}, "not a layer of the encoder"),
        ({"task_layers": {"vqa": 0}}, "not a layer of the encoder"),
        ({"hidden_size": 1000, "num_attention_heads": 3}, "divisible"),
        ({"task_layers": {"captioning": 2}}, "Unknown task"),
        ({"task_layers": {}}, "at least one task"),
        ({"hidden_dropout": 1.5}, "hidden_dropout"),
        ({"num_layers": 0}, "num_layers"),
    ],
)
def test_invalid_values_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HierarchicalVLConfig(**kwargs)


def test_unknown_preset():
    with pytest.raises(ValueError, match="Unknown preset"):
        HierarchicalVLConfig.from_preset("huge")
