"""The training path (encoded dataset + collator) and the inference path (processor) build the same model inputs.

For the same examples of each task -- VQA questions, caption-image pairs (matching and not), grounding sentences
with their phrases -- read from a small generated corpus, both paths give the same keys the model reads, the same
values and the same dtypes after the model's casts, and the model gives the same outputs on both.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hierarchical_vl import HierarchicalVLConfig, HierarchicalVLProcessor, HierarchicalVLTokenizer
from hierarchical_vl.data import build_vqa_answer_vocab, generate_demo_corpus
from hierarchical_vl.evaluation import CorpusLayout, open_region_store
from hierarchical_vl.processing_hierarchical_vl import char_spans_to_token_spans, tokenize_texts
from hierarchical_vl.tasks import TASK_SPECS, task_spec

FEATURE_DIM = 20


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("input_paths")
    paths = generate_demo_corpus(
        root / "corpus",
        num_images=12,
        seed=5,
        feature_dim=FEATURE_DIM,
        min_regions=4,
        max_regions=12,
        questions_per_image=3,
    )
    layout = CorpusLayout(root=paths.root)
    answers = build_vqa_answer_vocab(paths.vqa_annotations["train2014"], min_count=1)
    rows = {task: layout.read_split(task, "train", answer_vocab=answers) for task in TASK_SPECS}
    texts = [text for task, split in rows.items() for text in split[task_spec(task).text_field]]
    tokenizer = HierarchicalVLTokenizer.from_texts(texts)
    # Caps below the corpus's longest texts and most regions, so that both paths must cut the same way; boxes are
    # embedded, so that region_boxes is a model input too.
    config = HierarchicalVLConfig.from_preset(
        "tiny",
        vocab_size=len(tokenizer),
        region_feature_dim=FEATURE_DIM,
        use_box_embedding=True,
        id2label=dict(enumerate(answers)),
        max_regions=7,
        max_question_words=5,
        max_caption_words=12,
    )
    store = open_region_store(paths.features_tsv, root / "store", progress=False)
    return {"rows": rows, "tokenizer": tokenizer, "config": config, "store": store}


def _processor_inputs(corpus, task, texts, image_ids, phrase_char_spans=None):
    store, config = corpus["store"], corpus["config"]
    images = [store[image_id] for image_id in image_ids]
    processor = HierarchicalVLProcessor.from_config(corpus["tokenizer"], config)
    return processor(
        text=texts,
        region_features=[image["features"] for image in images],
        region_boxes=[image["boxes"] for image in images],
        image_sizes=[(image["width"], image["height"]) for image in images],
        phrase_char_spans=phrase_char_spans,
        max_words=task_spec(task).max_words(config),
    )


def _model_dtype(name, tensor, config):
    # The model casts region features (float16 in the store, float32 from the processor) to its own dtype.
    return tensor.to(torch.float32) if name == "region_features" else tensor


def _assert_same_inputs(task, collated, processed, config):
    names = task_spec(task).input_names
    assert set(names) <= set(collated) and set(names) <= set(processed)
    for name in names:
        a, b = _model_dtype(name, collated[name], config), _model_dtype(name, processed[name], config)
        assert a.dtype == b.dtype, name
        assert a.shape == b.shape, name
        assert torch.equal(a, b), name
    model = task_spec(task).head_class(config).eval()
    with torch.no_grad():
        first = model.forward_task(task, **{name: collated[name] for name in names}).logits
        second = model.forward_task(task, **{name: processed[name] for name in names}).logits
    assert torch.equal(first, second)


def test_vqa_questions(corpus):
    spec, config = task_spec("vqa"), corpus["config"]
    dataset = spec.encode(corpus["rows"]["vqa"], corpus["store"], corpus["tokenizer"], config)
    index = [0, 4, 9, 13]
    collated = spec.make_collator(dataset, config, include_metadata=False)(index)
    assert "metadata" not in collated and collated["input_ids"].shape[1] <= config.max_question_words
    processed = _processor_inputs(
        corpus, "vqa", [dataset.texts[i] for i in index], [dataset.image_ids[i] for i in index]
    )
    _assert_same_inputs("vqa", collated, processed, config)


def test_caption_image_pairs(corpus):
    spec, config = task_spec("retrieval"), corpus["config"]
    dataset = spec.encode(corpus["rows"]["retrieval"], corpus["store"], corpus["tokenizer"], config)
    assert dataset.lengths.max() == config.max_caption_words  # some caption is cut
    captions = np.array([0, 7, 12, 3])
    images = np.array([dataset.caption_image[0], dataset.caption_image[12], dataset.caption_image[12], 1])
    collated = spec.make_collator(dataset, config, include_metadata=False).pairs(captions, images)
    assert collated["labels"].tolist()[:2] == [1.0, 0.0]
    processed = _processor_inputs(
        corpus, "retrieval", [dataset.texts[i] for i in captions], [dataset.images[i] for i in images]
    )
    _assert_same_inputs("retrieval", collated, processed, config)


def test_grounding_sentences_with_phrases(corpus):
    spec, config = task_spec("grounding"), corpus["config"]
    rows = corpus["rows"]["grounding"]
    dataset = spec.encode(rows, corpus["store"], corpus["tokenizer"], config)
    # Sentences whose grounded phrases all lie within the word cap (the dataset leaves cut phrases out, the
    # processor keeps their column with phrase_mask 0).
    row_of = {(str(row["image_id"]), row["sentence_index"]): row for row in rows}
    eligible = {}
    for index in range(len(dataset)):
        row = row_of[(str(dataset.image_ids[index]), int(dataset.sentence_indices[index]))]
        grounded = [(p["char_start"], p["char_end"]) for p in row["phrases"] if p["box_status"] == "box" and p["boxes"]]
        _, offsets = tokenize_texts(
            corpus["tokenizer"], [row["sentence"]], config.max_caption_words, return_offsets=True
        )
        if None not in char_spans_to_token_spans(offsets[0], grounded):
            eligible[index] = grounded
    # Three sentences, and one with another number of phrases (so that phrase padding is compared too).
    chosen = list(eligible)[:3]
    chosen += [i for i in eligible if len(eligible[i]) != len(eligible[chosen[0]])][:1]
    spans = [eligible[i] for i in chosen]
    assert len(chosen) == 4 and len({len(s) for s in spans}) > 1
    collated = spec.make_collator(dataset, config, include_metadata=False)(chosen)
    processed = _processor_inputs(
        corpus,
        "grounding",
        [dataset.texts[i] for i in chosen],
        [dataset.image_ids[i] for i in chosen],
        phrase_char_spans=spans,
    )
    _assert_same_inputs("grounding", collated, processed, config)
