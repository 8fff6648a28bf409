"""``examples/evaluate_retrieval.py`` runs end to end on its self-made demo corpus."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "evaluate_retrieval.py"


def test_example_scores_a_demo_corpus(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("evaluate_retrieval_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    output = tmp_path / "metrics.json"
    arguments = [
        "--demo",
        str(tmp_path / "demo"),
        "--demo-images",
        "12",
        "--shortlist",
        "3",
        "--first-stage",
        "first-layer",
        "--output",
        str(output),
    ]
    assert example.main(arguments) == 0
    printed = capsys.readouterr().out
    assert "Image-caption retrieval (test" in printed and "shortlist vs exact ranking" in printed
    metrics = json.loads(output.read_text())
    assert 0 <= metrics["retrieval/i2t_r1"] <= 100 and 0 <= metrics["retrieval/shortlist/i2t_top1"] <= 100
