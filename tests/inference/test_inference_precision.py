"""The CPU inference fast path: int8 / bf16 models close to fp32, in the predictors, pipelines and model card."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from transformers import pipeline

from hierarchical_vl import (
    HierarchicalVLForImageTextRetrieval,
    HierarchicalVLForMultiTask,
    HierarchicalVLForVisualQuestionAnswering,
    optimize_for_inference,
)
from hierarchical_vl.hub import render_model_card, save_for_hub
from hierarchical_vl.loading import load_checkpoint
from hierarchical_vl.pipelines import GroundingPredictor, RetrievalPredictor, VQAPredictor

ROOT = Path(__file__).resolve().parents[2]
# Tolerances on logits of the tiny random model (|logit| ~ 0.1 - 1): int8 quantises weights per tensor and
# activations per call, bf16 keeps 8 bits of mantissa.
TOLERANCE = {"int8": 0.05, "bf16": 0.05}


def _inputs(config, batch_size: int = 3, words: int = 6, regions: int = 5) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor([words, words - 2, 3])[:batch_size]
    mask = (torch.arange(words) < lengths[:, None]).long()  # (B, N) right-padded
    return {
        "input_ids": torch.randint(1, config.vocab_size, (batch_size, words), generator=generator) * mask,
        "attention_mask": mask,
        "region_features": torch.randn(batch_size, regions, config.region_feature_dim, generator=generator),
        "phrase_spans": torch.tensor([[[0, 1], [2, 2]]] * batch_size),  # (B, H, 2)
    }


@pytest.fixture
def multitask(tiny_config):
    torch.manual_seed(0)
    return HierarchicalVLForMultiTask(tiny_config).eval()


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_every_task_close_to_fp32_with_the_same_top1(multitask, precision):
    inputs = _inputs(multitask.config)
    optimized = optimize_for_inference(multitask, precision)
    assert optimized is not multitask and optimized.inference_precision == precision
    assert not hasattr(multitask, "inference_precision")  # the float32 original is left as it was
    with torch.inference_mode():
        for task in ("vqa", "retrieval", "grounding"):
            given = inputs if task == "grounding" else {k: v for k, v in inputs.items() if k != "phrase_spans"}
            expected = multitask.forward_task(task, **given).logits
            got = optimized.forward_task(task, **given).logits
            assert got.dtype == torch.float32
            valid = expected > torch.finfo(expected.dtype).min  # grounding's masked regions stay masked
            assert torch.allclose(got[valid], expected[valid], atol=TOLERANCE[precision]), task
            assert torch.equal(got.argmax(-1), expected.argmax(-1)), task


def test_int8_quantises_linear_and_lstm_and_keeps_the_embeddings_and_the_answer_classifier(multitask):
    optimized = optimize_for_inference(multitask, "int8")
    encoder = optimized.hierarchical_vl
    assert type(encoder.text_embeddings.lstm).__module__.startswith("torch.ao.nn.quantized.dynamic")
    assert callable(encoder.encoder.layers[0].text_fusion.weight)  # weight() is a method there
    assert encoder.text_embeddings.word_embeddings.weight.dtype == torch.float32
    float32 = [name for name, module in optimized.named_modules() if type(module) is torch.nn.Linear]
    assert float32 and all(".classifier." in name for name in float32), float32
    classifier = optimized.vqa_decoder.classifier
    assert all(type(module) is not torch.nn.Linear or module.weight.dtype == torch.float32 for module in classifier)


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_pair_scoring_matches_the_forward_pass(tiny_config, precision):
    """The split first-layer terms read the quantised (or bf16) fusion weights: score_pairs = forward."""
    torch.manual_seed(0)
    model = optimize_for_inference(HierarchicalVLForImageTextRetrieval(tiny_config).eval(), precision)
    inputs = _inputs(tiny_config)
    text = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
    images = {"region_features": inputs["region_features"]}
    index = torch.arange(3)
    pairs = model.score_pairs(text, images, index, index)
    with torch.inference_mode():
        forward = model(**{k: v for k, v in inputs.items() if k != "phrase_spans"}).logits
    assert pairs.dtype == torch.float32
    assert torch.allclose(pairs, forward, atol=TOLERANCE[precision])


def test_fp32_returns_the_model_and_bad_precisions_are_named(multitask):
    assert optimize_for_inference(multitask, "fp32") is multitask and multitask.inference_precision == "fp32"
    with pytest.raises(ValueError, match=r"precision must be one of \['fp32', 'bf16', 'int8'\], got 'fp16'"):
        optimize_for_inference(multitask, "fp16")
    int8 = optimize_for_inference(HierarchicalVLForMultiTask(multitask.config), "int8")
    assert optimize_for_inference(int8, "int8") is int8
    with pytest.raises(ValueError, match="already runs in int8"):
        optimize_for_inference(int8, "bf16")


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_predictors_and_pipelines_take_the_precision(checkpoints, store, precision):
    reference = VQAPredictor.from_pretrained(checkpoints["vqa"], feature_store=store)
    fast = VQAPredictor.from_pretrained(checkpoints["vqa"], feature_store=store, precision=precision)
    assert fast.model.inference_precision == precision
    expected = reference.predict("what color is the cat ?", "img0", top_k=3)
    got = fast.predict("what color is the cat ?", "img0", top_k=3)
    assert got[0]["answer"] == expected[0]["answer"]
    assert got[0]["score"] == pytest.approx(expected[0]["score"], abs=0.02)

    vqa = pipeline("hierarchical-vl-vqa", model=str(checkpoints["vqa"]), feature_store=store, precision=precision)
    assert vqa.model.inference_precision == precision
    assert vqa({"question": "what color is the cat ?", "image_id": "img0"}, top_k=1)[0]["answer"] == got[0]["answer"]

    retrieval = RetrievalPredictor.from_pretrained(checkpoints["retrieval"], feature_store=store, precision=precision)
    scores = retrieval.score(["img0", "img1"], ["a black cat sits on a red mat", "a man rides a horse"])
    assert scores.shape == (2, 2)
    grounding = GroundingPredictor.from_pretrained(checkpoints["grounding"], feature_store=store, precision=precision)
    assert grounding.model.inference_precision == precision
    with pytest.raises(ValueError, match="precision must be one of"):
        VQAPredictor.from_pretrained(checkpoints["vqa"], feature_store=store, precision="int4")


def test_the_card_states_the_precision_and_int8_saves_are_refused(checkpoints, processor, tmp_path, tiny_config):
    model = load_checkpoint(checkpoints["vqa"])
    assert "Inference precision" not in render_model_card(model)
    int8 = optimize_for_inference(model, "int8")
    assert "| Inference precision | int8: int8 dynamic quantisation" in render_model_card(int8)
    with pytest.raises(ValueError, match="int8 model .* cannot be saved.*Save the float32 model"):
        save_for_hub(int8, processor, tmp_path / "int8")
    assert not list((tmp_path / "int8").glob("*")) if (tmp_path / "int8").exists() else True

    bf16 = optimize_for_inference(model, "bf16")
    written = save_for_hub(bf16, processor, tmp_path / "bf16")
    assert "README.md" in written
    card = (tmp_path / "bf16" / "README.md").read_text("utf-8")
    assert "| Inference precision | bf16: bfloat16 weights" in card
    assert HierarchicalVLForVisualQuestionAnswering.from_pretrained(tmp_path / "bf16").dtype == torch.bfloat16
    reloaded = HierarchicalVLForVisualQuestionAnswering.from_pretrained(tmp_path / "bf16", dtype=torch.float32)
    assert reloaded.dtype == torch.float32  # the saved bf16 values, exactly, in a float32 model
    for name, tensor in bf16.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], tensor.float()), name


def test_bench_cpu_inference_smoke(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_cpu_inference", ROOT / "benchmarks" / "bench_cpu_inference.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    output = tmp_path / "cpu.json"
    figures = bench.main(["--smoke", "--no-compile", "--threads", "1", "--json", str(output)])
    assert "speed-up" in capsys.readouterr().out
    assert json.loads(output.read_text()) == figures
    assert set(figures["variants"]) == {"fp32", "bf16", "int8"} and not figures["failed"]
    assert figures["variants"]["fp32"]["speedup"] == 1.0
    for name in ("bf16", "int8"):
        values = figures["variants"][name]
        assert values["same_top1"] and 0 < values["max_logit_difference"] < 0.05
        assert values["speedup"] == pytest.approx(figures["variants"]["fp32"]["latency_ms"] / values["latency_ms"])


def test_bench_quantization_agreement_smoke(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "bench_quantization_agreement", ROOT / "benchmarks" / "bench_quantization_agreement.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    output = tmp_path / "agreement.json"
    figures = bench.main(["--smoke", "--json", str(output)])
    assert "VQA top-1" in capsys.readouterr().out
    assert json.loads(output.read_text()) == figures
    reference = figures["precisions"]["fp32"]
    assert all(reference[f"{name}_top1_agreement"] == 100.0 for name in ("vqa", "i2t", "t2i", "grounding"))
    assert reference["vqa_questions"] > 0 and reference["grounding_phrases"] > 0
    for precision in ("int8", "bf16"):
        values = figures["precisions"][precision]
        assert 50.0 <= values["vqa_top1_agreement"] <= 100.0
        assert set(values["metrics"]) == set(reference["metrics"])
