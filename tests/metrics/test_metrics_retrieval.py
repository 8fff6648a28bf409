"""Retrieval Recall@K against a brute-force pure-Python reference, ties, and the COCO 5-fold protocol."""

from __future__ import annotations

import math
import statistics
import time

import numpy as np
import pytest

from hierarchical_vl.metrics import coco_1k_5fold, retrieval_ranks, retrieval_recall


def _brute_force_ranks(scores: np.ndarray, caption_to_image: np.ndarray) -> tuple[list[int], list[int]]:
    """Sort every query's candidates by (score descending, ground truth last among ties); take the first hit."""
    table = scores.tolist()
    owners = caption_to_image.tolist()
    n_images, n_captions = len(table), len(owners)
    i2t = []
    for image in range(n_images):
        order = sorted(range(n_captions), key=lambda c: (-table[image][c], owners[c] == image))
        i2t.append(next(pos for pos, c in enumerate(order) if owners[c] == image))
    t2i = []
    for caption in range(n_captions):
        order = sorted(range(n_images), key=lambda i: (-table[i][caption], i == owners[caption]))
        t2i.append(order.index(owners[caption]))
    return i2t, t2i


def _metrics_from_ranks(i2t: list[int], t2i: list[int], ks=(1, 5, 10)) -> dict[str, float]:
    out = {}
    for name, ranks in (("i2t", i2t), ("t2i", t2i)):
        for k in ks:
            out[f"{name}_r{k}"] = 100.0 * sum(r < k for r in ranks) / len(ranks)
        out[f"{name}_medr"] = math.floor(statistics.median(ranks)) + 1
        out[f"{name}_meanr"] = sum(ranks) / len(ranks) + 1
    out["rsum"] = sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in ks)
    return out


def _round(metrics: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in metrics.items()}


def _random_caption_owners(rng: np.random.Generator, n_images: int, max_per_image: int = 7) -> np.ndarray:
    """Every image gets 1..max_per_image captions, in shuffled caption order."""
    counts = rng.integers(1, max_per_image + 1, size=n_images)
    owners = np.repeat(np.arange(n_images), counts)
    return rng.permutation(owners)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("kind", ["continuous", "tied", "five_per_image"])
def test_ranks_match_brute_force(seed, kind):
    rng = np.random.default_rng(seed)
    n_images = int(rng.integers(2, 30))
    if kind == "five_per_image":
        owners = np.repeat(np.arange(n_images), 5)
    else:
        owners = _random_caption_owners(rng, n_images)
    shape = (n_images, owners.size)
    if kind == "tied":
        scores = rng.integers(0, 3, size=shape).astype(np.float32)  # lots of ties
    else:
        scores = rng.standard_normal(shape)
    i2t, t2i = retrieval_ranks(scores, owners)
    bf_i2t, bf_t2i = _brute_force_ranks(scores, owners)
    assert i2t.tolist() == bf_i2t
    assert t2i.tolist() == bf_t2i
    assert retrieval_recall(scores, owners) == _round(_metrics_from_ranks(bf_i2t, bf_t2i))


def test_integer_scores_and_custom_ks():
    rng = np.random.default_rng(7)
    owners = _random_caption_owners(rng, 12)
    scores = rng.integers(-5, 5, size=(12, owners.size))
    bf = _brute_force_ranks(scores, owners)
    assert retrieval_recall(scores, owners, ks=(1, 2, 3)) == _round(_metrics_from_ranks(*bf, ks=(1, 2, 3)))


