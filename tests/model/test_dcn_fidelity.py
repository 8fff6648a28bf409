"""The DCN details where the paper is silent: dropouts, forget-gate bias, initial LSTM states, Xavier-normal.

A new configuration has DCN's values; one saved by version 0.1 (no ``config_version``) keeps that version's behaviour,
checked against files written by the old code (``tests/fixtures/config_v0_1``, ``tests/fixtures/checkpoint_v0_1``).
"""

from __future__ import annotations

import json
import math
import sys
from importlib import resources
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig

from hierarchical_vl import HierarchicalVLConfig, HierarchicalVLForMultiTask, HierarchicalVLModel
from hierarchical_vl.configuration_hierarchical_vl import CONFIG_VERSION
from hierarchical_vl.modeling_hierarchical_vl import SummaryNetwork

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
OLD_CHECKPOINT = FIXTURES / "checkpoint_v0_1" / "multitask"
OLD_CONFIG = FIXTURES / "config_v0_1"
DCN = {
    "text_projection_dropout": 0.1,
    "summary_dropout": 0.0,
    "lstm_forget_bias": 2.0,
    "initial_state_init": "xavier",
    "initializer_distribution": "normal",
}
VERSION_1 = {
    "text_projection_dropout": 0.3,
    "summary_dropout": 0.3,
    "lstm_forget_bias": 1.0,
    "initial_state_init": "zeros",
    "initializer_distribution": "uniform",
}


def _fields(config):
    return {name: getattr(config, name) for name in DCN}


def _small(**overrides):
    return HierarchicalVLConfig.from_preset("tiny", **overrides)


# ------------------------------------------------------------------------------------------------------------------
# Defaults and validation
# ------------------------------------------------------------------------------------------------------------------


def test_a_new_configuration_has_dcns_values_and_the_current_version():
    config = HierarchicalVLConfig()
    assert _fields(config) == DCN and config.config_version == CONFIG_VERSION == 2
    assert config.to_dict()["config_version"] == 2  # written into every new config.json
    for preset in ("paper", "tiny", "demo"):
        assert _fields(HierarchicalVLConfig.from_preset(preset)) == DCN, preset


def test_paper_preset_states_every_dcn_value():
    stated = json.loads(resources.files("hierarchical_vl.presets").joinpath("paper.json").read_text())
    assert {name: stated[name] for name in DCN} == DCN


@pytest.mark.parametrize(
    "field, value",
    [
        ("text_projection_dropout", 1.0),
        ("summary_dropout", -0.1),
        ("summary_dropout", "0.1"),
        ("lstm_forget_bias", float("nan")),
        ("lstm_forget_bias", True),
        ("initial_state_init", "ones"),
        ("initializer_distribution", "gaussian"),
        ("config_version", 3),
        ("config_version", 0),
    ],
)
def test_invalid_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"HierarchicalVLConfig.{field}"):
        HierarchicalVLConfig(**{field: value})


# ------------------------------------------------------------------------------------------------------------------
# Each field does what it says
# ------------------------------------------------------------------------------------------------------------------


def test_each_dropout_module_has_its_fields_p():
    config = _small(hidden_dropout=0.25, text_projection_dropout=0.15, summary_dropout=0.05)
    model = HierarchicalVLForMultiTask(config)
    assert model.hierarchical_vl.text_embeddings.dropout.p == 0.15
    summaries = [module for module in model.modules() if isinstance(module, SummaryNetwork)]
    assert len(summaries) == 4 and all(summary.dropout.p == 0.05 for summary in summaries)
    assert all(layer.dropout.p == 0.25 for layer in model.hierarchical_vl.encoder.layers)
    assert model.vqa_decoder.classifier[2].p == 0.25
    assert model.hierarchical_vl.text_embeddings.lstm.dropout == config.lstm_dropout


def test_summary_dropout_zero_makes_the_summary_deterministic_in_training_mode():
    torch.manual_seed(0)
    summary = SummaryNetwork(_small(summary_dropout=0.0)).train()
    features, mask = torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool)
    assert torch.equal(summary.weights(features, mask), summary.weights(features, mask))
    noisy = SummaryNetwork(_small(summary_dropout=0.5)).train()
    assert not torch.equal(noisy.weights(features, mask), noisy.weights(features, mask))


