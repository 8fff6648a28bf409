"""Publishing a checkpoint on the Hugging Face Hub: a complete local save with a model card, then one commit.

[`push_to_hub`] saves the model (safetensors, config with ``auto_map`` and the configuration/modeling code, so that
``trust_remote_code=True`` loads it where this package is not installed), the processor and its tokenizer, and a
``README.md`` model card rendered from the package's template (``hierarchical_vl/model_cards/model_card.md``), into
a local folder; it then creates the repository and uploads the files written by that save in one commit. When the
upload fails the local save is kept and the error says where it is. The model may also be given as a checkpoint
folder, loaded with [`hierarchical_vl.loading.load_checkpoint`] (and its processor with ``load_processor``).

Only ``HfApi.create_repo`` and ``HfApi.create_commit`` are used, which huggingface_hub 1.x and 2.x both offer.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import yaml
from huggingface_hub import CommitOperationAdd, HfApi

from .atomic_files import write_text_atomic
from .auto_registration import register_auto_classes
from .configuration_hierarchical_vl import HierarchicalVLConfig
from .inference_optimization import check_savable, describe_precision, inference_precision
from .loading import load_checkpoint, load_processor
from .processing_hierarchical_vl import HierarchicalVLProcessor
from .remote_pipelines import save_remote_pipelines
from .tasks import TASK_SPECS, model_tasks, task_spec
from .training_records import card_data_from_records, evaluate_output_rows, is_evaluate_output

__all__ = [
    "MODEL_CARD_FIELDS",
    "REQUIRED_FILES",
    "HubPushError",
    "push_to_hub",
    "render_checkpoint_card",
    "render_model_card",
    "save_for_hub",
]

MODEL_CARD_FIELDS = {
    "model_name": "Title of the card (default: the repository name).",
    "description": "A paragraph under the title.",
    "license": "License identifier of the weights (default: apache-2.0).",
    "language": "Language code(s) (default: en).",
    "datasets": "Hub dataset ids the model was trained or evaluated on.",
    "tags": "Extra tags, added to the library's own.",
    "metrics": "Hub metric ids (default: accuracy for VQA, recall for retrieval and grounding).",
    "pipeline_tag": "Hub pipeline tag (default: chosen from the model's tasks).",
    "base_model": "Hub id of the checkpoint this one was fine-tuned from.",
    "training_data": "What the model was trained on (Markdown).",
    "training_hyperparameters": "Mapping of hyperparameter name to value, shown as a table.",
    "curriculum": (
        "The curriculum stages, each a list of tasks (e.g. [['vqa'], ['vqa', 'retrieval']]) or a mapping "
        "{name, tasks, cycle_length, iterations, updates}; one stage of one task reads as single-task training."
    ),
    "protocol": "The evaluation protocol of the results (paper or current).",
    "results": (
        "{task: {metric: value}}, a list of {task, dataset, split, metric, value} rows, or the JSON of "
        "hvl evaluate --output; also written as model-index metadata."
    ),
    "intended_use": "Replaces the default intended-use section (Markdown).",
    "limitations": "Replaces the default limitations section (Markdown).",
}
"""Keys accepted in ``card_data``, with what each sets."""

REQUIRED_FILES = (
    "config.json",
    "model.safetensors",
    "configuration_hierarchical_vl.py",
    "modeling_hierarchical_vl.py",
    "layers_hierarchical_vl.py",
    "pipeline_hierarchical_vl.py",
    "tokenizer.json",
    "processor_config.json",
    "README.md",
)
"""Files every complete save holds (large models replace ``model.safetensors`` by shards and an index)."""

logger = logging.getLogger(__name__)

_TEMPLATE = "model_card.md"
_PAPER_LAYERS = "the paper's choice is grounding at layer 2, retrieval at 3 and VQA at 5"

_DEFAULT_TRAINING_PROCEDURE = """\
Training follows Algorithm 1 of the paper. Each update trains one task: a batch of that task goes through the \
encoder up to the task's layer and its decoder, and Adam takes one step. Tasks switch periodically: in each cycle of \
C iterations, task i gets C·α_i consecutive updates, with α_i proportional to the task's number of iterations. Tasks \
are added by a curriculum (a single task first, then pairs, then all tasks), each stage starting from the weights of \
the previous one. Every loss is a binary cross-entropy (soft VQA scores, matching and non-matching caption pairs, \
phrase-region pairs with IoU >= 0.5). Optimiser: Adam, learning rate 1e-3, betas (0.9, 0.99), learning rate halved \
every #step iterations; Xavier initialisation."""

