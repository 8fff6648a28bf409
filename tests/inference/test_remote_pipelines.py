"""Pipelines from a checkpoint alone: its own pipeline code, run where this package cannot be imported."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import pipeline

from hierarchical_vl import HierarchicalVLConfig, HierarchicalVLForMultiTask, HierarchicalVLForVisualQuestionAnswering
from hierarchical_vl.hub import save_for_hub
from hierarchical_vl.loading import save_model_with_checksums, verify_checksums
from hierarchical_vl.pipelines import PIPELINE_TASKS, register_pipelines
from hierarchical_vl.remote_pipelines import (
    REMOTE_PIPELINE_FILES,
    custom_pipelines,
    remote_pipeline_sources,
    save_remote_pipelines,
)

from .conftest import make_record

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "hierarchical_vl"
QUESTION = "what color is the cat ?"
CAPTIONS = ["a black cat sits on a red mat", "two dogs play with a ball in the park", "a man rides a horse"]
CAPTION = "a black cat sits on a red mat"
PHRASES = ["a black cat", "a red mat"]

# Runs in a fresh interpreter (-I: no PYTHONPATH, no user site) with every sys.path entry that holds the package
# removed, so the pipelines can only come from the checkpoint's own code.
_REMOTE_SCRIPT = r"""
import json, os, sys
sys.path[:] = [p for p in sys.path if not os.path.isdir(os.path.join(p or os.getcwd(), "hierarchical_vl"))]
try:
    import hierarchical_vl  # noqa: F401
    importable = True
except ImportError:
    importable = False
import numpy as np
from transformers import pipeline

checkpoint, arrays = sys.argv[1], np.load(sys.argv[2], allow_pickle=False)
inputs = json.loads(sys.argv[3])
image = {"region_features": arrays["features"], "region_boxes": arrays["boxes"], "image_size": inputs["size"]}
store = {"img": {"features": arrays["features"], "boxes": arrays["boxes"], "width": inputs["size"][0],
                 "height": inputs["size"][1]}}
out = {"importable": importable}
vqa = pipeline("hierarchical-vl-vqa", model=checkpoint, trust_remote_code=True, device="cpu")
out["vqa_module"] = type(vqa).__module__
out["vqa"] = vqa({"question": inputs["question"], **image}, top_k=3)
out["vqa_store"] = vqa({"question": inputs["question"], "image_id": "img"}, top_k=3, feature_store=store)
rank = pipeline("hierarchical-vl-retrieval", model=checkpoint, trust_remote_code=True, device="cpu")
out["retrieval"] = rank({"captions": inputs["captions"], **image})
ground = pipeline("hierarchical-vl-grounding", model=checkpoint, trust_remote_code=True, device="cpu")
out["grounding"] = ground({"caption": inputs["caption"], "phrases": inputs["phrases"], **image}, top_k=2)
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module", autouse=True)
def _registered():
    register_pipelines()


@pytest.fixture(scope="module")
def record():
    return make_record(7, 6)


@pytest.fixture(scope="module")
def hub_checkpoint(tmp_path_factory, tiny_config, processor) -> Path:
    """A multi-task checkpoint (model, processor, card, pipeline code) as `save_for_hub` writes it."""
    torch.manual_seed(3)
    directory = tmp_path_factory.mktemp("remote") / "multitask"
    save_for_hub(HierarchicalVLForMultiTask(tiny_config).eval(), processor, directory)
    return directory


def _image(record):
    size = [record["width"], record["height"]]
    return {"region_features": record["features"], "region_boxes": record["boxes"], "image_size": size}


def _installed_outputs(checkpoint: Path, record) -> dict:
    """What the installed package's pipelines give for the inputs of `_REMOTE_SCRIPT`."""
    image = _image(record)
    vqa = pipeline(PIPELINE_TASKS["vqa"], model=str(checkpoint), device="cpu")
    assert type(vqa).__module__ == "hierarchical_vl.pipelines"  # no remote code without trust_remote_code
    rank = pipeline(PIPELINE_TASKS["retrieval"], model=str(checkpoint), device="cpu")
    ground = pipeline(PIPELINE_TASKS["grounding"], model=str(checkpoint), device="cpu")
    result = {
        "vqa": vqa({"question": QUESTION, **image}, top_k=3),
        "retrieval": rank({"captions": CAPTIONS, **image}),
        "grounding": ground({"caption": CAPTION, "phrases": PHRASES, **image}, top_k=2),
    }
    return json.loads(json.dumps(result))  # the same plain types as the subprocess prints


