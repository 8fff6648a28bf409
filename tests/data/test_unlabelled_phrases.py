"""Grounding phrases whose ground truth gives no region a positive label are counted and reported (issue 11, item 6).

Such a phrase trains and evaluates on all-zero labels; it is kept (labels unchanged) but counted in
``EncodedGroundingDataset.phrases_without_positive`` and named in one logged warning.
"""

from __future__ import annotations

import logging

import numpy as np

from hierarchical_vl import HierarchicalVLTokenizer
from hierarchical_vl.data import (
    EncodedGroundingDataset,
    GroundingCollator,
    RegionFeatureStore,
    RegionFeatureStoreWriter,
    load_flickr30k_entities,
)

REGIONS = np.array(
    [
        [300, 0, 400, 100],  # nothing
        [0, 0, 100, 100],  # IoU 1.0 with the man
        [200, 200, 300, 300],  # the kite
    ],
    dtype=np.float32,
)


def _entities(tmp_path):
    with RegionFeatureStoreWriter(tmp_path / "store") as writer:
        writer.add(77, REGIONS, np.arange(12, dtype=np.float32).reshape(3, 4), 400, 300)
    root = tmp_path / "entities"
    (root / "Sentences").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "Sentences" / "77.txt").write_text(
        "[/EN#1/people A man] looks at [/EN#2/other a kite] near [/EN#3/other a tree] .\n"
        "[/EN#3/other The tree] is tall .\n"
    )
    (root / "Annotations" / "77.xml").write_text(
        "<annotation><size><width>400</width><height>300</height></size>"
        "<object><name>1</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>101</xmax><ymax>101</ymax></bndbox>"
        "</object>"
        "<object><name>2</name><bndbox><xmin>201</xmin><ymin>201</ymin><xmax>301</xmax><ymax>301</ymax></bndbox>"
        "</object>"
        # The tree overlaps the kite's region with IoU 0.25 and no region better: no positive label.
        "<object><name>3</name><bndbox><xmin>251</xmin><ymin>201</ymin><xmax>351</xmax><ymax>301</ymax></bndbox>"
        "</object></annotation>"
    )
    (root / "train.txt").write_text("77\n")
    return RegionFeatureStore(tmp_path / "store"), root


def test_phrases_without_positive_region_are_counted_and_logged(tmp_path, hf_cache, caplog):
    store, root = _entities(tmp_path)
    rows = load_flickr30k_entities(root, split="train", cache_dir=hf_cache)
    tokenizer = HierarchicalVLTokenizer.from_texts(rows["sentence"])
    with caplog.at_level(logging.WARNING, logger="hierarchical_vl.data.encoded_datasets"):
        encoded = EncodedGroundingDataset(rows, store, tokenizer)
    assert len(encoded) == 2 and not +encoded.excluded
    assert encoded.phrases_without_positive == 2  # "a tree" and "The tree"
    assert encoded.phrase_first_positive.tolist() == [1, 2, -1, -1]
    lines = [r.getMessage() for r in caplog.records if "no region with IoU" in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("grounding: 2 of 4 phrases have no region with IoU >= 0.5")
    assert "'a tree' (image 77)" in lines[0] and str(store.path) in lines[0]
    # Labels are unchanged: the tree's rows are all zero, the others as before.
    batch = GroundingCollator(encoded)([0, 1])
    assert batch["labels"].tolist() == [
        [[0, 1, 0], [0, 0, 1], [0, 0, 0]],
        [[0, 0, 0], [0, 0, 0], [0, 0, 0]],
    ]
    # The per-phrase first positive region tells what a region cap hides: with 2 regions the kite has none either.
    capped = GroundingCollator(encoded, max_regions=2)([0])["labels"][0]
    first = encoded.phrase_first_positive[:3]
    assert (capped.sum(dim=1) > 0).tolist() == ((first >= 0) & (first < 2)).tolist()


def test_no_warning_when_every_phrase_has_a_positive(demo_datasets, demo_store, tokenizer, caplog):
    with caplog.at_level(logging.WARNING, logger="hierarchical_vl.data.encoded_datasets"):
        encoded = EncodedGroundingDataset(demo_datasets["entities"]["train"], demo_store, tokenizer)
    assert encoded.phrases_without_positive == int((encoded.phrase_first_positive < 0).sum())
    batch = GroundingCollator(encoded, max_regions=None)(np.arange(len(encoded)))
    labelled = batch["labels"].sum(dim=2)[batch["phrase_mask"] > 0] > 0  # (P',) in dataset order
    assert labelled.tolist() == (encoded.phrase_first_positive >= 0).tolist()
    assert any("no region with IoU" in r.getMessage() for r in caplog.records) == bool(encoded.phrases_without_positive)