_SINGLE_TASK_PROCEDURE = """\
Single-task training ({title}): every update is a batch of the task through the encoder up to the task's layer \
and its decoder, then one Adam step; there is no task switching and no curriculum. The loss is a binary \
cross-entropy ({loss}). Optimiser: Adam (betas (0.9, 0.99) by default), learning rate halved every #step \
iterations; Xavier initialisation."""

_TASK_LOSSES = {
    "vqa": "soft VQA scores",
    "retrieval": "matching and non-matching caption pairs",
    "grounding": "phrase-region pairs with IoU >= 0.5",
}

_DEFAULT_INTENDED_USE = """\
Research on vision-language representations: answering questions about images, ranking captions for an image and \
images for a caption, and localising the phrases of a caption among an image's detected regions, for English text \
and natural images described by bottom-up-attention region features. The attention maps of the decoders (see \
`hierarchical_vl.visualization`) show which regions and words a prediction relied on. The model is not meant for \
decisions about people."""


class HubPushError(RuntimeError):
    """The upload to the Hub failed; the complete local save is kept in ``save_directory``.

    Attributes:
        repo_id: The repository pushed to.
        stage: What failed (``"creating the repository"`` or ``"uploading the files"``).
        save_directory: The folder holding the complete save.
    """

    def __init__(self, repo_id: str, stage: str, save_directory: Path, error: BaseException):
        self.repo_id = repo_id
        self.stage = stage
        self.save_directory = save_directory
        super().__init__(
            f"push to the Hub repository {repo_id!r} failed while {stage}: {str(error).rstrip('. ')}. The complete "
            f"local save is kept in {save_directory}; upload that folder or push again."
        )


# --------------------------------------------------------------------------------------------------------------
# Model card
# --------------------------------------------------------------------------------------------------------------


def _task_title(task: str) -> str:
    """The task's title, or the name as given for one the registry does not know (card data is free text)."""
    return TASK_SPECS[task].title if task in TASK_SPECS else task


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _joined(names: list[str]) -> str:
    if not names:
        return "shared vision-language features (encoder only)"
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _check_card_data(card_data: Mapping[str, Any] | None) -> dict[str, Any]:
    card_data = dict(card_data or {})
    unknown = sorted(set(card_data) - set(MODEL_CARD_FIELDS))
    if unknown:
        raise ValueError(f"unknown model card field(s) {unknown}; known fields are {sorted(MODEL_CARD_FIELDS)}")
    return card_data


