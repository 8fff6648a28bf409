"""A tiny-config model tester in the style of transformers' ``ModelTester`` classes."""

from __future__ import annotations

import torch

from hierarchical_vl import HierarchicalVLConfig


class HierarchicalVLModelTester:
    """Builds a tiny configuration and padded inputs with known lengths."""

    def __init__(self, batch_size=3, num_words=7, num_regions=6, num_phrases=2, seed=0, **config_overrides):
        self.batch_size = batch_size
        self.num_words = num_words
        self.num_regions = num_regions
        self.num_phrases = num_phrases
        self.seed = seed
        self.config_overrides = config_overrides

    def get_config(self, **overrides) -> HierarchicalVLConfig:
        return HierarchicalVLConfig.from_preset("tiny", **{**self.config_overrides, **overrides})

    def prepare_inputs(self, config: HierarchicalVLConfig) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed)
        b, n, t = self.batch_size, self.num_words, self.num_regions
        word_lengths = torch.tensor([n] + [max(2, n - 2 - i) for i in range(b - 1)])
        region_lengths = torch.tensor([max(1, t - 3)] + [t] * (b - 1))
        attention_mask = (torch.arange(n) < word_lengths[:, None]).long()
        region_mask = (torch.arange(t) < region_lengths[:, None]).long()
        input_ids = torch.randint(2, config.vocab_size, (b, n), generator=generator) * attention_mask
        region_features = torch.randn(b, t, config.region_feature_dim, generator=generator)
        region_boxes = torch.rand(b, t, 4, generator=generator).sort(dim=-1).values[..., [0, 1, 2, 3]]
        phrase_spans = torch.tensor([[[0, 1], [1, 1]]] * b)
        phrase_mask = torch.ones(b, self.num_phrases, dtype=torch.long)
        phrase_mask[1, 1] = 0
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "region_features": region_features,
            "region_mask": region_mask,
            "region_boxes": region_boxes,
            "phrase_spans": phrase_spans,
            "phrase_mask": phrase_mask,
        }
