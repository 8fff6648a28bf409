"""Collators: model inputs from annotations joined with the store, with known labels, spans and IoU labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hierarchical_vl import HierarchicalVLTokenizer
from hierarchical_vl.data import (
    EncodedCaptionDataset,
    EncodedGroundingDataset,
    EncodedVQADataset,
    GroundingCollator,
    RegionFeatureStore,
    RegionFeatureStoreWriter,
    RetrievalCollator,
    VQACollator,
    load_flickr30k_entities,
    vqa_soft_score,
)

MODEL_KEYS = {
    "input_ids",
    "attention_mask",
    "region_features",
    "region_mask",
    "region_boxes",
    "labels",
    "metadata",
}


def _check_common(batch, store, image_ids):
    assert batch["input_ids"].dtype == torch.long and batch["attention_mask"].dtype == torch.long
    assert batch["region_features"].dtype == torch.float16 and batch["region_mask"].dtype == torch.long
    assert batch["region_boxes"].dtype == torch.float32
    assert (batch["input_ids"][batch["attention_mask"] == 0] == 0).all()  # padded with 0
    assert batch["attention_mask"][:, 0].all()
    for row, image_id in enumerate(image_ids):
        item = store[image_id]
        count = len(item["features"])
        assert batch["region_mask"][row].sum() == min(count, batch["region_mask"].shape[1])
        np.testing.assert_array_equal(batch["region_features"][row, :count].numpy(), item["features"])
        scale = np.array([item["width"], item["height"]] * 2, np.float32)
        np.testing.assert_allclose(batch["region_boxes"][row, :count].numpy(), item["boxes"] / scale, rtol=1e-6)


def test_vqa_collator_soft_labels_and_inputs(demo_datasets, demo_store, tokenizer):
    train = EncodedVQADataset(demo_datasets["vqa"]["train"], demo_store, tokenizer)
    vocab = train.answer_vocab
    batch = VQACollator(train)(list(range(0, 40, 3)))
    assert set(batch) == MODEL_KEYS
    assert batch["labels"].shape == (14, len(vocab)) and batch["labels"].dtype == torch.float32
    assert batch["input_ids"].shape[1] <= 14
    _check_common(batch, demo_store, batch["metadata"]["image_id"])
    for row, answers in enumerate(batch["metadata"]["answers"]):
        assert len(answers) == 10
        expected = np.zeros(len(vocab), np.float32)
        for answer in set(answers):
            if answer in vocab:
                expected[vocab.index(answer)] = vqa_soft_score(answers.count(answer))
        np.testing.assert_allclose(batch["labels"][row].numpy(), expected, rtol=1e-6)
    first = demo_datasets["vqa"]["train"][0]
    assert batch["metadata"]["question"][0] == first["question"]
    assert batch["metadata"]["question_id"][0] == first["question_id"]


def test_vqa_known_soft_score_from_rows(demo_store, tokenizer):
    image_id = demo_store.image_ids[0]
    rows = [
        {
            "question_id": 1,
            "image_id": int(image_id),
            "question": "what color is the cube?",
            "answer_type": "other",
            "labels": [0, 2],
            "scores": [0.9, 0.3],
            "answers": [{"answer": a} for a in ["red"] * 3 + ["blue"] + ["pink"] * 6],
        }
    ]
    encoded = EncodedVQADataset(rows, demo_store, tokenizer, answer_vocab=["red", "green", "blue"])
    batch = VQACollator(encoded)([0])
    assert batch["labels"].tolist() == [[pytest.approx(0.9), 0.0, pytest.approx(0.3)]]
    assert batch["input_ids"][0].tolist() == tokenizer("what color is the cube?", add_special_tokens=False)["input_ids"]


def test_vqa_test_split_has_no_labels(demo_datasets, demo_store, tokenizer):
    test = EncodedVQADataset(demo_datasets["vqa"]["test"], demo_store, tokenizer)  # vocabulary from the features
    assert test.answer_vocab == EncodedVQADataset(demo_datasets["vqa"]["train"], demo_store, tokenizer).answer_vocab
    batch = VQACollator(test)([0, 1])
    assert not test.has_labels and "labels" not in batch
    assert batch["metadata"]["answers"] == [[], []]


def test_missing_images_raise_or_are_dropped(demo_store, tokenizer):
    rows = [
        {
            "question_id": 1,
            "image_id": int(demo_store.image_ids[0]),
            "question": "what?",
            "labels": [],
            "scores": [],
        },
        {"question_id": 2, "image_id": 987654321, "question": "where?", "labels": [], "scores": []},
    ]
    with pytest.raises(KeyError, match="1 of 2 examples have images that are not in the region store"):
        EncodedVQADataset(rows, demo_store, tokenizer, answer_vocab=["yes"])
    kept = EncodedVQADataset(rows, demo_store, tokenizer, answer_vocab=["yes"], missing_images="drop")
    assert len(kept) == 1 and kept.question_ids.tolist() == [1] and kept.dropped["image not in store"] == 1


def test_retrieval_collator_builds_positives_and_negatives(demo_datasets, demo_store, tokenizer):
    captions = EncodedCaptionDataset(demo_datasets["captions"]["train"], demo_store, tokenizer)
    indices = np.unique(captions.caption_image, return_index=True)[1][:6]  # captions of six distinct images
    collator = RetrievalCollator(captions, negatives_per_positive=1, seed=0)
    batch = collator(indices)
    assert set(batch) == MODEL_KEYS
    assert batch["labels"].tolist() == [1.0] * 6 + [0.0] * 12
    assert batch["input_ids"].shape[0] == batch["region_features"].shape[0] == 18
    _check_common(batch, demo_store, batch["metadata"]["image_id"])
    sentence = batch["metadata"]["sentence_id"]
    image = batch["metadata"]["image_id"]
    positives = dict(zip(sentence[:6], image[:6]))
    # Rows 6-11: image i with another image's caption; rows 12-17: another caption's image with caption i.
    assert image[6:12] == image[:6] and sorted(sentence[6:12]) == sorted(sentence[:6])
    assert sentence[12:] == sentence[:6] and sorted(image[12:]) == sorted(image[:6])
    assert all(positives[s] != i for s, i in zip(sentence[6:], image[6:]))
    assert batch["metadata"]["pair"][:7] == ["positive"] * 6 + ["other_caption"]
    # Two negatives per positive: 5B rows, still labelled by whether the caption is the image's own.
    wide = RetrievalCollator(captions, negatives_per_positive=2)(indices)
    assert wide["labels"].shape == (30,) and wide["labels"].sum() == 6
    # A batch that repeats an image gets the label right anyway.
    same_image = np.flatnonzero(captions.caption_image == captions.caption_image[0])[:2]
    repeated = collator(same_image)
    assert repeated["labels"].tolist() == [1.0] * 6


def _grounding_fixture(tmp_path):
    """One image, four regions with known IoU against the phrases' ground-truth boxes."""
    regions = np.array(
        [
            [0, 0, 100, 100],  # IoU 1.0 with the man
            [0, 0, 100, 50],  # IoU 0.50 -> positive
            [0, 0, 100, 49],  # IoU 0.49 -> negative
            [200, 200, 300, 300],
        ],
        dtype=np.float32,
    )  # the kite
    with RegionFeatureStoreWriter(tmp_path / "store") as writer:
        writer.add(77, regions, np.arange(16, dtype=np.float32).reshape(4, 4), 400, 300)
    root = tmp_path / "entities"
    (root / "Sentences").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "Sentences" / "77.txt").write_text(
        "[/EN#1/people A man] with [/EN#3/bodyparts pierced ears] looks at [/EN#2/other a kite] .\n"
        "[/EN#4/scene The sky] is blue .\n"
    )
    (root / "Annotations" / "77.xml").write_text(
        "<annotation><size><width>400</width><height>300</height></size>"
        "<object><name>1</name><name>3</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>101</xmax><ymax>101</ymax>"
        "</bndbox></object>"
        "<object><name>2</name><bndbox><xmin>201</xmin><ymin>201</ymin><xmax>301</xmax><ymax>301</ymax></bndbox>"
        "</object><object><name>4</name><nobndbox>1</nobndbox><scene>1</scene></object></annotation>"
    )
    (root / "train.txt").write_text("77\n")
    return RegionFeatureStore(tmp_path / "store"), root


