import pytest
import yaml

from hierarchical_vl.data import generate_demo_corpus


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    generate_demo_corpus(root, num_images=40, seed=3, feature_dim=32, min_regions=6, max_regions=12)
    return root


def write_config(path, corpus, output_dir, **changes):
    """A tiny two-stage training configuration over the tiny corpus."""
    config = {
        "output_dir": str(output_dir),
        "seed": 7,
        "model_preset": "tiny",
        "model_overrides": {"region_feature_dim": 32},
        "tasks": {
            "grounding": {"iterations": 8, "lr_step": 4, "batch_size": 4},
            "vqa": {"iterations": 12, "lr_step": 6, "batch_size": 4},
        },
        "curriculum": [
            {"name": "grounding", "tasks": ["grounding"], "cycle_length": 4},
            {"name": "all", "tasks": ["grounding", "vqa"], "cycle_length": 5, "evaluate": []},
        ],
        "data": {"root": str(corpus), "min_answer_frequency": 0, "max_regions": 12},
        "log_with": [],
        "progress": False,
        "save_every": 5,
        "keep_last": 3,
    }
    for key, value in changes.items():
        config[key] = value
    path.write_text(yaml.safe_dump(config))
    return path
