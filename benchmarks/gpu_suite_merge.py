"""Merge the parts of ``gpu_suite.sh`` into one JSON file: each part's figures, status, time and log tail.

    python benchmarks/gpu_suite_merge.py PARTS.tsv OUT.json --mode gpu --device cuda

``PARTS.tsv`` has one line per part, tab-separated: name, exit status (or ``skipped``), seconds, command, the part's
JSON file and its log file (``-`` when skipped). A part's status is ``ok`` (exit 0 and its JSON file parses),
``skipped`` (its script is missing), ``timed out`` (exit 124 or 137: it ran past its cap) or ``failed``. The exit
status is 1 when a part failed or timed out, else 0; OUT.json is written in every case.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from hierarchical_vl.atomic_files import write_text_atomic

LOG_TAIL = 2000
"""Characters of a part's log kept in the merged file."""

TIMED_OUT = (124, 137)
"""Exit statuses of ``timeout``: the command ran past its cap (137: killed after the grace period)."""


def read_parts(path: Path) -> list[dict]:
    """The parts listed in ``path``, each with its status and figures.

    Args:
        path: The suite's parts file (see the module docstring).

    Returns:
        One dict per part: ``name``, ``status``, ``exit_status``, ``seconds``, ``command``, ``figures`` (the part's
        JSON, or ``None``) and ``log_tail``.
    """
    parts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 6:
            raise ValueError(f"{path}, line {number}: expected 6 tab-separated fields, got {len(fields)}")
        name, code, seconds, command, figures_path, log_path = fields
        part = {"name": name, "command": command, "seconds": float(seconds), "figures": None, "log_tail": ""}
        if code == "skipped":
            part.update(status="skipped", exit_status=None, note=f"benchmarks/{command} is missing")
            parts.append(part)
            continue
        part["exit_status"] = int(code)
        log = Path(log_path)
        if log.is_file():
            part["log_tail"] = log.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL:]
        figures = Path(figures_path)
        if figures.is_file():
            try:
                part["figures"] = json.loads(figures.read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                part["note"] = f"{figures.name} is not JSON: {error}"
        if part["exit_status"] in TIMED_OUT:
            part["status"] = "timed out"
        elif part["exit_status"] != 0 or part["figures"] is None:
            part["status"] = "failed"
            part.setdefault("note", "no figures written" if part["figures"] is None else "non-zero exit status")
        else:
            part["status"] = "ok"
        parts.append(part)
    return parts


def machine(device: str) -> dict:
    """The machine's description: CPU count, Python, torch and, on ``cuda``, the GPU."""
    import torch

    info = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return info


def merge(parts: list[dict], mode: str, device: str, machine_info: dict) -> dict:
    """The suite's one JSON document."""
    return {
        "suite": "gpu_suite",
        "mode": mode,
        "device": device,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info,
        "total_seconds": round(sum(part["seconds"] for part in parts), 1),
        "parts": {part.pop("name"): part for part in parts},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", type=Path, help="the suite's parts file")
    parser.add_argument("output", type=Path, help="the merged JSON file")
    parser.add_argument("--mode", choices=("gpu", "dry-run"), default="gpu")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    parts = read_parts(args.parts)
    document = merge(parts, args.mode, args.device, machine(args.device))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.output, json.dumps(document, indent=2))
    for name, part in document["parts"].items():
        print(f"{name:<14} {part['status']:<10} {part['seconds']:>7.1f} s  {part.get('note', '')}")
    print(f"wrote {args.output}")
    return 1 if any(part["status"] in ("failed", "timed out") for part in document["parts"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
