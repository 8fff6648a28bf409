"""``benchmarks/bench_training.py --smoke`` runs and writes its figures (``--json``) with the region range asked."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_training.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_training", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_run_writes_json_figures(tmp_path, capsys):
    bench = _bench()
    output = tmp_path / "training.json"
    bench.main(["--smoke", "--tasks", "vqa,retrieval", "--min-regions", "3", "--json", str(output)])
    assert "speed-up" in capsys.readouterr().out
    figures = json.loads(output.read_text())
    assert figures["preset"] == "tiny" and figures["batch_size"] == 4 and figures["bf16"] is False
    assert (figures["min_regions"], figures["max_regions"]) == (3, 8)
    assert list(figures["tasks"]) == ["vqa", "retrieval"]
    vqa, retrieval = figures["tasks"]["vqa"], figures["tasks"]["retrieval"]
    assert vqa["rows_per_batch"] == 4 and retrieval["rows_per_batch"] == 12  # a positive and two negatives each
    for task in (vqa, retrieval):
        assert task["speed_up"] == pytest.approx(task["package_examples_per_s"] / task["reference_examples_per_s"])
        assert 0 < task["data_share"] < 1 and task["data_ms_per_batch"] > 0


def test_min_regions_above_regions_is_refused():
    with pytest.raises(SystemExit):
        _bench().main(["--smoke", "--regions", "4", "--min-regions", "5"])
