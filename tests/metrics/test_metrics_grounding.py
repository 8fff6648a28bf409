"""Box IoU and phrase grounding Recall@K against brute-force references."""

from __future__ import annotations

import numpy as np
import pytest

from hierarchical_vl.metrics import box_iou, grounding_ranks, grounding_recall


def _iou_by_hand(a, b, offset=0.0):
    ix = min(a[2], b[2]) - max(a[0], b[0]) + offset
    iy = min(a[3], b[3]) - max(a[1], b[1]) + offset
    inter = max(ix, 0.0) * max(iy, 0.0)
    union = (a[2] - a[0] + offset) * (a[3] - a[1] + offset) + (b[2] - b[0] + offset) * (b[3] - b[1] + offset)
    union -= inter
    return inter / union if union > 0 else 0.0


def _random_boxes(rng, n, size=100.0):
    xy = rng.uniform(0, size, size=(n, 2))
    wh = rng.uniform(0, size / 2, size=(n, 2))
    return np.round(np.concatenate([xy, xy + wh], axis=1))  # integer corners -> exact IoU ties are possible


def test_box_iou_hand_values():
    a = [0, 0, 10, 10]
    assert box_iou(a, [5, 0, 15, 10])[0, 0] == pytest.approx(50 / 150)
    assert box_iou(a, [5, 0, 15, 10], offset=1)[0, 0] == pytest.approx(66 / 176)  # 6 x 11 over 121 + 121 - 66
    assert box_iou(a, a)[0, 0] == 1.0
    assert box_iou(a, [20, 20, 30, 30])[0, 0] == 0.0
    assert box_iou(a, [10, 0, 20, 10])[0, 0] == 0.0  # touching edges share no area in continuous coordinates
    assert box_iou(a, [10, 0, 20, 10], offset=1)[0, 0] == pytest.approx(11 / (121 + 121 - 11))  # one pixel column
    assert box_iou([3, 3, 3, 3], [3, 3, 3, 3])[0, 0] == 0.0  # empty union
    assert box_iou([0, 0, 10, 10], [2, 2, 4, 4])[0, 0] == pytest.approx(4 / 100)


