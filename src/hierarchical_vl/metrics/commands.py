"""``hvl metrics`` sub-commands: score prediction files with the official metrics."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..atomic_files import write_text_atomic
from .vqa import read_vqa_submission, vqa_accuracy

__all__ = ["add_commands"]


def add_commands(subparsers: Any) -> None:
    """Register ``hvl metrics ...`` on the top-level sub-parsers of the ``hvl`` command."""
    parser = subparsers.add_parser(
        "metrics",
        help="score prediction files with the official metrics",
        description="Score prediction files with the official evaluation metrics.",
    )
    metrics = parser.add_subparsers(dest="metric", required=True, metavar="METRIC")

    vqa = metrics.add_parser(
        "vqa",
        help="VQA accuracy of an official-format submission file",
        description=(
            "VQA accuracy of a submission file [{question_id, answer}, ...] against official VQA 2.0 question and "
            "annotation files, overall and per answer type, with the official answer normalisation."
        ),
    )
    vqa.add_argument("--predictions", required=True, type=Path, help="submission JSON [{question_id, answer}]")
    vqa.add_argument("--questions", required=True, type=Path, help='questions JSON {"questions": [...]}')
    vqa.add_argument("--annotations", required=True, type=Path, help='annotations JSON {"annotations": [...]}')
    vqa.add_argument(
        "--legacy",
        action="store_true",
        help="use the official code as it was before its 2021 fix (how papers of 2015-2020 were scored)",
    )
    vqa.add_argument(
        "--output",
        type=Path,
        default=None,
        help="also write the results to this JSON file (missing parent directories are created); checked first",
    )
    vqa.set_defaults(func=_run_vqa)


def _load_json_list(path: Path, key: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise ValueError(f'{path}: expected a JSON object with a "{key}" list')
    for index, record in enumerate(data[key]):
        if not isinstance(record, dict) or "question_id" not in record:
            raise ValueError(f'{path}: {key}[{index}] is not an object with a "question_id"')
    return data[key]


def _vqa_references(questions_path: Path, annotations_path: Path) -> tuple[dict[int, list[str]], dict[int, str]]:
    """The human answers and answer type of every annotated question, checked against the questions file."""
    question_ids = {record["question_id"] for record in _load_json_list(questions_path, "questions")}
    references: dict[int, list[str]] = {}
    answer_types: dict[int, str] = {}
    for index, record in enumerate(_load_json_list(annotations_path, "annotations")):
        where = f"{annotations_path}: annotations[{index}] (question {record['question_id']})"
        question_id = record["question_id"]
        if question_id not in question_ids:
            raise ValueError(f"{where}: the question is not in {questions_path}")
        if question_id in references:
            raise ValueError(f"{where}: the question is annotated twice")
        if not isinstance(record.get("answers"), list) or "answer_type" not in record:
            raise ValueError(f'{where}: needs an "answers" list and an "answer_type"')
        references[question_id] = record["answers"]
        answer_types[question_id] = record["answer_type"]
    if not references:
        raise ValueError(f"{annotations_path}: no annotations (test questions have none and cannot be scored)")
    return references, answer_types


def _format_vqa_table(result: dict[str, Any], legacy: bool) -> str:
    mode = "legacy (pre-2021)" if legacy else "current"
    lines = [
        f"VQA accuracy, {mode} official normalisation",
        f"{'answer type':<12} {'accuracy':>9} {'questions':>10}",
        f"{'overall':<12} {result['overall']:>9.2f} {result['counts']['overall']:>10d}",
    ]
    for answer_type, accuracy in result["per_answer_type"].items():
        lines.append(f"{answer_type:<12} {accuracy:>9.2f} {result['counts'][answer_type]:>10d}")
    return "\n".join(lines)


def _output_problem(output: Path, inputs: list[Path]) -> str | None:
    """Why the results cannot be written to ``output``, or ``None``; checked before any scoring work.

    ``output`` must not be a directory nor one of the input files, and its nearest existing ancestor must be a
    writable directory (missing parent directories are created when the results are written).
    """
    if output.is_dir():
        return f"--output {output} is a directory; give a file name such as {output / 'vqa_results.json'}"
    resolved = output.resolve()
    for name, path in zip(("--predictions", "--questions", "--annotations"), inputs):
        if path.exists() and path.resolve() == resolved:
            return f"--output {output} is the {name} file; refusing to overwrite an input"
    parent = resolved.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"--output {output}: {parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"--output {output}: directory {parent} is not writable"
    return None


def _run_vqa(args: argparse.Namespace) -> int:
    if args.output is not None:
        problem = _output_problem(args.output, [args.predictions, args.questions, args.annotations])
        if problem is not None:
            print(f"hvl metrics vqa: error: {problem}", file=sys.stderr)
            return 2
    try:
        predictions = read_vqa_submission(args.predictions)
        references, answer_types = _vqa_references(args.questions, args.annotations)
        result = vqa_accuracy(predictions, references, answer_types=answer_types, legacy=args.legacy)
    except (OSError, ValueError) as error:
        print(f"hvl metrics vqa: error: {error}", file=sys.stderr)
        return 2
    print(_format_vqa_table(result, args.legacy))
    if args.output is not None:
        record = {
            **result,
            "legacy": bool(args.legacy),
            "predictions": str(args.predictions),
            "questions": str(args.questions),
            "annotations": str(args.annotations),
        }
        try:
            write_text_atomic(args.output, json.dumps(record, ensure_ascii=False, indent=2))
        except OSError as error:
            print(f"hvl metrics vqa: error: cannot write {args.output}: {error}", file=sys.stderr)
            return 2
        print(f"wrote {args.output}")
    return 0
