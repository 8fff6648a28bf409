"""Hard negatives mined from the batch: the hardest by score, in both directions, never a pair that matches."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from hierarchical_vl import HierarchicalVLConfig, HierarchicalVLForImageTextRetrieval
from hierarchical_vl.data import EncodedCaptionDataset, RetrievalCollator
from hierarchical_vl.training.arguments import TrainingArguments, load_training_arguments
from hierarchical_vl.training.negative_mining import hard_negative_pairs, mine_hard_negatives
from hierarchical_vl.training.run import prepare_data, train_from_arguments

from .conftest import write_config
from .test_trainer import _assert_same_weights, _train_until_killed, _weights


def _brute_force(scores, caption_image, k):
    """Per positive, by sorting every candidate: the k hardest other captions and the k hardest other images."""
    num_images, num_captions = scores.shape
    captions, images = [], []
    for i in range(num_captions):
        own = int(caption_image[i])
        row = [j for j in range(num_captions) if int(caption_image[j]) != own]
        captions.append(sorted(row, key=lambda j: -float(scores[own, j]))[:k])
        column = [u for u in range(num_images) if u != own]
        images.append(sorted(column, key=lambda u: -float(scores[u, i]))[:k])
    return captions, images


def _expected_pairs(captions, images, caption_image, k):
    """The brute-force choice in the documented order: other captions rank by rank, then other images."""
    size = len(captions)
    pairs = [(c[r], int(caption_image[i]), False) for r in range(k) for i, c in enumerate(captions) if r < len(c)]
    pairs += [(i, u[r], True) for r in range(k) for i, u in enumerate(images) if r < len(u)]
    assert all(len(c) <= k and len(u) <= k for c, u in zip(captions, images)) and size
    return pairs


@pytest.mark.parametrize("k", [1, 2, 3, 10])
def test_hard_negatives_are_the_hardest_by_brute_force(k):
    generator = torch.Generator().manual_seed(k)
    caption_image = torch.tensor([0, 1, 1, 2, 3, 3, 3, 4])  # images 1 and 3 have several captions in the batch
    scores = torch.randn(5, 8, generator=generator)  # distinct values: no ties
    caption_rows, image_rows, other_image = hard_negative_pairs(scores, caption_image, k)
    captions, images = _brute_force(scores, caption_image, k)
    chosen = list(zip(caption_rows.tolist(), image_rows.tolist(), other_image.tolist()))
    assert chosen == _expected_pairs(captions, images, caption_image, k)
    assert all(caption_image[c] != u for c, u, _ in chosen)  # never a matching pair
    # Counts: min(k, candidates) per positive and direction (image 3's captions have 5 other captions).
    assert (~other_image).sum() == sum(min(k, 8 - int((caption_image == caption_image[i]).sum())) for i in range(8))
    assert other_image.sum() == 8 * min(k, 4)


def test_fewer_candidates_than_k_gives_as_many_as_there_are():
    scores = torch.arange(6.0).reshape(2, 3)
    caption_rows, image_rows, other_image = hard_negative_pairs(scores, torch.tensor([0, 0, 1]), 5)
    # Image 0 has one other caption (2); image 1 has two (1 scores 4, 0 scores 3); each caption one other image.
    pairs = list(zip(caption_rows.tolist(), image_rows.tolist(), other_image.tolist()))
    assert pairs == [
        (2, 0, False),
        (2, 0, False),
        (1, 1, False),
        (0, 1, False),
        (0, 1, True),
        (1, 1, True),
        (2, 0, True),
    ]
    assert hard_negative_pairs(scores, torch.tensor([0, 0, 1]), 0)[0].numel() == 0


class _ForcedScores:
    """A model stand-in whose pair scores are a known table: score(image u, caption c) = table[u, c]."""

    def __init__(self, table):
        self.table = table
        self.training = True
        self.modes = []

    def eval(self):
        self.training = False
        return self

    def train(self, mode=True):
        self.training = mode
        return self

    def score_pairs(self, text_inputs, image_inputs, text_index, image_index):
        self.modes.append(self.training)
        caption = text_inputs["input_ids"][text_index, 0]  # the batch marks each caption in its first token
        image = image_inputs["region_features"][image_index, 0, 0].long()  # and each image in a feature
        return self.table[image, caption]


def _hand_built_batch():
    """Six positives over four images (image 2 has three captions); caption c is marked by token c + 1."""
    image_of = torch.tensor([0, 1, 2, 2, 3, 2])
    input_ids = torch.arange(1, 7)[:, None].repeat(1, 3)  # (6, 3)
    region_features = image_of.float()[:, None, None].expand(6, 2, 4).clone()  # (6, 2, 4)
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones(6, 3, dtype=torch.long),
        "region_features": region_features,
        "region_mask": torch.ones(6, 2, dtype=torch.long),
        "region_boxes": torch.zeros(6, 2, 4),
        "labels": torch.ones(6),
        "image_positions": image_of * 10,  # dataset positions: any ids, equal for the same image
        "metadata": {"image_id": image_of.tolist()},
    }, image_of


def test_mined_batch_holds_the_positives_then_the_forced_hardest_negatives():
    batch, image_of = _hand_built_batch()
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(4, 7, generator=generator)  # (image, caption token); token 0 is unused
    model = _ForcedScores(table)
    mined = mine_hard_negatives(model, batch, 2)
    assert model.modes == [False] and model.training  # scored in eval mode, then back to training mode
    assert "image_positions" not in mined and "metadata" not in mined
    captions = mined["input_ids"][:, 0] - 1  # (B',) caption of each row
    images = mined["region_features"][:, 0, 0].long()  # (B',) image of each row
    assert captions[:6].tolist() == list(range(6)) and images[:6].tolist() == image_of.tolist()

    scores = table[:, 1:]  # (U, B): image u, caption c
    expected_captions, expected_images = _brute_force(scores, image_of, 2)
    expected = [
        (c, int(image_of[i])) for rank in range(2) for i in range(6) for c in expected_captions[i][rank : rank + 1]
    ]
    expected += [(i, u) for rank in range(2) for i in range(6) for u in expected_images[i][rank : rank + 1]]
    assert list(zip(captions[6:].tolist(), images[6:].tolist())) == expected
    # Image 2's captions have three other captions to choose from, the others three too: 2 each way.
    assert len(mined["labels"]) == 6 + 6 * 2 + 6 * 2
    assert mined["labels"].tolist() == [1.0] * 6 + [0.0] * 24
    assert all(image_of[c] != u for c, u in zip(captions[6:].tolist(), images[6:].tolist()))
    for name in ("attention_mask", "region_mask", "region_boxes"):
        assert mined[name].shape[0] == 30


def test_a_batch_without_image_positions_is_refused():
    batch, _ = _hand_built_batch()
    del batch["image_positions"]
    with pytest.raises(ValueError, match="negative_mining='hard'"):
        mine_hard_negatives(_ForcedScores(torch.zeros(4, 7)), batch, 1)


def test_real_model_negatives_outscore_every_negative_left_out():
    """With a real model: the chosen negatives have the highest forward-pass logits among the in-batch candidates."""
    torch.manual_seed(0)
    config = HierarchicalVLConfig.from_preset("tiny")
    model = HierarchicalVLForImageTextRetrieval(config).train()
    generator = torch.Generator().manual_seed(1)
    batch, image_of = _hand_built_batch()
    texts = torch.randint(2, config.vocab_size, (6, 3), generator=generator)
    features = torch.randn(4, 2, config.region_feature_dim, generator=generator)
    batch["input_ids"], batch["region_features"] = texts, features[image_of]
    mined = mine_hard_negatives(model, batch, 1)
    assert model.training  # back in training mode
    model.eval()
    with torch.no_grad():
        logit = {
            (c, u): float(model(input_ids=texts[c : c + 1], region_features=features[u : u + 1]).logits)
            for c, u in itertools.product(range(6), range(4))
        }
    rows = [
        (
            next(c for c in range(6) if torch.equal(mined["input_ids"][r], texts[c])),
            next(u for u in range(4) if torch.equal(mined["region_features"][r], features[u])),
        )
        for r in range(len(mined["labels"]))
    ]
    assert rows[:6] == [(i, int(image_of[i])) for i in range(6)] and len(rows) == 6 + 6 + 6
    for i, (caption, image) in enumerate(rows[6:12]):  # the hardest other caption of positive i's image
        assert image == image_of[i] and image_of[caption] != image_of[i]
        assert logit[(caption, image)] >= max(logit[(c, image)] for c in range(6) if image_of[c] != image) - 1e-5
    for i, (caption, image) in enumerate(rows[12:]):  # the hardest other image of caption i
        assert caption == i and image != image_of[i]
        assert logit[(i, image)] >= max(logit[(i, u)] for u in range(4) if u != image_of[i]) - 1e-5


def test_the_collator_in_hard_mode_emits_the_positives_and_their_image_positions(tiny_corpus):
    args = _hard_args(tiny_corpus, "/nonexistent")
    prepared = prepare_data(args)
    captions = prepared.train["retrieval"]
    assert isinstance(captions, EncodedCaptionDataset)
    index = np.arange(6)
    batch = RetrievalCollator(captions, negatives_per_positive=3, negative_mining="hard")(index)
    assert batch["labels"].tolist() == [1.0] * 6
    assert batch["image_positions"].tolist() == captions.caption_image[index].tolist()
    assert batch["metadata"]["pair"] == ["positive"] * 6
    with pytest.raises(ValueError, match="negative_mining must be one of"):
        RetrievalCollator(captions, negative_mining="semi-hard")


def test_random_mining_is_todays_collator_bit_for_bit(tiny_corpus):
    prepared = prepare_data(_hard_args(tiny_corpus, "/nonexistent"))
    captions = prepared.train["retrieval"]
    index = np.arange(2, 10)
    default = RetrievalCollator(captions, negatives_per_positive=2, seed=5)(index)
    explicit = RetrievalCollator(captions, negatives_per_positive=2, seed=5, negative_mining="random")(index)
    assert default.keys() == explicit.keys() and "image_positions" not in default
    for key in ("input_ids", "region_features", "labels"):
        assert torch.equal(default[key], explicit[key])


def _hard_args(corpus, output_dir, mining="hard", path=None):
    changes = {
        "tasks": {"retrieval": {"iterations": 6, "lr_step": 3, "batch_size": 4}},
        "curriculum": [{"name": "retrieval", "tasks": ["retrieval"], "cycle_length": 3}],
        "data": {
            "root": str(corpus),
            "max_regions": 12,
            "retrieval_negatives": 2,
            "retrieval_negative_mining": mining,
        },
        "save_every": 2,
    }
    if path is None:
        return TrainingArguments(
            output_dir=str(output_dir),
            seed=7,
            model_preset="tiny",
            model_overrides={"region_feature_dim": 32},
            log_with=[],
            progress=False,
            **changes,
        )
    return load_training_arguments(write_config(path, corpus, output_dir, **changes))


def test_a_tiny_training_run_with_hard_negatives_resumes_to_identical_weights(tiny_corpus, tmp_path):
    whole = _hard_args(tiny_corpus, tmp_path / "whole", path=tmp_path / "whole.yaml")
    prepared = prepare_data(whole)
    result = train_from_arguments(whole, prepared)
    assert result.updates == 6 and np.isfinite(result.final_losses["retrieval"])
    config = tmp_path / "killed.yaml"
    killed = _hard_args(tiny_corpus, tmp_path / "killed", path=config)
    _train_until_killed(killed, prepared, 5)  # after the checkpoint at 4
    train_from_arguments(load_training_arguments(config), prepared)
    _assert_same_weights(_weights(tmp_path / "whole"), _weights(tmp_path / "killed"))
    # Hard mining trains something else than random shifts would.
    random = _hard_args(tiny_corpus, tmp_path / "random", mining="random", path=tmp_path / "random.yaml")
    train_from_arguments(random, prepare_data(random))
    assert any(
        not torch.equal(a, b)
        for a, b in zip(_weights(tmp_path / "whole").values(), _weights(tmp_path / "random").values())
    )


def test_mining_arguments_are_checked_and_old_files_resume(tmp_path, tiny_corpus):
    with pytest.raises(ValueError, match="data.retrieval_negative_mining must be one of"):
        _hard_args(tiny_corpus, tmp_path / "x", mining="semi-hard")
    args = _hard_args(tiny_corpus, tmp_path / "x", mining="random", path=tmp_path / "a.yaml")
    assert args.data.retrieval_negative_mining == "random"
    saved = tmp_path / "old.yaml"
    args.save(saved)  # as version 0.1 wrote it: without the field
    saved.write_text("\n".join(line for line in saved.read_text().splitlines() if "negative_mining" not in line))
    assert args.run_differences(saved) == []
    hard = _hard_args(tiny_corpus, tmp_path / "x", path=tmp_path / "b.yaml")
    assert hard.run_differences(saved) == ["data.retrieval_negative_mining: '<absent>' -> 'hard'"]
