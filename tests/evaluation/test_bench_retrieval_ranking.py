"""``benchmarks/bench_retrieval_ranking.py --quick`` runs, checks the fast scores and records its figures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

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