@pytest.mark.parametrize("offset", [0.0, 1.0])
def test_box_iou_matches_brute_force(offset):
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 17), _random_boxes(rng, 9)
    iou = box_iou(a, b, offset=offset)
    assert iou.shape == (17, 9)
    expected = [[_iou_by_hand(x, y, offset) for y in b.tolist()] for x in a.tolist()]
    np.testing.assert_allclose(iou, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(box_iou(b, a, offset=offset), np.transpose(expected), rtol=0, atol=1e-12)


def test_box_iou_errors():
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        box_iou(np.zeros((2, 3)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"b\[1\] = \[5.0, 0.0, 4.0, 1.0\] has x2 < x1"):
        box_iou([0, 0, 1, 1], [[0, 0, 1, 1], [5, 0, 4, 1]])
    with pytest.raises(ValueError, match="NaN"):
        box_iou([0, 0, np.nan, 1], [0, 0, 1, 1])
    assert box_iou(np.zeros((0, 4)), [0, 0, 1, 1]).shape == (0, 1)


def _brute_force_recall(scores, boxes, gts, ks, threshold=0.5):
    """Order regions by (score descending, incorrect first among ties) and look at the first K."""
    hits = {k: 0 for k in ks}
    reachable = 0
    for s, bxs, g in zip(scores, boxes, gts):
        correct = [any(_iou_by_hand(r, t) >= threshold for t in g) for r in bxs]
        order = sorted(range(len(s)), key=lambda t: (-s[t], correct[t]))
        for k in ks:
            hits[k] += any(correct[t] for t in order[:k])
        reachable += any(correct)
    n = len(scores)
    out = {f"r{k}": round(100.0 * hits[k] / n, 2) for k in ks}
    out["upper_bound"] = round(100.0 * reachable / n, 2)
    out["num_phrases"] = n
    return out


def _random_phrases(rng, n_phrases, tied):
    scores, boxes, gts = [], [], []
    for _ in range(n_phrases):
        n_regions = int(rng.integers(0, 25))
        regions = _random_boxes(rng, n_regions)
        gt = _random_boxes(rng, int(rng.integers(1, 4)))
        # Plant near-copies of ground-truth boxes so that many phrases are groundable.
        for r in range(n_regions):
            if rng.random() < 0.2:
                regions[r] = gt[rng.integers(len(gt))] + rng.integers(-3, 4, size=4)
                regions[r, 2:] = np.maximum(regions[r, 2:], regions[r, :2])
        s = rng.integers(0, 4, size=n_regions).astype(float) if tied else rng.standard_normal(n_regions)
        scores.append(s.tolist())
        boxes.append(regions.tolist())
        gts.append(gt.tolist())
    return scores, boxes, gts


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tied", [False, True])
def test_grounding_recall_matches_brute_force(seed, tied):
    rng = np.random.default_rng(seed)
    scores, boxes, gts = _random_phrases(rng, 60, tied)
    ks = (1, 3, 5, 10)
    expected = _brute_force_recall(scores, boxes, gts, ks)
    assert 0 < expected["upper_bound"] < 100
    assert grounding_recall(scores, boxes, gts, ks=ks) == expected


def test_padded_arrays_with_mask_match_lists():
    rng = np.random.default_rng(11)
    scores, boxes, gts = _random_phrases(rng, 30, tied=True)
    t_max = max(len(s) for s in scores)
    padded_scores = np.full((30, t_max), 99.0)  # padding would win every ranking if it were not masked
    padded_boxes = np.tile(np.array(gts[0][0]), (30, t_max, 1))
    mask = np.zeros((30, t_max), dtype=bool)
    for p, (s, b) in enumerate(zip(scores, boxes)):
        padded_scores[p, : len(s)] = s
        if len(b):
            padded_boxes[p, : len(b)] = b
        mask[p, : len(s)] = True
    assert grounding_recall(padded_scores, padded_boxes, gts, region_mask=mask) == grounding_recall(scores, boxes, gts)


def test_hand_worked_phrases():
    boxes = [[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]]
    gts = [
        [[0, 0, 10, 9]],  # region 0 correct (IoU 0.9)
        [[100, 100, 110, 110], [21, 21, 40, 40]],  # second box matches region 1 (IoU 361/400)
        [[0, 0, 10, 30]],  # region 0 has IoU 1/3: no correct region
        [[50, 50, 60, 60]],  # region 2 correct but tied with region 0 -> ranked second
    ]
    scores = [[0.9, 0.5, 0.1], [0.9, 0.5, 0.1], [0.9, 0.5, 0.1], [0.7, 0.1, 0.7]]
    ranks = grounding_ranks(scores, [boxes] * 4, gts)
    assert ranks.tolist() == [0, 1, np.inf, 1]
    assert grounding_recall(scores, [boxes] * 4, gts, ks=(1, 2)) == {
        "r1": 25.0,
        "r2": 75.0,
        "upper_bound": 75.0,
        "num_phrases": 4,
    }
    # The threshold is inclusive: IoU exactly 0.5 counts.
    assert grounding_recall([[1.0]], [[[0, 0, 10, 10]]], [[[0, 0, 10, 5]]], ks=(1,))["r1"] == 100.0
    assert grounding_recall([[1.0]], [[[0, 0, 10, 10]]], [[[0, 0, 10, 5]]], ks=(1,), iou_threshold=0.51)["r1"] == 0.0


def test_phrase_without_regions_is_a_miss():
    result = grounding_recall([[], [1.0]], [np.zeros((0, 4)), [[0, 0, 1, 1]]], [[[0, 0, 1, 1]], [[0, 0, 1, 1]]])
    assert result == {"r1": 50.0, "r5": 50.0, "r10": 50.0, "upper_bound": 50.0, "num_phrases": 2}


@pytest.mark.parametrize(
    ("scores", "boxes", "gts", "message"),
    [
        ([], [], [], "no phrases"),
        ([[1.0]], [[[0, 0, 1, 1]], [[0, 0, 1, 1]]], [[[0, 0, 1, 1]]], "scores for 1 phrases but boxes for 2"),
        ([[1.0]], [[[0, 0, 1, 1]]], [], "ground-truth boxes for 0"),
        ([[1.0]], [[[0, 0, 1, 1]]], [np.zeros((0, 4))], "phrase 0: no ground-truth box"),
        ([[1.0, 2.0]], [[[0, 0, 1, 1]]], [[[0, 0, 1, 1]]], "phrase 0: 2 region scores but 1 region boxes"),
        ([[np.nan]], [[[0, 0, 1, 1]]], [[[0, 0, 1, 1]]], "phrase 0: region scores contain NaN"),
        ([[[1.0]]], [[[0, 0, 1, 1]]], [[[0, 0, 1, 1]]], "must be 1-D"),
        ([[1.0]], [[[0, 0, 1]]], [[[0, 0, 1, 1]]], r"phrase 0 region boxes must have shape \(n, 4\)"),
    ],
)
def test_grounding_errors(scores, boxes, gts, message):
    with pytest.raises(ValueError, match=message):
        grounding_recall(scores, boxes, gts)


def test_mask_shape_errors():
    with pytest.raises(ValueError, match="region_mask"):
        grounding_recall(np.zeros((2, 3)), np.zeros((2, 3, 4)), [[[0, 0, 1, 1]]] * 2, region_mask=np.ones((2, 2)))
    with pytest.raises(ValueError, match="ks"):
        grounding_recall([[1.0]], [[[0, 0, 1, 1]]], [[[0, 0, 1, 1]]], ks=(0,))