def test_hand_worked_example_with_ties():
    # 2 images; captions 0, 1 belong to image 0 and caption 2 to image 1.
    scores = np.array(
        [
            [0.5, 0.9, 0.9],  # image 0: its best caption (1) ties with caption 2 of image 1 -> rank 1
            [0.1, 0.9, 0.7],  # image 1: its caption (2) is beaten by caption 1 -> rank 1
        ]
    )
    owners = np.array([0, 0, 1])
    i2t, t2i = retrieval_ranks(scores, owners)
    assert i2t.tolist() == [1, 1]
    # caption 0: 0.5 > 0.1 -> 0; caption 1: image 1 ties with its image 0 -> 1; caption 2: 0.9 > 0.7 -> 1
    assert t2i.tolist() == [0, 1, 1]
    assert retrieval_recall(scores, owners, ks=(1, 2)) == {
        "i2t_r1": 0.0,
        "i2t_r2": 100.0,
        "i2t_medr": 2.0,
        "i2t_meanr": 2.0,
        "t2i_r1": 33.33,
        "t2i_r2": 100.0,
        "t2i_medr": 2.0,
        "t2i_meanr": 1.67,
        "rsum": 233.33,
    }
    # The VSE++ median convention: floor(median of 0-based ranks) + 1, here floor(0.5) + 1 for ranks [0, 1].
    assert retrieval_recall(np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([0, 1]))["i2t_medr"] == 1.0