@pytest.mark.parametrize("total", [2.0, 1.0, 3.0, 0.0])
def test_forget_gate_slices_of_both_lstm_biases_hold_half_the_total(total):
    model = HierarchicalVLModel(_small(lstm_forget_bias=total))
    lstm = model.text_embeddings.lstm
    hidden = lstm.hidden_size
    biases = [(name, param) for name, param in lstm.named_parameters() if name.startswith("bias")]
    assert len(biases) == 2 * 2 * lstm.num_layers  # b_ih and b_hh of each layer and direction
    for name, param in biases:
        assert torch.all(param[hidden : 2 * hidden] == total / 2), name
        others = torch.cat([param[:hidden], param[2 * hidden :]])
        assert torch.all(others == 0), name
    summed = sum(param for name, param in biases if name.endswith("_l0")) / 2  # ih + hh of layer 0, forward
    assert torch.all(summed[hidden : 2 * hidden] == total / 2)


_LARGE_STATES = {"lstm_hidden_size": 600, "lstm_num_layers": 1, "word_embedding_dim": 4, "hidden_size": 8}
"""h0 and c0 of (2, 600) each: 2400 values, enough to measure their spread to about 3%."""


def _xavier_std(config):
    # DCN's single (2 * 2L, H) parameter: fan_in H, fan_out 4L.
    return math.sqrt(2.0 / (config.lstm_hidden_size + 4 * config.lstm_num_layers))


def _states(model):
    encoder = model.text_embeddings if hasattr(model, "text_embeddings") else model.hierarchical_vl.text_embeddings
    return torch.cat([encoder.initial_hidden.detach().flatten(), encoder.initial_cell.detach().flatten()])


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_xavier_initial_states_have_the_xavier_spread(distribution):
    torch.manual_seed(0)
    config = _small(**_LARGE_STATES, initializer_distribution=distribution)
    states = _states(HierarchicalVLModel(config))
    std = _xavier_std(config)
    assert states.numel() == 2400 and torch.all(states != 0)
    assert abs(states.std().item() / std - 1) < 0.06
    assert abs(states.mean().item()) < 4 * std / math.sqrt(states.numel())
    if distribution == "uniform":
        assert states.abs().max() <= math.sqrt(3) * std + 1e-7
    else:
        assert states.abs().max() > 2 * math.sqrt(3) * std  # normal tails reach far past the uniform bound


def test_zero_initial_states_stay_zero():
    states = _states(HierarchicalVLModel(_small(**_LARGE_STATES, initial_state_init="zeros")))
    assert torch.equal(states, torch.zeros_like(states))


def _excess_kurtosis(values):
    centred = values - values.mean()
    return float((centred**4).mean() / (centred**2).mean() ** 2 - 3)


@pytest.mark.parametrize("distribution, kurtosis", [("normal", 0.0), ("uniform", -1.2)])
def test_weight_distribution(distribution, kurtosis):
    torch.manual_seed(0)
    config = _small(hidden_size=256, num_layers=1, task_layers={"vqa": 1}, initializer_distribution=distribution)
    fusion = HierarchicalVLModel(config).encoder.layers[0].text_fusion.weight.detach()  # (256, 512)
    std = math.sqrt(2.0 / sum(fusion.shape))
    assert abs(fusion.std().item() / std - 1) < 0.02
    assert abs(_excess_kurtosis(fusion.flatten()) - kurtosis) < 0.1
    if distribution == "uniform":
        assert fusion.abs().max() <= math.sqrt(3) * std + 1e-7
    else:
        assert fusion.abs().max() > 3 * std


def test_parameters_missing_from_a_checkpoint_get_the_configured_initialisation(tmp_path):
    """Raw parameters (h0/c0, null tokens) a checkpoint lacks are set by ``_init_weights``: Xavier, not garbage."""
    torch.manual_seed(0)
    config = _small(**_LARGE_STATES)
    HierarchicalVLModel(config).save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    dropped = [key for key in weights if "initial_" in key or "null_tokens" in key]
    assert len(dropped) == 2 + 2 * config.num_layers
    save_file({k: v for k, v in weights.items() if k not in dropped}, tmp_path / "model.safetensors", {"format": "pt"})
    loaded = HierarchicalVLModel.from_pretrained(tmp_path)
    states = _states(loaded)
    assert torch.isfinite(states).all() and abs(states.std().item() / _xavier_std(config) - 1) < 0.06
    for layer in loaded.encoder.layers:
        assert torch.isfinite(layer.text_null_tokens).all() and layer.text_null_tokens.abs().max() > 0
    kept = {k: v for k, v in loaded.state_dict().items() if k in weights and k not in dropped}
    for key, value in kept.items():  # the weights it has are loaded as they are
        assert torch.equal(value, weights[key]), key


