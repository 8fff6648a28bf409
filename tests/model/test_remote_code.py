"""A saved checkpoint loads with ``trust_remote_code=True`` where the package is not importable."""

import json
import subprocess
import sys
import textwrap

import torch
from transformers import AutoConfig, AutoModel, AutoModelForVisualQuestionAnswering

from hierarchical_vl import (
    HierarchicalVLConfig,
    HierarchicalVLForMultiTask,
    HierarchicalVLModel,
    HierarchicalVLProcessor,
    HierarchicalVLTokenizer,
)


def test_auto_classes_know_the_model(tmp_path):
    config = HierarchicalVLConfig.from_preset("tiny")
    HierarchicalVLForMultiTask(config).save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), HierarchicalVLConfig)
    assert isinstance(AutoModel.from_pretrained(tmp_path), HierarchicalVLModel)
    assert type(AutoModelForVisualQuestionAnswering.from_pretrained(tmp_path)).__name__ == (
        "HierarchicalVLForVisualQuestionAnswering"
    )
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"]["AutoModel"] == "modeling_hierarchical_vl.HierarchicalVLForMultiTask"
    assert (tmp_path / "modeling_hierarchical_vl.py").exists() and (
        tmp_path / "configuration_hierarchical_vl.py"
    ).exists()


def test_trust_remote_code_loads_without_the_package(tmp_path):
    torch.manual_seed(0)
    config = HierarchicalVLConfig.from_preset("tiny")
    model = HierarchicalVLForMultiTask(config).eval()
    model.save_pretrained(tmp_path / "checkpoint")
    tokenizer = HierarchicalVLTokenizer.from_texts(["what color is the cube", "a red sphere"])
    HierarchicalVLProcessor(tokenizer, max_words=6).save_pretrained(tmp_path / "checkpoint")
    inputs = {
        "input_ids": torch.tensor([[3, 4, 5, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 0]]),
        "region_features": torch.randn(1, 4, config.region_feature_dim),
        "region_mask": torch.tensor([[1, 1, 1, 0]]),
    }
    torch.save(inputs, tmp_path / "inputs.pt")
    with torch.no_grad():
        expected = model(task="vqa", **inputs).logits
    torch.save(expected, tmp_path / "expected.pt")
    expected_ids = tokenizer("what color is the red cube?", add_special_tokens=False)["input_ids"][:6]
    script = textwrap.dedent(
        f"""
        import importlib.util, sys
        sys.path = [p for p in sys.path if not p.rstrip("/").endswith("src")]
        assert importlib.util.find_spec("hierarchical_vl") is None, "the package must not be importable here"
        import torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(tmp_path / "checkpoint")!r}, trust_remote_code=True).eval()
        assert type(model).__name__ == "HierarchicalVLForMultiTask", type(model)
        assert "hierarchical_vl" not in sys.modules
        inputs = torch.load({str(tmp_path / "inputs.pt")!r})
        expected = torch.load({str(tmp_path / "expected.pt")!r})
        with torch.no_grad():
            logits = model(task="vqa", **inputs).logits
        assert torch.allclose(logits, expected, atol=1e-6), (logits, expected)
        from transformers import AutoProcessor
        processor = AutoProcessor.from_pretrained({str(tmp_path / "checkpoint")!r}, trust_remote_code=True)
        assert type(processor).__name__ == "HierarchicalVLProcessor" and processor.max_words == 6
        batch = processor(["what color is the red cube?"], [torch.ones(2, {config.region_feature_dim})])
        assert batch["input_ids"].tolist() == [{expected_ids!r}], batch["input_ids"]
        print("REMOTE_OK")
        """
    )
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "REMOTE_OK" in result.stdout
