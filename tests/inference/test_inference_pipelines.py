"""Predictors and transformers pipelines against the model computed directly."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from hierarchical_vl import (
    HierarchicalVLForImageTextRetrieval,
    HierarchicalVLForMultiTask,
    HierarchicalVLForVisualGrounding,
    HierarchicalVLForVisualQuestionAnswering,
    data,
    pipelines,
)
from hierarchical_vl.data import image_regions
from hierarchical_vl.pipelines import (
    PIPELINE_TASKS,
    GroundingPipeline,
    GroundingPredictor,
    ImageRegions,
    RetrievalPipeline,
    RetrievalPredictor,
    UnknownImageError,
    VQAPipeline,
    VQAPredictor,
    register_pipelines,
    resolve_image,
)
from hierarchical_vl.tasks import TASK_SPECS

from .conftest import ANSWERS, MAX_REGIONS

QUESTION = "what color is the cat ?"
CAPTIONS = [
    "a black cat sits on a red mat",
    "two dogs play with a ball in the park",
    "a man rides a horse on the beach",
    "is there a red ball ?",
]


@pytest.fixture(scope="module", autouse=True)
def _registered():
    register_pipelines()


def _pipe(task, checkpoint, store):
    return pipeline(PIPELINE_TASKS[task], model=str(checkpoint), feature_store=store, device="cpu")


def _direct_vqa_scores(model, processor, record, question, multitask=False):
    inputs = processor(text=question, region_features=record["features"], max_words=model.config.max_question_words)
    with torch.no_grad():
        output = model(task="vqa", **inputs) if multitask else model(**inputs)
    return torch.sigmoid(output.logits[0]).numpy()  # (A,)


def test_pipelines_are_registered():
    register_pipelines()  # idempotent
    supported = PIPELINE_REGISTRY.get_supported_tasks()
    assert set(PIPELINE_TASKS.values()) <= set(supported)


@pytest.mark.parametrize("kind", ["vqa", "multitask"])
def test_vqa_pipeline_top_k_equals_sorted_sigmoid_of_logits(kind, checkpoints, processor, store):
    pipe = _pipe("vqa", checkpoints[kind], store)
    model_class = HierarchicalVLForMultiTask if kind == "multitask" else HierarchicalVLForVisualQuestionAnswering
    assert type(pipe.model) is model_class
    result = pipe({"question": QUESTION, "image_id": "img1"}, top_k=3)

    model = model_class.from_pretrained(checkpoints[kind]).eval()
    scores = _direct_vqa_scores(model, processor, store["img1"], QUESTION, multitask=kind == "multitask")
    order = np.argsort(-scores)[:3]
    assert [item["answer"] for item in result] == [ANSWERS[i] for i in order]
    np.testing.assert_allclose([item["score"] for item in result], scores[order], rtol=1e-6, atol=1e-7)


def test_vqa_inputs_in_every_form_agree(checkpoints, store):
    pipe = _pipe("vqa", checkpoints["vqa"], store)
    record = store["img0"]
    expected = pipe({"question": QUESTION, "image_id": "img0"}, top_k=4)
    forms = [
        pipe({"question": QUESTION, "image": "img0"}, top_k=4),
        pipe({"question": QUESTION, "image": record}, top_k=4),
        pipe(
            {
                "question": QUESTION,
                "region_features": record["features"],
                "region_boxes": record["boxes"],
                "image_size": (record["width"], record["height"]),
            },
            top_k=4,
        ),
        pipe(question=QUESTION, image=ImageRegions(torch.as_tensor(record["features"])), top_k=4),
        VQAPredictor.from_pretrained(checkpoints["vqa"], feature_store=store).predict(QUESTION, "img0", top_k=4),
        VQAPredictor(pipe.model, pipe.processor).predict(QUESTION, record, top_k=4),
    ]
    for result in forms:
        assert result == expected


def test_vqa_lists_and_pipeline_batching(checkpoints, store):
    pipe = _pipe("vqa", checkpoints["vqa"], store)
    inputs = [{"question": QUESTION, "image_id": f"img{i}"} for i in range(4)] + [
        {"question": "how many dogs are on the sofa ?", "image_id": "img3"}
    ]
    one_by_one = [pipe(item, top_k=2) for item in inputs]
    for batched in (pipe(inputs, top_k=2), pipe(inputs, top_k=2, batch_size=3)):
        assert len(batched) == len(inputs)
        for got, want in zip(batched, one_by_one):
            assert [a["answer"] for a in got] == [a["answer"] for a in want]
            np.testing.assert_allclose([a["score"] for a in got], [a["score"] for a in want], atol=1e-5)
    predictor = VQAPredictor(pipe.model, pipe.processor, store)
    batch = predictor.predict_batch(
        [item["question"] for item in inputs], [item["image_id"] for item in inputs], top_k=2, batch_size=2
    )
    for got, want in zip(batch, one_by_one):
        np.testing.assert_allclose([a["score"] for a in got], [a["score"] for a in want], atol=1e-5)


def test_vqa_attention_is_returned_and_normalised(checkpoints, store):
    pipe = _pipe("vqa", checkpoints["vqa"], store)
    result = pipe({"question": QUESTION, "image_id": "img3"}, top_k=1, return_attention=True)
    attention = result["attention"]
    assert result["answers"][0]["answer"] in ANSWERS
    assert attention["words"] == ["what", "color", "is", "the", "cat", "?"]
    assert len(attention["word_weights"]) == 6
    assert len(attention["region_weights"]) == MAX_REGIONS == len(attention["boxes"])  # capped at 8 of 10
    assert sum(attention["word_weights"]) == pytest.approx(1.0, abs=1e-5)
    assert sum(attention["region_weights"]) == pytest.approx(1.0, abs=1e-5)
    assert attention["image_size"] == [64.0, 48.0]


def test_predictor_uses_eval_mode_and_restores_training(checkpoints, store):
    model = HierarchicalVLForVisualQuestionAnswering.from_pretrained(checkpoints["vqa"]).train()
    predictor = VQAPredictor.from_pretrained(checkpoints["vqa"], feature_store=store)
    expected = predictor.predict(QUESTION, "img2")
    other = VQAPredictor(model, predictor.processor, store)
    assert other.predict(QUESTION, "img2") == expected == other.predict(QUESTION, "img2")
    assert model.training


def _direct_pair_scores(model, processor, captions, records):
    text_inputs = dict(processor(text=captions, max_words=model.config.max_caption_words))
    image_inputs = dict(processor(region_features=[record["features"] for record in records]))
    image_index = torch.arange(len(records)).repeat_interleave(len(captions))
    text_index = torch.arange(len(captions)).repeat(len(records))
    logits = model.score_pairs(text_inputs, image_inputs, text_index, image_index)
    return torch.sigmoid(logits).numpy()


@pytest.mark.parametrize("kind", ["retrieval", "multitask"])
def test_retrieval_ranking_equals_sorted_score_pairs(kind, checkpoints, processor, store):
    pipe = _pipe("retrieval", checkpoints[kind], store)
    model_class = HierarchicalVLForMultiTask if kind == "multitask" else HierarchicalVLForImageTextRetrieval
    model = model_class.from_pretrained(checkpoints[kind]).eval()

    ranked = pipe({"image_id": "img1", "captions": CAPTIONS})
    scores = _direct_pair_scores(model, processor, CAPTIONS, [store["img1"]])
    order = np.argsort(-scores, kind="stable")
    assert [item["index"] for item in ranked] == order.tolist()
    assert [item["caption"] for item in ranked] == [CAPTIONS[i] for i in order]
    np.testing.assert_allclose([item["score"] for item in ranked], scores[order], rtol=1e-6)
    # Another pair batching: the same ranking; scores equal up to float rounding (batch-dependent kernels).
    rebatched = pipe({"image_id": "img1", "captions": CAPTIONS}, top_k=2, batch_size=3)
    assert [item["index"] for item in rebatched] == [item["index"] for item in ranked[:2]]
    assert [item["score"] for item in rebatched] == pytest.approx([item["score"] for item in ranked[:2]], abs=1e-6)

    image_ids = ["img0", "img1", "img2", "img3"]
    ranked_images = pipe({"caption": CAPTIONS[0], "image_ids": image_ids}, batch_size=2)
    scores = _direct_pair_scores(model, processor, CAPTIONS[:1], [store[i] for i in image_ids])
    order = np.argsort(-scores, kind="stable")
    assert [item["image_id"] for item in ranked_images] == [image_ids[i] for i in order]
    np.testing.assert_allclose([item["score"] for item in ranked_images], scores[order], rtol=1e-6)


def test_retrieval_predictor_matrix_and_explain(checkpoints, store):
    predictor = RetrievalPredictor.from_pretrained(checkpoints["retrieval"], feature_store=store)
    matrix = predictor.score(["img0", "img2"], CAPTIONS[:3], batch_size=4)  # (2, 3)
    assert matrix.shape == (2, 3)
    ranked = predictor.rank_captions("img2", CAPTIONS[:3])
    np.testing.assert_allclose(sorted(matrix[1], reverse=True), [item["score"] for item in ranked], rtol=1e-6)
    explained = predictor.explain("img2", ranked[0]["caption"])
    assert explained["score"] == pytest.approx(ranked[0]["score"], abs=1e-5)
    assert len(explained["attention"]["region_weights"]) == 3


@pytest.mark.parametrize("kind", ["grounding", "multitask"])
def test_grounding_best_box_is_argmax_of_logits(kind, checkpoints, processor, store):
    caption = "a black cat sits on a red mat"
    phrases = ["a black cat", "a red mat"]
    pipe = _pipe("grounding", checkpoints[kind], store)
    result = pipe({"caption": caption, "phrases": phrases, "image_id": "img1"}, top_k=2)

    model_class = HierarchicalVLForMultiTask if kind == "multitask" else HierarchicalVLForVisualGrounding
    model = model_class.from_pretrained(checkpoints[kind]).eval()
    record = store["img1"]
    inputs = processor(
        text=caption,
        region_features=record["features"],
        phrase_char_spans=[[(0, 11), (20, 29)]],
        max_words=model.config.max_caption_words,
    )
    with torch.no_grad():
        logits = (model(task="grounding", **inputs) if kind == "multitask" else model(**inputs)).logits[0]  # (H, T)
    assert [entry["phrase"] for entry in result] == phrases
    assert [entry["span"] for entry in result] == [[0, 11], [20, 29]]
    for row, entry in enumerate(result):
        best = int(logits[row].argmax())
        assert entry["boxes"][0]["region"] == best
        assert entry["boxes"][0]["score"] == pytest.approx(float(torch.sigmoid(logits[row, best])), abs=1e-6)
        np.testing.assert_allclose(entry["boxes"][0]["box"], record["boxes"][best])
        assert len(entry["boxes"]) == 2 and entry["boxes"][0]["score"] >= entry["boxes"][1]["score"]

    spans = GroundingPredictor.from_pretrained(checkpoints[kind], feature_store=store).predict(
        caption, "img1", [(0, 11), (20, 29)], top_k=2
    )
    assert spans == result


def test_grounding_phrase_beyond_the_word_cap_gets_no_box(checkpoints, store):
    predictor = GroundingPredictor.from_pretrained(checkpoints["grounding"], feature_store=store)
    caption = "two dogs play with a ball in the park near a man and a horse"  # 14 words, cap 10
    result = predictor.predict(caption, "img0", ["two dogs", "a horse"])
    assert len(result[0]["boxes"]) == 1
    assert result[1]["boxes"] == []


def test_loading_picks_the_class_or_refuses(checkpoints):
    assert type(GroundingPredictor.from_pretrained(checkpoints["multitask"]).model) is HierarchicalVLForMultiTask
    retrieval = RetrievalPredictor.from_pretrained(checkpoints["retrieval"]).model
    assert type(retrieval) is HierarchicalVLForImageTextRetrieval and not retrieval.training
    with pytest.raises(ValueError, match="no grounding decoder"):
        GroundingPredictor.from_pretrained(checkpoints["vqa"])
    with pytest.raises(ValueError, match="no vqa decoder"):
        VQAPredictor.from_pretrained(checkpoints["encoder"])
    with pytest.raises(ValueError, match="no grounding decoder"):
        pipeline(PIPELINE_TASKS["grounding"], model=str(checkpoints["vqa"]), device="cpu")


def test_clear_errors(checkpoints, store):
    vqa = _pipe("vqa", checkpoints["vqa"], store)
    with pytest.raises(ValueError, match="no region features"):
        vqa({"question": QUESTION})
    with pytest.raises(ValueError, match="question is empty"):
        vqa({"question": "   ", "image_id": "img0"})
    with pytest.raises(UnknownImageError, match="image id 'nope' is not in the feature store") as caught:
        vqa({"question": QUESTION, "image_id": "nope"})
    assert isinstance(caught.value, KeyError)
    with pytest.raises(ValueError, match="no feature store"):
        VQAPredictor(vqa.model, vqa.processor).predict(QUESTION, "img0")
    with pytest.raises(ValueError, match="width 5, but this model expects 20"):
        vqa({"question": QUESTION, "region_features": np.zeros((3, 5))})
    with pytest.raises(ValueError, match="has no region"):
        vqa({"question": QUESTION, "region_features": np.zeros((0, 20))})
    with pytest.raises(ValueError, match="has no region features"):
        resolve_image({"boxes": np.zeros((2, 4))})
    with pytest.raises(ValueError, match="the input lacks"):
        vqa({"image_id": "img0"})

    retrieval = _pipe("retrieval", checkpoints["retrieval"], store)
    with pytest.raises(ValueError, match="at least one caption"):
        retrieval({"image_id": "img0", "captions": []})
    with pytest.raises(ValueError, match="caption is empty"):
        retrieval({"image_id": "img0", "captions": ["a cat", ""]})
    with pytest.raises(UnknownImageError):
        retrieval({"caption": "a cat", "image_ids": ["img0", "missing"]})

    grounding = _pipe("grounding", checkpoints["grounding"], store)
    with pytest.raises(ValueError, match="does not occur in the caption"):
        grounding({"caption": "a black cat", "phrases": ["a dog"], "image_id": "img0"})
    with pytest.raises(ValueError, match="non-empty list"):
        grounding({"caption": "a black cat", "phrases": [], "image_id": "img0"})
    with pytest.raises(ValueError, match="not inside the caption"):
        grounding({"caption": "a black cat", "phrases": [(4, 40)], "image_id": "img0"})


def test_pipeline_from_a_model_instance(checkpoints, processor, tokenizer, store, tmp_path):
    model = HierarchicalVLForMultiTask.from_pretrained(checkpoints["multitask"]).eval()
    expected = _pipe("vqa", checkpoints["multitask"], store)({"question": QUESTION, "image_id": "img2"})
    for components in ({"processor": processor}, {"tokenizer": tokenizer}):
        pipe = pipeline(PIPELINE_TASKS["vqa"], model=model, feature_store=store, device="cpu", **components)
        assert pipe({"question": QUESTION, "image_id": "img2"}) == expected
    with pytest.raises(ValueError, match="HierarchicalVLProcessor .* is needed"):
        pipeline(PIPELINE_TASKS["vqa"], model=model, device="cpu")
    model.save_pretrained(tmp_path / "weights-only")
    with pytest.raises(ValueError, match="processor_config.json and tokenizer.json"):
        pipeline(PIPELINE_TASKS["vqa"], model=str(tmp_path / "weights-only"), device="cpu")


def test_pipeline_and_thin_predictor_give_identical_results(checkpoints, store):
    checkpoint = checkpoints["multitask"]
    vqa = VQAPredictor.from_pretrained(checkpoint, feature_store=store)
    assert isinstance(vqa.pipeline, VQAPipeline) and vqa.feature_store is store
    assert vqa.predict(QUESTION, "img1", top_k=3, return_attention=True) == _pipe("vqa", checkpoint, store)(
        {"question": QUESTION, "image_id": "img1"}, top_k=3, return_attention=True
    )

    retrieval = RetrievalPredictor.from_pretrained(checkpoint, feature_store=store)
    pipe = _pipe("retrieval", checkpoint, store)
    assert isinstance(retrieval.pipeline, RetrievalPipeline)
    ranked = pipe({"image_id": "img0", "captions": CAPTIONS}, top_k=2)
    assert retrieval.rank_captions("img0", CAPTIONS, top_k=2) == ranked
    image_ids = ["img0", "img1", "img3"]
    assert retrieval.rank_images(CAPTIONS[1], image_ids) == pipe({"caption": CAPTIONS[1], "image_ids": image_ids})
    explained = retrieval.explain("img1", CAPTIONS[0])
    pair = {"image_id": "img1", "caption": CAPTIONS[0]}
    assert explained == pipe(pair, return_attention=True, return_unknown_words=True)
    matrix = retrieval.score(image_ids, CAPTIONS, batch_size=5)  # (3, 4)
    assert matrix.dtype == np.float32 and matrix.shape == (3, 4)
    # batch_size 5 against the default: equal up to float rounding (batch-dependent kernels).
    np.testing.assert_allclose(matrix, pipe({"image_ids": image_ids, "captions": CAPTIONS}), rtol=0, atol=1e-6)
    assert explained["score"] == pytest.approx(float(matrix[1, 0]), abs=1e-5)

    grounding = GroundingPredictor.from_pretrained(checkpoint, feature_store=store)
    assert isinstance(grounding.pipeline, GroundingPipeline)
    query = {"caption": CAPTIONS[0], "phrases": ["a black cat", "a red mat"], "image_id": "img2"}
    assert grounding.predict(CAPTIONS[0], "img2", query["phrases"], top_k=2) == _pipe("grounding", checkpoint, store)(
        query, top_k=2
    )


def _count_forwards(model, monkeypatch) -> list[int]:
    """Record the batch size of every forward pass of ``model``."""
    sizes, forward_task = [], model.forward_task

    def counting(task, **inputs):
        sizes.append(int(inputs["input_ids"].shape[0]))
        return forward_task(task, **inputs)

    monkeypatch.setattr(model, "forward_task", counting)
    return sizes


def test_vqa_batches_are_one_forward_pass_each(checkpoints, store, monkeypatch):
    predictor = VQAPredictor.from_pretrained(checkpoints["vqa"], feature_store=store)
    questions = [
        QUESTION,
        "how many dogs are on the sofa ?",
        "is there a red ball ?",
        QUESTION,
        "what color is it ?",
    ]
    images = ["img0", "img3", "img2", "img1", store["img2"]]
    one_by_one = [predictor.predict(q, i, top_k=3, return_attention=True) for q, i in zip(questions, images)]
    sizes = _count_forwards(predictor.model, monkeypatch)
    batched = predictor.predict_batch(questions, images, top_k=3, batch_size=2, return_attention=True)
    assert sizes == [2, 2, 1]
    for got, want in zip(batched, one_by_one):
        assert [a["answer"] for a in got["answers"]] == [a["answer"] for a in want["answers"]]
        scores = [[a["score"] for a in result["answers"]] for result in (got, want)]
        np.testing.assert_allclose(*scores, atol=1e-5)
        assert got["attention"]["words"] == want["attention"]["words"]
        np.testing.assert_allclose(got["attention"]["region_weights"], want["attention"]["region_weights"], atol=1e-5)
    assert predictor.predict_batch([], []) == []
    with pytest.raises(ValueError, match="2 questions but 1 images"):
        predictor.predict_batch([QUESTION, QUESTION], ["img0"])


def test_grounding_lists_are_batched_and_agree_with_one_at_a_time(checkpoints, store, monkeypatch):
    pipe = _pipe("grounding", checkpoints["grounding"], store)
    inputs = [
        {
            "caption": "a black cat sits on a red mat",
            "phrases": ["a black cat", "a red mat"],
            "image_id": "img0",
        },
        {
            "caption": "two dogs play with a ball in the park",
            "phrases": ["two dogs", "a ball", "the park"],
            "image_id": "img3",
        },
        {"caption": "a man rides a horse", "phrases": [(0, 5)], "image_id": "img2"},
    ]
    one_by_one = [pipe(item, top_k=2) for item in inputs]
    sizes = _count_forwards(pipe.model, monkeypatch)
    batched = pipe(inputs, top_k=2, batch_size=3)
    assert sizes == [3]
    for got, want in zip(batched, one_by_one):
        assert [(e["phrase"], e["span"]) for e in got] == [(e["phrase"], e["span"]) for e in want]
        for got_entry, want_entry in zip(got, want):
            assert [b["region"] for b in got_entry["boxes"]] == [b["region"] for b in want_entry["boxes"]]
            np.testing.assert_allclose(
                [b["score"] for b in got_entry["boxes"]], [b["score"] for b in want_entry["boxes"]], atol=1e-5
            )


def test_retrieval_pair_and_matrix_inputs(checkpoints, store):
    pipe = _pipe("retrieval", checkpoints["retrieval"], store)
    matrix = pipe({"images": ["img0", store["img2"]], "captions": CAPTIONS[:3]}, batch_size=4)
    assert np.asarray(matrix).shape == (2, 3)
    pair = pipe(image="img2", caption=CAPTIONS[1])
    assert list(pair) == ["score"] and pair["score"] == pytest.approx(matrix[1][1], abs=1e-5)
    assert pipe({"caption": CAPTIONS[1], "image_ids": "img2"})[0]["image_id"] == "img2"  # one id, not a list
    with pytest.raises(ValueError, match="single pair"):
        pipe({"image_id": "img2", "captions": CAPTIONS}, return_attention=True)
    with pytest.raises(ValueError, match="at least one image"):
        pipe({"caption": CAPTIONS[0], "images": []})
    with pytest.raises(ValueError, match="give 'captions'"):
        pipe({"image_id": "img2"})


def test_parameters_given_to_the_pipeline_or_the_call(checkpoints, store):
    pipe = pipeline(PIPELINE_TASKS["vqa"], model=str(checkpoints["vqa"]), device="cpu")
    assert pipe.feature_store is None
    with pytest.raises(ValueError, match="no feature store"):
        pipe({"question": QUESTION, "image_id": "img0"})
    expected = _pipe("vqa", checkpoints["vqa"], store)({"question": QUESTION, "image_id": "img0"})
    assert pipe({"question": QUESTION, "image_id": "img0"}, feature_store=store) == expected
    short = pipe({"question": QUESTION, "image_id": "img0"}, feature_store=store, max_words=2, return_attention=True)
    assert short["attention"]["words"] == ["what", "color"]
    capped = pipeline(
        PIPELINE_TASKS["vqa"],
        model=str(checkpoints["vqa"]),
        device="cpu",
        feature_store=store,
        max_words=2,
        top_k=1,
    )
    assert capped({"question": QUESTION, "image_id": "img0"}, return_attention=True) == dict(
        short, answers=short["answers"][:1]
    )


def test_parameter_and_model_errors(checkpoints, processor, store):
    vqa = _pipe("vqa", checkpoints["vqa"], store)
    query = {"question": QUESTION, "image_id": "img0"}
    with pytest.raises(TypeError, match=r"unknown parameters \['topk'\]"):
        vqa(query, topk=3)
    with pytest.raises(TypeError, match="unknown parameters"):
        pipeline(PIPELINE_TASKS["vqa"], model=str(checkpoints["vqa"]), device="cpu", featurestore=store)
    for top_k in (0, 1.5):
        with pytest.raises(ValueError, match="top_k must be an integer of at least 1"):
            vqa(query, top_k=top_k)
    with pytest.raises(ValueError, match="max_words must be a positive integer"):
        vqa(query, max_words=0)
    with pytest.raises(TypeError, match="must be a dict"):
        vqa(["what color is the cat ?"])
    with pytest.raises(TypeError, match="question must be a string"):
        vqa({"question": 3, "image_id": "img0"})
    model = HierarchicalVLForImageTextRetrieval.from_pretrained(checkpoints["retrieval"])
    with pytest.raises(ValueError, match="cannot run vqa; use a HierarchicalVLForVisualQuestionAnswering"):
        VQAPipeline(model=model, processor=processor, device="cpu")
    with pytest.raises(ValueError, match="cannot run grounding"):
        GroundingPredictor(model, processor)


def test_task_names_come_from_the_task_registry():
    assert PIPELINE_TASKS == {task: spec.pipeline_id for task, spec in TASK_SPECS.items()}
    for pipeline_class in (VQAPipeline, RetrievalPipeline, GroundingPipeline):
        entry = PIPELINE_REGISTRY.supported_tasks[PIPELINE_TASKS[pipeline_class.model_task]]
        assert entry["impl"] is pipeline_class


def test_image_regions_live_next_to_the_feature_store():
    assert sorted(image_regions.__all__) == ["ImageRegions", "UnknownImageError", "resolve_image"]
    for name in image_regions.__all__:
        assert getattr(data, name) is getattr(pipelines, name) is getattr(image_regions, name)
        assert name in data.__all__ and name in pipelines.__all__
    tree = ast.parse(Path(image_regions.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "collections.abc", "dataclasses", "typing", "numpy", "torch"}
    regions = data.resolve_image({"features": np.ones((2, 20)), "width": 4, "height": 3})
    assert regions.num_regions == 2 and regions.size == (4.0, 3.0) and regions.boxes is None
    assert resolve_image(regions) is regions
