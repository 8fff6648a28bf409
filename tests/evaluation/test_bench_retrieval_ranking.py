"""``benchmarks/bench_retrieval_ranking.py --quick`` runs, checks the fast scores and records its figures."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_retrieval_ranking.py"


def test_quick_benchmark_runs_and_records(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_retrieval_ranking", BENCHMARK)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = tmp_path / "RESULTS.md"
    assert bench.main(["--quick", "--record", str(results)]) == 0
    printed = capsys.readouterr().out
    assert "pairs/s" in printed and "same ranking: True" in printed and "projected COCO 5K" in printed
    recorded = results.read_text()
    assert "## Exact retrieval ranking" in recorded and "| COCO 1K (25M pairs) |" in recorded


def test_smoke_run_writes_json(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_retrieval_ranking", BENCHMARK)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    output = tmp_path / "ranking.json"
    assert bench.main(["--smoke", "--json", str(output)]) == 0
    figures = json.loads(output.read_text())
    assert figures["preset"] == "tiny" and (figures["images"], figures["captions"]) == (3, 5)
    assert figures["same_ranking"] is True and figures["max_abs_difference"] < 1e-4
    assert figures["speed_up"] == figures["end_to_end_pairs_per_s"] / figures["reference_pairs_per_s"]
    for protocol, pairs in (("projected_coco_1k_hours", 25e6), ("projected_coco_5k_hours", 125e6)):
        assert figures[protocol]["reference"] * 3600 == pytest.approx(pairs / figures["reference_pairs_per_s"])