def _model_index(name: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Hub's ``model-index`` of the evaluation rows: one result per (task, dataset, split)."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        task = row.get("task", "")
        if task not in TASK_SPECS or not isinstance(row.get("value"), (int, float)):
            continue
        spec = TASK_SPECS[task]
        dataset = str(row.get("dataset") or "unknown")
        split = str(row.get("split") or "")
        key = (task, dataset, split)
        if key not in groups:
            entry = {"name": dataset, "type": str(row.get("dataset_type") or dataset.lower().replace(" ", "_"))}
            if split:
                entry["split"] = split
            groups[key] = {"task": {"type": spec.pipeline_tag, "name": spec.title}, "dataset": entry, "metrics": []}
        metric = str(row["metric"])
        groups[key]["metrics"].append({"type": spec.card_metric, "value": float(row["value"]), "name": metric})
    return [{"name": name, "results": list(groups.values())}] if groups else []


def _front_matter(tasks: list[str], card_data: dict[str, Any], name: str) -> str:
    tags = ["hierarchical-vl", "vision-language", "multi-task-learning", "co-attention"]
    tags += [task_spec(task).hub_tag for task in tasks]
    tags += [tag for tag in _as_list(card_data.get("tags")) if tag not in tags]
    metrics = card_data.get("metrics")
    if metrics is None:
        metrics = list(dict.fromkeys(task_spec(task).card_metric for task in tasks))
    metadata: dict[str, Any] = {
        "library_name": "hierarchical-vl",
        "license": card_data.get("license", "apache-2.0"),
        "language": _as_list(card_data.get("language", "en")),
        "tags": tags,
        "datasets": _as_list(card_data.get("datasets")),
        "metrics": _as_list(metrics),
    }
    pipeline_tag = card_data.get("pipeline_tag", task_spec(tasks[-1]).pipeline_tag if tasks else None)
    if pipeline_tag:
        metadata["pipeline_tag"] = pipeline_tag
    if card_data.get("base_model"):
        metadata["base_model"] = card_data["base_model"]
    results = card_data.get("results")
    index = _model_index(name, _result_rows(results)) if results else []
    if index:
        metadata["model-index"] = index
    return yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True).strip()


def _architecture_rows(model: Any, config: HierarchicalVLConfig, tasks: list[str]) -> str:
    parameters = sum(parameter.numel() for parameter in model.parameters())
    trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    box = "; plus a learned embedding of the box coordinates" if config.use_box_embedding else ""
    rows = [
        ("Model class", f"`{type(model).__name__}`"),
        ("Parameters", f"{parameters:,} ({trainable:,} trainable)"),
        (
            "Word embeddings",
            f"{config.word_embedding_dim}-d over {config.vocab_size:,} words "
            f"({'frozen' if config.freeze_word_embeddings else 'trained'})",
        ),
        (
            "Language encoder",
            f"{config.lstm_num_layers}-layer bidirectional LSTM, {config.lstm_hidden_size} units per direction, "
            f"projected with the embeddings to d",
        ),
        ("Image encoder", f"Linear({config.region_feature_dim} -> d), each region L2-normalised{box}"),
        (
            "Dense co-attention layers",
            f"L = {config.num_layers}, d = {config.hidden_size}, {config.num_attention_heads} heads, "
            f"{config.num_null_tokens} null tokens per modality",
        ),
        ("Summary networks", f"{config.summary_glimpses} glimpses"),
        (
            "Dropout",
            f"{config.text_projection_dropout} before the language projection, {config.hidden_dropout} in the "
            f"co-attention fusion and the VQA MLP, {config.summary_dropout} in the summary networks, "
            f"{config.lstm_dropout} between LSTM layers",
        ),
    ]
    if "vqa" in tasks:
        rows.append(("Answer pool", f"{config.num_answers:,} answers"))
    rows.extend(_inference_precision_rows(model))
    rows.append(
        (
            "Input caps",
            f"{config.max_question_words} question words, {config.max_caption_words} caption "
            f"words, {config.max_regions} regions",
        )
    )
    return "\n".join(f"| {name} | {value} |" for name, value in rows)


def _inference_precision_rows(model: Any) -> list[tuple[str, str]]:
    """The card's "Inference precision" row of a model made by `optimize_for_inference` (none for float32)."""
    precision = inference_precision(model)
    description = describe_precision(precision)
    return [("Inference precision", f"{precision}: {description}")] if description else []


def _task_layer_rows(config: HierarchicalVLConfig, tasks: list[str]) -> tuple[str, str]:
    if not tasks:
        intro = (
            f"This checkpoint is the shared encoder without task decoders; its configuration places them as "
            f"below ({_PAPER_LAYERS})."
        )
        tasks = [task for task in TASK_SPECS if task in config.task_layers]
    else:
        intro = f"The decoders of this checkpoint read these encoder layers ({_PAPER_LAYERS})."
    rows = [
        f"| {spec.title} | {config.task_layers[task]} | {spec.decoder_summary} | {spec.decoder_formula} |"
        for task, spec in ((task, task_spec(task)) for task in tasks)
        if task in config.task_layers
    ]
    return intro, "\n".join(rows)


