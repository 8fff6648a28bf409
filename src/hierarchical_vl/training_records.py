"""The records a training run leaves beside its model, and what a model card takes from them.

A run's output directory holds ``training_args.yaml`` (the arguments it ran with), ``training_log.json`` (written
at the end of training: the loss of every update, the evaluations, the updates of each curriculum stage and the
evaluation protocol) and, for runs of older versions, the evaluations in the trainer state of its last checkpoint.
``hvl evaluate --output`` files add evaluations made afterwards. [`card_data_from_records`] turns them into the
fields of the model card (see `hierarchical_vl.hub.MODEL_CARD_FIELDS`): datasets and splits, protocol, the
curriculum actually used, hyperparameters and the evaluation rows.

This module reads the files as data (YAML and JSON, never pickles), so that library code can use it without the
training code.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .atomic_files import write_json_atomic
from .tasks import TASK_SPECS

__all__ = [
    "TRAINING_ARGS_FILE",
    "TRAINING_LOG_FILE",
    "card_data_from_records",
    "card_metric_names",
    "evaluate_output_rows",
    "is_evaluate_output",
    "read_evaluations",
    "read_training_arguments",
    "read_training_log",
    "write_training_log",
]

TRAINING_ARGS_FILE = "training_args.yaml"
"""The arguments of the run, written by the trainer."""

TRAINING_LOG_FILE = "training_log.json"
"""``{"losses": [[update, task, loss], ...], "evaluations": [...], "stage_updates": {stage: updates},
"updates": int, "protocol": {...}}``, written at the end of training."""

_CHECKPOINTS = "checkpoints"
_STEP = re.compile(r"^step-(\d+)$")

_DATASETS = {
    # task: (data argument holding its files, Hub dataset name, Hub dataset type, train splits field, eval split field)
    "vqa": ("vqa_dir", "VQA 2.0", "vqa_v2", "vqa_train_splits", "vqa_eval_split"),
    "retrieval": ("captions_file", None, None, "caption_train_splits", "caption_eval_split"),
    "grounding": (
        "entities_dir",
        "Flickr30k Entities",
        "flickr30k_entities",
        "entities_train_split",
        "entities_eval_split",
    ),
}
_CAPTION_DATASETS = {"coco": ("COCO Captions (Karpathy splits)", "coco"), "flickr30k": ("Flickr30k", "flickr30k")}
_UNNAMED_CAPTIONS = ("Karpathy captions", "karpathy_captions")

_SKIPPED_METRICS = ("/num_", "/question_type/", "_medr", "_meanr")
"""Counts, per-question-type accuracies and median/mean ranks stay out of model cards."""


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a JSON file ({error})") from None


def write_training_log(directory: str | os.PathLike, result: Any, losses: Sequence[tuple[int, str, float]]) -> Path:
    """Write ``training_log.json`` into a run's output directory (atomically).

    Args:
        directory: The output directory.
        result: The trainer's ``TrainingResult`` (``evaluations``, ``stage_updates``, ``updates``, ``protocol``).
        losses: ``(update, task, loss)`` of every update.
    """
    return write_json_atomic(
        Path(directory) / TRAINING_LOG_FILE,
        {
            "losses": [[int(update), str(task), float(loss)] for update, task, loss in losses],
            "evaluations": list(result.evaluations),
            "stage_updates": dict(result.stage_updates),
            "updates": int(result.updates),
            "protocol": dict(result.protocol),
        },
        indent=None,
    )


def read_training_log(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The ``training_log.json`` of a run, or ``None`` when it has none.

    Raises:
        ValueError: If the file is not a JSON object (the message names it).
    """
    path = Path(directory) / TRAINING_LOG_FILE
    if not path.is_file():
        return None
    log = _load_json(path)
    if not isinstance(log, dict):
        raise ValueError(f"{path}: not a training log (a JSON object)")
    return log


