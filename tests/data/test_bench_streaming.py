"""``benchmarks/bench_streaming.py --smoke`` runs the three paths in one run and reports their ratios."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_streaming.py"


def test_smoke_benchmark_reports_the_three_paths(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_streaming", BENCHMARK)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    figures = bench.main(["--smoke", "--json", str(tmp_path / "figures.json")])
    printed = capsys.readouterr().out
    assert "ratio streaming / per-example reference" in printed and "ratio streaming / memory-mapped store" in printed
    assert "batches (32, 36, 64)" in printed
    written = json.loads((tmp_path / "figures.json").read_text())
    assert written["ratio_streaming_over_reference"] == figures["ratio_streaming_over_reference"] > 0
    assert written["streaming_examples_per_s"] > 0 and written["reference_examples_per_s"] > 0
