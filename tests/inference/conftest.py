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


@pytest.fixture(scope="session")
def demo_app_files(tmp_path_factory) -> dict[str, Path]:
    """A tiny demo corpus (with its scene pictures) and a tiny random multi-task checkpoint that reads its
    features: ``{"corpus", "features", "checkpoint"}``."""
    import json

    from hierarchical_vl.data import generate_demo_corpus
    from hierarchical_vl.data.demo_corpus import COLORS, SHAPES

    root = tmp_path_factory.mktemp("demo_app")
    paths = generate_demo_corpus(root / "corpus", num_images=12, seed=0, feature_dim=FEATURE_DIM, max_regions=12)
    questions = json.loads(paths.vqa_questions["train2014"].read_text())["questions"]
    captions = json.loads(paths.karpathy_captions.read_text())["images"]
    texts = [q["question"] for q in questions] + [s["raw"] for image in captions for s in image["sentences"]]
    tokenizer = HierarchicalVLTokenizer.from_texts(texts)
    config = HierarchicalVLConfig.from_preset(
        "tiny", vocab_size=len(tokenizer), id2label=dict(enumerate([*COLORS, *SHAPES, "yes", "no"]))
    )
    torch.manual_seed(0)
    checkpoint = root / "checkpoint"
    HierarchicalVLForMultiTask(config).eval().save_pretrained(checkpoint)
    HierarchicalVLProcessor(tokenizer, max_regions=12, max_words=14).save_pretrained(checkpoint)
    return {"corpus": paths.root, "features": paths.features_tsv, "checkpoint": checkpoint}


@pytest.fixture(scope="session")
def photo_checkpoint(demo_app_files, tmp_path_factory) -> Path:
    """A tiny random multi-task checkpoint with a tiny region-feature extractor saved beside it (``detector/``)."""
    from hierarchical_vl import RegionFeatureExtractor

    extractor = RegionFeatureExtractor.from_preset("tiny", seed=0)
    config = HierarchicalVLConfig.from_pretrained(demo_app_files["checkpoint"])
    config.region_feature_dim = extractor.config.feature_dim
    folder = tmp_path_factory.mktemp("photo_checkpoint")
    torch.manual_seed(0)
    HierarchicalVLForMultiTask(config).eval().save_pretrained(folder)
    HierarchicalVLProcessor.from_pretrained(demo_app_files["checkpoint"]).save_pretrained(folder)
    extractor.save_pretrained(folder / "detector")
    return folder
