import numpy as np
import pytest

from hierarchical_vl.extraction import RegionFeatureExtractor


@pytest.fixture(scope="session")
def tiny_extractor():
    return RegionFeatureExtractor.from_preset("tiny", seed=0)


@pytest.fixture(scope="session")
def images():
    """Random RGB images of different sizes and aspect ratios (two of one size)."""
    rng = np.random.default_rng(0)
    sizes = [(120, 90), (64, 200), (120, 90), (150, 150), (40, 70)]
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
