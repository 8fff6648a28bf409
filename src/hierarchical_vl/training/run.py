"""From `TrainingArguments` to a trained, saved model: data, tokenizer, model, contamination guard, trainer."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..configuration_hierarchical_vl import HierarchicalVLConfig
from ..data import (
    EncodedCaptionDataset,
    EncodedGroundingDataset,
    EncodedVQADataset,
    GroundingCollator,
    RegionFeatureStore,
    RetrievalCollator,
    SplitImages,
    VQACollator,
    build_vqa_answer_vocab,
    check_contamination,
    convert_region_features,
    load_flickr30k_entities,
    load_karpathy_captions,
    load_vqa,
    vqa_data_files,
)
from ..modeling_hierarchical_vl import HierarchicalVLForMultiTask
from ..processing_hierarchical_vl import HierarchicalVLProcessor
from ..tokenization_hierarchical_vl import HierarchicalVLTokenizer, load_glove_embeddings
from .arguments import TrainingArguments
from .batching import TaskDataSource
from .trainer import MultiTaskTrainer, TrainingResult

__all__ = ["PreparedData", "build_model", "make_evaluate_fn", "prepare_data", "train_from_arguments"]

logger = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """Everything the trainer and the evaluation need, built once from `DataArguments`."""

    store: RegionFeatureStore
    tokenizer: HierarchicalVLTokenizer
    processor: HierarchicalVLProcessor
    answer_vocab: list[str]
    train: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    collators: dict[str, Any] = field(default_factory=dict)
    eval_collators: dict[str, Any] = field(default_factory=dict)

    def sources(self) -> dict[str, TaskDataSource]:
        return {task: TaskDataSource(task, len(dataset), self.collators[task]) for task, dataset in self.train.items()}


def _store(args) -> RegionFeatureStore:
    data = args.data
    source = data.path(data.features)
    if source is None or not source.exists():
        raise FileNotFoundError(f"region features not found: {source} (data.features under data.root={data.root})")
    if (source / "store.json").exists():
        return RegionFeatureStore(source)
    destination = data.path(data.features_store) if data.features_store else source.with_name(source.name + ".store")
    if not (destination / "store.json").exists():
        print(f"converting region features {source} -> {destination}", flush=True)
        convert_region_features(source, destination, progress=args.progress)
    return RegionFeatureStore(destination)


def _load_rows(args, tasks: set[str]) -> tuple[dict[str, list], dict[str, Any], list[str]]:
    """Training rows (lists of datasets) and evaluation rows per task, and the VQA answer pool."""
    data = args.data
    train: dict[str, list] = {}
    evaluation: dict[str, Any] = {}
    answer_vocab: list[str] = []
    if "vqa" in tasks:
        files = vqa_data_files(data.path(data.vqa_dir))
        missing = [s for s in [*data.vqa_train_splits, data.vqa_eval_split] if s not in files]
        if missing:
            raise FileNotFoundError(f"VQA splits {missing} not found in {data.path(data.vqa_dir)} (found {sorted(files)})")
        annotation_files = [files[s][1] for s in data.vqa_train_splits if files[s][1] is not None]
        answer_vocab = build_vqa_answer_vocab(annotation_files, min_count=data.min_answer_frequency + 1)
        if not answer_vocab:
            raise ValueError(f"no answer is seen more than {data.min_answer_frequency} times in {annotation_files}")
        train["vqa"] = [load_vqa(files, split=s, answer_vocab=answer_vocab) for s in data.vqa_train_splits]
        evaluation["vqa"] = load_vqa(files, split=data.vqa_eval_split, answer_vocab=answer_vocab)
    if "retrieval" in tasks:
        captions = data.path(data.captions_file)
        train["retrieval"] = [load_karpathy_captions(captions, split=s) for s in data.caption_train_splits]
        evaluation["retrieval"] = load_karpathy_captions(captions, split=data.caption_eval_split)
    if "grounding" in tasks:
        entities = data.path(data.entities_dir)
        train["grounding"] = [load_flickr30k_entities(entities, split=data.entities_train_split)]
        evaluation["grounding"] = load_flickr30k_entities(entities, split=data.entities_eval_split)
    return train, evaluation, answer_vocab


def _concatenate(parts: list) -> Any:
    if len(parts) == 1:
        return parts[0]
    from datasets import concatenate_datasets

    return concatenate_datasets(parts)


_TEXT_COLUMN = {"vqa": "question", "retrieval": "caption", "grounding": "sentence"}


def prepare_data(args: TrainingArguments, tokenizer: HierarchicalVLTokenizer | None = None) -> PreparedData:
    """Load the corpora of the curriculum's tasks, check contamination, build the tokenizer and the datasets.

    The tokenizer's vocabulary is the words of the training text of every task (unless one is given).
    """
    data = args.data
    tasks = {task for stage in args.curriculum for task in stage.tasks}
    evaluated = {task for stage in args.curriculum for task in (stage.evaluate if stage.evaluate is not None else stage.tasks)}
    train_rows, eval_rows, answer_vocab = _load_rows(args, tasks | evaluated)
    train_rows = {task: _concatenate(parts) for task, parts in train_rows.items() if task in tasks}
    eval_rows = {task: rows for task, rows in eval_rows.items() if task in evaluated}

    splits = [SplitImages.from_rows(task, "train", "train", rows) for task, rows in train_rows.items()]
    splits += [SplitImages.from_rows(task, "eval", "eval", rows) for task, rows in eval_rows.items()]
    report = check_contamination(splits, allow=data.allow_contamination)
    if report:
        print("warning (allowed by data.allow_contamination): " + report.format(), flush=True)

    if tokenizer is None:
        texts = (text for task, rows in train_rows.items() for text in rows[_TEXT_COLUMN[task]])
        tokenizer = HierarchicalVLTokenizer.from_texts(texts, min_frequency=data.min_word_frequency)
    processor = HierarchicalVLProcessor(tokenizer, max_regions=data.max_regions, max_words=data.max_question_words)
    store = _store(args)
    prepared = PreparedData(store=store, tokenizer=tokenizer, processor=processor, answer_vocab=answer_vocab)

    def encode(task: str, rows: Any) -> Any:
        if task == "vqa":
            return EncodedVQADataset(rows, store, tokenizer, answer_vocab=answer_vocab,
                                     max_question_length=data.max_question_words)
        if task == "retrieval":
            return EncodedCaptionDataset(rows, store, tokenizer, max_caption_length=data.max_caption_words)
        return EncodedGroundingDataset(rows, store, tokenizer, max_sentence_length=data.max_caption_words)

    def collator(task: str, dataset: Any, training: bool) -> Any:
        if task == "vqa":
            return VQACollator(dataset, max_regions=data.max_regions, include_metadata=not training)
        if task == "retrieval":
            negatives = data.retrieval_negatives if training else 0
            return RetrievalCollator(dataset, negatives_per_positive=negatives, max_regions=data.max_regions,
                                     seed=args.seed, include_metadata=not training)
        return GroundingCollator(dataset, max_regions=data.max_regions, include_metadata=not training)

    for task, rows in train_rows.items():
        prepared.train[task] = encode(task, rows)
        prepared.collators[task] = collator(task, prepared.train[task], training=True)
    for task, rows in eval_rows.items():
        prepared.eval[task] = encode(task, rows)
        prepared.eval_collators[task] = collator(task, prepared.eval[task], training=False)
    return prepared


def build_model(args: TrainingArguments, prepared: PreparedData) -> HierarchicalVLForMultiTask:
    """A fresh model from the preset (or ``args.init_from``) sized to the vocabulary and the answer pool."""
    if args.init_from:
        model = HierarchicalVLForMultiTask.from_pretrained(args.init_from)
        if model.config.vocab_size != len(prepared.tokenizer):
            raise ValueError(
                f"{args.init_from} has a {model.config.vocab_size}-word vocabulary but the tokenizer has "
                f"{len(prepared.tokenizer)}: train with the checkpoint's own tokenizer"
            )
        return model
    task_layers = dict(HierarchicalVLConfig.from_preset(args.model_preset).task_layers)
    task_layers.update(args.task_layers)
    tasks = {task for stage in args.curriculum for task in stage.tasks}
    task_layers = {task: layer for task, layer in task_layers.items() if task in tasks}
    overrides = dict(args.model_overrides)
    overrides.update(vocab_size=len(prepared.tokenizer), task_layers=task_layers)
    overrides.setdefault("max_regions", args.data.max_regions)
    overrides.setdefault("max_question_words", args.data.max_question_words)
    overrides.setdefault("max_caption_words", args.data.max_caption_words)
    if prepared.answer_vocab:
        overrides["id2label"] = dict(enumerate(prepared.answer_vocab))
        overrides.pop("num_answers", None)
    config = HierarchicalVLConfig.from_preset(args.model_preset, **overrides)
    torch.manual_seed(args.seed)
    model = HierarchicalVLForMultiTask(config)
    if args.data.glove:
        matrix, coverage = load_glove_embeddings(
            args.data.path(args.data.glove), prepared.tokenizer.get_vocab(), dim=config.word_embedding_dim, seed=args.seed
        )
        print(coverage, flush=True)
        model.load_glove_embeddings(torch.from_numpy(matrix))
    return model


def make_evaluate_fn(prepared: PreparedData, batch_size: int = 128):
    """``evaluate_fn(model, tasks) -> {"task/metric": value}`` over the prepared evaluation splits."""
    from ..evaluation import evaluate_grounding, evaluate_retrieval, evaluate_vqa

    def evaluate(model: torch.nn.Module, tasks: list[str]) -> Mapping[str, float]:
        device = next(model.parameters()).device
        results: dict[str, float] = {}
        for task in tasks:
            if task not in prepared.eval:
                continue
            dataset = prepared.eval[task]
            if task == "vqa":
                results.update(evaluate_vqa(model, dataset, batch_size=batch_size, device=device))
            elif task == "retrieval":
                results.update(evaluate_retrieval(model, dataset, batch_size=4 * batch_size, device=device))
            else:
                results.update(evaluate_grounding(model, dataset, batch_size=batch_size, device=device))
        return results

    return evaluate


def train_from_arguments(
    args: TrainingArguments,
    prepared: PreparedData | None = None,
    evaluate: bool = True,
    stop_after_updates: int | None = None,
) -> TrainingResult:
    """Prepare data, build the model, train the curriculum and save a complete ``from_pretrained`` directory."""
    prepared = prepared or prepare_data(args)
    model = build_model(args, prepared)
    evaluate_fn = make_evaluate_fn(prepared, args.eval_batch_size) if evaluate else None
    trainer = MultiTaskTrainer(model, args, prepared.sources(), evaluate_fn, stop_after_updates=stop_after_updates)
    result = trainer.train()
    if trainer.accelerator.is_main_process:
        prepared.processor.save_pretrained(Path(args.output_dir))
    return result
