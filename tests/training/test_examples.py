"""The training examples run on the tiny corpus."""

import json
import os
import subprocess
import sys
from pathlib import Path

from hierarchical_vl import HierarchicalVLForVisualQuestionAnswering

from .conftest import write_config

REPO = Path(__file__).resolve().parents[2]


def _run(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_multitask_training_then_single_task_finetuning(tiny_corpus, tmp_path):
    config = write_config(tmp_path / "config.yaml", tiny_corpus, tmp_path / "multi")
    out = _run("examples/train_multitask.py", str(config), "save_every=0")
    report = json.loads(out[out.index("{") :])
    assert report["updates"] == 28 and report["stages"] == {"grounding": 8, "all": 20}

    out = _run(
        "examples/finetune_single_task.py",
        "--checkpoint",
        str(tmp_path / "multi"),
        "--task",
        "vqa",
        "--data-root",
        str(tiny_corpus),
        "--config",
        str(config),
        "--iterations",
        "6",
        "--batch-size",
        "4",
        "--output-dir",
        str(tmp_path / "vqa"),
        "data.min_answer_frequency=0",
        "data.max_regions=12",
    )
    report = json.loads(out[out.index("{") :])
    assert report["updates"] == 6 and 0.0 <= report["scores"]["vqa/overall"] <= 100.0
    head = HierarchicalVLForVisualQuestionAnswering.from_pretrained(tmp_path / "vqa")
    multi = HierarchicalVLForVisualQuestionAnswering.from_pretrained(tmp_path / "multi")
    assert head.config.id2label == multi.config.id2label  # same answer pool and vocabulary as the checkpoint
