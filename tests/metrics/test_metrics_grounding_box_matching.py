"""Grounding box matching: any box vs the merged box of Plummer et al., on hand-made multi-box phrases."""

from __future__ import annotations

import numpy as np
import pytest

from hierarchical_vl.metrics import BOX_MATCHING, box_iou, grounding_ranks, grounding_recall, load_metric, merge_boxes

# Two distant boxes of one phrase (say "two dogs") and their union box.
LEFT, RIGHT = [0, 0, 100, 100], [200, 0, 300, 100]
UNION = [0, 0, 300, 100]
FAR = [400, 200, 500, 300]


def test_merge_boxes_is_the_union_box():
    np.testing.assert_array_equal(merge_boxes([LEFT, RIGHT]), UNION)
    np.testing.assert_array_equal(merge_boxes([[10, 20, 30, 40]]), [10, 20, 30, 40])
    np.testing.assert_array_equal(merge_boxes([[5, 50, 60, 70], [20, 10, 30, 90], [0, 40, 10, 45]]), [0, 10, 60, 90])
    # Batched with a mask: padding is ignored.
    batch = np.array([[LEFT, RIGHT], [FAR, [0, 0, 1000, 1000]]], dtype=np.float32)  # (2, 2, 4)
    merged = merge_boxes(batch, [[True, True], [True, False]])
    assert merged.dtype == np.float32
    np.testing.assert_array_equal(merged, [UNION, FAR])
    with pytest.raises(ValueError, match="no box to merge"):
        merge_boxes(batch, [[True, True], [False, False]])


def test_hand_made_multi_box_phrases_under_both_rules():
    # IoU by hand: a region equal to LEFT has IoU 1 with LEFT but 100*100 / (300*100) = 1/3 with the union box;
    # a region equal to the union has IoU 1/3 with each box but 1 with the union.
    np.testing.assert_allclose(box_iou([LEFT, UNION], [LEFT, RIGHT, UNION]), [[1, 0, 1 / 3], [1 / 3, 1 / 3, 1]])
    scores = [
        [0.9, 0.5, 0.1],  # phrase 0: two boxes; regions LEFT, UNION, FAR
        [0.9, 0.5, 0.1],  # phrase 1: a single box, FAR
        [0.2, 0.8],  # phrase 2: two boxes; regions LEFT and FAR only (no region near the union)
    ]
    regions = [[LEFT, UNION, FAR], [LEFT, UNION, FAR], [LEFT, FAR]]
    truth = [[LEFT, RIGHT], [FAR], [LEFT, RIGHT]]
    # any: phrase 0's LEFT is correct (rank 0); phrase 1's FAR is ranked after 2 wrong regions; phrase 2's LEFT
    # after FAR (rank 1).
    np.testing.assert_array_equal(grounding_ranks(scores, regions, truth, box_matching="any"), [0, 2, 1])
    # merged: phrase 0's correct region is the union one, after LEFT (rank 1); phrase 1 the same as under any;
    # phrase 2 has no region reaching IoU 0.5 with the union box.
    np.testing.assert_array_equal(grounding_ranks(scores, regions, truth, box_matching="merged"), [1, 2, np.inf])
    assert grounding_recall(scores, regions, truth, ks=(1, 2, 5), box_matching="any") == {
        "r1": 33.33,
        "r2": 66.67,
        "r5": 100.0,
        "upper_bound": 100.0,
        "num_phrases": 3,
    }
    assert grounding_recall(scores, regions, truth, ks=(1, 2, 5), box_matching="merged") == {
        "r1": 0.0,
        "r2": 33.33,
        "r5": 66.67,
        "upper_bound": 66.67,
        "num_phrases": 3,
    }
    # The default keeps the any-box rule.
    assert grounding_recall(scores, regions, truth) == grounding_recall(scores, regions, truth, box_matching="any")


def test_a_region_covering_the_union_hits_only_under_merged():
    scores, regions, truth = [[0.9, 0.1]], [[UNION, FAR]], [[LEFT, RIGHT]]
    assert grounding_recall(scores, regions, truth, box_matching="merged")["r1"] == 100.0
    assert grounding_recall(scores, regions, truth, box_matching="any")["upper_bound"] == 0.0


def test_a_region_equal_to_one_of_two_distant_boxes_hits_only_under_any():
    scores, regions, truth = [[0.9, 0.1]], [[RIGHT, FAR]], [[LEFT, RIGHT]]
    assert grounding_recall(scores, regions, truth, box_matching="any")["r1"] == 100.0
    assert grounding_recall(scores, regions, truth, box_matching="merged")["upper_bound"] == 0.0


def test_single_box_phrases_score_the_same_under_both_rules():
    rng = np.random.default_rng(0)
    scores, regions, truth = [], [], []
    for _ in range(50):
        corners = rng.uniform(0, 200, size=(8, 2))
        boxes = np.concatenate([corners, corners + rng.uniform(5, 100, size=(8, 2))], axis=1)
        regions.append(boxes)
        scores.append(rng.normal(size=8))
        gt = boxes[rng.integers(8)] + rng.normal(scale=10, size=4)
        truth.append([np.concatenate([gt[:2], np.maximum(gt[2:], gt[:2] + 1)])])
    any_box = grounding_ranks(scores, regions, truth, box_matching="any")
    np.testing.assert_array_equal(any_box, grounding_ranks(scores, regions, truth, box_matching="merged"))
    assert np.isfinite(any_box).any() and not np.isfinite(any_box).all()  # both outcomes occur


def test_bad_box_matching_is_refused():
    assert BOX_MATCHING == ("any", "merged")
    with pytest.raises(ValueError, match="box_matching must be one of"):
        grounding_recall([[0.5]], [[LEFT]], [[LEFT]], box_matching="union")


def test_evaluate_module_takes_box_matching():
    metric = load_metric("grounding_recall")
    result = metric.compute(
        predictions=[[0.9, 0.1]], region_boxes=[[UNION, FAR]], references=[[LEFT, RIGHT]], box_matching="merged"
    )
    assert result["r1"] == 100.0
    result = metric.compute(predictions=[[0.9, 0.1]], region_boxes=[[UNION, FAR]], references=[[LEFT, RIGHT]])
    assert result["r1"] == 0.0
