"""The reference rows: exact chance values against enumeration and Monte Carlo with the real metrics, the box
priors and the VQA question-type prior on hand-made cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hierarchical_vl.evaluation.baselines import (
    FIRST_BOX,
    LARGEST_BOX,
    QuestionTypePrior,
    grounding_box_prior_metrics,
    grounding_chance_recall,
    retrieval_chance_recall,
    retrieval_fold_chance_recall,
)
from hierarchical_vl.metrics import grounding_recall, retrieval_recall

# Three images with 1, 2 and 4 captions: the closed form must handle any number of captions per image.
CAPTION_IMAGE = np.array([0, 1, 1, 2, 2, 2, 2])


def test_retrieval_chance_image_annotation_equals_enumeration_of_every_caption_order():
    n = len(CAPTION_IMAGE)
    totals = {k: 0.0 for k in (1, 5, 10)}
    orders = list(itertools.permutations(range(n)))
    for order in orders:
        scores = np.tile(-np.asarray(order, dtype=np.float64), (3, 1))  # every image ranks the captions the same way
        result = retrieval_recall(scores, CAPTION_IMAGE)
        for k in totals:
            totals[k] += result[f"i2t_r{k}"]
    chance = retrieval_chance_recall(CAPTION_IMAGE)
    for k, total in totals.items():
        assert chance[f"i2t_r{k}"] == pytest.approx(total / len(orders), abs=0.01)
    # By hand: image 0 (1 of 7) 1/7, image 1 (2 of 7) 2/7, image 2 (4 of 7) 4/7 at K = 1.
    assert chance["i2t_r1"] == round(100 * (1 + 2 + 4) / 7 / 3, 2)
    assert chance["i2t_r5"] == round(100 * (5 / 7 + (1 - 1 / 21) + 1) / 3, 2)
    assert chance["i2t_r10"] == 100.0


def test_retrieval_chance_agrees_with_monte_carlo_of_the_real_metric():
    rng = np.random.default_rng(0)
    caption_image = np.repeat(np.arange(12), 5)  # 12 images x 5 captions
    draws = [retrieval_recall(rng.random((12, 60)), caption_image) for _ in range(3000)]
    chance = retrieval_chance_recall(caption_image)
    for name in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10"):
        assert np.mean([d[name] for d in draws]) == pytest.approx(chance[name], abs=1.0), name
    assert chance["t2i_r5"] == round(100 * 5 / 12, 2)
    assert chance["rsum"] == pytest.approx(sum(chance[n] for n in chance if n != "rsum"), abs=0.05)


def _phrase_case():
    """Two phrases: 4 candidates with 2 correct (IoU >= 0.5 with the one box), 3 candidates with 1 correct."""
    regions_a = np.array([[0, 0, 10, 10], [0, 0, 9, 10], [50, 50, 60, 60], [20, 20, 40, 40]], dtype=np.float64)
    regions_b = np.array([[0, 0, 100, 100], [0, 0, 5, 5], [60, 60, 70, 70]], dtype=np.float64)
    truth_a = np.array([[0, 0, 10, 10]], dtype=np.float64)
    truth_b = np.array([[0, 0, 6, 6]], dtype=np.float64)  # only region 1 of b (IoU 25/36) is correct
    return [regions_a, regions_b], [truth_a, truth_b]


def test_grounding_chance_equals_enumeration_of_every_region_order():
    regions, truth = _phrase_case()
    totals = {k: [] for k in (1, 2, 5)}
    for order_a in itertools.permutations(range(4)):
        for order_b in itertools.permutations(range(3)):
            scores = [-np.asarray(order_a, dtype=np.float64), -np.asarray(order_b, dtype=np.float64)]
            result = grounding_recall(scores, regions, truth, ks=(1, 2, 5))
            for k in totals:
                totals[k].append(result[f"r{k}"])
    chance = grounding_chance_recall(regions, truth, ks=(1, 2, 5))
    for k, values in totals.items():
        assert chance[f"r{k}"] == pytest.approx(np.mean(values), abs=0.01)
    # By hand at K = 1: (2/4 + 1/3) / 2; at K = 2: (1 - C(2,2)/C(4,2) + 2/3) / 2.
    assert chance["r1"] == round(100 * (2 / 4 + 1 / 3) / 2, 2)
    assert chance["r2"] == round(100 * (1 - 1 / 6 + 2 / 3) / 2, 2)
    assert chance["r5"] == 100.0 and chance["upper_bound"] == 100.0 and chance["num_phrases"] == 2


def test_grounding_chance_agrees_with_monte_carlo_and_counts_phrases_without_a_correct_region():
    rng = np.random.default_rng(1)
    regions, truth = [], []
    for _ in range(8):
        count = int(rng.integers(3, 15))
        xy = rng.uniform(0, 80, (count, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (count, 2))], axis=1)
        regions.append(boxes)
        truth.append(boxes[rng.integers(count)][None] + rng.normal(0, 2, (1, 4)))
    regions.append(np.array([[0, 0, 1, 1], [2, 2, 3, 3]], dtype=np.float64))
    truth.append(np.array([[50, 50, 60, 60]], dtype=np.float64))  # no candidate is correct
    draws = [grounding_recall([rng.random(len(r)) for r in regions], regions, truth) for _ in range(3000)]
    chance = grounding_chance_recall(regions, truth)
    for name in ("r1", "r5", "r10"):
        assert np.mean([d[name] for d in draws]) == pytest.approx(chance[name], abs=1.5), name
    assert chance["upper_bound"] == draws[0]["upper_bound"] < 100.0


def test_largest_and_first_box_priors():
    regions, truth = _phrase_case()
    # Areas: phrase a 100, 90, 100, 400 (its correct regions are the first two: the wrong 400 and the wrong 100,
    # tied with the best correct one, rank before it); phrase b 10000, 25, 100 (its correct region is the second).
    largest = grounding_box_prior_metrics(regions, truth, LARGEST_BOX)
    assert largest == grounding_recall([np.array([100.0, 90, 100, 400]), np.array([10000.0, 25, 100])], regions, truth)
    assert largest["r1"] == 0.0
    # File order: phrase a's first region is correct, phrase b's is not (its second is).
    first = grounding_box_prior_metrics(regions, truth, FIRST_BOX, iou_threshold=0.5)
    assert first["r1"] == 50.0 and first["r5"] == 100.0
    with pytest.raises(ValueError, match="unknown grounding prior"):
        grounding_box_prior_metrics(regions, truth, "smallest box")


def test_question_type_prior_learns_the_most_frequent_answer_per_type_with_a_fallback():
    rows = [
        {"question_type": "how many", "multiple_choice_answer": "2"},
        {"question_type": "how many", "multiple_choice_answer": "3"},
        {"question_type": "how many", "multiple_choice_answer": "2"},
        {"question_type": "is there a", "multiple_choice_answer": "yes"},
        {"question_type": "is there a", "multiple_choice_answer": "no"},  # tie: alphabetically first
        {"question_type": "what color is the", "multiple_choice_answer": "red"},
        {"question_type": "what color is the", "multiple_choice_answer": "red"},
        {"question_type": "what color is the", "multiple_choice_answer": "red"},
        {"question_type": "what color is the", "multiple_choice_answer": ""},  # unannotated: ignored
    ]
    prior = QuestionTypePrior.from_rows(rows)
    assert dict(prior.answers) == {"how many": "2", "is there a": "no", "what color is the": "red"}
    assert prior.fallback == "red"  # 3 of 8 answers
    assert prior.answer("what shape is the") == "red"
    assert dict(prior.counts) == {"how many": 3, "is there a": 2, "what color is the": 3}
    with pytest.raises(ValueError, match="annotated training questions"):
        QuestionTypePrior.from_rows([{"question_type": "how many", "multiple_choice_answer": ""}])


def test_chance_inputs_are_checked():
    with pytest.raises(ValueError, match="caption_to_image"):
        retrieval_chance_recall([])
    with pytest.raises(ValueError, match="ks"):
        retrieval_chance_recall(CAPTION_IMAGE, ks=(0,))
    regions, truth = _phrase_case()
    with pytest.raises(ValueError, match="phrases"):
        grounding_chance_recall(regions, truth[:1])


def test_fold_chance_is_the_mean_of_each_fold_ranked_alone():
    # 6 images in 2 folds of 3: fold 0 has 2 captions per image, fold 1 has 1 caption per image.
    caption_to_image = np.array([0, 0, 1, 1, 2, 2, 3, 4, 5])
    folds = retrieval_fold_chance_recall(caption_to_image, fold_size=3, ks=(1,))
    first = retrieval_chance_recall(np.array([0, 0, 1, 1, 2, 2]), ks=(1,))  # i2t 2/6, t2i 1/3
    second = retrieval_chance_recall(np.array([0, 1, 2]), ks=(1,))  # i2t 1/3, t2i 1/3
    assert first["i2t_r1"] == 33.33 and second["i2t_r1"] == 33.33
    assert folds["i2t_r1"] == pytest.approx((first["i2t_r1"] + second["i2t_r1"]) / 2)
    assert folds["t2i_r1"] == 33.33
    with pytest.raises(ValueError, match="folds of 4"):
        retrieval_fold_chance_recall(caption_to_image, fold_size=4)


def test_grounding_chance_follows_the_box_matching_rule():
    # Two distant ground-truth boxes; region 0 is one of them, region 1 covers their union, region 2 neither.
    regions = [np.array([[0, 0, 10, 10], [0, 0, 30, 10], [50, 50, 60, 60]], dtype=float)]
    truth = [np.array([[0, 0, 10, 10], [20, 0, 30, 10]], dtype=float)]
    any_box = grounding_chance_recall(regions, truth, ks=(1,), box_matching="any")
    merged = grounding_chance_recall(regions, truth, ks=(1,), box_matching="merged")
    assert any_box["r1"] == 33.33  # only region 0 has IoU >= 0.5 with one box (region 1: 1/3 with each)
    assert merged["r1"] == 33.33 and merged["upper_bound"] == 100.0  # only region 1 matches the union
    largest = grounding_box_prior_metrics(regions, truth, "largest box", box_matching="merged")
    assert largest["r1"] == 100.0  # the largest region is the union
    assert grounding_box_prior_metrics(regions, truth, "largest box", box_matching="any")["r1"] == 0.0
