"""The task registry, the one checkpoint loader and saving a checkpoint folder for the Hub."""

from __future__ import annotations

import json

import pytest
import torch

from hierarchical_vl import (
    HierarchicalVLConfig,
    HierarchicalVLForImageTextRetrieval,
    HierarchicalVLForMultiTask,
    HierarchicalVLModel,
    HierarchicalVLProcessor,
    HierarchicalVLTokenizer,
)
from hierarchical_vl.configuration_hierarchical_vl import TASKS
from hierarchical_vl.hub import save_for_hub
from hierarchical_vl.loading import load_checkpoint, load_processor
from hierarchical_vl.tasks import TASK_SPECS, model_tasks, task_spec


def test_registry_names_classes_that_exist_and_agree():
    assert tuple(TASK_SPECS) == TASKS
    config = HierarchicalVLConfig.from_preset("tiny")
    for name, spec in TASK_SPECS.items():
        assert spec.name == name
        assert model_tasks(spec.head_class(config)) == [name]
        assert spec.dataset_class.task == name
        assert callable(spec.collator_class) and callable(spec.evaluate_fn)
        assert spec.main_metric.startswith(f"{name}/")
        assert isinstance(spec.max_words(config), int)
    assert model_tasks(HierarchicalVLForMultiTask(config)) == list(TASKS)
    assert model_tasks(HierarchicalVLModel(config)) == []
    with pytest.raises(ValueError, match="known tasks"):
        task_spec("captioning")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    tokenizer = HierarchicalVLTokenizer.from_texts(["a red cube", "what colour is the cube ?"])
    config = HierarchicalVLConfig.from_preset("tiny", vocab_size=len(tokenizer), max_question_words=9)
    paths = {}
    for name, cls in (
        ("multitask", HierarchicalVLForMultiTask),
        ("retrieval", HierarchicalVLForImageTextRetrieval),
        ("encoder", HierarchicalVLModel),
    ):
        torch.manual_seed(0)
        paths[name] = root / name
        cls(config).save_pretrained(paths[name])
    HierarchicalVLProcessor(tokenizer, max_regions=5, max_words=6).save_pretrained(paths["multitask"])
    tokenizer.save_pretrained(paths["retrieval"])  # tokenizer only: the processor takes the model's caps
    multitask_config = json.loads((paths["multitask"] / "config.json").read_text())
    bare = root / "bare"
    bare.mkdir()
    multitask_config.pop("architectures")
    (bare / "config.json").write_text(json.dumps(multitask_config))
    HierarchicalVLForMultiTask(config).save_pretrained(bare / "weights")
    (bare / "model.safetensors").write_bytes((bare / "weights" / "model.safetensors").read_bytes())
    paths["bare"] = bare
    return paths


def test_load_checkpoint_picks_the_saved_class_or_refuses(checkpoints):
    assert type(load_checkpoint(checkpoints["multitask"])) is HierarchicalVLForMultiTask
    assert type(load_checkpoint(checkpoints["multitask"], task="vqa")) is HierarchicalVLForMultiTask
    retrieval = load_checkpoint(checkpoints["retrieval"], "retrieval", trust_remote_code=True)
    assert type(retrieval) is HierarchicalVLForImageTextRetrieval and not retrieval.training
    assert type(load_checkpoint(checkpoints["encoder"])) is HierarchicalVLModel
    with pytest.raises(ValueError, match="no vqa decoder"):
        load_checkpoint(checkpoints["retrieval"], "vqa")
    with pytest.raises(ValueError, match="no grounding decoder"):
        load_checkpoint(checkpoints["encoder"], "grounding")
    with pytest.raises(ValueError, match="unknown task"):
        load_checkpoint(checkpoints["multitask"], "captioning")
    with pytest.raises(FileNotFoundError, match="not a saved model directory"):
        load_checkpoint(checkpoints["multitask"].parent / "missing")
    # A checkpoint that records no class: the multi-task model, or the head of the task asked for.
    assert type(load_checkpoint(checkpoints["bare"])) is HierarchicalVLForMultiTask
    assert type(load_checkpoint(checkpoints["bare"], "retrieval")) is HierarchicalVLForImageTextRetrieval


def test_load_processor_with_or_without_processor_config(checkpoints):
    saved = load_processor(checkpoints["multitask"])
    assert (saved.max_regions, saved.max_words) == (5, 6)
    wrapped = load_processor(checkpoints["retrieval"])
    assert (wrapped.max_regions, wrapped.max_words) == (100, 9)  # the model configuration's caps
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        load_processor(checkpoints["encoder"])


def test_save_for_hub_from_a_checkpoint_folder(checkpoints, tmp_path):
    written = save_for_hub(checkpoints["multitask"], None, tmp_path / "hub", repo_id="someone/tiny")
    assert {"config.json", "model.safetensors", "processor_config.json", "README.md"} <= set(written)
    reloaded = load_checkpoint(tmp_path / "hub")
    original = load_checkpoint(checkpoints["multitask"])
    torch.testing.assert_close(reloaded.state_dict(), original.state_dict())
    assert "| Visual question answering |" in (tmp_path / "hub" / "README.md").read_text()
