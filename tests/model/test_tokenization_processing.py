import numpy as np
import pytest
import torch

from hierarchical_vl import HierarchicalVLProcessor, HierarchicalVLTokenizer, load_glove_embeddings
from hierarchical_vl.processing_hierarchical_vl import char_spans_to_token_spans

TEXTS = [
    "What color is the cube?",
    "A man in a red shirt rides a bike.",
    "Don't count 1,000 dogs, it's 3.5 m",
]


@pytest.fixture
def tokenizer():
    return HierarchicalVLTokenizer.from_texts(TEXTS)


def test_words_are_lowercased_and_split_like_treebank(tokenizer):
    assert tokenizer.words("Don't count 1,000 dogs, it's 3.5 m") == [
        "do",
        "n't",
        "count",
        "1,000",
        "dogs",
        ",",
        "it",
        "'s",
        "3.5",
        "m",
    ]
    assert tokenizer.words("What color is the CUBE?") == ["what", "color", "is", "the", "cube", "?"]


def test_special_ids_and_unknown_words(tokenizer):
    assert tokenizer.pad_token_id == 0 and tokenizer.unk_token_id == 1
    ids = tokenizer("the zebra", add_special_tokens=False)["input_ids"]
    assert ids[0] == tokenizer.get_vocab()["the"] and ids[1] == 1


def test_vocabulary_frequency_cut():
    tokenizer = HierarchicalVLTokenizer.from_texts(["a a b", "a c"], min_frequency=2)
    assert set(tokenizer.get_vocab()) == {"<pad>", "<unk>", "a"}


def test_tokenizer_round_trip(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path)
    loaded = HierarchicalVLTokenizer.from_pretrained(tmp_path)
    assert isinstance(loaded, HierarchicalVLTokenizer)
    assert loaded(TEXTS)["input_ids"] == tokenizer(TEXTS)["input_ids"]
    assert (tmp_path / "tokenizer.json").exists()


