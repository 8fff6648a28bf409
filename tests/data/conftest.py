"""Shared fixtures of the data tests: one small demo corpus in every feature format, its store and a tokenizer."""

from __future__ import annotations

import pytest

from hierarchical_vl import HierarchicalVLTokenizer
from hierarchical_vl.data import (
    FEATURE_FORMATS,
    DemoCorpusPaths,
    RegionFeatureStore,
    convert_region_features,
    generate_demo_corpus,
    load_flickr30k_entities,
    load_karpathy_captions,
    load_vqa,
)

DEMO_IMAGES = 24
DEMO_SEED = 3
DEMO_FEATURE_DIM = 32


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoCorpusPaths:
    """A 24-image demo corpus with 32-d features, written in all five feature formats."""
    return generate_demo_corpus(
        tmp_path_factory.mktemp("demo"),
        num_images=DEMO_IMAGES,
        seed=DEMO_SEED,
        feature_dim=DEMO_FEATURE_DIM,
        feature_formats=FEATURE_FORMATS,
    )


@pytest.fixture(scope="session")
def hf_cache(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("hf_cache")


@pytest.fixture(scope="session")
def demo_store(demo: DemoCorpusPaths, tmp_path_factory: pytest.TempPathFactory) -> RegionFeatureStore:
    path = tmp_path_factory.mktemp("stores") / "demo"
    convert_region_features(demo.features_tsv, path, progress=False)
    return RegionFeatureStore(path)


@pytest.fixture(scope="session")
def demo_datasets(demo: DemoCorpusPaths, hf_cache):
    """The demo corpus's annotations as map-style ``DatasetDict`` s."""
    return {
        "vqa": load_vqa(demo.vqa_questions["train2014"].parent, cache_dir=hf_cache),
        "captions": load_karpathy_captions(demo.karpathy_captions, cache_dir=hf_cache),
        "entities": load_flickr30k_entities(demo.entities_root, cache_dir=hf_cache),
    }


@pytest.fixture(scope="session")
def tokenizer(demo_datasets) -> HierarchicalVLTokenizer:
    texts = list(demo_datasets["vqa"]["train"]["question"]) + list(demo_datasets["captions"]["train"]["caption"])
    return HierarchicalVLTokenizer.from_texts(texts)
