"""Shared pieces of the inference tests: a tiny tokenizer and processor, saved tiny checkpoints of every model
class, and an in-memory stand-in for the region-feature store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hierarchical_vl import (
    HierarchicalVLConfig,
    HierarchicalVLForImageTextRetrieval,
    HierarchicalVLForMultiTask,
    HierarchicalVLForVisualGrounding,
    HierarchicalVLForVisualQuestionAnswering,
    HierarchicalVLModel,
    HierarchicalVLProcessor,
    HierarchicalVLTokenizer,
)

TEXTS = [
    "what color is the cat ?",
    "how many dogs are on the sofa ?",
    "is there a red ball ?",
    "a black cat sits on a red mat",
    "two dogs play with a ball in the park",
    "a man rides a horse on the beach",
]
ANSWERS = ["yes", "no", "red", "black", "two", "cat", "dog"]
FEATURE_DIM = 20  # the tiny preset's region_feature_dim
MAX_REGIONS = 8
IMAGE_SIZE = (64, 48)

CHECKPOINT_CLASSES = {
    "vqa": HierarchicalVLForVisualQuestionAnswering,
    "retrieval": HierarchicalVLForImageTextRetrieval,
    "grounding": HierarchicalVLForVisualGrounding,
    "multitask": HierarchicalVLForMultiTask,
    "encoder": HierarchicalVLModel,
}


class InMemoryFeatureStore:
    """Duck-typed region-feature store: ``store[image_id]`` -> record, ``KeyError`` for unknown ids."""

    def __init__(self, records: dict[str, dict]):
        self._records = records

    def __getitem__(self, image_id):
        return self._records[str(image_id)]

    def ids(self) -> list[str]:
        return list(self._records)


def make_record(seed: int, num_regions: int) -> dict:
    rng = np.random.default_rng(seed)
    width, height = IMAGE_SIZE
    x1 = rng.uniform(0, width - 16, num_regions)
    y1 = rng.uniform(0, height - 16, num_regions)
    x2 = x1 + rng.uniform(14, width - 1 - x1)  # at least 14 pixels wide and high
    y2 = y1 + rng.uniform(14, height - 1 - y1)
    boxes = np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)  # (T, 4) x1 y1 x2 y2
    return {
        "features": rng.standard_normal((num_regions, FEATURE_DIM)).astype(np.float16),
        "boxes": boxes,
        "width": float(width),
        "height": float(height),
    }


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread (and do not fight the other test worker for the cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tokenizer() -> HierarchicalVLTokenizer:
    return HierarchicalVLTokenizer.from_texts(TEXTS)


@pytest.fixture(scope="session")
def processor(tokenizer) -> HierarchicalVLProcessor:
    return HierarchicalVLProcessor(tokenizer, max_regions=MAX_REGIONS, max_words=14)


@pytest.fixture(scope="session")
def tiny_config(tokenizer) -> HierarchicalVLConfig:
    return HierarchicalVLConfig.from_preset(
        "tiny", vocab_size=len(tokenizer), id2label=dict(enumerate(ANSWERS)), max_caption_words=10
    )


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory, tiny_config, processor) -> dict[str, Path]:
    """One saved checkpoint (model + processor) per model class."""
    root = tmp_path_factory.mktemp("checkpoints")
    paths = {}
    for seed, (name, model_class) in enumerate(CHECKPOINT_CLASSES.items()):
        torch.manual_seed(seed)
        model = model_class(tiny_config).eval()
        paths[name] = root / name
        model.save_pretrained(paths[name])
        processor.save_pretrained(paths[name])
    return paths


@pytest.fixture(scope="session")
def store() -> InMemoryFeatureStore:
    # 10 regions for img3: more than the processor's cap of 8.
    return InMemoryFeatureStore({f"img{i}": make_record(i, n) for i, n in enumerate((5, 7, 3, 10))})
