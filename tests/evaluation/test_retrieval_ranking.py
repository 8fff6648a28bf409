"""The fast ranking must reproduce the model's own forward pass on every pair, in any block layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hierarchical_vl import (
    HierarchicalVLConfig,
    HierarchicalVLForImageTextRetrieval,
    HierarchicalVLForMultiTask,
    HierarchicalVLForVisualQuestionAnswering,
)
from hierarchical_vl.evaluation import RetrievalScorer, StaleCacheError, shortlist_agreement, shortlist_mask

NUM_IMAGES, NUM_CAPTIONS, MAX_WORDS, MAX_REGIONS = 5, 8, 9, 8


def _corpus(config: HierarchicalVLConfig, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    word_lengths = torch.randint(1, MAX_WORDS + 1, (NUM_CAPTIONS,), generator=generator)
    word_lengths[0] = MAX_WORDS
    word_lengths[1] = 1
    attention_mask = (torch.arange(MAX_WORDS) < word_lengths[:, None]).long()
    input_ids = torch.randint(2, config.vocab_size, (NUM_CAPTIONS, MAX_WORDS), generator=generator) * attention_mask
    region_counts = torch.randint(1, MAX_REGIONS + 1, (NUM_IMAGES,), generator=generator)
    region_counts[0] = MAX_REGIONS
    region_counts[1] = 1
    region_mask = (torch.arange(MAX_REGIONS) < region_counts[:, None]).long()
    region_features = torch.randn(NUM_IMAGES, MAX_REGIONS, config.region_feature_dim, generator=generator).relu()
    region_boxes = torch.rand(NUM_IMAGES, MAX_REGIONS, 4, generator=generator).sort(dim=-1).values
    text = {"input_ids": input_ids, "attention_mask": attention_mask}
    images = {"region_features": region_features, "region_mask": region_mask, "region_boxes": region_boxes}
    return text, images


def _brute_force(model, text, images) -> np.ndarray:
    """One forward pass of the model per pair, each trimmed to its own words and regions."""
    scores = np.zeros((NUM_IMAGES, NUM_CAPTIONS), dtype=np.float32)
    task = {"task": "retrieval"} if isinstance(model, HierarchicalVLForMultiTask) else {}
    with torch.no_grad():
        for i in range(NUM_IMAGES):
            r = int(images["region_mask"][i].sum())
            for c in range(NUM_CAPTIONS):
                n = int(text["attention_mask"][c].sum())
                output = model(
                    **task,
                    input_ids=text["input_ids"][c : c + 1, :n],
                    attention_mask=text["attention_mask"][c : c + 1, :n],
                    region_features=images["region_features"][i : i + 1, :r],
                    region_mask=images["region_mask"][i : i + 1, :r],
                    region_boxes=images["region_boxes"][i : i + 1, :r],
                )
                scores[i, c] = output.logits.item()
    return scores


def _model(cls=HierarchicalVLForMultiTask, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return cls(HierarchicalVLConfig.from_preset("tiny", **overrides)).eval()


@pytest.fixture(scope="module")
def setup():
    model = _model()
    text, images = _corpus(model.config)
    return model, text, images, _brute_force(model, text, images)


@pytest.mark.parametrize(
    "cls, overrides",
    [
        (HierarchicalVLForMultiTask, {}),
        (HierarchicalVLForImageTextRetrieval, {"use_box_embedding": True}),
        (HierarchicalVLForImageTextRetrieval, {"task_layers": {"retrieval": 1}}),
        (HierarchicalVLForImageTextRetrieval, {"task_layers": {"retrieval": 3}, "num_null_tokens": 0}),
    ],
)
def test_score_matrix_matches_per_pair_forward(cls, overrides):
    model = _model(cls, **overrides)
    text, images = _corpus(model.config)
    expected = _brute_force(model, text, images)
    scorer = RetrievalScorer(model, batch_size=7, images_per_block=4, captions_per_block=5)
    scores = scorer.score_matrix(text, images, progress=False)
    assert scores.dtype == np.float32 and scores.shape == (NUM_IMAGES, NUM_CAPTIONS)
    assert np.abs(scores - expected).max() < 1e-5
    assert np.array_equal(np.argsort(-scores, axis=1), np.argsort(-expected, axis=1))
    assert np.array_equal(np.argsort(-scores, axis=0), np.argsort(-expected, axis=0))
    assert scorer.last_stats.pairs_scored == NUM_IMAGES * NUM_CAPTIONS
    assert scorer.last_stats.blocks_total == 2 * 2


def test_block_layout_and_batch_size_do_not_change_scores(setup):
    model, text, images, expected = setup
    for batch_size, images_per_block, captions_per_block in [(1, 1, 1), (1000, 100, 100), (3, 2, 7)]:
        scorer = RetrievalScorer(
            model,
            batch_size=batch_size,
            images_per_block=images_per_block,
            captions_per_block=captions_per_block,
        )
        assert np.abs(scorer.score_matrix(text, images, progress=False) - expected).max() < 1e-5


def test_numpy_inputs_and_training_mode_restored(setup):
    model, text, images, expected = setup
    model.train()
    try:
        scorer = RetrievalScorer(model)
        scores = scorer.score_matrix(
            {key: value.numpy() for key, value in text.items()},
            {key: value.numpy() for key, value in images.items()},
            progress=False,
        )
        assert model.training
    finally:
        model.eval()
    assert np.abs(scores - expected).max() < 1e-5


def test_bfloat16_autocast_keeps_the_ranking_close(setup):
    model, text, images, expected = setup
    scores = RetrievalScorer(model, dtype=torch.bfloat16).score_matrix(text, images, progress=False)
    assert np.isfinite(scores).all()
    assert np.corrcoef(scores.ravel(), expected.ravel())[0, 1] > 0.99


def test_interrupted_run_resumes_from_the_cache(setup, tmp_path):
    model, text, images, expected = setup
    cache = tmp_path / "scores"

    def stop_after_three(done, total):
        if done == 3:
            raise KeyboardInterrupt

    scorer = RetrievalScorer(model, batch_size=4, images_per_block=2, captions_per_block=4)
    with pytest.raises(KeyboardInterrupt):
        scorer.score_matrix(text, images, cache_dir=cache, progress=False, on_block=stop_after_three)
    assert len(list(cache.glob("block_*.npy"))) == 3
    assert not list(cache.glob("*.tmp"))

    resumed = scorer.score_matrix(text, images, cache_dir=cache, progress=False)
    stats = scorer.last_stats
    assert (stats.blocks_loaded, stats.blocks_computed, stats.blocks_total) == (3, 3, 6)
    uninterrupted = RetrievalScorer(model, batch_size=4, images_per_block=2, captions_per_block=4).score_matrix(
        text, images, progress=False
    )
    np.testing.assert_array_equal(resumed, uninterrupted)
    assert np.abs(resumed - expected).max() < 1e-5

    again = scorer.score_matrix(text, images, cache_dir=cache, progress=False)
    assert scorer.last_stats.blocks_loaded == 6 and scorer.last_stats.pairs_scored == 0
    assert scorer.last_stats.encode_seconds == 0.0  # nothing left to score: no encoding either
    np.testing.assert_array_equal(again, resumed)


def test_stale_cache_is_refused(setup, tmp_path):
    model, text, images, _ = setup
    cache = tmp_path / "scores"
    RetrievalScorer(model, images_per_block=3, captions_per_block=6).score_matrix(
        text, images, cache_dir=cache, progress=False
    )
    other_inputs = dict(images, region_features=images["region_features"] + 1.0)
    with pytest.raises(StaleCacheError, match="another model, other inputs or other settings"):
        RetrievalScorer(model, images_per_block=3, captions_per_block=6).score_matrix(
            text, other_inputs, cache_dir=cache, progress=False
        )
    with pytest.raises(StaleCacheError):
        RetrievalScorer(model, images_per_block=2, captions_per_block=6).score_matrix(
            text, images, cache_dir=cache, progress=False
        )
    other_model = _model(seed=1)
    with pytest.raises(StaleCacheError):
        RetrievalScorer(other_model, images_per_block=3, captions_per_block=6).score_matrix(
            text, images, cache_dir=cache, progress=False
        )


def test_damaged_cache_block_is_named(setup, tmp_path):
    model, text, images, _ = setup
    cache = tmp_path / "scores"
    scorer = RetrievalScorer(model, images_per_block=2, captions_per_block=4)
    scorer.score_matrix(text, images, cache_dir=cache, progress=False)
    block = sorted(cache.glob("block_*.npy"))[0]
    np.save(block, np.zeros((1, 1), dtype=np.float32))
    with pytest.raises(ValueError, match=f"{block.name} holds a float32 array of shape \\(1, 1\\)"):
        scorer.score_matrix(text, images, cache_dir=cache, progress=False)
    block.write_bytes(b"not an array")
    with pytest.raises(ValueError, match=f"{block.name} is not a readable .npy array"):
        scorer.score_matrix(text, images, cache_dir=cache, progress=False)
    np.save(block, np.array([{"a": 1}], dtype=object))  # a pickled object is never loaded
    with pytest.raises(ValueError, match=block.name):
        scorer.score_matrix(text, images, cache_dir=cache, progress=False)


def test_full_shortlist_equals_the_exact_matrix(setup):
    model, text, images, expected = setup
    scorer = RetrievalScorer(model, batch_size=5, images_per_block=4, captions_per_block=4)
    exact = scorer.score_matrix(text, images, progress=False)
    two_stage = scorer.score_matrix(text, images, progress=False, shortlist=NUM_CAPTIONS)
    assert np.isfinite(two_stage).all()
    assert np.abs(two_stage - exact).max() < 1e-6
    assert np.array_equal(np.argsort(-two_stage, axis=1), np.argsort(-expected, axis=1))
    agreement = shortlist_agreement(two_stage, exact)
    assert agreement == {
        "i2t_top1": 1.0,
        "t2i_top1": 1.0,
        "i2t_top10_coverage": 1.0,
        "t2i_top10_coverage": 1.0,
        "pairs_scored": 1.0,
    }


def test_partial_shortlist_scores_exactly_the_union_of_both_shortlists(setup, tmp_path):
    model, text, images, expected = setup
    scorer = RetrievalScorer(model, batch_size=5, images_per_block=4, captions_per_block=4)
    cheap = scorer.dual_encoder_scores(text, images)
    assert cheap.shape == (NUM_IMAGES, NUM_CAPTIONS) and np.isfinite(cheap).all()
    k = 2
    two_stage = scorer.score_matrix(text, images, progress=False, shortlist=k, cache_dir=tmp_path / "two")
    scored = np.isfinite(two_stage)
    np.testing.assert_array_equal(scored, shortlist_mask(cheap, k))
    assert (scored.sum(axis=1) >= k).all() and (scored.sum(axis=0) >= k).all()
    # Each image's top-k captions and each caption's top-k images under the cheap score are scored exactly.
    top_captions = np.argsort(-cheap, axis=1)[:, :k]
    assert np.take_along_axis(scored, top_captions, axis=1).all()
    assert np.abs(two_stage[scored] - expected[scored]).max() < 1e-5
    assert scorer.last_stats.pairs_scored == scored.sum()
    agreement = shortlist_agreement(two_stage, expected)
    assert all(0.0 <= value <= 1.0 for value in agreement.values())
    assert agreement["pairs_scored"] == pytest.approx(scored.mean())
    # An external first stage can replace the dual encoder; a perfect one recovers the exact top-1 everywhere.
    oracle = scorer.score_matrix(text, images, progress=False, shortlist=1, shortlist_scores=expected)
    agreement = shortlist_agreement(oracle, expected)
    assert agreement["i2t_top1"] == 1.0 and agreement["t2i_top1"] == 1.0


def test_first_layer_first_stage_matches_the_model(setup):
    """The first-layer first stage: layer 1 of the model on the pair, pooled with layer-0 summary weights."""
    model, text, images, _ = setup
    base, decoder = model.hierarchical_vl, model.retrieval_decoder
    expected = np.zeros((NUM_IMAGES, NUM_CAPTIONS), dtype=np.float32)
    with torch.no_grad():
        for i in range(NUM_IMAGES):
            r = int(images["region_mask"][i].sum())
            features = images["region_features"][i : i + 1, :r]
            image_mask = torch.ones(1, r, dtype=torch.bool)
            image0 = base.embed_image(features)
            image_weights = decoder.image_summary(image0, image_mask)[1]  # (1, T)
            for c in range(NUM_CAPTIONS):
                n = int(text["attention_mask"][c].sum())
                ids, text_mask = text["input_ids"][c : c + 1, :n], torch.ones(1, n, dtype=torch.bool)
                text0 = base.embed_text(ids, text_mask)
                text_weights = decoder.text_summary(text0, text_mask)[1]  # (1, N)
                layer1 = base(input_ids=ids, region_features=features, num_layers=1)
                text_vector = text_weights @ layer1.text_last_hidden_state[0]  # (1, d)
                image_vector = image_weights @ layer1.image_last_hidden_state[0]
                expected[i, c] = (image_vector * decoder.bilinear(text_vector)).sum()
    scorer = RetrievalScorer(model, batch_size=6, images_per_block=3, captions_per_block=5)
    cheap = scorer.first_stage_scores(text, images, "first-layer")
    assert np.abs(cheap - expected).max() < 1e-5
    two_stage = scorer.score_matrix(text, images, progress=False, shortlist=2, first_stage="first-layer")
    np.testing.assert_array_equal(np.isfinite(two_stage), shortlist_mask(expected, 2))
    with pytest.raises(ValueError, match="first_stage"):
        scorer.first_stage_scores(text, images, "oracle")


def test_shortlist_helpers_on_a_known_matrix():
    cheap = np.array([[3.0, 2.0, 1.0], [0.0, 5.0, 4.0]])
    np.testing.assert_array_equal(shortlist_mask(cheap, 1), [[True, False, False], [False, True, True]])
    exact = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0]])
    two_stage = np.where(shortlist_mask(cheap, 1), exact, -np.inf)
    agreement = shortlist_agreement(two_stage, exact, top=1)
    assert agreement["i2t_top1"] == 0.5  # image 0's best caption (1) was not shortlisted
    assert agreement["t2i_top1"] == pytest.approx(2 / 3)  # caption 1's best image (0) was not shortlisted
    assert agreement["i2t_top1_coverage"] == 0.5
    assert agreement["pairs_scored"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        shortlist_mask(cheap, 0)


def test_invalid_models_and_inputs_are_rejected(setup):
    model, text, images, _ = setup
    with pytest.raises(ValueError, match="cannot score image-caption pairs"):
        RetrievalScorer(HierarchicalVLForVisualQuestionAnswering(model.config))
    without_retrieval = HierarchicalVLForMultiTask(
        HierarchicalVLConfig.from_preset("tiny", task_layers={"vqa": 3, "grounding": 1})
    )
    with pytest.raises(ValueError, match="cannot score image-caption pairs"):
        RetrievalScorer(without_retrieval)
    with pytest.raises(AttributeError, match="no retrieval decoder"):
        without_retrieval.score_pairs(text, images, torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))
    assert not hasattr(HierarchicalVLForVisualQuestionAnswering(model.config), "score_pairs")
    scorer = RetrievalScorer(model)
    with pytest.raises(ValueError, match="right-padded"):
        scorer.score_matrix(dict(text, attention_mask=text["attention_mask"].flip(1)), images, progress=False)
    with pytest.raises(ValueError, match="width"):
        scorer.score_matrix(text, dict(images, region_features=images["region_features"][..., :3]), progress=False)
    with pytest.raises(ValueError, match="no valid region"):
        scorer.score_matrix(text, dict(images, region_mask=torch.zeros_like(images["region_mask"])), progress=False)
