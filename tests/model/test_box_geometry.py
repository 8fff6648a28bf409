"""The box-geometry extension (``config.use_box_embedding``): the five numbers each region gets, padding, that
the paper's model ignores boxes, and that models written by version 0.1.0 with the option on behave as before."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from hierarchical_vl import HierarchicalVLConfig, HierarchicalVLForVisualQuestionAnswering
from hierarchical_vl.layers_hierarchical_vl import HierarchicalVLImageEncoder, box_geometry
from hierarchical_vl.processing_hierarchical_vl import pad_regions, region_inputs

FIXTURE_CODE = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoint_v0_1" / "multitask"


def _batch(feature_dim: int = 20):
    """Two images: a 640 x 480 one with two regions and a 500 x 400 one with one region (so one padding row)."""
    rng = np.random.default_rng(0)
    features = [rng.random((2, feature_dim), dtype=np.float32), rng.random((1, feature_dim), dtype=np.float32)]
    boxes = [
        np.array([[64, 48, 320, 240], [0, 0, 640, 480]], np.float32),
        np.array([[100, 40, 350, 240]], np.float32),
    ]
    padded, padded_boxes, counts = pad_regions(features, boxes)
    return region_inputs(padded, counts, padded_boxes, [(640, 480), (500, 400)])


def test_geometry_of_hand_made_boxes_and_padding():
    geometry = box_geometry(_batch()["region_boxes"])  # (2, 2, 5)
    expected = torch.tensor(
        [
            [[0.1, 0.1, 0.5, 0.5, 0.16], [0.0, 0.0, 1.0, 1.0, 1.0]],
            [[0.2, 0.1, 0.7, 0.6, 0.25], [0.0, 0.0, 0.0, 0.0, 0.0]],  # the padding region: zeros
        ]
    )
    torch.testing.assert_close(geometry, expected, rtol=0, atol=1e-6)


def test_box_projection_reads_the_geometry():
    """The encoder adds ``W_box g + b`` to the projected features before the L2 normalisation (brute force)."""
    torch.manual_seed(0)
    encoder = HierarchicalVLImageEncoder(HierarchicalVLConfig.from_preset("tiny", use_box_embedding=True))
    inputs = _batch()
    features, boxes = inputs["region_features"], inputs["region_boxes"]
    out = encoder(features, boxes)
    for b in range(2):
        for t in range(2):
            x1, y1, x2, y2 = boxes[b, t].tolist()
            g = torch.tensor([x1, y1, x2, y2, (x2 - x1) * (y2 - y1)])
            v = encoder.projection.weight @ features[b, t] + encoder.projection.bias
            v = v + encoder.box_projection.weight @ g + encoder.box_projection.bias
            torch.testing.assert_close(out[b, t], v / v.norm(), rtol=0, atol=1e-6)


def _vqa_inputs(config):
    generator = torch.Generator().manual_seed(1)
    inputs = _batch(config.region_feature_dim)
    return {
        "input_ids": torch.randint(2, config.vocab_size, (2, 5), generator=generator),
        "attention_mask": torch.ones(2, 5, dtype=torch.long),
        "region_features": inputs["region_features"],
        "region_mask": inputs["region_mask"],
    }, inputs["region_boxes"]


@pytest.mark.parametrize("use_box_embedding", [False, True])
def test_outputs_change_with_the_boxes_only_when_the_option_is_on(use_box_embedding):
    config = HierarchicalVLConfig.from_preset("tiny", use_box_embedding=use_box_embedding)
    torch.manual_seed(0)
    model = HierarchicalVLForVisualQuestionAnswering(config).eval()
    inputs, boxes = _vqa_inputs(config)
    moved = boxes.clone()
    moved[0, 0] = torch.tensor([0.5, 0.5, 0.9, 0.9])  # a real region elsewhere
    padding = boxes.clone()
    padding[1, 1] = torch.tensor([0.3, 0.3, 0.6, 0.6])  # a padding region: masked whatever its box
    with torch.no_grad():
        base = model(**inputs, region_boxes=boxes).logits
        after_move = model(**inputs, region_boxes=moved).logits
        after_padding = model(**inputs, region_boxes=padding).logits
    torch.testing.assert_close(after_padding, base, rtol=0, atol=1e-6)
    if use_box_embedding:
        assert (after_move[0] - base[0]).abs().max() > 1e-4
        torch.testing.assert_close(after_move[1], base[1], rtol=0, atol=1e-6)  # other images untouched
    else:
        assert torch.equal(after_move, base)
        with torch.no_grad():
            assert torch.equal(model(**inputs).logits, base)  # boxes are optional and unused


def test_paper_and_default_configurations_leave_the_option_off():
    assert HierarchicalVLConfig().use_box_embedding is False
    assert HierarchicalVLConfig.from_preset("paper").use_box_embedding is False
    assert HierarchicalVLConfig.from_preset("demo").use_box_embedding is False


@pytest.fixture()
def old_code():
    """The modeling code of version 0.1.0 (the checkpoint fixture's remote code), imported as a package."""
    name = "hierarchical_vl_v0_1"
    package = types.ModuleType(name)
    package.__path__ = [str(FIXTURE_CODE)]
    sys.modules[name] = package
    try:
        yield importlib.import_module(f"{name}.modeling_hierarchical_vl")
    finally:
        for key in [k for k in sys.modules if k == name or k.startswith(f"{name}.")]:
            del sys.modules[key]


def test_models_written_by_v0_1_with_box_embeddings_give_identical_outputs(old_code, tmp_path):
    config = HierarchicalVLConfig.from_preset("tiny", use_box_embedding=True)
    old_config = old_code.HierarchicalVLConfig.from_dict(config.to_dict())
    torch.manual_seed(0)
    old_model = old_code.HierarchicalVLForVisualQuestionAnswering(old_config).eval()
    old_model.save_pretrained(tmp_path)
    model = HierarchicalVLForVisualQuestionAnswering.from_pretrained(tmp_path).eval()
    assert model.config.use_box_embedding is True
    inputs, boxes = _vqa_inputs(config)
    with torch.no_grad():
        old_image = old_model.hierarchical_vl.image_embeddings(inputs["region_features"], boxes)  # (B, T, d)
        assert torch.equal(model.hierarchical_vl.image_embeddings(inputs["region_features"], boxes), old_image)
        expected = old_model(**inputs, region_boxes=boxes).logits
        # the same operations in the same order as the checkpoint compatibility tests require
        torch.testing.assert_close(model(**inputs, region_boxes=boxes).logits, expected, rtol=0, atol=1e-6)
        without_boxes = old_model.hierarchical_vl.image_embeddings(inputs["region_features"], torch.zeros_like(boxes))
    assert (without_boxes - old_image).abs().max() > 1e-4  # the old code's boxes do count
