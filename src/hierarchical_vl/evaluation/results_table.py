"""Evaluation results as a table laid out like the paper's, and as a JSON file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..atomic_files import write_json_atomic
from ..metrics import ANSWER_TYPES
from .task_evaluation import QUESTION_TYPE_PREFIX

__all__ = ["HEADLINE_METRICS", "format_results_table", "write_results_json"]

HEADLINE_METRICS = ("vqa/overall", "retrieval/i2t_r1", "retrieval/t2i_r1", "grounding/r1")
"""The metric of each task that one-line summaries show: VQA accuracy, R@1 both ways, grounding R@1."""

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


def _priors_with(priors: dict[str, dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """The reference rows that have ``key``."""
    return {name: values for name, values in priors.items() if key in values}


def _vqa_lines(metrics: dict[str, Any], priors: dict[str, dict[str, Any]], splits: dict[str, str]) -> list[str]:
    lines = [f"VQA 2.0 ({splits.get('vqa', '?')}, {metrics['vqa/num_questions']} questions)"]
    if "vqa/overall" not in metrics:
        lines.append("  no annotations for this split: predictions written for the evaluation server")
        return lines
    types = [t for t in ANSWER_TYPES if f"vqa/{t}" in metrics]
    types += sorted(
        k[4:]
        for k in metrics
        if k.startswith("vqa/")
        and not k.startswith(QUESTION_TYPE_PREFIX)
        and k[4:] not in {*ANSWER_TYPES, "overall", "num_questions"}
    )
    references = _priors_with(priors, "vqa/overall")
    width = max([len(name) for name in references] + [len("model")]) + 2 if references else 0
    heading = f"{'Overall':>9}" + "".join(f"{_ANSWER_TYPE_HEADINGS.get(t, t):>9}" for t in types)
    lines.append("  " + " " * width + heading)
    rows = {"model": metrics} | references if references else {"": metrics}
    for name, values in rows.items():
        cells = _cell(values.get("vqa/overall"), 9) + "".join(_cell(values.get(f"vqa/{t}"), 9) for t in types)
        lines.append("  " + f"{name:<{width}}" + cells)
    kinds = sorted(k[len(QUESTION_TYPE_PREFIX) :] for k in metrics if k.startswith(QUESTION_TYPE_PREFIX))
    if kinds:
        names = ["model", *references]
        label = max(len(kind) for kind in kinds) + 2
        lines.append("")
        lines.append("VQA accuracy per question type")
        lines.append("  " + " " * label + "".join(f"{name:>{max(len(name), 7) + 2}}" for name in names))
        for kind in kinds:
            cells = "".join(
                _cell(values.get(QUESTION_TYPE_PREFIX + kind), max(len(name), 7) + 2)
                for name, values in zip(names, [metrics, *references.values()])
            )
            lines.append("  " + f"{kind or '(no type)':<{label}}" + cells)
    return lines


def format_results_table(
    metrics: dict[str, Any],
    splits: dict[str, str] | None = None,
    priors: dict[str, dict[str, Any]] | None = None,
) -> str:
    """The metrics of `evaluate_vqa` / `evaluate_retrieval` / `evaluate_grounding` as the paper's tables.

    Args:
        metrics: Flat metrics (``vqa/...``, ``retrieval/...``, ``grounding/...``); tasks that are absent are left out.
        splits: The split each task was evaluated on, for the headings.
        priors: Reference rows shown under the model's (`hierarchical_vl.evaluation.baselines.prior_metrics`):
            row name -> flat metrics keyed like ``metrics``.
    """
    splits = splits or {}
    priors = priors or {}
    lines: list[str] = []
    if "vqa/num_questions" in metrics:
        lines += _vqa_lines(metrics, priors, splits)
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
        for name, values in _priors_with(priors, "retrieval/i2t_r1").items():
            lines += _retrieval_rows(values, "retrieval/", name)
        agreement = {k.split("/")[-1]: v for k, v in metrics.items() if k.startswith("retrieval/shortlist/")}
        if agreement:
            lines.append("  shortlist vs exact ranking: " + ", ".join(f"{k} {v:.2f}%" for k, v in agreement.items()))
    if "grounding/r1" in metrics:
        if lines:
            lines.append("")
        lines.append(
            f"Phrase grounding ({splits.get('grounding', '?')}, {metrics.get('grounding/num_phrases')} phrases)"
        )
        references = _priors_with(priors, "grounding/r1")
        width = max([len(name) for name in references] + [len("model")]) + 2 if references else 0
        lines.append("  " + " " * width + "".join(f"{f'R@{k}':>7}" for k in _KS) + f"{'Upper bound':>14}")
        rows = {"model": metrics} | references if references else {"": metrics}
        for name, values in rows.items():
            lines.append(
                "  "
                + f"{name:<{width}}"
                + "".join(_cell(values.get(f"grounding/r{k}")) for k in _KS)
                + _cell(values.get("grounding/upper_bound"), 14)
            )
    return "\n".join(lines)


def write_results_json(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON, atomically (a temporary file, then a rename)."""
    return write_json_atomic(path, payload, indent=2, ensure_ascii=True)