def _assert_close(remote, installed, path="output"):
    """Equal structure, strings and integers; floats within 1e-5."""
    if isinstance(installed, dict):
        assert isinstance(remote, dict) and set(remote) == set(installed), path
        for key in installed:
            _assert_close(remote[key], installed[key], f"{path}.{key}")
    elif isinstance(installed, list):
        assert isinstance(remote, list) and len(remote) == len(installed), path
        for index, (left, right) in enumerate(zip(remote, installed)):
            _assert_close(left, right, f"{path}[{index}]")
    elif isinstance(installed, float):
        assert remote == pytest.approx(installed, abs=1e-5), path
    else:
        assert remote == installed, path


def test_checkpoint_pipelines_run_without_the_package(hub_checkpoint, record, tmp_path):
    arrays = tmp_path / "image.npz"
    np.savez(arrays, features=record["features"], boxes=record["boxes"])
    inputs = {
        "size": [record["width"], record["height"]],
        "question": QUESTION,
        "captions": CAPTIONS,
        "caption": CAPTION,
        "phrases": PHRASES,
    }
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "HF_", "TRANSFORMERS_"))
    }
    environment.update(
        HF_MODULES_CACHE=str(tmp_path / "modules"),
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
        OMP_NUM_THREADS="1",
    )
    completed = subprocess.run(
        [sys.executable, "-I", "-c", _REMOTE_SCRIPT, str(hub_checkpoint), str(arrays), json.dumps(inputs)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT "))
    remote = json.loads(line[len("RESULT ") :])
    assert remote.pop("importable") is False
    assert remote.pop("vqa_module").startswith("transformers_modules.")
    assert remote.pop("vqa_store") == remote["vqa"]  # an image id looked up in a plain-dict store

    installed = _installed_outputs(hub_checkpoint, record)
    _assert_close(remote, installed)
    assert [entry["answer"] for entry in remote["vqa"]] == [entry["answer"] for entry in installed["vqa"]]
    assert len(remote["retrieval"]) == len(CAPTIONS) and len(remote["grounding"]) == len(PHRASES)


def test_saved_files_are_the_package_modules(hub_checkpoint):
    sources = remote_pipeline_sources()
    assert set(sources) == set(REMOTE_PIPELINE_FILES)
    for name, source_name in REMOTE_PIPELINE_FILES.items():
        assert (hub_checkpoint / name).read_text("utf-8") == sources[name]
        original = (PACKAGE / source_name).read_text("utf-8")
        if name == "pipeline_hierarchical_vl.py":  # the one flattened import, nothing else
            assert sources[name] == original.replace("from .data.image_regions import", "from .image_regions import")
        elif name == "tasks.py":  # the specs embedded, nothing else
            specs = (PACKAGE / "task_specs.json").read_text("utf-8")
            line = "_SPECS_TEXT: str | None = None\n"
            assert sources[name] == original.replace(line, f"_SPECS_TEXT: str | None = {specs!r}\n")
        else:
            assert sources[name] == original
    # every relative import of the shipped code is a file beside it (transformers copies only those)
    for name, text in sources.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert f"{node.module}.py" in sources, (name, node.module)


def test_config_records_the_pipelines_for_remote_code_only(hub_checkpoint):
    saved = json.loads((hub_checkpoint / "config.json").read_text())
    assert saved["custom_pipelines"] == custom_pipelines()
    assert set(saved["custom_pipelines"]) == set(PIPELINE_TASKS.values())
    assert saved["custom_pipelines"]["hierarchical-vl-vqa"] == {
        "impl": "pipeline_hierarchical_vl.VQAPipeline",
        "pt": ["AutoModel"],
        "type": "multimodal",
    }
    # the installed configuration class hides them (its registered pipelines serve these tasks) and does not
    # write them back: only the save that writes the code does
    config = HierarchicalVLConfig.from_pretrained(hub_checkpoint)
    assert config.custom_pipelines == {} and config._custom_pipelines == saved["custom_pipelines"]
    assert "custom_pipelines" not in config.to_dict() and "_custom_pipelines" not in config.to_dict()


def test_trainer_save_carries_the_pipeline_code_in_its_checksums(tmp_path, tiny_config):
    model = HierarchicalVLForVisualQuestionAnswering(tiny_config).eval()
    names = save_model_with_checksums(model, tmp_path / "model")
    assert set(REMOTE_PIPELINE_FILES) <= set(names)
    assert verify_checksums(tmp_path / "model")
    assert "custom_pipelines" in json.loads((tmp_path / "model" / "config.json").read_text())


def test_save_remote_pipelines_names_the_bad_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        save_remote_pipelines(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="config.json: not a JSON object"):
        save_remote_pipelines(tmp_path)
