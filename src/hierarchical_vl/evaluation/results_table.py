"""Evaluation results as a table laid out like the paper's, and as a JSON file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..atomic_files import write_json_atomic
from ..metrics import ANSWER_TYPES

__all__ = ["format_results_table", "write_results_json"]

_KS = (1, 5, 10)
_ANSWER_TYPE_HEADINGS = {"yes/no": "Yes/No", "number": "Number", "other": "Other"}


def _cell(value: Any, width: int = 7) -> str:
    return f"{value:>{width}.2f}" if isinstance(value, (int, float)) else f"{'-':>{width}}"


def _retrieval_rows(metrics: dict[str, Any], prefix: str, label: str) -> list[str]:
    if f"{prefix}i2t_r1" not in metrics:
        return []
    cells = [metrics.get(f"{prefix}{direction}_r{k}") for direction in ("i2t", "t2i") for k in _KS]
    medians = [metrics.get(f"{prefix}{direction}_medr") for direction in ("i2t", "t2i")]
    row = f"  {label:<22}" + "".join(_cell(c) for c in cells[:3]) + "   " + "".join(_cell(c) for c in cells[3:])
    return [row + _cell(metrics.get(f"{prefix}rsum"), 9) + "   " + "".join(_cell(m, 6) for m in medians)]


def format_results_table(metrics: dict[str, Any], splits: dict[str, str] | None = None) -> str:
    """The metrics of `evaluate_vqa` / `evaluate_retrieval` / `evaluate_grounding` as the paper's tables.

    Args:
        metrics: Flat metrics (``vqa/...``, ``retrieval/...``, ``grounding/...``); tasks that are absent are left out.
        splits: The split each task was evaluated on, for the headings.
    """
    splits = splits or {}
    lines: list[str] = []
    if "vqa/num_questions" in metrics:
        lines.append(f"VQA 2.0 ({splits.get('vqa', '?')}, {metrics['vqa/num_questions']} questions)")
        if "vqa/overall" in metrics:
            types = [t for t in ANSWER_TYPES if f"vqa/{t}" in metrics]
            types += sorted(
                k[4:]
                for k in metrics
                if k.startswith("vqa/") and k[4:] not in {*ANSWER_TYPES, "overall", "num_questions"}
            )
            lines.append("  " + f"{'Overall':>9}" + "".join(f"{_ANSWER_TYPE_HEADINGS.get(t, t):>9}" for t in types))
            lines.append(
                "  " + _cell(metrics["vqa/overall"], 9) + "".join(_cell(metrics[f"vqa/{t}"], 9) for t in types)
            )
        else:
            lines.append("  no annotations for this split: predictions written for the evaluation server")
    if "retrieval/num_images" in metrics:
        if lines:
            lines.append("")
        lines.append(
            f"Image-caption retrieval ({splits.get('retrieval', '?')}, {metrics['retrieval/num_images']} images, "
            f"{metrics['retrieval/num_captions']} captions"
            + (
                f", two-stage: shortlists of {metrics['retrieval/shortlist_k']}"
                if "retrieval/shortlist_k" in metrics
                else ""
            )
            + ")"
        )
        lines.append(f"  {'':<22}{'Image annotation':^21}   {'Image retrieval':^21}{'':>9}   {'Med r':^12}")
        lines.append(
            f"  {'':<22}"
            + "".join(f"{f'R@{k}':>7}" for k in _KS)
            + "   "
            + "".join(f"{f'R@{k}':>7}" for k in _KS)
            + f"{'rsum':>9}   {'i2t':>6}{'t2i':>6}"
        )
        n_images = metrics["retrieval/num_images"]
        lines += _retrieval_rows(metrics, "retrieval/", f"all {n_images} images")
        lines += _retrieval_rows(metrics, "retrieval/1k/", "1K (mean of folds)")
        lines += _retrieval_rows(metrics, "retrieval/exact/", "exact (no shortlist)")
        agreement = {k.split("/")[-1]: v for k, v in metrics.items() if k.startswith("retrieval/shortlist/")}
        if agreement:
            lines.append("  shortlist vs exact ranking: " + ", ".join(f"{k} {v:.2f}%" for k, v in agreement.items()))
    if "grounding/r1" in metrics:
        if lines:
            lines.append("")
        lines.append(
            f"Phrase grounding ({splits.get('grounding', '?')}, {metrics.get('grounding/num_phrases')} phrases)"
        )
        lines.append("  " + "".join(f"{f'R@{k}':>7}" for k in _KS) + f"{'Upper bound':>14}")
        lines.append(
            "  "
            + "".join(_cell(metrics.get(f"grounding/r{k}")) for k in _KS)
            + _cell(metrics.get("grounding/upper_bound"), 14)
        )
    return "\n".join(lines)


def write_results_json(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON, atomically (a temporary file, then a rename)."""
    return write_json_atomic(path, payload, indent=2, ensure_ascii=True)
