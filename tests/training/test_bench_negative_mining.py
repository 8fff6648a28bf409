"""``benchmarks/bench_negative_mining.py --quick`` runs and prints both paths with their ratio."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_negative_mining.py"


def test_quick_benchmark_runs(capsys):
    spec = importlib.util.spec_from_file_location("bench_negative_mining", BENCHMARK)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--quick"])
    printed = capsys.readouterr().out
    # B = 8, k = 1: (1 + 2k) B = 24 rows on both paths (8 distinct images give every positive its negatives).
    assert "B=8: random negatives update" in printed and printed.count("(24 rows)") == 2
    assert re.search(r"ratio hard/random \d+\.\d\dx", printed)


def test_the_reference_batch_is_the_collators_shape():
    spec = importlib.util.spec_from_file_location("bench_negative_mining", BENCHMARK)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from hierarchical_vl import HierarchicalVLConfig

    config = HierarchicalVLConfig.from_preset("tiny")
    positives = bench._positives(config, 4, regions=3, words=5, device="cpu")
    batch = bench._random_negatives(positives, 2)
    assert batch["labels"].tolist() == [1.0] * 4 + [0.0] * 16
    # Rows 4-7: the captions shifted by one against the images; rows 8-11: the images shifted against the captions.
    assert batch["input_ids"][4:8].tolist() == positives["input_ids"][[3, 0, 1, 2]].tolist()
    assert batch["region_features"][4:8].equal(positives["region_features"])
    assert batch["region_features"][8:12].equal(positives["region_features"][[3, 0, 1, 2]])
