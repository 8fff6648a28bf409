"""The conventions transformers' own model tests check, run over every model class (``ModelTesterMixin`` style).

Each case is a (model class, task) pair: the bare encoder, the three single-task heads, and the multi-task model
once per task. The tester builds a tiny configuration and padded inputs with known lengths.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from hierarchical_vl import (
    HierarchicalVLConfig,
    HierarchicalVLForImageTextRetrieval,
    HierarchicalVLForMultiTask,
    HierarchicalVLForVisualGrounding,
    HierarchicalVLForVisualQuestionAnswering,
    HierarchicalVLModel,
)

from .model_tester import HierarchicalVLModelTester

HEADS = {
    "vqa": HierarchicalVLForVisualQuestionAnswering,
    "retrieval": HierarchicalVLForImageTextRetrieval,
    "grounding": HierarchicalVLForVisualGrounding,
}
CASES = [(HierarchicalVLModel, None)]
CASES += [(cls, task) for task, cls in HEADS.items()]
CASES += [(HierarchicalVLForMultiTask, task) for task in HEADS]
IDS = [f"{cls.__name__}-{task}" for cls, task in CASES]
COMMON = ("input_ids", "attention_mask", "region_features", "region_mask", "region_boxes")


def _inputs(cls, task, inputs, labels=False):
    """The inputs of ``cls`` running ``task`` (and labels for the task when asked)."""
    keys = COMMON + (("phrase_spans", "phrase_mask") if task == "grounding" else ())
    out = {key: inputs[key] for key in keys}
    if cls is HierarchicalVLForMultiTask:
        out["task"] = task
    if labels:
        out["labels"] = _labels(task, inputs)
    return out


def _labels(task, inputs):
    generator = torch.Generator().manual_seed(3)
    b, t = inputs["region_features"].shape[:2]
    if task == "vqa":
        return torch.rand(b, 10, generator=generator).round(decimals=1)
    if task == "retrieval":
        return torch.tensor([1.0, 0.0, 1.0])[:b]
    return (torch.rand(b, inputs["phrase_spans"].shape[1], t, generator=generator) > 0.5).float()


def _tensors(output):
    """Every tensor of an output (ModelOutput or tuple), flattened, in order."""
    values = output.to_tuple() if hasattr(output, "to_tuple") else output
    flat = []
    for value in values:
        if isinstance(value, torch.Tensor):
            flat.append(value)
        elif isinstance(value, (tuple, list)):
            flat.extend(_tensors(value))
    return flat


def _main(output):
    return output.logits if hasattr(output, "logits") else output.text_last_hidden_state


def _num_layers(cls, task, config):
    return config.num_layers if task is None else config.task_layers[task]


@pytest.fixture
def tester():
    return HierarchicalVLModelTester()


@pytest.fixture
def config(tester):
    return tester.get_config(id2label={i: f"answer {i}" for i in range(10)})


@pytest.fixture
def inputs(tester, config):
    return tester.prepare_inputs(config)


def _model(cls, config, seed=0):
    torch.manual_seed(seed)
    return cls(config).eval()


@pytest.mark.parametrize("cls, task", CASES, ids=IDS)
def test_save_load(tmp_path, cls, task, config, inputs):
    model = _model(cls, config)
    model.save_pretrained(tmp_path)
    loaded = cls.from_pretrained(tmp_path).eval()
    assert model.state_dict().keys() == loaded.state_dict().keys()
    for name, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    with torch.no_grad():
        expected, actual = model(**_inputs(cls, task, inputs)), loaded(**_inputs(cls, task, inputs))
    for a, b in zip(_tensors(expected), _tensors(actual)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cls, task", CASES, ids=IDS)
def test_return_dict_false_and_config_return_dict_give_tuples(cls, task, config, inputs):
    model = _model(cls, config)
    with torch.no_grad():
        as_dict = model(**_inputs(cls, task, inputs, labels=task is not None))
        as_tuple = model(**_inputs(cls, task, inputs, labels=task is not None), return_dict=False)
        model.config.return_dict = False
        from_config = model(**_inputs(cls, task, inputs, labels=task is not None))
        overridden = model(**_inputs(cls, task, inputs, labels=task is not None), return_dict=True)
    assert isinstance(as_tuple, tuple) and isinstance(from_config, tuple)
    assert type(overridden) is type(as_dict)
    assert len(as_tuple) == len(as_dict.to_tuple())
    for a, b in zip(as_dict.to_tuple(), as_tuple):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    if task is not None:  # a labelled call puts the loss first, as in transformers
        torch.testing.assert_close(as_tuple[0], as_dict.loss)


@pytest.mark.parametrize("cls, task", CASES, ids=IDS)
@pytest.mark.parametrize("source", ["keyword", "config"])
def test_attentions_and_hidden_states(cls, task, source, config, inputs):
    if source == "config":
        config.output_attentions = True
        config.output_hidden_states = True
        flags = {}
    else:
        flags = {"output_attentions": True, "output_hidden_states": True}
    model = _model(cls, config)
    layers = _num_layers(cls, task, config)
    b, n = inputs["input_ids"].shape
    t = inputs["region_features"].shape[1]
    k = config.num_null_tokens
    with torch.no_grad():
        output = model(**_inputs(cls, task, inputs), **flags)
    text_states, image_states = output.text_hidden_states, output.image_hidden_states
    assert len(text_states) == len(image_states) == layers + 1  # the input, then each layer run
    assert all(state.shape == (b, n, config.hidden_size) for state in text_states)
    assert all(state.shape == (b, t, config.hidden_size) for state in image_states)
    assert len(output.attentions) == layers
    for word_to_region, region_to_word in output.attentions:
        assert word_to_region.shape == (b, n, k + t) and region_to_word.shape == (b, t, k + n)
        torch.testing.assert_close(word_to_region.sum(-1), torch.ones(b, n))
    # The keyword wins over the configuration.
    with torch.no_grad():
        quiet = model(**_inputs(cls, task, inputs), output_attentions=False, output_hidden_states=False)
    assert quiet.attentions is None and quiet.text_hidden_states is None
    torch.testing.assert_close(_main(quiet), _main(output), rtol=0, atol=0)


@pytest.mark.parametrize("cls, task", CASES, ids=IDS)
def test_batching_equivalence(cls, task, config, inputs):
    """Each example alone, trimmed to its own words and regions, gives its row of the padded batch."""
    model = _model(cls, config)
    with torch.no_grad():
        batched = _main(model(**_inputs(cls, task, inputs)))
        for row in range(inputs["input_ids"].shape[0]):
            n = int(inputs["attention_mask"][row].sum())
            t = int(inputs["region_mask"][row].sum())
            single = {}
            for key, value in _inputs(cls, task, inputs).items():
                if not isinstance(value, torch.Tensor):
                    single[key] = value
                elif key in ("input_ids", "attention_mask"):
                    single[key] = value[row : row + 1, :n]
                elif key in ("region_features", "region_mask", "region_boxes"):
                    single[key] = value[row : row + 1, :t]
                else:
                    single[key] = value[row : row + 1]
            alone = _main(model(**single))[0]
            expected = batched[row]
            if task is None:
                expected = expected[:n]
            elif task == "grounding":
                expected = expected[:, :t]
                alone = alone[:, :t]
            torch.testing.assert_close(alone, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls, task", CASES, ids=IDS)
def test_determinism(cls, task, config, inputs):
    model = _model(cls, config)
    with torch.no_grad():
        first = _tensors(model(**_inputs(cls, task, inputs)))
        second = _tensors(model(**_inputs(cls, task, inputs)))
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("cls", [HierarchicalVLModel, *HEADS.values(), HierarchicalVLForMultiTask])
def test_initialization(cls, config):
    """With a vanishing Xavier gain every weight must come out 0 or its designated constant (half the LSTM forget
    gates' bias in each of b_ih and b_hh): a parameter that ``_init_weights`` misses keeps whatever its constructor
    left."""
    config.initializer_gain = 1e-10
    model = cls(config)
    for name, parameter in model.named_parameters():
        values = parameter.detach()
        if "lstm.bias_" in name:
            hidden = config.lstm_hidden_size
            expected = torch.zeros_like(values)
            expected[hidden : 2 * hidden] = config.lstm_forget_bias / 2
            assert torch.equal(values, expected), name
        else:
            assert values.abs().max() < 1e-8, f"{name} is not initialised by _init_weights"


@pytest.mark.parametrize("cls", [HierarchicalVLModel, *HEADS.values(), HierarchicalVLForMultiTask])
def test_parameters_missing_from_a_checkpoint_are_initialised(tmp_path, cls, config):
    """Raw parameters (null tokens, learned LSTM states) absent from a checkpoint are initialised, not garbage."""
    from safetensors.torch import load_file, save_file

    model = _model(cls, config)
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    dropped = [key for key in weights if "null_tokens" in key or "initial_" in key]
    save_file(
        {k: v for k, v in weights.items() if k not in dropped},
        tmp_path / "model.safetensors",
        {"format": "pt"},
    )
    loaded = cls.from_pretrained(tmp_path)
    state = loaded.state_dict()
    for key in dropped:
        value = state[key]
        assert torch.isfinite(value).all(), key
        assert value.abs().max() > 0, key  # Xavier-normal (the default) for null tokens and LSTM states alike


@pytest.mark.parametrize("cls, task", [case for case in CASES if case[1] is not None], ids=IDS[1:])
def test_training_step(cls, task, config, inputs):
    """One Adam step on a labelled batch: a finite loss, gradients for the encoder up to the task's layer and the
    task's decoder, and none for what the task does not run."""
    config.freeze_word_embeddings = False
    model = _model(cls, config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    loss = model(**_inputs(cls, task, inputs, labels=True)).loss
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    layer = config.task_layers[task]
    for name, parameter in model.named_parameters():
        runs = not name.startswith(tuple(f"{other}_decoder." for other in HEADS if other != task))
        if ".encoder.layers." in name:
            runs = runs and int(name.split(".encoder.layers.")[1].split(".")[0]) < layer
        if not runs:
            assert parameter.grad is None, f"{name} got a gradient though {task} does not use it"
        elif "padding" not in name:
            assert parameter.grad is not None, f"{name} got no gradient"
    optimizer.step()
    changed = [name for name, p in model.named_parameters() if not torch.equal(p, before[name])]
    assert any(name.startswith(f"{task}_decoder.") for name in changed)
    assert any(name.startswith("hierarchical_vl.encoder.layers.0.") for name in changed)


@pytest.mark.parametrize("cls, task", CASES, ids=IDS)
def test_unknown_keyword_arguments_raise(cls, task, config, inputs):
    model = _model(cls, config)
    with pytest.raises(TypeError, match="unexpected keyword argument 'metadata'"):
        model(**_inputs(cls, task, inputs), metadata={"question_id": [1, 2, 3]})


@pytest.mark.parametrize("cls", [HierarchicalVLModel, *HEADS.values(), HierarchicalVLForMultiTask])
def test_main_input_name_is_the_first_argument(cls):
    parameters = list(inspect.signature(cls.forward).parameters)
    assert cls.main_input_name == parameters[1] == "input_ids"


def test_multitask_takes_the_task_as_a_keyword(config, inputs):
    model = _model(HierarchicalVLForMultiTask, config)
    assert inspect.signature(model.forward).parameters["task"].kind is inspect.Parameter.KEYWORD_ONLY
    with pytest.raises(TypeError):
        model(**_inputs(HierarchicalVLModel, None, inputs))
    with pytest.raises(ValueError, match="not an input of 'vqa'"):
        model(**_inputs(HierarchicalVLForMultiTask, "grounding", inputs) | {"task": "vqa"})
    assert model.tasks == ["grounding", "retrieval", "vqa"]
    assert isinstance(model.decoder("vqa"), torch.nn.Module)


def test_retrieval_methods_live_on_retrieval_heads_only():
    assert hasattr(HierarchicalVLForImageTextRetrieval, "score_pairs")
    assert hasattr(HierarchicalVLForMultiTask, "score_pairs")
    for cls in (
        HierarchicalVLModel,
        HierarchicalVLForVisualQuestionAnswering,
        HierarchicalVLForVisualGrounding,
    ):
        assert not hasattr(cls, "score_pairs") and not hasattr(cls, "encode_captions")


def test_config_answers_the_common_names():
    config = HierarchicalVLConfig(num_labels=5)
    assert config.num_answers == config.num_labels == len(config.id2label) == 5
    assert (
        HierarchicalVLForVisualQuestionAnswering(HierarchicalVLConfig.from_preset("tiny", num_labels=5))
        .vqa_decoder.classifier[-1]
        .out_features
        == 5
    )
    assert HierarchicalVLConfig().num_labels == 3129  # the paper's answer pool by default
    config = HierarchicalVLConfig.from_preset("tiny")
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (3, 16, 4)
    config.num_hidden_layers = 4
    assert config.num_layers == 4
    reloaded = HierarchicalVLConfig.from_dict(HierarchicalVLConfig(num_labels=7).to_dict())
    assert reloaded.num_answers == 7
    with pytest.raises(ValueError, match="disagree"):
        HierarchicalVLConfig(num_labels=5, num_answers=6)