def test_ground_truth_captions_tied_with_each_other_do_not_count_against_the_image():
    scores = np.array([[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    owners = np.array([0, 0, 0, 1])
    i2t, _ = retrieval_ranks(scores, owners)
    assert i2t.tolist() == [0, 0]


def test_constant_scores_get_the_worst_ranks():
    owners = np.array([0, 0, 1, 1, 1, 2])
    scores = np.zeros((3, owners.size))
    i2t, t2i = retrieval_ranks(scores, owners)
    assert i2t.tolist() == [4, 3, 5]  # every non-GT caption ties with the GT and is ranked first
    assert t2i.tolist() == [2] * 6
    metrics = retrieval_recall(scores, owners)
    assert metrics["i2t_r1"] == metrics["t2i_r1"] == 0.0
    # i2t ranks [4, 3, 5]: R@5 = 66.67, R@10 = 100; t2i ranks all 2: R@5 = R@10 = 100
    assert metrics["rsum"] == 366.67


def test_perfect_scores():
    owners = np.repeat(np.arange(50), 5)
    scores = (owners[None, :] == np.arange(50)[:, None]).astype(np.float32)
    metrics = retrieval_recall(scores, owners)
    assert metrics["rsum"] == 600.0
    assert metrics["i2t_medr"] == metrics["t2i_medr"] == metrics["i2t_meanr"] == 1.0


def test_infinite_scores_are_ranked():
    scores = np.array([[np.inf, -np.inf], [np.inf, -np.inf]])
    owners = np.array([0, 1])
    i2t, t2i = retrieval_ranks(scores, owners)
    assert i2t.tolist() == [0, 1]
    assert t2i.tolist() == [1, 1]


def test_5fold_protocol_equals_the_mean_of_the_folds_computed_by_hand():
    rng = np.random.default_rng(3)
    num_folds, fold_size = 5, 12
    n_images = num_folds * fold_size
    owners = _random_caption_owners(rng, n_images, max_per_image=6)
    scores = rng.integers(0, 4, size=(n_images, owners.size)).astype(np.float64)
    by_hand = []
    for fold in range(num_folds):
        images = np.arange(fold * fold_size, (fold + 1) * fold_size)
        captions = np.flatnonzero(np.isin(owners, images))
        block = scores[np.ix_(images, captions)]
        by_hand.append(_metrics_from_ranks(*_brute_force_ranks(block, owners[captions] - fold * fold_size)))
    expected = _round({k: sum(f[k] for f in by_hand) / num_folds for k in by_hand[0]})

    mean, folds = coco_1k_5fold(scores, owners, num_folds=num_folds, fold_size=fold_size, return_folds=True)
    assert mean == expected
    assert folds == [_round(f) for f in by_hand]

    calls = []

    def score_fn(image_indices, caption_indices):
        calls.append((image_indices.copy(), caption_indices.copy()))
        return scores[np.ix_(image_indices, caption_indices)]

    assert coco_1k_5fold(score_fn, owners, num_folds=num_folds, fold_size=fold_size) == expected
    assert [c[0][0] for c in calls] == [0, 12, 24, 36, 48]
    assert all(np.all(owners[c[1]] // fold_size == k) for k, c in enumerate(calls))
    assert sum(c[1].size for c in calls) == owners.size


def test_5fold_default_sizes_and_5k_are_fast():
    rng = np.random.default_rng(4)
    owners = np.repeat(np.arange(5000), 5)
    scores = rng.random((5000, 25000), dtype=np.float32)
    scores[owners, np.arange(25000)] += 0.9  # about 10% of the matching pairs are beaten by some others
    t0 = time.perf_counter()
    five_k = retrieval_recall(scores, owners)
    one_k = coco_1k_5fold(scores, owners)
    elapsed = time.perf_counter() - t0
    assert elapsed < 5.0
    # Fewer distractors in a 1000-image fold: never worse, and strictly better for caption -> image.
    for key in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum"):
        assert one_k[key] >= five_k[key]
    assert one_k["t2i_r1"] > five_k["t2i_r1"]
    assert one_k["t2i_meanr"] < five_k["t2i_meanr"]
    assert 85.0 < five_k["t2i_r1"] < 95.0


@pytest.mark.parametrize(
    ("scores", "owners", "message"),
    [
        (np.zeros(3), [0, 1, 2], "2-D"),
        (np.zeros((0, 0)), np.zeros(0, dtype=int), "empty"),
        (np.zeros((2, 3)), [0, 1], r"one entry per caption, shape \(3,\)"),
        (np.zeros((2, 3)), [0.0, 1.0, 1.0], "integer"),
        (np.zeros((2, 3)), [0, 1, 2], r"caption_to_image\[2\] = 2 is not an image index"),
        (np.zeros((2, 3)), [0, -1, 1], r"caption_to_image\[1\] = -1"),
        (np.zeros((3, 3)), [0, 0, 1], "image 2 has no ground-truth caption"),
        (np.array([[0.0, np.nan], [0.0, 0.0]]), [0, 1], r"NaN at \(image, caption\) \(0, 1\)"),
        (np.array([["a", "b"], ["c", "d"]]), [0, 1], "real numbers"),
    ],
)
def test_retrieval_errors(scores, owners, message):
    with pytest.raises(ValueError, match=message):
        retrieval_recall(scores, np.asarray(owners))


def test_bad_ks():
    with pytest.raises(ValueError, match="ks"):
        retrieval_recall(np.eye(2), np.array([0, 1]), ks=(0,))
    with pytest.raises(ValueError, match="ks"):
        retrieval_recall(np.eye(2), np.array([0, 1]), ks=())
    with pytest.raises(ValueError, match="ks"):
        coco_1k_5fold(np.eye(2), np.array([0, 1]), ks=5, num_folds=1, fold_size=2)


def test_5fold_errors():
    owners = np.repeat(np.arange(10), 2)
    with pytest.raises(ValueError, match=r"scores must have shape \(10, 20\)"):
        coco_1k_5fold(np.zeros((8, 20)), owners, num_folds=5, fold_size=2)
    with pytest.raises(ValueError, match=r"outside \[0, 8\)"):
        coco_1k_5fold(np.zeros((8, 20)), owners, num_folds=4, fold_size=2)
    with pytest.raises(ValueError, match=r"fold 1: the score function returned shape \(1, 1\)"):
        coco_1k_5fold(
            lambda i, c: np.zeros((2, 4)) if i[0] == 0 else np.zeros((1, 1)), owners, num_folds=5, fold_size=2
        )
    gap = np.array([0, 1, 3, 3])  # image 2 (in fold 1) has no caption
    with pytest.raises(ValueError, match="fold 1 \\(images 2-3\\): image 0 has no ground-truth caption"):
        coco_1k_5fold(np.zeros((4, 4)), gap, num_folds=2, fold_size=2)