def _usage(tasks: list[str], repo_id: str, feature_dim: int) -> str:
    if not tasks:
        return (
            f'encoder = hierarchical_vl.HierarchicalVLModel.from_pretrained("{repo_id}")\n'
            f'processor = hierarchical_vl.HierarchicalVLProcessor.from_pretrained("{repo_id}")'
        )
    return "\n\n".join(
        spec.usage_example.format(pipeline_id=spec.pipeline_id, repo_id=repo_id, feature_dim=feature_dim)
        for spec in (task_spec(task) for task in reversed(tasks))
    )


def _result_rows(results: Any) -> list[dict[str, Any]]:
    """The results of ``card_data`` as rows ``{task, dataset, split, metric, value, ...}``."""
    if is_evaluate_output(results):
        return evaluate_output_rows(results)
    rows = []
    if isinstance(results, Mapping):
        for task, metrics in results.items():
            if not isinstance(metrics, Mapping):
                raise ValueError(
                    f"results[{task!r}] must map metric names to values (or give the whole JSON of hvl evaluate "
                    "--output, with its 'metrics' and 'splits')"
                )
            rows.extend({"task": task, "metric": metric, "value": value} for metric, value in metrics.items())
    elif isinstance(results, Sequence) and not isinstance(results, str):
        for row in results:
            if is_evaluate_output(row):
                rows.extend(evaluate_output_rows(row))
                continue
            if not isinstance(row, Mapping) or "metric" not in row or "value" not in row:
                raise ValueError("each results row must be a mapping with at least 'metric' and 'value'")
            rows.append(dict(row))
    else:
        raise ValueError("results must be {task: {metric: value}}, a list of rows or hvl evaluate --output JSON")
    return rows


def _evaluation(card_data: dict[str, Any]) -> str:
    results = card_data.get("results")
    if not results:
        return "This checkpoint has not been evaluated."
    lines = ["| Task | Dataset | Split | Metric | Value |", "|---|---|---|---|---|"]
    for row in _result_rows(results):
        cells = [_task_title(row.get("task", "")), row.get("dataset", ""), row.get("split", ""), row["metric"]]
        value = row["value"]
        cells.append(f"{value:.2f}" if isinstance(value, float) else value)
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    protocol = card_data.get("protocol")
    if protocol:
        lines.append(f"\nScored under the {protocol} evaluation protocol.")
    return "\n".join(lines)


def _stage_tasks(stage: Any) -> list[str]:
    return _as_list(stage.get("tasks")) if isinstance(stage, Mapping) else _as_list(stage)


def _stage_line(index: int, stage: Any, switching: bool = True) -> str:
    line = f"{index}. {' + '.join(_task_title(task) for task in _stage_tasks(stage))}"
    if not isinstance(stage, Mapping):
        return line
    details = []
    if switching and stage.get("cycle_length"):
        details.append(f"cycle C = {stage['cycle_length']}")
    iterations = {task: value for task, value in (stage.get("iterations") or {}).items() if value is not None}
    if iterations:
        details.append("#iter " + ", ".join(f"{task} {value}" for task, value in iterations.items()))
    if stage.get("updates") is not None:
        details.append(f"{stage['updates']} updates")
    return line + (f" ({'; '.join(details)})" if details else "")


def _single_task(tasks: list[str], curriculum: Any) -> str | None:
    """The one task of a single-task run (one stage of one task, or a head without a curriculum)."""
    if curriculum:
        trained = {task for stage in curriculum for task in _stage_tasks(stage)}
        return next(iter(trained)) if len(curriculum) == 1 and len(trained) == 1 else None
    return tasks[0] if len(tasks) == 1 else None