def read_training_arguments(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The ``training_args.yaml`` of a run as plain data, or ``None`` when it has none.

    Raises:
        ValueError: If the file is not YAML holding a mapping (the message names it).
    """
    path = Path(directory) / TRAINING_ARGS_FILE
    if not path.is_file():
        return None
    try:
        arguments = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a YAML file ({error})") from None
    if not isinstance(arguments, dict):
        raise ValueError(f"{path}: not training arguments (a YAML mapping)")
    return arguments


def _last_checkpoint_state(directory: Path) -> dict[str, Any] | None:
    steps = []
    for path in (directory / _CHECKPOINTS).glob("step-*"):
        match = _STEP.match(path.name)
        if match and (path / "trainer_state.json").is_file():
            steps.append((int(match.group(1)), path / "trainer_state.json"))
    if not steps:
        return None
    state = _load_json(max(steps)[1])
    return state if isinstance(state, dict) else None


def read_evaluations(directory: str | os.PathLike) -> list[dict[str, Any]]:
    """The trainer's evaluations of a run: ``[{"update", "stage", "task/metric": value, ...}, ...]``.

    From ``training_log.json``, or for runs without one from the trainer state of the last checkpoint.
    """
    directory = Path(directory)
    log = read_training_log(directory)
    source = log if log is not None else _last_checkpoint_state(directory)
    evaluations = (source or {}).get("evaluations") or []
    return [record for record in evaluations if isinstance(record, dict)]


def is_evaluate_output(results: Any) -> bool:
    """Whether ``results`` is the JSON of ``hvl evaluate --output`` (``{"metrics", "splits", ...}``)."""
    return isinstance(results, Mapping) and isinstance(results.get("metrics"), Mapping) and "splits" in results


def card_metric_names(metrics: Mapping[str, Any]) -> list[str]:
    """The flat metric names (``task/metric``) a model card shows: numbers of known tasks, counts and
    per-question-type accuracies left out."""
    names = []
    for name, value in metrics.items():
        task = name.split("/", 1)[0]
        if task not in TASK_SPECS or "/" not in name or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if any(part in name for part in _SKIPPED_METRICS):
            continue
        names.append(name)
    return names


def _dataset(task: str, data: Mapping[str, Any] | None) -> tuple[str, str]:
    """The (name, Hub type) of the dataset ``task`` was trained and evaluated on."""
    field, name, kind, _, _ = _DATASETS[task]
    if name is not None:
        return name, kind
    captions = str((data or {}).get(field) or "").lower()
    for corpus, named in _CAPTION_DATASETS.items():
        if corpus in Path(captions).name:
            return named
    return _UNNAMED_CAPTIONS


def _rows(
    metrics: Mapping[str, Any], splits: Mapping[str, Any], data: Mapping[str, Any] | None, source: str
) -> list[dict[str, Any]]:
    rows = []
    for name in card_metric_names(metrics):
        task = name.split("/", 1)[0]
        dataset, kind = _dataset(task, data)
        rows.append(
            {
                "task": task,
                "dataset": dataset,
                "dataset_type": kind,
                "split": str(splits.get(task, "")),
                "metric": name,
                "value": float(metrics[name]),
                "source": source,
            }
        )
    return rows


def evaluate_output_rows(results: Mapping[str, Any], data: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The evaluation rows ``{task, dataset, dataset_type, split, metric, value, source}`` of an
    ``hvl evaluate --output`` JSON.

    Args:
        results: The parsed file.
        data: The ``data`` section of the run's training arguments, which names the caption corpus.

    Raises:
        ValueError: If ``results`` is not such a file's content.
    """
    if not is_evaluate_output(results):
        raise ValueError("not the output of hvl evaluate --output (needs 'metrics' and 'splits')")
    splits = results.get("splits") or {}
    protocol = (results.get("protocol") or {}).get("name")
    source = "hvl evaluate" + (f", {protocol} protocol" if protocol else "")
    return _rows(results["metrics"], splits if isinstance(splits, Mapping) else {}, data, source)


def _eval_splits(data: Mapping[str, Any]) -> dict[str, str]:
    return {task: str(data.get(fields[4], "")) for task, fields in _DATASETS.items() if data.get(fields[4])}


def _train_splits(task: str, data: Mapping[str, Any]) -> list[str]:
    splits = data.get(_DATASETS[task][3])
    return [str(split) for split in ([splits] if isinstance(splits, str) else splits or [])]


def _curriculum(arguments: Mapping[str, Any], stage_updates: Mapping[str, Any]) -> list[dict[str, Any]]:
    tasks = arguments.get("tasks") or {}
    stages = []
    for index, stage in enumerate(arguments.get("curriculum") or [], start=1):
        if not isinstance(stage, Mapping):
            continue
        name = str(stage.get("name") or f"stage {index}")
        stages.append(
            {
                "name": name,
                "tasks": [str(task) for task in stage.get("tasks") or []],
                "cycle_length": stage.get("cycle_length"),
                "iterations": {
                    str(task): (tasks.get(task) or {}).get("iterations") for task in stage.get("tasks") or []
                },
                "updates": stage_updates.get(name),
            }
        )
    return stages


def _training_data(trained: list[str], data: Mapping[str, Any], protocol: str | None) -> str:
    lines = []
    for task in trained:
        dataset, _ = _dataset(task, data)
        splits = " + ".join(_train_splits(task, data)) or "not recorded"
        evaluated = data.get(_DATASETS[task][4])
        line = f"- {TASK_SPECS[task].title}: {dataset}, trained on {splits}"
        lines.append(line + (f", evaluated on {evaluated}" if evaluated else ""))
    if protocol:
        lines.append(f"- Evaluation protocol: {protocol}")
    return "\n".join(lines)


def _hyperparameters(arguments: Mapping[str, Any], trained: list[str]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    tasks = arguments.get("tasks") or {}
    for task in trained:
        timing = tasks.get(task) or {}
        rows[f"{task}: iterations / lr step / batch size"] = (
            f"{timing.get('iterations')} / {timing.get('lr_step')} / {timing.get('batch_size')}"
        )
    optimizer = arguments.get("optimizer") or {}
    if optimizer:
        betas = optimizer.get("betas")
        rows["optimizer"] = (
            f"Adam, lr {optimizer.get('lr')}, betas {tuple(betas) if isinstance(betas, list) else betas}, "
            f"lr x{optimizer.get('decay')} every step"
        )
    for key in ("seed", "mixed_precision", "model_preset"):
        if arguments.get(key) is not None:
            rows[key] = arguments[key]
    return rows


def card_data_from_records(
    directory: str | os.PathLike, results_files: Sequence[str | os.PathLike] = ()
) -> dict[str, Any]:
    """The model card fields that a checkpoint's own records give.

    Args:
        directory: The checkpoint (a run's output directory, or any model directory).
        results_files: ``hvl evaluate --output`` files of the checkpoint.

    Returns:
        Some of ``training_data``, ``curriculum`` (stages as ``{"name", "tasks", "cycle_length", "iterations",
        "updates"}``), ``training_hyperparameters``, ``protocol`` and ``results`` (rows ``{task, dataset,
        dataset_type, split, metric, value, source}``: the last evaluation the trainer made of each task, then
        those of the files).

    Raises:
        FileNotFoundError: If a results file is missing.
        ValueError: If a record is malformed or a results file is not ``hvl evaluate --output`` JSON (the
            message names the file).
    """
    directory = Path(directory)
    arguments = read_training_arguments(directory) or {}
    data = arguments.get("data") if isinstance(arguments.get("data"), Mapping) else {}
    log = read_training_log(directory) or {}
    card: dict[str, Any] = {}
    if arguments:
        curriculum = _curriculum(arguments, log.get("stage_updates") or {})
        trained = [task for task in TASK_SPECS if any(task in stage["tasks"] for stage in curriculum)]
        protocol = arguments.get("protocol")
        card["protocol"] = protocol
        card["curriculum"] = curriculum
        card["training_data"] = _training_data(trained, data, protocol)
        card["training_hyperparameters"] = _hyperparameters(arguments, trained)
    rows: list[dict[str, Any]] = []
    latest: dict[str, dict[str, Any]] = {}
    for record in read_evaluations(directory):
        for task in {name.split("/", 1)[0] for name in card_metric_names(record)}:
            latest[task] = record
    for task, record in sorted(latest.items(), key=lambda item: list(TASK_SPECS).index(item[0])):
        metrics = {name: value for name, value in record.items() if name.startswith(f"{task}/")}
        source = f"trainer, update {record.get('update')}"
        rows += _rows(metrics, _eval_splits(data), data, source)
    for file in results_files:
        path = Path(file)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such results file")
        results = _load_json(path)
        if not is_evaluate_output(results):
            raise ValueError(f"{path}: not the output of hvl evaluate --output (needs 'metrics' and 'splits')")
        rows += evaluate_output_rows(results, data)
    if rows:
        card["results"] = rows
    return card
