"""From `TrainingArguments` to a trained, saved model: data, tokenizer, configuration, model, contamination guard,
trainer.

The model configuration is built once from the arguments (`build_config`): the preset, ``model_overrides`` (with
the task layers) and the data arguments' input caps. Everything downstream -- the encoded datasets, the collators,
the processor saved with the model, the evaluation -- reads its caps from that configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..atomic_files import disk_full
from ..configuration_hierarchical_vl import HierarchicalVLConfig
from ..data import (
    RegionFeatureStore,
    SplitImages,
    StreamingRegionFeatures,
    build_vqa_answer_vocab,
    check_contamination,
    vqa_data_files,
)
from ..evaluation.evaluation_data import (
    CorpusLayout,
    open_region_store,
    streamed_feature_source,
    streamed_images_store,
)
from ..evaluation.protocols import EvaluationProtocol, caption_corpus, first_images
from ..loading import save_staged
from ..modeling_hierarchical_vl import HierarchicalVLForMultiTask
from ..processing_hierarchical_vl import HierarchicalVLProcessor
from ..tasks import TASK_SPECS, task_spec
from ..tokenization_hierarchical_vl import HierarchicalVLTokenizer, load_glove_embeddings
from ..training_records import read_training_log, write_training_log
from .arguments import TrainingArguments
from .batching import TaskDataSource
from .plots import LossHistory, write_training_plots
from .progress import progress_mode
from .streamed_batches import StreamedTaskData
from .trainer import MultiTaskTrainer, TrainerCallback, TrainingResult, model_disk_full_message

__all__ = [
    "PreparedData",
    "build_config",
    "build_model",
    "make_evaluate_fn",
    "prepare_data",
    "train_from_arguments",
]

logger = logging.getLogger(__name__)

_INPUT_CAPS = ("max_regions", "max_question_words", "max_caption_words")


@dataclass
class PreparedData:
    """Everything the trainer and the evaluation need, built once from the arguments.

    Attributes:
        store: The region-feature store (for streamed features, the stream's catalogue: ids, sizes and boxes).
        tokenizer: The word-level tokenizer.
        processor: The processor saved with the model (the configuration's caps).
        config: The model configuration the data were encoded for (caps, vocabulary, answer pool).
        answer_vocab: The VQA answer pool (empty without VQA).
        train: The encoded training dataset of each trained task.
        eval: The encoded evaluation dataset of each evaluated task.
        collators: The training collator of each trained task.
        protocol: The evaluation protocol the data were prepared for (answer pool, evaluation cap, grounding
            labels) and the evaluation follows.
        caption_corpus: ``"coco"`` or ``"flickr30k"``: the corpus of the Karpathy file (``None`` without
            retrieval).
        streams: The streamed training data of each trained task when the features stream (all over the one
            catalogue ``store``); empty otherwise.
    """

    store: RegionFeatureStore
    tokenizer: HierarchicalVLTokenizer
    processor: HierarchicalVLProcessor
    config: HierarchicalVLConfig
    answer_vocab: list[str]
    train: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    collators: dict[str, Any] = field(default_factory=dict)
    protocol: EvaluationProtocol = field(default_factory=lambda: EvaluationProtocol(name="current"))
    caption_corpus: str | None = None
    streams: dict[str, StreamedTaskData] = field(default_factory=dict)

    def sources(self) -> dict[str, TaskDataSource]:
        """The training data of each task, as the trainer takes it: with each example's size (regions under the
        configuration's cap, words) and, for collators that leave the feature gather to the trainer, the store."""
        return {
            task: TaskDataSource(
                task,
                len(dataset),
                self.collators[task],
                sizes=dataset.example_sizes(self.config.max_regions),
                feature_store=self.store if getattr(self.collators[task], "feature_rows", False) else None,
                stream=self.streams.get(task),
            )
            for task, dataset in self.train.items()
        }


def _layout(args: TrainingArguments) -> CorpusLayout:
    data = args.data
    return CorpusLayout(
        root=data.root,
        features=data.features,
        vqa_dir=data.vqa_dir,
        captions_file=data.captions_file,
        entities_dir=data.entities_dir,
        task_corpora=data.task_corpora,
        caption_eval_corpus=data.caption_eval_corpus,
    )


def _answer_pool(args: TrainingArguments, layout: CorpusLayout) -> list[str]:
    """The VQA answer pool: the checkpoint's (``init_from``), else the answers of the annotations of the
    protocol's pool splits (the training splits by default), compared with its answer normalisation."""
    if args.init_from:
        config = HierarchicalVLConfig.from_pretrained(args.init_from)
        if "vqa" in config.task_layers:
            return [config.id2label[i] for i in range(config.num_answers)]
    protocol = args.evaluation_protocol()
    files = vqa_data_files(layout.task_path("vqa"))
    train_splits, eval_split = args.data.splits("vqa")
    pool_splits = list(protocol.answer_pool_splits or train_splits)
    missing = [split for split in dict.fromkeys([*train_splits, eval_split, *pool_splits]) if split not in files]
    if missing:
        raise FileNotFoundError(f"VQA splits {missing} not found in {layout.task_path('vqa')} (found {sorted(files)})")
    annotation_files = [files[split][1] for split in pool_splits if files[split][1] is not None]
    frequency = args.data.min_answer_frequency
    options: dict[str, Any] = {"normalize": protocol.answer_normalizer()}
    if frequency is not None:
        options["min_count"] = frequency + 1
    answers = build_vqa_answer_vocab(annotation_files, **options)
    if not answers:
        raise ValueError(
            f"no answer of {annotation_files} is frequent enough for the answer pool "
            f"(data.min_answer_frequency={frequency})"
        )
    return answers


def _check_corpora_apart(task: str, parts: list[tuple[str, SplitImages]], layout: CorpusLayout) -> None:
    """Refuse training ``task`` on corpora whose image ids meet in one store that does not key them by corpus.

    Args:
        task: The task.
        parts: The training splits of the task's corpora, as ``(corpus, images)``.
        layout: The corpus layout.
    """
    if layout.corpus_keyed or len({corpus for corpus, _ in parts}) < 2:
        return
    owners: dict[str, str] = {}
    for corpus, part in parts:
        for image_id in part.image_ids:
            if owners.setdefault(image_id, corpus) != corpus:
                raise ValueError(
                    f"{task}: image id {image_id} is in both the {owners[image_id]} and the {corpus} annotations, "
                    "and the region features do not keep corpora apart: name them per corpus (data.features: "
                    "{coco: ..., flickr30k: ...})"
                )


def _concatenate(parts: list) -> Any:
    if len(parts) == 1:
        return parts[0]
    from datasets import concatenate_datasets

    return concatenate_datasets(parts)


def build_config(
    args: TrainingArguments, tokenizer: HierarchicalVLTokenizer, answer_vocab: list[str]
) -> HierarchicalVLConfig:
    """The model configuration of a run: the one source of its input caps, task layers and answer pool.

    A fresh model takes the preset (``args.model_preset``) with ``args.model_overrides`` and the data arguments'
    input caps (``model_overrides`` wins where both set one), the task layers of the trained tasks (the preset's,
    updated by ``model_overrides.task_layers``), the tokenizer's vocabulary size and the answer pool. With
    ``args.init_from`` the checkpoint's configuration is kept, except for the data arguments' input caps.

    Args:
        args: The training arguments.
        tokenizer: The run's tokenizer.
        answer_vocab: The VQA answer pool (empty without VQA).
    """
    caps = args.data.input_caps()
    if args.init_from:
        config = HierarchicalVLConfig.from_pretrained(args.init_from)
        if config.vocab_size != len(tokenizer):
            raise ValueError(
                f"{args.init_from} has a {config.vocab_size}-word vocabulary but the tokenizer has "
                f"{len(tokenizer)}: train with the checkpoint's own tokenizer"
            )
        for name, value in caps.items():
            setattr(config, name, value)
        return config
    overrides = dict(args.model_overrides)
    for name, value in caps.items():
        if name in overrides and overrides[name] != value:
            logger.warning("model_overrides.%s=%s replaces data.%s=%s", name, overrides[name], name, value)
        overrides.setdefault(name, value)
    task_layers = dict(HierarchicalVLConfig.from_preset(args.model_preset).task_layers)
    task_layers.update(args.task_layers)
    overrides["task_layers"] = {task: layer for task, layer in task_layers.items() if task in args.trained_tasks}
    overrides["vocab_size"] = len(tokenizer)
    if answer_vocab:
        overrides["id2label"] = dict(enumerate(answer_vocab))
        overrides.pop("num_answers", None)
    return HierarchicalVLConfig.from_preset(args.model_preset, **overrides)


def _collator_options(task: str, args: TrainingArguments) -> dict[str, Any]:
    """Training settings of a task's collator beyond the caps: retrieval's negatives (``data.retrieval_negatives``,
    ``data.retrieval_negative_mining``), grounding's box matching (the protocol's, so that training labels and
    evaluation agree)."""
    if task == "retrieval":
        return {
            "negatives_per_positive": args.data.retrieval_negatives,
            "negative_mining": args.data.retrieval_negative_mining,
            "seed": args.seed,
        }
    if task == "grounding":
        return {"box_matching": args.evaluation_protocol().box_matching}
    return {}


def _window_collator(spec: Any, config: HierarchicalVLConfig, template: Any, args: TrainingArguments) -> Any:
    """Builds the collator of each window of a stream: the task's training collator (``template``) over the
    window's view, with the template's seed at the time (the retrieval negatives, which experiments reseed)."""
    options = _collator_options(task=spec.name, args=args)

    def make(view: Any) -> Any:
        seeded = {**options, "seed": template.seed} if "seed" in options else options
        return spec.make_collator(view, config, include_metadata=False, **seeded)

    return make


def prepare_data(args: TrainingArguments, tokenizer: HierarchicalVLTokenizer | None = None) -> PreparedData:
    """Load the corpora of the curriculum's tasks, check contamination, build the tokenizer, the model
    configuration and the encoded datasets.

    The tokenizer's vocabulary is the words of the training text of every task (unless one is given). With
    streamed features (``data.features`` naming a Hub dataset or a Parquet export) the training datasets are
    encoded on the stream's catalogue and each trained task reads the stream (`PreparedData.streams`); the
    evaluation splits' images are read into memory.
    """
    data = args.data
    protocol = args.evaluation_protocol()
    trained, evaluated = args.trained_tasks, args.evaluated_tasks
    layout = _layout(args)
    needed = [task for task in TASK_SPECS if task in trained or task in evaluated]
    answer_vocab = _answer_pool(args, layout) if "vqa" in needed else []
    # The soft labels compare answers as the pool was counted (the loader's default for the current protocol).
    normalizer = protocol.answer_normalizer() if protocol.answer_normalization != "text" else None
    train_rows: dict[str, Any] = {}
    eval_rows: dict[str, Any] = {}
    splits: list[SplitImages] = []
    for task in needed:
        train_splits, eval_split = data.splits(task)
        read = {"answer_vocab": answer_vocab, "answer_normalizer": normalizer}
        if task in trained:
            parts, images = [], []
            for corpus in layout.corpora(task):  # retrieval: every caption corpus, each with the training splits
                for split in train_splits:
                    parts.append(layout.read_split(task, split, corpus=corpus, **read))
                    images.append((corpus, SplitImages.from_rows(task, f"{split} ({corpus})", "train", parts[-1])))
            _check_corpora_apart(task, images, layout)
            splits += [part for _, part in images]
            train_rows[task] = _concatenate(parts)
        if task in evaluated:
            eval_rows[task] = first_images(layout.read_split(task, eval_split, **read), protocol.eval_max_images)
            corpus = layout.task_corpus(task)
            splits.append(SplitImages.from_rows(task, f"{eval_split} ({corpus})", "eval", eval_rows[task]))
    # Images are compared by the ids their features are looked up under: corpus image ids (coco/42) when the
    # features are named per corpus, so only within a corpus; with one unnamed source an id is one image for all.
    report = check_contamination(splits, allow=data.allow_contamination)
    if report:
        logger.warning("allowed by data.allow_contamination: %s", report.format())

    if tokenizer is None:
        texts = (text for task, rows in train_rows.items() for text in rows[task_spec(task).text_field])
        tokenizer = HierarchicalVLTokenizer.from_texts(texts, min_frequency=data.min_word_frequency)
    config = build_config(args, tokenizer, answer_vocab)
    streamed = streamed_feature_source(data.features, data.root)
    stream = None
    if streamed is not None:
        if data.features_on_device:
            raise ValueError("data.features_on_device needs a local store, not streamed features")
        stream = StreamingRegionFeatures(
            streamed, buffer_size=data.stream_buffer_size, seed=args.seed, window_images=data.stream_window_images
        )
        store = stream.catalogue()
    else:
        bar = progress_mode(args.progress) == "bar"  # a conversion bar on a terminal only
        store = open_region_store(data.features, data.path(data.features_store), progress=bar, root=data.root)
    processor = HierarchicalVLProcessor.from_config(tokenizer, config)
    prepared = PreparedData(
        store=store,
        tokenizer=tokenizer,
        processor=processor,
        config=config,
        answer_vocab=answer_vocab,
        protocol=protocol,
        caption_corpus=caption_corpus(layout.task_path("retrieval")) if "retrieval" in evaluated else None,
    )
    for task, rows in train_rows.items():
        spec = task_spec(task)
        prepared.train[task] = spec.encode(rows, store, tokenizer, config)
        prepared.collators[task] = spec.make_collator(
            prepared.train[task],
            config,
            include_metadata=False,
            feature_rows=data.features_on_device,  # the trainer gathers from its on-device copy of the store
            **_collator_options(task, args),
        )
        if stream is not None:
            prepared.streams[task] = StreamedTaskData(
                prepared.train[task], stream, _window_collator(spec, config, prepared.collators[task], args)
            )
    eval_store = streamed_images_store(streamed, eval_rows) if streamed is not None and eval_rows else store
    for task, rows in eval_rows.items():
        prepared.eval[task] = task_spec(task).encode(rows, eval_store, tokenizer, config)
    return prepared


def build_model(args: TrainingArguments, prepared: PreparedData) -> HierarchicalVLForMultiTask:
    """A fresh model of `build_config` (seeded with ``args.seed``), or ``args.init_from`` loaded with it.

    Raises:
        ValueError: If the arguments give other input caps than those the data were prepared with.
    """
    config = build_config(args, prepared.tokenizer, prepared.answer_vocab)
    changed = [name for name in _INPUT_CAPS if getattr(config, name) != getattr(prepared.config, name)]
    if changed:
        raise ValueError(f"the data were prepared with other input caps ({changed}); prepare them with these arguments")
    if args.init_from:
        return HierarchicalVLForMultiTask.from_pretrained(args.init_from, config=config)
    torch.manual_seed(args.seed)
    model = HierarchicalVLForMultiTask(config)
    if args.data.glove:
        matrix, coverage = load_glove_embeddings(
            args.data.path(args.data.glove),
            prepared.tokenizer.get_vocab(),
            dim=config.word_embedding_dim,
            seed=args.seed,
        )
        logger.info("%s", coverage)
        model.load_glove_embeddings(torch.from_numpy(matrix))
    return model


def make_evaluate_fn(prepared: PreparedData, batch_size: int = 128):
    """``evaluate_fn(model, tasks) -> {"task/metric": value}`` over the prepared evaluation splits.

    Each task runs its evaluation function (`TaskSpec.evaluate_fn`) with ``batch_size`` times its
    ``eval_batch_scale`` examples per forward pass, scored as the prepared data's protocol says (VQA metric
    version, retrieval ranking of the caption corpus, grounding box matching).
    """

    def evaluate(model: torch.nn.Module, tasks: list[str]) -> Mapping[str, float]:
        device = next(model.parameters()).device
        results: dict[str, float] = {}
        for task in tasks:
            if task not in prepared.eval:
                continue
            spec = task_spec(task)
            results.update(
                spec.evaluate_fn(
                    model,
                    prepared.eval[task],
                    batch_size=spec.eval_batch_scale * batch_size,
                    device=device,
                    **prepared.protocol.task_options(
                        task,
                        caption_corpus=prepared.caption_corpus or "coco",
                        num_images=len(prepared.eval[task].images) if task == "retrieval" else None,
                    ),
                )
            )
        return results

    return evaluate


def train_from_arguments(
    args: TrainingArguments,
    prepared: PreparedData | None = None,
    evaluate: bool = True,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainingResult:
    """Prepare data, build the model, train the curriculum and save a complete ``from_pretrained`` directory.

    ``callbacks`` are [`TrainerCallback`] objects passed to the trainer. The output directory also gets
    ``training_log.json`` (losses, evaluations, updates per stage; see `hierarchical_vl.training_records`) and the
    run's plots (``plots/losses.png``, ``plots/metrics.png``; see [`write_training_plots`]).
    """
    prepared = prepared or prepare_data(args)
    model = build_model(args, prepared)
    evaluate_fn = make_evaluate_fn(prepared, args.eval_batch_size) if evaluate else None
    history = LossHistory()
    trainer = MultiTaskTrainer(model, args, prepared.sources(), evaluate_fn, callbacks=[*callbacks, history])
    result = trainer.train()
    if trainer.accelerator.is_main_process:
        try:  # staged: a full disk leaves the previous processor files as they were
            save_staged(prepared.processor.save_pretrained, Path(args.output_dir))
        except OSError as error:
            full = disk_full(error, model_disk_full_message(args.output_dir))
            if full is None:
                raise
            raise full from error
        losses = _run_losses(Path(args.output_dir), history.losses)
        write_training_log(args.output_dir, result, losses)
        write_training_plots(args.output_dir, losses, result.evaluations, result.stage_updates)
    return result


def _run_losses(output_dir: Path, losses: list[tuple[int, str, float]]) -> list[tuple[int, str, float]]:
    """The losses of the whole run: a resumed run's new ones after those its earlier part logged."""
    if not losses:
        return losses
    previous = (read_training_log(output_dir) or {}).get("losses") or []
    earlier = [(int(u), str(t), float(v)) for u, t, v in previous if int(u) < losses[0][0]]
    return earlier + list(losses)