def _training_procedure(card_data: dict[str, Any], tasks: list[str]) -> str:
    curriculum = card_data.get("curriculum")
    single = _single_task(tasks, curriculum)
    if single is not None:
        title = _task_title(single)
        parts = [_SINGLE_TASK_PROCEDURE.format(title=title, loss=_TASK_LOSSES.get(single, "the task's labels"))]
        if curriculum:
            parts.append("Training of this checkpoint: " + _stage_line(1, curriculum[0], switching=False)[3:] + ".")
    else:
        parts = [_DEFAULT_TRAINING_PROCEDURE]
        if curriculum:
            stages = [_stage_line(index, stage) for index, stage in enumerate(curriculum, start=1)]
            parts.append("Curriculum of this checkpoint:\n\n" + "\n".join(stages))
    hyperparameters = card_data.get("training_hyperparameters")
    if hyperparameters:
        rows = "\n".join(f"| {name} | {value} |" for name, value in dict(hyperparameters).items())
        parts.append("Hyperparameters:\n\n| Name | Value |\n|---|---|\n" + rows)
    return "\n\n".join(parts)


def _limitations(config: HierarchicalVLConfig, tasks: list[str]) -> str:
    items = [
        "The model reads pre-extracted region features, not pixels; its predictions depend on the detector that "
        f"produced them (bottom-up attention, {config.region_feature_dim}-d features, 10-100 regions per image, at "
        f"most {config.max_regions} used).",
        "English only, with a word-level vocabulary: unknown words share one token; questions are cut after "
        f"{config.max_question_words} words and captions after {config.max_caption_words}.",
        "Evaluation contamination: the Karpathy COCO val/test images come from COCO val2014, where the VQA 2.0 val "
        "questions live. A checkpoint trained on VQA val must not be evaluated on COCO retrieval splits built from "
        "those images (the paper trains one run without VQA val for that reason).",
        "Biases of COCO, VQA 2.0 and Flickr30k carry over: language priors in VQA answers, and social biases "
        "(gender, age, ethnicity) in captions and phrases.",
    ]
    if "vqa" in tasks:
        items.insert(1, f"VQA answers are limited to a fixed pool of {config.num_answers:,} answers.")
    return "\n".join(f"- {item}" for item in items)


def render_model_card(model: Any, card_data: Mapping[str, Any] | None = None, repo_id: str | None = None) -> str:
    """The ``README.md`` of a checkpoint: YAML metadata, architecture, task layers, training data and procedure,
    evaluation, intended use and limitations.

    Args:
        model: The model to describe (a head, the multi-task model or the encoder).
        card_data: Fields of [`MODEL_CARD_FIELDS`].
        repo_id: Repository id used in the title and the usage example.
    """
    card_data = _check_card_data(card_data)
    config = model.config
    tasks = model_tasks(model)
    repo_id = repo_id or "path/to/checkpoint"
    intro, rows = _task_layer_rows(config, tasks)
    template = Template(resources.files("hierarchical_vl").joinpath("model_cards", _TEMPLATE).read_text("utf-8"))
    model_name = card_data.get("model_name") or repo_id.rsplit("/", 1)[-1]
    return template.substitute(
        front_matter=_front_matter(tasks, card_data, model_name),
        model_name=model_name,
        description=card_data.get(
            "description",
            f"A hierarchical vision-language model for {_joined([task_spec(t).title.lower() for t in tasks])}.",
        ),
        architecture_rows=_architecture_rows(model, config, tasks),
        task_layers_intro=intro,
        task_layer_rows=rows,
        usage=_usage(tasks, repo_id, config.region_feature_dim),
        region_feature_dim=config.region_feature_dim,
        training_data=card_data.get("training_data") or "Not documented for this checkpoint.",
        training_procedure=_training_procedure(card_data, tasks),
        evaluation=_evaluation(card_data),
        intended_use=card_data.get("intended_use") or _DEFAULT_INTENDED_USE,
        limitations=card_data.get("limitations") or _limitations(config, tasks),
    )


# --------------------------------------------------------------------------------------------------------------
# Saving and pushing
# --------------------------------------------------------------------------------------------------------------


