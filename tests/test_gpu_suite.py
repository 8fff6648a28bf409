"""``benchmarks/gpu_suite.sh``: its merging step on made-up parts, and one part's dry run through the script."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _merge_module():
    spec = importlib.util.spec_from_file_location("gpu_suite_merge", BENCHMARKS / "gpu_suite_merge.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_merge_records_every_part_with_its_status(tmp_path):
    merge = _merge_module()
    (tmp_path / "ok.json").write_text(json.dumps({"pairs_per_s": 123.5}))
    (tmp_path / "ok.log").write_text("x" * 5000 + "the end")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "bad.log").write_text("Traceback: boom")
    lines = [
        ["retrieval", "0", "12.5", "bench_retrieval_ranking.py --smoke", tmp_path / "ok.json", tmp_path / "ok.log"],
        ["predict", "1", "3.0", "bench_predict.py --smoke", tmp_path / "bad.json", tmp_path / "bad.log"],
        ["training", "124", "150.2", "bench_training.py", tmp_path / "none.json", tmp_path / "none.log"],
        ["data_wait", "skipped", "0", "bench_data_wait.py", "-", "-"],
        ["quiet", "0", "1.0", "bench_quiet.py", tmp_path / "none.json", tmp_path / "none.log"],
    ]
    parts = tmp_path / "parts.tsv"
    parts.write_text("".join("\t".join(map(str, line)) + "\n" for line in lines))
    output = tmp_path / "out" / "suite.json"
    assert merge.main([str(parts), str(output), "--mode", "dry-run", "--device", "cpu"]) == 1  # failures reported
    document = json.loads(output.read_text())
    assert document["mode"] == "dry-run" and document["device"] == "cpu" and document["machine"]["cpus"] >= 1
    assert document["total_seconds"] == pytest.approx(166.7)
    result = document["parts"]
    assert list(result) == ["retrieval", "predict", "training", "data_wait", "quiet"]
    assert result["retrieval"]["status"] == "ok" and result["retrieval"]["figures"] == {"pairs_per_s": 123.5}
    assert result["retrieval"]["log_tail"].endswith("the end") and len(result["retrieval"]["log_tail"]) == 2000
    assert result["predict"]["status"] == "failed" and "not JSON" in result["predict"]["note"]
    assert result["training"]["status"] == "timed out" and result["training"]["exit_status"] == 124
    assert result["data_wait"]["status"] == "skipped" and "bench_data_wait.py is missing" in result["data_wait"]["note"]
    assert result["quiet"]["status"] == "failed" and result["quiet"]["note"] == "no figures written"

    parts.write_text("\t".join(map(str, lines[0])) + "\n" + "\t".join(map(str, lines[3])) + "\n")
    assert merge.main([str(parts), str(output)]) == 0  # skipped parts are no failure
    (tmp_path / "broken.tsv").write_text("retrieval\t0\n")
    with pytest.raises(ValueError, match="broken.tsv, line 1: expected 6"):
        merge.read_parts(tmp_path / "broken.tsv")


def test_dry_run_of_one_part_writes_the_merged_json(tmp_path):
    output = tmp_path / "suite.json"
    process = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu_suite.sh"), "--dry-run", "--only", "retrieval", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"},
    )
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    document = json.loads(output.read_text())
    assert document["mode"] == "dry-run" and list(document["parts"]) == ["retrieval"]
    part = document["parts"]["retrieval"]
    assert part["status"] == "ok" and "--smoke --device cpu" in part["command"]
    figures = part["figures"]
    assert figures["device"] == "cpu" and figures["same_ranking"] is True
    assert figures["pair_blocks_pairs_per_s"] > 0 and figures["projected_coco_5k_hours"]["scorer"] > 0
