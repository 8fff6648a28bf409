"""Grounding training labels under both box-matching rules, on a hand-made two-box phrase."""

from __future__ import annotations

import numpy as np
import pytest

from hierarchical_vl import HierarchicalVLTokenizer
from hierarchical_vl.data import (
    EncodedGroundingDataset,
    GroundingCollator,
    RegionFeatureStore,
    RegionFeatureStoreWriter,
    load_flickr30k_entities,
)


def _two_box_corpus(tmp_path):
    """One image; "two dogs" refers to two distant boxes, "a ball" to one; four regions with known IoU."""
    regions = np.array(
        [
            [0, 0, 100, 100],  # the left dog: IoU 1 with it, 1/3 with the merged box [0, 0, 300, 100]
            [0, 0, 300, 100],  # the merged box: IoU 1/3 with each dog, 1 with the merged box
            [400, 200, 500, 300],  # the ball
            [200, 0, 300, 100],  # the right dog
        ],
        dtype=np.float32,
    )
    with RegionFeatureStoreWriter(tmp_path / "store") as writer:
        writer.add(5, regions, np.ones((4, 4), dtype=np.float32), 600, 400)
    root = tmp_path / "entities"
    (root / "Sentences").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "Sentences" / "5.txt").write_text("[/EN#1/animals Two dogs] chase [/EN#2/other a ball] .\n")

    def box(x1, y1, x2, y2):  # 1-based inclusive VOC coordinates of the continuous box (x1, y1, x2, y2)
        return f"<bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin><xmax>{x2 + 1}</xmax><ymax>{y2 + 1}</ymax></bndbox>"

    (root / "Annotations" / "5.xml").write_text(
        "<annotation><size><width>600</width><height>400</height></size>"
        f"<object><name>1</name>{box(0, 0, 100, 100)}</object>"
        f"<object><name>1</name>{box(200, 0, 300, 100)}</object>"
        f"<object><name>2</name>{box(400, 200, 500, 300)}</object></annotation>"
    )
    (root / "train.txt").write_text("5\n")
    return RegionFeatureStore(tmp_path / "store"), root


def test_two_box_phrase_labels_under_any_and_merged(tmp_path, hf_cache):
    store, root = _two_box_corpus(tmp_path)
    rows = load_flickr30k_entities(root, split="train", cache_dir=hf_cache)
    encoded = EncodedGroundingDataset(rows, store, HierarchicalVLTokenizer.from_texts(rows["sentence"]))
    np.testing.assert_array_equal(encoded.gt_boxes, [[0, 0, 100, 100], [200, 0, 300, 100], [400, 200, 500, 300]])
    any_box = GroundingCollator(encoded)([0])
    assert any_box["labels"].tolist() == [[[1, 0, 0, 1], [0, 0, 1, 0]]]  # either dog; the ball
    assert GroundingCollator(encoded, box_matching="any")([0])["labels"].tolist() == any_box["labels"].tolist()
    merged = GroundingCollator(encoded, box_matching="merged")([0])
    assert merged["labels"].tolist() == [[[0, 1, 0, 0], [0, 0, 1, 0]]]  # only the union region; the ball the same
    # The metadata keeps every ground-truth box (the metric applies the rule itself).
    assert [len(boxes) for boxes in merged["metadata"]["gt_boxes"][0]] == [2, 1]
    for name in ("input_ids", "phrase_spans", "phrase_mask", "region_mask"):
        assert merged[name].tolist() == any_box[name].tolist()


def test_merged_labels_in_a_padded_batch(tmp_path, hf_cache):
    """Two sentences with different phrase and box counts: padding stays unlabelled under merged matching."""
    store, root = _two_box_corpus(tmp_path)
    (root / "Sentences" / "5.txt").write_text(
        "[/EN#1/animals Two dogs] chase [/EN#2/other a ball] .\n[/EN#2/other The ball] flies .\n"
    )
    rows = load_flickr30k_entities(root, split="train", cache_dir=hf_cache)
    encoded = EncodedGroundingDataset(rows, store, HierarchicalVLTokenizer.from_texts(rows["sentence"]))
    labels = GroundingCollator(encoded, box_matching="merged")([0, 1])["labels"].tolist()
    assert labels == [[[0, 1, 0, 0], [0, 0, 1, 0]], [[0, 0, 1, 0], [0, 0, 0, 0]]]


def test_unknown_box_matching_is_refused(tmp_path, hf_cache):
    store, root = _two_box_corpus(tmp_path)
    rows = load_flickr30k_entities(root, split="train", cache_dir=hf_cache)
    encoded = EncodedGroundingDataset(rows, store, HierarchicalVLTokenizer.from_texts(rows["sentence"]))
    with pytest.raises(ValueError, match="box_matching must be one of"):
        GroundingCollator(encoded, box_matching="union")
