"""``benchmarks/bench_shortlist_agreement.py --smoke``: agreement figures per first stage and shortlist length."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_shortlist_agreement.py"


def test_smoke_run_reports_agreement_per_stage_and_k(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_shortlist_agreement", BENCHMARK)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    output = tmp_path / "agreement.json"
    assert bench.main(["--smoke", "--json", str(output)]) == 0
    assert "exact ranking (reference)" in capsys.readouterr().out
    figures = json.loads(output.read_text())
    assert (figures["num_images"], figures["num_captions"]) == (12, 60)
    rows = {(row["first_stage"], row["k"]): row for row in figures["rows"]}
    assert set(rows) == {(stage, k) for stage in ("dual-encoder", "first-layer") for k in (2, 4)}
    for stage in ("dual-encoder", "first-layer"):
        short, long = rows[stage, 2], rows[stage, 4]
        # A longer shortlist holds the shorter one: more pairs scored, at least the same coverage.
        assert 0 < short["pairs_scored"] < long["pairs_scored"] < 100
        assert long["i2t_top10_coverage"] >= short["i2t_top10_coverage"]
        assert long["t2i_top10_coverage"] >= short["t2i_top10_coverage"]
        for row in (short, long):
            assert all(0 <= row[key] <= 100 for key in ("i2t_top1", "t2i_top1", "i2t_r1", "t2i_r1"))