def test_grounding_collator_known_spans_and_iou_labels(tmp_path, hf_cache):
    store, root = _grounding_fixture(tmp_path)
    rows = load_flickr30k_entities(root, split="train", cache_dir=hf_cache)
    tokenizer = HierarchicalVLTokenizer.from_texts(rows["sentence"])
    encoded = EncodedGroundingDataset(rows, store, tokenizer)
    assert len(encoded) == 1  # the sky sentence has no grounded phrase
    assert encoded.excluded == {"phrases scene": 1, "sentences without grounded phrases": 1}
    batch = GroundingCollator(encoded)([0])
    assert set(batch) == MODEL_KEYS | {"phrase_spans", "phrase_mask"}
    # "a man with pierced ears looks at a kite ." -> a(0) man(1) with(2) pierced(3) ears(4) looks(5) at(6) a(7) kite(8)
    assert batch["phrase_spans"].tolist() == [[[0, 1], [3, 4], [7, 8]]]
    assert batch["phrase_mask"].tolist() == [[1, 1, 1]]
    assert batch["labels"].tolist() == [[[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 1]]]
    assert batch["metadata"]["phrases"] == [["A man", "pierced ears", "a kite"]]
    np.testing.assert_array_equal(batch["metadata"]["gt_boxes"][0][2], [[200, 200, 300, 300]])
    # A cap on sentence tokens cuts the kite off: its phrase is counted, not silently kept.
    short = EncodedGroundingDataset(rows, store, tokenizer, max_words=6)
    assert short.excluded["phrases truncated"] == 1
    assert GroundingCollator(short)([0])["phrase_spans"].shape == (1, 2, 2)