def test_glove_loader_reads_text_format_and_reports_coverage(tmp_path, tokenizer):
    glove = tmp_path / "glove.txt"
    vocab = tokenizer.get_vocab()
    lines = [
        "cube " + " ".join(["0.5"] * 4),
        "Red " + " ".join(["0.25"] * 4),
        "red " + " ".join(["1"] * 4),
        "Man " + " ".join(["2"] * 4),
        "two words " + " ".join(["3"] * 4),
        "unused " + " ".join(["9"] * 4),
    ]
    glove.write_text("\n".join(lines) + "\n")
    matrix, coverage = load_glove_embeddings(glove, vocab, dim=4)
    assert matrix.shape == (len(vocab), 4)
    np.testing.assert_array_equal(matrix[vocab["cube"]], 0.5)
    np.testing.assert_array_equal(matrix[vocab["red"]], 1.0)  # the exact match wins over "Red"
    np.testing.assert_array_equal(matrix[vocab["man"]], 2.0)  # a cased variant is used when no exact match exists
    np.testing.assert_array_equal(matrix[0], 0.0)
    assert coverage.found == 3 and coverage.found_lowercased == 1
    assert coverage.vocab_size == len(vocab) - 2
    bad = tmp_path / "bad.txt"
    bad.write_text("cube 1 2\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        load_glove_embeddings(bad, vocab, dim=4)


def test_char_spans_to_token_spans():
    offsets = [(0, 1), (2, 5), (6, 8), (9, 10), (11, 14), (15, 20), (0, 0)]
    assert char_spans_to_token_spans(offsets, [(0, 5), (9, 20), (11, 13), (30, 40)]) == [
        (0, 1),
        (3, 5),
        (4, 4),
        None,
    ]


def test_processor_pads_truncates_and_maps_phrases(tokenizer):
    processor = HierarchicalVLProcessor(tokenizer, max_regions=3, max_words=6)
    text = ["A man in a red shirt rides a bike.", "What color is the cube?"]
    features = [np.arange(20, dtype=np.float32).reshape(5, 4), np.ones((2, 4), dtype=np.float16)]
    boxes = [np.tile([[0, 0, 10, 20]], (5, 1)), np.tile([[5, 5, 10, 10]], (2, 1))]
    batch = processor(
        text,
        features,
        region_boxes=boxes,
        image_sizes=[(20, 40), (10, 10)],
        phrase_char_spans=[[(0, 5), (9, 20), (28, 34)], [(13, 22)]],
    )
    assert batch["input_ids"].shape == (2, 6) and batch["attention_mask"].tolist() == [[1] * 6, [1] * 6]
    assert batch["region_features"].dtype == torch.float32 and batch["region_features"].shape == (2, 3, 4)
    assert torch.equal(batch["region_features"][0], torch.arange(12, dtype=torch.float32).reshape(3, 4))
    assert batch["region_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    torch.testing.assert_close(batch["region_boxes"][0, 0], torch.tensor([0.0, 0.0, 0.5, 0.5]))
    torch.testing.assert_close(batch["region_boxes"][1, 1], torch.tensor([0.5, 0.5, 1.0, 1.0]))
    # "a man" -> words 0-1, "a red shirt" -> 3-5, "a bike" is cut by max_words; "the cube" -> 3-4.
    assert batch["phrase_spans"].tolist() == [[[0, 1], [3, 5], [0, 0]], [[3, 4], [0, 0], [0, 0]]]
    assert batch["phrase_mask"].tolist() == [[1, 1, 0], [1, 0, 0]]


def test_processor_errors(tokenizer):
    processor = HierarchicalVLProcessor(tokenizer)
    with pytest.raises(ValueError, match="text 1 is empty"):
        processor(["a cube", "  "], [np.ones((2, 4))] * 2)
    with pytest.raises(ValueError, match="2 texts but region features for 1"):
        processor(["a cube", "a bike"], [np.ones((2, 4))])
    with pytest.raises(ValueError, match="no region"):
        processor(["a cube"], [np.ones((0, 4))])
    with pytest.raises(ValueError, match="NaN"):
        processor(["a cube"], [np.full((2, 4), np.nan)])


def test_processor_round_trip(tmp_path, tokenizer):
    processor = HierarchicalVLProcessor(tokenizer, max_regions=36, max_words=20)
    processor.save_pretrained(tmp_path)
    loaded = HierarchicalVLProcessor.from_pretrained(tmp_path)
    assert (loaded.max_regions, loaded.max_words) == (36, 20)
    assert isinstance(loaded.tokenizer, HierarchicalVLTokenizer)
    assert loaded(TEXTS[0])["input_ids"].tolist() == processor(TEXTS[0])["input_ids"].tolist()


def test_shared_input_functions():
    from hierarchical_vl.processing_hierarchical_vl import (
        pad_regions,
        pad_token_ids,
        region_inputs,
        text_inputs,
    )

    padded, lengths = pad_token_ids([[5, 6, 7], [8]], width=4, dtype=np.int32)
    assert padded.tolist() == [[5, 6, 7, 0], [8, 0, 0, 0]] and lengths.tolist() == [3, 1]
    with pytest.raises(ValueError, match="more than the 2 columns"):
        pad_token_ids([[5, 6, 7]], width=2)
    from_lists, from_array = text_inputs([[5, 6, 7], [8]]), text_inputs(padded, lengths)
    for name in ("input_ids", "attention_mask"):
        assert torch.equal(from_lists[name], from_array[name]) and from_lists[name].dtype == torch.long
    assert from_lists["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    features, boxes, counts = pad_regions(
        [np.ones((3, 2)), np.ones((1, 2))], [[[0, 0, 8, 4]] * 3, [[2, 2, 4, 4]]], max_regions=2
    )
    assert features.shape == (2, 2, 2) and counts.tolist() == [2, 1]
    inputs = region_inputs(features, counts, boxes, [(8, 4), (4, 8)])
    assert inputs["region_mask"].tolist() == [[1, 1], [1, 0]]
    assert inputs["region_boxes"].tolist() == [[[0, 0, 1, 1]] * 2, [[0.5, 0.25, 1, 0.5], [0, 0, 0, 0]]]