_EXCLUDED_SUFFIXES = (".log", ".tmp", ".lock")


def _publishable(name: str) -> bool:
    """Whether a file the save wrote may be uploaded: never dotfiles, logs or checkpoint folders."""
    parts = name.split("/")
    if any(part.startswith(".") for part in parts) or name.endswith(_EXCLUDED_SUFFIXES):
        return False
    return not any(part.startswith(("checkpoint", "checkpoints")) for part in parts[:-1])


def _move_into(staging: Path, directory: Path) -> list[str]:
    """Move every file of ``staging`` into ``directory``; the relative names moved, sorted."""
    names = sorted(path.relative_to(staging).as_posix() for path in staging.rglob("*") if path.is_file())
    for name in names:
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, target)
    return names


def _with_records(
    path: Any, card_data: Mapping[str, Any] | None, results_files: Sequence[str | os.PathLike] = ()
) -> dict[str, Any]:
    """``card_data`` over what a local checkpoint folder's own records give (see `card_data_from_records`)."""
    card_data = _check_card_data(card_data)
    if not (isinstance(path, os.PathLike) or os.path.isdir(path)):
        if results_files:
            raise ValueError(f"{path} is not a local folder: give its results as card_data['results']")
        return card_data
    records = card_data_from_records(path, results_files)
    if "results" in card_data and "results" in records:  # both: the given results, then the recorded ones
        card_data["results"] = _result_rows(card_data["results"]) + records.pop("results")
    return {**records, **card_data}


def render_checkpoint_card(
    checkpoint: str | os.PathLike,
    results_files: Sequence[str | os.PathLike] = (),
    card_data: Mapping[str, Any] | None = None,
    repo_id: str | None = None,
) -> str:
    """The model card of a checkpoint folder, from its own records: ``training_args.yaml`` (datasets, splits,
    protocol, curriculum, hyperparameters), the trainer's evaluations and ``hvl evaluate --output`` files.

    Args:
        checkpoint: The checkpoint folder.
        results_files: ``hvl evaluate --output`` files of the checkpoint.
        card_data: Fields of [`MODEL_CARD_FIELDS`] that replace what the records say (``results`` are added).
        repo_id: Repository id used in the title and the usage example.
    """
    card_data = _with_records(checkpoint, card_data, results_files)
    card_data.setdefault("model_name", Path(checkpoint).resolve().name)
    return render_model_card(load_checkpoint(checkpoint), card_data, repo_id)


def _loaded(model: Any, processor: Any) -> tuple[Any, Any]:
    """A checkpoint folder (or Hub id) given as ``model`` loaded, with its processor unless one is given."""
    if isinstance(model, (str, os.PathLike)):
        path = model
        model = load_checkpoint(path)
        if processor is None:
            processor = load_processor(path, model.config)
    return model, processor


