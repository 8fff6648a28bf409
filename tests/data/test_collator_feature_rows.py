"""Collators with ``feature_rows=True``: store rows instead of features, which gather back to the same batch; and
the example sizes that length grouping sorts by."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hierarchical_vl.data import (
    EncodedCaptionDataset,
    EncodedGroundingDataset,
    EncodedVQADataset,
    GroundingCollator,
    RetrievalCollator,
    VQACollator,
)


def _gather(store, rows):
    """The brute-force gather: each row of the (B, T) row table read from the store one at a time."""
    out = np.zeros((*rows.shape, store.feature_dim), np.float16)
    for b in range(rows.shape[0]):
        for t in range(rows.shape[1]):
            out[b, t] = store.features[int(rows[b, t])]
    return torch.from_numpy(out)


@pytest.mark.parametrize("task", ["vqa", "retrieval", "grounding"])
def test_feature_rows_gather_to_the_same_batch(task, demo_datasets, demo_store, tokenizer):
    if task == "vqa":
        dataset = EncodedVQADataset(demo_datasets["vqa"]["train"], demo_store, tokenizer)
        make = lambda **kw: VQACollator(dataset, max_regions=20, include_metadata=False, **kw)  # noqa: E731
    elif task == "retrieval":
        dataset = EncodedCaptionDataset(demo_datasets["captions"]["train"], demo_store, tokenizer)
        make = lambda **kw: RetrievalCollator(dataset, max_regions=20, include_metadata=False, **kw)  # noqa: E731
    else:
        dataset = EncodedGroundingDataset(demo_datasets["entities"]["train"], demo_store, tokenizer)
        make = lambda **kw: GroundingCollator(dataset, max_regions=20, include_metadata=False, **kw)  # noqa: E731
    indices = np.arange(min(9, len(dataset)))[::-1].copy()
    full = make()(indices)
    rows = make(feature_rows=True)(indices)
    assert "region_features" not in rows and rows["region_feature_rows"].dtype == torch.int64
    assert set(rows) - {"region_feature_rows"} == set(full) - {"region_features"}
    for key in set(full) - {"region_features"}:
        assert torch.equal(full[key], rows[key]), key
    table = rows["region_feature_rows"]  # (B, T)
    assert table.shape == full["region_mask"].shape
    assert (table[full["region_mask"] == 0] == demo_store.padding_row).all()  # padding points at the zero row
    assert torch.equal(_gather(demo_store, table.numpy()), full["region_features"])


def test_example_sizes_are_what_a_batch_pads_to(demo_datasets, demo_store, tokenizer):
    dataset = EncodedVQADataset(demo_datasets["vqa"]["train"], demo_store, tokenizer)
    sizes = dataset.example_sizes(12)  # (M, 2)
    assert sizes.shape == (len(dataset), 2) and sizes.dtype == np.int64
    for index in range(0, len(dataset), 7):
        batch = VQACollator(dataset, max_regions=12, include_metadata=False)([index])
        assert sizes[index].tolist() == [int(batch["region_mask"].sum()), int(batch["attention_mask"].sum())]
    uncapped = dataset.example_sizes()
    assert (uncapped[:, 0] == demo_store.num_regions[dataset.image_index]).all()
    assert (sizes[:, 0] == np.minimum(uncapped[:, 0], 12)).all()