# ------------------------------------------------------------------------------------------------------------------
# Files of version 0.1 keep version 0.1's behaviour
# ------------------------------------------------------------------------------------------------------------------


def test_old_checkpoint_config_loads_with_the_old_behaviour():
    config = HierarchicalVLConfig.from_pretrained(OLD_CHECKPOINT)
    assert _fields(config) == VERSION_1 and config.config_version == 1
    model = HierarchicalVLForMultiTask.from_pretrained(OLD_CHECKPOINT)
    assert model.hierarchical_vl.text_embeddings.dropout.p == 0.3
    assert all(m.dropout.p == 0.3 for m in model.modules() if isinstance(m, SummaryNetwork))


@pytest.mark.parametrize(
    "load",
    [
        lambda: HierarchicalVLConfig.from_pretrained(OLD_CONFIG),
        lambda: HierarchicalVLConfig.from_json_file(OLD_CONFIG / "config.json"),
        lambda: HierarchicalVLConfig.from_dict(json.loads((OLD_CONFIG / "config.json").read_text())),
        lambda: AutoConfig.from_pretrained(OLD_CONFIG),
    ],
    ids=["from_pretrained", "from_json_file", "from_dict", "AutoConfig"],
)
def test_a_config_saved_by_version_0_1_keeps_its_dropouts_and_initialisation(load):
    """The ``demo`` preset as 0.1 saved it: both dropouts followed its hidden_dropout of 0.1."""
    assert "config_version" not in json.loads((OLD_CONFIG / "config.json").read_text())
    config = load()
    assert isinstance(config, HierarchicalVLConfig)
    assert _fields(config) == {**VERSION_1, "text_projection_dropout": 0.1, "summary_dropout": 0.1}
    assert config.config_version == 1 and config.hidden_dropout == 0.1


def test_an_old_config_saved_again_keeps_the_old_behaviour(tmp_path):
    HierarchicalVLConfig.from_pretrained(OLD_CHECKPOINT).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["config_version"] == 1 and {name: saved[name] for name in DCN} == VERSION_1
    assert _fields(HierarchicalVLConfig.from_pretrained(tmp_path)) == VERSION_1


def test_a_new_config_round_trips_with_dcns_values(tmp_path):
    _small(summary_dropout=0.2).save_pretrained(tmp_path)
    assert _fields(HierarchicalVLConfig.from_pretrained(tmp_path)) == {**DCN, "summary_dropout": 0.2}


def _train_mode_outputs(model):
    sys.path.insert(0, str(FIXTURES))
    try:
        from make_config_v0_1 import TASKS, train_mode_inputs
    finally:
        sys.path.remove(str(FIXTURES))
    expected = load_file(FIXTURES / "checkpoint_v0_1" / "expected_outputs.safetensors")
    outputs = {}
    for task in TASKS:
        torch.manual_seed(0)
        output = model(**train_mode_inputs(expected, task), task=task)
        outputs[task] = (output.logits.detach(), output.loss.detach())
    return outputs


def test_fine_tuning_an_old_checkpoint_computes_what_version_0_1_computed():
    """Training mode (dropout on, seed 0): the logits and losses that version 0.1 computed, bit for bit."""
    expected = load_file(OLD_CONFIG / "train_mode_outputs.safetensors")
    model = HierarchicalVLForMultiTask.from_pretrained(OLD_CHECKPOINT).train()
    for task, (logits, loss) in _train_mode_outputs(model).items():
        assert torch.equal(logits, expected[f"{task}.logits"]), task
        assert torch.equal(loss.reshape(1), expected[f"{task}.loss"]), task
    # The same weights under DCN's dropouts train differently: the check above is not vacuous.
    old = json.loads((OLD_CHECKPOINT / "config.json").read_text())
    dcn = HierarchicalVLForMultiTask(HierarchicalVLConfig(**old))  # a new config: DCN's values
    dcn.load_state_dict(model.state_dict())
    changed = _train_mode_outputs(dcn.train())
    assert not torch.equal(changed["vqa"][0], expected["vqa.logits"])
