"""Words outside the vocabulary: the tokenizer names them, predictors and pipelines report them."""

from __future__ import annotations

import logging

import pytest
from transformers import pipeline

from hierarchical_vl.pipelines import (
    PIPELINE_TASKS,
    GroundingPredictor,
    RetrievalPredictor,
    VQAPredictor,
    register_pipelines,
)


@pytest.fixture(scope="module", autouse=True)
def _registered():
    register_pipelines()


def test_tokenizer_names_the_words_read_as_unk(tokenizer, processor):
    # "zebra" and "xylophone" are not in the vocabulary of TEXTS; "Cat" is "cat" after lowercasing.
    text = "is the Zebra on the Cat ? is the zebra on the xylophone or the zebra ?"
    assert tokenizer.unknown_words(text) == ["Zebra", "zebra", "xylophone", "or"]  # as written, each once
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids.count(tokenizer.unk_token_id) == 5
    assert processor.unknown_words(text) == tokenizer.unknown_words(text)
    assert tokenizer.unknown_words("what color is the cat ?") == []


def test_vqa_predictor_and_pipeline_report_unknown_words(checkpoints, store, caplog):
    predictor = VQAPredictor.from_pretrained(checkpoints["vqa"], feature_store=store)
    plain = predictor.predict("what color is the zebra ?", "img0", top_k=2)
    with caplog.at_level(logging.WARNING, logger="hierarchical_vl.pipelines"):
        result = predictor.predict("what color is the zebra ?", "img0", top_k=2, return_unknown_words=True)
    assert result == {"answers": plain, "unknown_words": ["zebra"]}
    assert "zebra" in caplog.text and "<unk>" in caplog.text
    both = predictor.predict("is there a red ball ?", "img1", return_attention=True, return_unknown_words=True)
    assert both["unknown_words"] == [] and "attention" in both

    pipe = pipeline(PIPELINE_TASKS["vqa"], model=str(checkpoints["vqa"]), feature_store=store, device="cpu")
    batch = pipe(
        [
            {"question": "is the okapi red ?", "image_id": "img0"},
            {"question": "is there a red ball ?", "image_id": "img2"},
        ],
        batch_size=2,
        return_unknown_words=True,
    )
    assert [item["unknown_words"] for item in batch] == [["okapi"], []]


def test_retrieval_and_grounding_report_unknown_words(checkpoints, store):
    retrieval = RetrievalPredictor.from_pretrained(checkpoints["retrieval"], feature_store=store)
    explained = retrieval.explain("img1", "a black okapi sits on a red mat")
    assert explained["unknown_words"] == ["okapi"]
    captions = ["a black cat sits on a red mat", "a zebra play with a ball"]
    ranked = retrieval.pipeline({"image": "img1", "captions": captions}, return_unknown_words=True)
    assert ranked["unknown_words"] == [[], ["zebra"]]
    assert sorted(item["caption"] for item in ranked["ranking"]) == sorted(captions)
    matrix = retrieval.pipeline({"images": ["img0", "img1"], "captions": captions}, return_unknown_words=True)
    assert len(matrix["scores"]) == 2 and matrix["unknown_words"] == [[], ["zebra"]]

    grounding = GroundingPredictor.from_pretrained(checkpoints["grounding"], feature_store=store)
    caption = "a black okapi sits on a red mat"
    plain = grounding.predict(caption, "img1", ["a black okapi", "a red mat"])
    result = grounding.predict(caption, "img1", ["a black okapi", "a red mat"], return_unknown_words=True)
    assert result == {"phrases": plain, "unknown_words": ["okapi"]}
