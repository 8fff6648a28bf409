"""The ``evaluate`` modules load offline from the installed package and agree with the metric functions."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hierarchical_vl.metrics as metrics
from hierarchical_vl.metrics import coco_1k_5fold, grounding_recall, retrieval_recall, vqa_accuracy

_METRICS_DIR = Path(metrics.__file__).parent

# Runs in a fresh interpreter with an empty Hugging Face cache and every offline switch on; it records whether
# importing the metrics pulled in evaluate or datasets, loads the three modules through load_metric, feeds them
# once through compute() and once through several add_batch() calls, and prints the results as JSON.
_SCRIPT = """
import json, sys
from hierarchical_vl.metrics import load_metric
import hierarchical_vl.metrics.commands

out = {"imported_before_load": sorted(m for m in ("evaluate", "datasets") if m in sys.modules)}
inputs = json.load(open(sys.argv[1]))

vqa = load_metric("vqa_accuracy")
out["vqa_plain"] = vqa.compute(predictions=inputs["vqa_predictions"], references=inputs["vqa_answers"])
out["vqa_legacy"] = vqa.compute(
    predictions=inputs["vqa_predictions"], references=inputs["vqa_answers"], legacy=True
)
records = [{"answers": a, "answer_type": t} for a, t in zip(inputs["vqa_answers"], inputs["vqa_types"])]
for start in range(0, len(records), 3):
    vqa.add_batch(predictions=inputs["vqa_predictions"][start:start + 3], references=records[start:start + 3])
out["vqa_typed"] = vqa.compute()

retrieval = load_metric("retrieval_recall")
rows, owners = inputs["retrieval_rows"], inputs["retrieval_owners"]
out["retrieval_all"] = retrieval.compute(predictions=rows, references=owners, ks=[1, 2, 5])
for start in range(0, len(rows), 7):
    retrieval.add_batch(predictions=rows[start:start + 7], references=owners[start:start + 7])
out["retrieval_1k"] = retrieval.compute(protocol="coco_1k", fold_size=10)

grounding = load_metric("grounding_recall")
g = inputs["grounding"]
for start in range(0, len(g["scores"]), 4):
    grounding.add_batch(
        predictions=g["scores"][start:start + 4],
        region_boxes=g["boxes"][start:start + 4],
        references=g["gts"][start:start + 4],
    )
out["grounding"] = grounding.compute(ks=[1, 3])

print("RESULT " + json.dumps(out))
"""


def _inputs() -> dict:
    rng = np.random.default_rng(0)
    pool = ["yes", "no", "2", "two", "Two.", "red", "a dog", "dog", "Yes"]
    answers, predictions, types = [], [], []
    for q in range(11):
        if q % 4 == 0:
            answers.append(["yes"] * 10)
        else:
            answers.append([str(rng.choice(pool)) for _ in range(10)])
        predictions.append(str(rng.choice(pool)))
        types.append(["yes/no", "number", "other"][q % 3])
    n_images = 50  # 5 folds of 10 images for the "coco_1k" protocol; 1 to 5 captions per image
    owners = rng.permutation(np.repeat(np.arange(n_images), rng.integers(1, 6, size=n_images)))
    scores = rng.integers(0, 50, size=(n_images, owners.size)).astype(np.float64)  # ties on purpose
    scores[owners, np.arange(owners.size)] += 25
    grounding = {"scores": [], "boxes": [], "gts": []}
    for _ in range(10):
        n = int(rng.integers(1, 8))
        xy = rng.integers(0, 50, size=(n, 2))
        boxes = np.concatenate([xy, xy + rng.integers(1, 30, size=(n, 2))], axis=1).astype(float)
        grounding["scores"].append(np.round(rng.random(n), 1).tolist())  # a few ties
        grounding["boxes"].append(boxes.tolist())
        grounding["gts"].append([(boxes[rng.integers(n)] + rng.integers(0, 5, size=4) * [0, 0, 1, 1]).tolist()])
    return {
        "vqa_predictions": predictions,
        "vqa_answers": answers,
        "vqa_types": types,
        "retrieval_rows": scores.T.tolist(),  # one row per caption: its scores against every image
        "retrieval_owners": owners.tolist(),
        "grounding": grounding,
    }


@pytest.fixture(scope="module")
def module_results(tmp_path_factory):
    pytest.importorskip("evaluate")
    tmp = tmp_path_factory.mktemp("evaluate_modules")
    inputs = _inputs()
    (tmp / "inputs.json").write_text(json.dumps(inputs))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(tmp / "hf_home"),  # nothing cached: the modules must come from the installed package
        "HF_MODULES_CACHE": str(tmp / "hf_home" / "modules"),
    }
    env.pop("HF_EVALUATE_CACHE", None)
    env.pop("HF_DATASETS_CACHE", None)
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp / "inputs.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return inputs, json.loads(line[len("RESULT ") :])


def test_vqa_module_matches_function(module_results):
    inputs, out = module_results
    preds, answers = inputs["vqa_predictions"], inputs["vqa_answers"]
    assert out["vqa_plain"] == vqa_accuracy(preds, answers)
    assert out["vqa_legacy"] == vqa_accuracy(preds, answers, legacy=True)
    assert out["vqa_plain"] != out["vqa_legacy"]
    typed = vqa_accuracy(preds, answers, inputs["vqa_types"])
    assert out["vqa_typed"] == typed
    assert set(typed["per_answer_type"]) == {"yes/no", "number", "other"}


def test_retrieval_module_matches_function(module_results):
    inputs, out = module_results
    scores = np.asarray(inputs["retrieval_rows"]).T
    owners = np.asarray(inputs["retrieval_owners"])
    assert out["retrieval_all"] == retrieval_recall(scores, owners, ks=(1, 2, 5))
    assert out["retrieval_1k"] == coco_1k_5fold(scores, owners, fold_size=10)
    assert out["retrieval_1k"]["t2i_r1"] > out["retrieval_all"]["t2i_r1"] > 0


def test_grounding_module_matches_function(module_results):
    inputs, out = module_results
    g = inputs["grounding"]
    expected = grounding_recall(g["scores"], g["boxes"], g["gts"], ks=(1, 3))
    assert out["grounding"] == expected
    assert 0 < expected["r1"] <= expected["r3"] <= expected["upper_bound"]


def test_load_metric_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown metric 'bleu'; choose one of vqa_accuracy"):
        metrics.load_metric("bleu")


def test_every_module_is_shipped():
    for name in metrics.METRIC_NAMES:
        assert (_METRICS_DIR / "modules" / name / f"{name}.py").is_file()
    assert (_METRICS_DIR / "vqa_normalization.json").is_file()


def test_importing_the_metrics_does_not_import_evaluate_or_datasets(module_results):
    _, out = module_results
    assert out["imported_before_load"] == []


def test_library_modules_import_only_numpy_and_the_standard_library():
    allowed = set(sys.stdlib_module_names) | {"numpy"}
    for path in sorted(_METRICS_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.split(".")[0] in allowed:
                    continue
                # evaluate is allowed only as the lazy import inside load_metric
                assert name == "evaluate" and node.col_offset > 0, f"{path.name} imports {name}"
