"""``benchmarks/bench_data_wait.py --smoke`` and ``benchmarks/bench_padding.py --smoke`` run and report their
figures: the variants train identical weights, grouped batches pad less than random ones."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_data_wait_smoke_run(tmp_path, capsys):
    report = _load("bench_data_wait").main(["--smoke", "--json", str(tmp_path / "wait.json")])
    printed = capsys.readouterr().out
    assert report["identical_weights"] is True
    assert set(report["variants"]) == {"synchronous", "prefetch", "prefetch+device"}
    for figures in report["variants"].values():
        assert 0.0 <= figures["data_wait_share"] < 1.0 and figures["step_ms"] > 0
    assert report["variants"]["synchronous"]["step_ratio"] == 1.0
    assert json.loads((tmp_path / "wait.json").read_text())["variants"].keys() == report["variants"].keys()
    assert "identical weights across the variants: True" in printed


def test_padding_smoke_run(tmp_path, capsys):
    report = _load("bench_padding").main(["--smoke", "--json", str(tmp_path / "padding.json")])
    printed = capsys.readouterr().out
    random, grouped = report["orders"]["random"], report["orders"]["grouped"]
    assert random["region_slots_per_region"] > grouped["region_slots_per_region"] >= 1.0
    assert grouped["word_slots_per_word"] >= 1.0
    assert report["ratios_grouped_over_random"]["gflops_per_example"] < 1.0  # fewer padded regions, fewer FLOPs
    assert sum(report["region_counts"]) == 60  # the smoke corpus's images, by region count (10-100)
    assert json.loads((tmp_path / "padding.json").read_text())["ratios_grouped_over_random"]
    assert "grouped/random" in printed