def save_for_hub(
    model: Any,
    processor: Any,
    save_directory: str | os.PathLike,
    card_data: Mapping[str, Any] | None = None,
    repo_id: str | None = None,
) -> list[str]:
    """Save everything a Hub repository needs into ``save_directory`` and check that the save is complete.

    Args:
        model: The model (any head, the multi-task model or the encoder), or a checkpoint folder to load it from
            (its card then also says what the folder's records say, see [`render_checkpoint_card`]).
        processor: Its [`HierarchicalVLProcessor`] (or the word tokenizer, wrapped into one with the model's input
            caps); ``None`` loads the checkpoint folder's.
        save_directory: The folder (created when missing).
        card_data: Fields of the model card (see [`MODEL_CARD_FIELDS`]).
        repo_id: Repository id named in the model card.

    The save is written into a private staging folder inside ``save_directory`` and then moved into place, so
    the returned list holds exactly the files it wrote (model weights or shards and their index, config, the
    remote-code ``.py`` files, tokenizer, processor config, ``README.md``); files other programs write into the
    folder meanwhile, dotfiles, logs and checkpoint folders are never in it.

    Returns:
        The files this save wrote, relative to ``save_directory``, sorted: the files `push_to_hub` uploads.
    """
    card_data = _with_records(model, card_data) if isinstance(model, (str, os.PathLike)) else card_data
    card_data = _check_card_data(card_data)
    model, processor = _loaded(model, processor)
    check_savable(model)
    if processor is None:
        raise ValueError("a processor (or the word tokenizer) is needed: a checkpoint is not usable without it")
    if not isinstance(processor, HierarchicalVLProcessor) and not hasattr(processor, "tokenizer"):
        processor = HierarchicalVLProcessor.from_config(processor, model.config)
    register_auto_classes()  # writes auto_map and the configuration/modeling code with the weights
    directory = Path(save_directory)
    directory.mkdir(parents=True, exist_ok=True)
    # The save goes into a private staging folder first, so the list of files it wrote is exact: whatever else
    # appears in ``directory`` meanwhile (logs, checkpoints, a secrets file) is never part of it.
    staging = directory / f".hvl-save-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        model.save_pretrained(staging)
        save_remote_pipelines(staging)
        processor.save_pretrained(staging)
        write_text_atomic(staging / "README.md", render_model_card(model, card_data, repo_id))
        saved = _move_into(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    written = [name for name in saved if _publishable(name)]
    sharded = "model.safetensors.index.json" in written
    missing = [name for name in REQUIRED_FILES if name not in written and not (sharded and name == "model.safetensors")]
    if missing:
        raise RuntimeError(f"the save in {directory} is incomplete: {missing} were not written")
    return written


def push_to_hub(
    model: Any,
    processor: Any,
    repo_id: str,
    *,
    save_directory: str | os.PathLike | None = None,
    card_data: Mapping[str, Any] | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    endpoint: str | None = None,
):
    """Save the model, its processor and tokenizer and a model card, then publish them in one commit.

    Args:
        model: The model (any head, the multi-task model or the encoder), or a checkpoint folder to load it from.
        processor: Its [`HierarchicalVLProcessor`] (or the word tokenizer); ``None`` loads the checkpoint folder's.
        repo_id: ``"user/name"`` or ``"organisation/name"``; created when missing.
        save_directory: Folder for the local save, kept afterwards. Without it a temporary folder is used and
            removed after a successful push (and kept after a failed one).
        card_data: Fields of the model card (see [`MODEL_CARD_FIELDS`]).
        private: Visibility of a newly created repository (the Hub's default when ``None``).
        token: Hub token (the logged-in one by default).
        revision: Branch to commit to (the default branch when ``None``).
        commit_message: Message of the commit.
        create_pr: Open a pull request instead of committing to the branch.
        endpoint: Hub address (``https://huggingface.co`` by default).

    Returns:
        huggingface_hub's ``CommitInfo`` (``commit_url``, ``oid``, ``pr_url``).

    Raises:
        HubPushError: Creating the repository or uploading failed; the message names the folder that holds the
            complete save.
    """
    if isinstance(model, (str, os.PathLike)):
        card_data = _with_records(model, card_data)
    model, processor = _loaded(model, processor)
    temporary = save_directory is None
    directory = Path(tempfile.mkdtemp(prefix="hierarchical-vl-push-") if temporary else save_directory)
    written = save_for_hub(model, processor, directory, card_data, repo_id)
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    except Exception as error:
        raise HubPushError(repo_id, "creating the repository", directory, error) from error
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(directory / name)) for name in written]
    logger.info("uploading %d files of %s to %s", len(operations), directory, repo_id)
    try:
        info = api.create_commit(
            repo_id,
            operations=operations,
            commit_message=commit_message or f"Upload {type(model).__name__} with hierarchical-vl",
            revision=revision,
            create_pr=create_pr,
            repo_type="model",
        )
    except Exception as error:
        raise HubPushError(repo_id, "uploading the files", directory, error) from error
    if temporary:
        shutil.rmtree(directory, ignore_errors=True)
    return info
