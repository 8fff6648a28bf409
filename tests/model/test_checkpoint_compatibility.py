"""Checkpoints, processors and training arguments written by version 0.1.0 keep loading with identical outputs.

The fixture (``tests/fixtures/checkpoint_v0_1``) was written by the old code (``make_checkpoint_v0_1.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hierarchical_vl import (
    HierarchicalVLForImageTextRetrieval,
    HierarchicalVLForMultiTask,
    HierarchicalVLForVisualGrounding,
    HierarchicalVLForVisualQuestionAnswering,
    HierarchicalVLModel,
    HierarchicalVLProcessor,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoint_v0_1"
HEADS = {
    "vqa": HierarchicalVLForVisualQuestionAnswering,
    "retrieval": HierarchicalVLForImageTextRetrieval,
    "grounding": HierarchicalVLForVisualGrounding,
}
COMMON = ("input_ids", "attention_mask", "region_features", "region_mask")


@pytest.fixture(scope="module")
def expected():
    return load_file(FIXTURE / "expected_outputs.safetensors")


def _inputs(expected, task):
    keys = COMMON + (("phrase_spans", "phrase_mask") if task == "grounding" else ())
    return {key: expected[f"input.{key}"] for key in keys}


def _check(output, expected, task, layer):
    # float32 on the same kind of CPU: the refactored code computes the same operations in the same order.
    torch.testing.assert_close(output.logits, expected[f"{task}.logits"], rtol=0, atol=1e-6)
    if f"{task}.text_attention" in expected:
        torch.testing.assert_close(output.text_attention, expected[f"{task}.text_attention"], rtol=0, atol=1e-6)
        torch.testing.assert_close(output.image_attention, expected[f"{task}.image_attention"], rtol=0, atol=1e-6)
    torch.testing.assert_close(
        output.text_hidden_states[layer], expected[f"{task}.text_hidden_state"], rtol=0, atol=1e-6
    )
    torch.testing.assert_close(
        output.image_hidden_states[layer], expected[f"{task}.image_hidden_state"], rtol=0, atol=1e-6
    )
    word_to_region, region_to_word = output.attentions[-1]
    torch.testing.assert_close(word_to_region, expected[f"{task}.word_to_region"], rtol=0, atol=1e-6)
    torch.testing.assert_close(region_to_word, expected[f"{task}.region_to_word"], rtol=0, atol=1e-6)


def _run(model, task, inputs):
    if isinstance(model, HierarchicalVLForMultiTask):
        return model(**inputs, task=task, output_hidden_states=True, output_attentions=True)
    return model(**inputs, output_hidden_states=True, output_attentions=True)


@pytest.mark.parametrize("task", sorted(HEADS))
def test_old_multitask_checkpoint_gives_identical_outputs(expected, task):
    model = HierarchicalVLForMultiTask.from_pretrained(FIXTURE / "multitask").eval()
    with torch.no_grad():
        output = _run(model, task, _inputs(expected, task))
    _check(output, expected, task, model.config.task_layers[task])


@pytest.mark.parametrize("task", sorted(HEADS))
def test_each_head_loads_out_of_the_old_multitask_checkpoint(expected, task):
    head = HEADS[task].from_pretrained(FIXTURE / "multitask").eval()
    multitask = HierarchicalVLForMultiTask.from_pretrained(FIXTURE / "multitask")
    for name, value in head.state_dict().items():
        assert torch.equal(value, multitask.state_dict()[name]), name
    with torch.no_grad():
        output = _run(head, task, _inputs(expected, task))
    _check(output, expected, task, head.config.task_layers[task])


def test_old_checkpoint_encoder_and_pair_scores(expected):
    encoder = HierarchicalVLModel.from_pretrained(FIXTURE / "multitask").eval()
    with torch.no_grad():
        encoded = encoder(**_inputs(expected, "vqa"), num_layers=encoder.config.task_layers["vqa"])
    torch.testing.assert_close(encoded.text_last_hidden_state, expected["vqa.text_hidden_state"], rtol=0, atol=1e-6)
    model = HierarchicalVLForImageTextRetrieval.from_pretrained(FIXTURE / "multitask").eval()
    text = {key: expected[f"input.{key}"] for key in ("input_ids", "attention_mask")}
    image = {key: expected[f"input.{key}"] for key in ("region_features", "region_mask")}
    logits = model.score_pairs(text, image, expected["input.text_index"], expected["input.image_index"])
    torch.testing.assert_close(logits, expected["retrieval.pair_logits"], rtol=0, atol=1e-5)
    # The pair scores are the model's own forward pass on the gathered pairs.
    t, i = expected["input.text_index"], expected["input.image_index"]
    with torch.no_grad():
        direct = model(
            input_ids=text["input_ids"][t],
            attention_mask=text["attention_mask"][t],
            region_features=image["region_features"][i],
            region_mask=image["region_mask"][i],
        ).logits
    torch.testing.assert_close(logits, direct, rtol=0, atol=1e-5)


def test_old_processor_and_tokenizer_load():
    processor = HierarchicalVLProcessor.from_pretrained(FIXTURE / "multitask")
    assert (processor.max_regions, processor.max_words) == (5, 6)
    batch = processor(["what colour is the cube ?"], [torch.zeros(7, 20)])
    assert batch["input_ids"].shape == (1, 6)  # the old word cap is kept
    assert batch["region_features"].shape == (1, 5, 20)
    assert processor.tokenizer.convert_ids_to_tokens(batch["input_ids"][0].tolist())[:3] == [
        "what",
        "colour",
        "is",
    ]


def test_old_training_arguments_load():
    from hierarchical_vl.training.arguments import load_training_arguments

    arguments = load_training_arguments(FIXTURE / "training_args.yaml")
    assert arguments.output_dir == "outputs/v0_1"
    assert arguments.task_layers == {"vqa": 3}
    assert [stage.tasks for stage in arguments.curriculum][-1] == ["grounding", "retrieval", "vqa"]