def test_grounding_collator_on_demo_corpus(demo_datasets, demo_store, tokenizer):
    encoded = EncodedGroundingDataset(demo_datasets["entities"]["train"], demo_store, tokenizer)
    batch = GroundingCollator(encoded)(list(range(8)))
    _check_common(batch, demo_store, batch["metadata"]["image_id"])
    mask = batch["phrase_mask"].bool()
    positives = batch["labels"].sum(-1)
    assert (positives[mask] >= 1).all()  # every demo phrase has a region with IoU >= 0.5
    assert (positives[~mask] == 0).all()
    assert (batch["labels"] * (1 - batch["region_mask"][:, None, :])).sum() == 0
    for row, phrases in enumerate(batch["metadata"]["phrases"]):
        ids = batch["input_ids"][row].tolist()
        for column, phrase in enumerate(phrases):
            start, end = batch["phrase_spans"][row, column].tolist()
            assert ids[start : end + 1] == tokenizer(phrase, add_special_tokens=False)["input_ids"]


def test_dataloader_with_workers(demo_datasets, demo_store, tokenizer):
    train = EncodedVQADataset(demo_datasets["vqa"]["train"], demo_store, tokenizer)
    loader = DataLoader(
        train,
        batch_size=32,
        shuffle=True,
        collate_fn=VQACollator(train),
        num_workers=2,
        generator=torch.Generator().manual_seed(0),
    )
    seen = [qid for batch in loader for qid in batch["metadata"]["question_id"]]
    assert sorted(seen) == sorted(train.question_ids.tolist())
