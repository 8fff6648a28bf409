"""Training arguments: presets as YAML data files, every field overridable from the command line.

Everything about the model -- its preset, the encoder layer of each task's decoder (``model_overrides.task_layers``)
and the input caps -- ends up in the model configuration, which training builds once from these arguments
(``training.run.build_config``); the data arguments' caps (``data.max_regions``, ``data.max_question_words``,
``data.max_caption_words``) go into it when set. Files written by version 0.1, with a task's layer under
``tasks.<task>.layer``, still load: the layer moves to ``model_overrides.task_layers`` with a ``FutureWarning``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import logging
import os
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..atomic_files import write_text_atomic
from ..data.collators import NEGATIVE_MINING
from ..data.corpora import check_corpus_name
from ..tasks import TASK_SPECS

__all__ = [
    "DataArguments",
    "OptimizerArguments",
    "StageArguments",
    "TaskArguments",
    "TrainingArguments",
    "apply_overrides",
    "available_training_presets",
    "load_training_arguments",
    "training_arguments_from_mapping",
    "unknown_fields_message",
]

logger = logging.getLogger(__name__)

_PRESETS = "hierarchical_vl.training.presets"


@dataclass
class TaskArguments:
    """Per-task hyper-parameters from the single-task grid search (paper Sec. 4.2), frozen afterwards.

    The encoder depth of the task's decoder (``l(i)``) is part of the model configuration: set it with
    ``model_overrides.task_layers.<task>``.

    Args:
        iterations: ``#iter_i``: updates of the task when trained alone; sets its share ``alpha_i`` of each cycle.
        lr_step: ``#step_i``: learning-rate step size of the task when trained alone.
        batch_size: ``bs_i``.
    """

    iterations: int = 1000
    lr_step: int = 1000
    batch_size: int = 64


@dataclass
class StageArguments:
    """One curriculum stage: tasks trained together with periodic switching (Algorithm 1).

    Args:
        tasks: Tasks of the stage in switching order.
        cycle_length: ``C``.
        name: Label used in logs and checkpoint names.
        evaluate: Tasks evaluated at the end of the stage (default: the stage's tasks).
        partial_cycle: Run the iterations that the whole cycles leave over (``sum_i #iter_i`` not a multiple of
            ``C``) as a last partial cycle, each task getting its share; by default they are not run (Algorithm 1's
            ``floor``) and the trainer warns with the numbers (`TaskSwitchingSchedule`).
    """

    tasks: list[str]
    cycle_length: int = 100
    name: str = ""
    evaluate: list[str] | None = None
    partial_cycle: bool = False


@dataclass
class OptimizerArguments:
    """Adam with the paper's settings and the step learning-rate decay.

    Args:
        lr: Initial learning rate of each stage.
        betas: Adam's betas.
        decay: Learning-rate factor applied every ``sum_i #step_i`` updates.
        weight_decay: Adam's weight decay (0 in the paper).
        max_grad_norm: Clip the gradient norm to this value (off when ``None``).
    """

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)
    decay: float = 0.5
    weight_decay: float = 0.0
    max_grad_norm: float | None = None


@dataclass
class DataArguments:
    """Where the corpora are and which splits train and evaluate each task.

    Relative paths are taken under ``root``. The defaults are the layout written by ``hvl data demo``.

    Args:
        root: Base directory of the relative paths below.
        features: Region features: a ``RegionFeatureStore`` directory, or a file/directory in one of the readers'
            formats (bottom-up TSV, HDF5, npz directory, LMDB), converted once into ``features_store``; also a glob
            (``bottom_up/trainval/*.tsv*``), a directory of TSV shards (``bottom_up/trainval``) or a list of these
            converted into the one store, which reconverts when any of them changes
            (``hierarchical_vl.evaluation.evaluation_data.feature_sources``). COCO and Flickr30k number their
            images alike (a Flickr30k image 36979 is not the COCO image 36979): name the sources per corpus,
            ``{coco: [bottom_up/trainval], flickr30k: bottom_up/flickr30k}``, and the store keys each image by its
            corpus (``coco/36979``, ``flickr30k/36979``), each task looking up the images of its own corpus
            (``task_corpora``); contamination is then checked within each corpus.
            Features that are not on local disk stream instead: ``hf://datasets/ORG/NAME[@REVISION]`` (a Hub
            dataset) or ``parquet:PATH`` (a Parquet export, ``hvl features export-parquet``); training reads them
            through a seeded, resumable shuffle buffer (``stream_buffer_size``, ``stream_window_images``; one
            process, no ``group_by_length`` or ``features_on_device``) and evaluation keeps its splits' images in
            memory.
        features_store: Where a converted store is kept (default: next to ``features`` with ``.store``; for a glob,
            a list or a mapping, ``region_features.store`` in the sources' common directory).
        vqa_dir: Directory with the official VQA 2.0 question and annotation JSON files.
        captions_file: Karpathy split file (``dataset_coco.json`` or ``dataset_flickr30k.json``), or several
            caption corpora that retrieval trains on together: a mapping corpus -> file (``{coco:
            karpathy/dataset_coco.json, flickr30k: karpathy/dataset_flickr30k.json}``) or a list of files (each
            named by the corpus it holds). ``caption_train_splits`` applies to each; ``caption_eval_corpus`` is the
            one evaluated.
        caption_eval_corpus: The caption corpus retrieval evaluates when ``captions_file`` names several (default:
            the first).
        task_corpora: The corpus of each task's images where it differs from the default (``vqa: coco``,
            ``grounding: flickr30k``; retrieval: the corpus of each Karpathy file, or ``task_corpora.retrieval`` for
            a single file); ``None`` keeps the defaults.
        entities_dir: Flickr30k Entities directory (``Sentences/``, ``Annotations/``, split lists).
        vqa_train_splits: VQA splits trained on (``train``; add ``val`` for the paper's run 2).
        vqa_eval_split: VQA split evaluated.
        caption_train_splits: Karpathy splits trained on. ``train`` is the file's ``train`` images only (COCO's
            82,783 train2014 images, the paper's training set); add ``restval`` (30,504 more COCO val2014 images,
            113,287 in all, common practice since) with ``[train, restval]`` or name both as ``train+restval``
            (what ``train`` meant in version 0.1).
        caption_eval_split: Karpathy split evaluated.
        entities_train_split: Flickr30k Entities split trained on.
        entities_eval_split: Flickr30k Entities split evaluated.
        glove: Optional GloVe text file (``glove.840B.300d.txt``) for the word embeddings.
        min_word_frequency: Words seen fewer times in the training text map to the unknown token.
        min_answer_frequency: Answers must be seen more than this many times to join the answer pool; ``None``
            keeps the definition of ``hierarchical_vl.data.build_vqa_answer_vocab`` (more than 8 times, the paper's).
        max_regions: Regions kept per image (``config.max_regions``); ``None`` keeps the model preset's.
        max_question_words: Words kept per question (``config.max_question_words``); ``None`` keeps the preset's.
        max_caption_words: Words kept per caption and grounding sentence (``config.max_caption_words``); ``None``
            keeps the preset's.
        retrieval_negatives: Negative pairs per positive in retrieval batches (in each direction), k.
        retrieval_negative_mining: How they are chosen among the batch's other captions and images: ``random``
            (random in-batch shifts, the default; the paper does not say) or ``hard`` (the k with the highest
            current score, see ``hierarchical_vl.training.negative_mining``).
        allow_contamination: Start even if an evaluation image is in another task's training split.
        eval_max_images: Evaluate during training on the first N images of each evaluation split (file order, with
            all their questions, captions and phrases); ``0`` = every image; ``None`` keeps the protocol's
            (``paper``: 1,000, ``current``: every image).
        answer_pool_splits: VQA splits whose annotations make the answer pool; ``None`` keeps the protocol's
            (``paper``: train and val, the standard 3,129-answer pool of Teney et al.; ``current``: the training
            splits ``vqa_train_splits``).
        answer_normalization: How answers are compared while counting the pool (and for the soft labels):
            ``text`` (lowercase, single spaces) or ``official`` (the official VQA normalisation); ``None`` keeps the
            protocol's (``paper``: official, ``current``: text).
        group_by_length: Batch together training examples of similar region count (then word count), for less
            padding with the adaptive 10-100-box features: megabatches of 50 batches sorted by size, the epoch's
            batches then shuffled (``hierarchical_vl.training.batching.LengthGroupedBatches``); seeded and resumable
            like the default random batches, which it replaces.
        features_on_device: Keep the whole float16 feature store on the accelerator (COCO's 123k images x 100
            regions x 2048 take about 50 GB) and gather each batch's features there instead of in host memory;
            the batches and results are the same. On a CPU the store is copied into memory.
        stream_buffer_size: Images in the shuffle buffer of streamed features (epoch e shuffles with the seed and
            e; 1: the stored order).
        stream_window_images: Images per window of streamed features: the training batches of a task are made of
            the examples of one window's images, so each epoch sees every example once.
    """

    root: str = "demo_corpus"
    features: str | list[str] | dict[str, str | list[str]] = "features/region_features.tsv"
    features_store: str | None = None
    vqa_dir: str = "vqa"
    captions_file: str | list[str] | dict[str, str] = "captions/dataset_coco.json"
    caption_eval_corpus: str | None = None
    task_corpora: dict[str, str] | None = None
    entities_dir: str = "flickr30k_entities"
    vqa_train_splits: list[str] = field(default_factory=lambda: ["train"])
    vqa_eval_split: str = "val"
    caption_train_splits: list[str] = field(default_factory=lambda: ["train"])
    caption_eval_split: str = "test"
    entities_train_split: str = "train"
    entities_eval_split: str = "test"
    glove: str | None = None
    min_word_frequency: int = 1
    min_answer_frequency: int | None = None
    max_regions: int | None = None
    max_question_words: int | None = None
    max_caption_words: int | None = None
    retrieval_negatives: int = 1
    retrieval_negative_mining: str = "random"
    allow_contamination: bool = False
    eval_max_images: int | None = None
    answer_pool_splits: list[str] | None = None
    answer_normalization: str | None = None
    group_by_length: bool = False
    features_on_device: bool = False
    stream_buffer_size: int = 1000
    stream_window_images: int = 256

    def path(self, value: str | None) -> Path | None:
        """``value`` resolved against ``root``."""
        if value is None:
            return None
        path = Path(value)
        return path if path.is_absolute() else Path(self.root) / path

    def splits(self, task: str) -> tuple[list[str], str]:
        """The training splits and the evaluation split of ``task``.

        The split fields keep their names of version 0.1 (``vqa_*``, ``caption_*``, ``entities_*``), so this is
        where their task is known.
        """
        if task == "vqa":
            return list(self.vqa_train_splits), self.vqa_eval_split
        if task == "retrieval":
            return list(self.caption_train_splits), self.caption_eval_split
        if task == "grounding":
            return [self.entities_train_split], self.entities_eval_split
        raise ValueError(f"the data arguments have no splits of task {task!r}")

    def input_caps(self) -> dict[str, int]:
        """The caps set here, as model configuration fields (``max_regions``, ``max_question_words``, ...)."""
        caps = {
            "max_regions": self.max_regions,
            "max_question_words": self.max_question_words,
            "max_caption_words": self.max_caption_words,
        }
        return {name: value for name, value in caps.items() if value is not None}


@dataclass
class TrainingArguments:
    """Everything a training run needs besides the model configuration.

    Args:
        output_dir: Where checkpoints, logs and the final ``from_pretrained`` directory go.
        seed: Seed of initialisation, data order and dropout.
        model_preset: Model preset (``paper``, ``demo``, ``tiny``) the run starts from.
        model_overrides: `HierarchicalVLConfig` fields replacing the preset's values; ``task_layers`` maps a task
            to the encoder layer its decoder reads (``l(i)``), the other tasks keeping the preset's.
        init_from: A ``from_pretrained`` directory to start from instead of a fresh model.
        tasks: Per-task arguments.
        curriculum: Stages, from single tasks to pairs to all tasks.
        optimizer: Optimiser arguments.
        data: Data arguments.
        mixed_precision: ``no``, ``fp16`` or ``bf16`` (Accelerate).
        gradient_accumulation_steps: Micro-batches per update (all of one task).
        eval_every: Evaluate every N updates (0: only at stage ends).
        eval_batch_size: Batch size of evaluation.
        save_every: Checkpoint every N updates (0: only at stage ends).
        keep_last: Checkpoints kept.
        log_every: Log losses every N updates.
        log_with: Accelerate trackers (``tensorboard``, ``wandb``, ...); empty for none.
        num_workers: DataLoader workers per task.
        prefetch_batches: Batches prepared ahead in a background thread while the current update runs (collated,
            pinned and copied to the device); 0 prepares each batch when its update starts. The batches and
            results are the same either way.
        progress: ``true``: a progress bar on a terminal, a plain line every ``progress_every`` seconds otherwise
            (log files, where other libraries' bars are silenced too); ``bar`` or ``lines`` to choose; ``false``
            (``--no-progress``) silences every progress bar, transformers', datasets' and huggingface_hub's
            included.
        progress_every: Seconds between two progress lines (``progress: lines``, or not on a terminal).
        save_best: A metric of the trainer's evaluations (``vqa/overall``, ``retrieval/i2t_r1``,
            ``retrieval/t2i_r1``, ``grounding/r1``, ...; higher is better) whose best checkpoint is kept in
            ``output_dir/best`` (weights, configuration and ``best_metric.json``: metric, value, update, stage) as
            well as the last ``keep_last`` ones (``--save-best METRIC``); ``None`` keeps no best checkpoint.
        overwrite_output_dir: Start afresh in an ``output_dir`` that holds a run of another configuration (its
            checkpoints are removed); without it such a run is refused rather than resumed (``--overwrite-output``).
        protocol: The evaluation protocol (``current`` or ``paper``, see ``hierarchical_vl.evaluation.protocols``)
            of the trainer's evaluations, of the grounding training labels (its box matching) and of the answer
            pool; ``data.eval_max_images``, ``data.answer_pool_splits`` and ``data.answer_normalization`` override
            single fields of it.
    """

    output_dir: str = "outputs/run"
    seed: int = 0
    model_preset: str = "paper"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    tasks: dict[str, TaskArguments] = field(default_factory=dict)
    curriculum: list[StageArguments] = field(default_factory=list)
    optimizer: OptimizerArguments = field(default_factory=OptimizerArguments)
    data: DataArguments = field(default_factory=DataArguments)
    mixed_precision: str = "no"
    gradient_accumulation_steps: int = 1
    eval_every: int = 0
    eval_batch_size: int = 128
    save_every: int = 0
    keep_last: int = 2
    log_every: int = 10
    log_with: list[str] = field(default_factory=lambda: ["tensorboard"])
    num_workers: int = 0
    prefetch_batches: int = 1
    progress: bool | str = True
    progress_every: float = 30.0
    save_best: str | None = None
    overwrite_output_dir: bool = False
    protocol: str = "current"

    def __post_init__(self) -> None:
        self.model_overrides = _with_task_layers(dict(self.model_overrides or {}), self.tasks)
        self.tasks = {
            name: _coerce(TaskArguments, _without_layer(value), f"tasks.{name}.") for name, value in self.tasks.items()
        }
        self.curriculum = [
            _coerce(StageArguments, stage, f"curriculum.{i}.") for i, stage in enumerate(self.curriculum)
        ]
        self.optimizer = _coerce(OptimizerArguments, self.optimizer, "optimizer.")
        if isinstance(self.optimizer.betas, list):
            self.optimizer.betas = tuple(self.optimizer.betas)
        self.data = _coerce(DataArguments, self.data, "data.")
        from .config_help import check_field_types  # it describes these classes

        try:
            self.validate()
        except TypeError:
            check_field_types(self)  # one line naming the field whose value has the wrong type
            raise
        check_field_types(self)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field for an inconsistent configuration."""
        unknown = sorted(set(self.tasks) - set(TASK_SPECS))
        if unknown:
            raise ValueError(f"tasks: unknown task(s) {unknown}; known tasks are {list(TASK_SPECS)}")
        unknown = sorted(set(self.task_layers) - set(TASK_SPECS))
        if unknown:
            raise ValueError(
                f"model_overrides.task_layers: unknown task(s) {unknown}; known tasks are {list(TASK_SPECS)}"
            )
        if not self.curriculum:
            raise ValueError("curriculum: at least one stage is needed")
        for index, stage in enumerate(self.curriculum):
            if not stage.tasks:
                raise ValueError(f"curriculum[{index}]: a stage needs at least one task")
            missing = [task for task in stage.tasks if task not in self.tasks]
            if missing:
                raise ValueError(
                    f"curriculum[{index}] ({stage.name or 'unnamed'}): tasks {missing} have no entry in 'tasks'"
                )
            if not stage.name:
                stage.name = f"stage{index + 1}-" + "+".join(stage.tasks)
        if self.progress not in (True, False, "bar", "lines"):
            raise ValueError(f"progress must be true, false, bar or lines, got {self.progress!r}")
        if self.save_best is not None and (not isinstance(self.save_best, str) or "/" not in self.save_best):
            raise ValueError(
                f"save_best must name an evaluation metric as task/metric (vqa/overall, retrieval/i2t_r1, "
                f"grounding/r1, ...), got {self.save_best!r}"
            )
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be 'no', 'fp16' or 'bf16', got {self.mixed_precision!r}")
        if self.gradient_accumulation_steps < 1 or self.keep_last < 1:
            raise ValueError("gradient_accumulation_steps and keep_last must be positive")
        if isinstance(self.prefetch_batches, bool) or not isinstance(self.prefetch_batches, int):
            raise ValueError(f"prefetch_batches must be an integer >= 0, got {self.prefetch_batches!r}")
        if self.prefetch_batches < 0:
            raise ValueError(f"prefetch_batches must be an integer >= 0, got {self.prefetch_batches!r}")
        if self.data.retrieval_negative_mining not in NEGATIVE_MINING:
            raise ValueError(
                f"data.retrieval_negative_mining must be one of {list(NEGATIVE_MINING)}, got "
                f"{self.data.retrieval_negative_mining!r}"
            )
        if not isinstance(self.data.retrieval_negatives, int) or self.data.retrieval_negatives < 0:
            raise ValueError(f"data.retrieval_negatives must be an integer >= 0, got {self.data.retrieval_negatives!r}")
        self._validate_corpora()
        cap = self.data.eval_max_images
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
            raise ValueError(f"data.eval_max_images must be a non-negative integer (0: every image), got {cap!r}")
        self.evaluation_protocol()

    def _validate_corpora(self) -> None:
        """Raise ``ValueError`` for corpus names that cannot be (``data.features``, ``data.captions_file`` keys,
        ``data.caption_eval_corpus``, ``data.task_corpora``)."""
        data = self.data
        for field_name in ("features", "captions_file"):
            value = getattr(data, field_name)
            if isinstance(value, dict):
                if not value:
                    raise ValueError(f"data.{field_name}: the mapping names no corpus")
                for corpus in value:
                    check_corpus_name(corpus, f"data.{field_name} key")
        if data.caption_eval_corpus is not None:
            check_corpus_name(data.caption_eval_corpus, "data.caption_eval_corpus")
            if isinstance(data.captions_file, dict) and data.caption_eval_corpus not in data.captions_file:
                raise ValueError(
                    f"data.caption_eval_corpus {data.caption_eval_corpus!r} is none of the caption corpora "
                    f"{list(data.captions_file)}"
                )
        if data.task_corpora is not None:
            if not isinstance(data.task_corpora, dict):
                raise ValueError(f"data.task_corpora must map tasks to corpora, got {data.task_corpora!r}")
            unknown = sorted(set(data.task_corpora) - set(TASK_SPECS))
            if unknown:
                raise ValueError(f"data.task_corpora: unknown task(s) {unknown}; known tasks are {list(TASK_SPECS)}")
            for task, corpus in data.task_corpora.items():
                check_corpus_name(corpus, f"data.task_corpora.{task}")

    def evaluation_protocol(self) -> Any:
        """The run's `EvaluationProtocol`: ``protocol`` with the data arguments' overrides (named in its name).

        Raises:
            ValueError: If ``protocol`` names no protocol, or an override is not a valid value.
        """
        from ..evaluation.protocols import evaluation_protocol

        try:
            protocol = evaluation_protocol(self.protocol)
        except ValueError as error:
            raise ValueError(f"protocol: {error}") from None
        data = self.data
        changes: dict[str, Any] = {}
        if data.eval_max_images is not None:
            changes["eval_max_images"] = data.eval_max_images or None
        if data.answer_pool_splits is not None:
            changes["answer_pool_splits"] = data.answer_pool_splits
        if data.answer_normalization is not None:
            changes["answer_normalization"] = data.answer_normalization
        try:
            return protocol.with_overrides(**changes)
        except ValueError as error:
            raise ValueError(f"data: {error}") from None

    @property
    def trained_tasks(self) -> list[str]:
        """The tasks some curriculum stage trains, in `TASK_SPECS` order."""
        trained = {task for stage in self.curriculum for task in stage.tasks}
        return [task for task in TASK_SPECS if task in trained]

    @property
    def evaluated_tasks(self) -> list[str]:
        """The tasks some curriculum stage evaluates, in `TASK_SPECS` order."""
        evaluated = {
            task
            for stage in self.curriculum
            for task in (stage.evaluate if stage.evaluate is not None else stage.tasks)
        }
        return [task for task in TASK_SPECS if task in evaluated]

    @property
    def task_layers(self) -> dict[str, int]:
        """The decoder layers set in ``model_overrides.task_layers`` (other tasks keep the model preset's)."""
        return dict(self.model_overrides.get("task_layers") or {})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def _saved_form(self) -> dict[str, Any]:
        data = self.to_dict()
        data["optimizer"]["betas"] = list(data["optimizer"]["betas"])
        return data

    def save(self, path: str | os.PathLike) -> None:
        """Write the arguments as YAML, atomically."""
        write_text_atomic(path, yaml.safe_dump(self._saved_form(), sort_keys=False))

    def run_differences(self, saved: str | os.PathLike) -> list[str]:
        """The fields that change the run and differ from a saved ``training_args.yaml``.

        Fields that do not change what is trained (`RUN_INDEPENDENT_FIELDS`: output place, progress, logging,
        workers, checkpoint retention) are ignored, and so are top-level fields the saved file does not have (it was
        written by an older version) and the later fields of `ADDED_FIELD_DEFAULTS` at the value such a run had.

        Args:
            saved: A ``training_args.yaml`` written by [`save`].

        Returns:
            ``"key: saved -> new"`` lines with dotted keys, empty when the run is the same.
        """
        saved_data = yaml.safe_load(Path(saved).read_text(encoding="utf-8")) or {}
        for stage in saved_data.get("curriculum") or []:
            if isinstance(stage, dict):
                stage.setdefault("partial_cycle", False)  # saved before the field existed: the same schedule
        old = _flatten(saved_data)
        new = _flatten(yaml.safe_load(yaml.safe_dump(self._saved_form(), sort_keys=False)))
        saved_fields = {key.split(".", 1)[0] for key in old}
        differences = []
        splits_key = "data.caption_train_splits"
        if (
            "protocol" not in saved_fields
            and "retrieval" in self.trained_tasks
            and isinstance(old.get(splits_key), list)
        ):
            # Saved before Karpathy ``train`` stopped including ``restval``: compare the images, not the names.
            saved_images = _karpathy_members(old[splits_key], train_includes_restval=True)
            if saved_images == _karpathy_members(new.get(splits_key) or [], train_includes_restval=False):
                old[splits_key] = new.get(splits_key)
            else:
                differences.append(
                    f"{splits_key}: {old[splits_key]!r} -> {new.get(splits_key)!r} (when that run was saved, "
                    "Karpathy 'train' included the restval images; it is now the train images alone: resume it "
                    "with data.caption_train_splits=[train, restval])"
                )
                old[splits_key] = new.get(splits_key)
        for key in sorted(set(old) | set(new)):
            top = key.split(".", 1)[0]
            if key in RUN_INDEPENDENT_FIELDS:
                continue
            if key not in old and key in ADDED_FIELD_DEFAULTS:
                if new.get(key) == ADDED_FIELD_DEFAULTS[key]:
                    continue  # added after the saved file was written, at the value that run had
            elif top in RUN_INDEPENDENT_FIELDS or top not in saved_fields:
                continue
            if old.get(key, "<absent>") != new.get(key, "<absent>"):
                differences.append(f"{key}: {old.get(key, '<absent>')!r} -> {new.get(key, '<absent>')!r}")
        return differences


RUN_INDEPENDENT_FIELDS = frozenset(
    {
        "output_dir",
        "overwrite_output_dir",
        "progress",
        "progress_every",
        "save_best",
        "log_every",
        "log_with",
        "num_workers",
        "prefetch_batches",
        "keep_last",
        "data.features_on_device",
    }
)
"""`TrainingArguments` fields (top-level names or dotted keys) that a resumed run may change: they do not change
what is trained."""

ADDED_FIELD_DEFAULTS: dict[str, Any] = {
    "protocol": "current",
    "data.retrieval_negative_mining": "random",
    "data.eval_max_images": None,
    "data.answer_pool_splits": None,
    "data.answer_normalization": None,
    "data.caption_eval_corpus": None,
    "data.task_corpora": None,
    "data.group_by_length": False,
    "data.stream_buffer_size": 1000,
    "data.stream_window_images": 256,
}
"""Fields added after version 0.1 with the value a run saved without them had (their absence is no difference)."""


def _karpathy_members(splits: list[Any], *, train_includes_restval: bool) -> set[str]:
    """The Karpathy ``split`` values a list of split names trains on.

    In files saved before the ``protocol`` field existed, ``train`` included ``restval``.
    """
    members: set[str] = set()
    for split in splits:
        if split == "train" and train_includes_restval:
            members |= {"train", "restval"}
        else:
            members |= set(str(split).split("+"))
    return members


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: value}


def _without_layer(value: Any) -> Any:
    if isinstance(value, dict) and "layer" in value:
        return {key: item for key, item in value.items() if key != "layer"}
    return value


def _with_task_layers(model_overrides: dict[str, Any], tasks: dict[str, Any]) -> dict[str, Any]:
    """``model_overrides`` with the ``tasks.<task>.layer`` entries of version 0.1 moved into its ``task_layers``."""
    layers = dict(model_overrides.get("task_layers") or {})
    for name, value in tasks.items():
        layer = value.get("layer") if isinstance(value, dict) else None
        if layer is None:
            continue
        warnings.warn(
            f"tasks.{name}.layer is deprecated: the layer of a task's decoder belongs to the model configuration; "
            f"set model_overrides.task_layers.{name}={layer} instead",
            FutureWarning,
            stacklevel=4,
        )
        if layers.get(name, layer) != layer:
            raise ValueError(
                f"tasks.{name}.layer={layer} contradicts model_overrides.task_layers.{name}={layers[name]}"
            )
        layers[name] = layer
    if layers:
        model_overrides["task_layers"] = layers
    return model_overrides


def unknown_fields_message(unknown: list[str], known: list[str], where: str = "") -> str:
    """One line naming unknown fields, each with the closest known one: ``unknown field(s) 'data.rooot' (did you
    mean 'data.root'?)``.

    Args:
        unknown: The unknown names.
        known: The valid names.
        where: Prefix of the names (``data.``, ``curriculum.0.``).
    """
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        hints.append(repr(f"{where}{name}") + (f" (did you mean {f'{where}{close[0]}'!r}?)" if close else ""))
    return f"unknown field(s) {', '.join(hints)}; valid fields are {known} (`hvl config fields` describes them)"


def _coerce(cls, value, where: str = ""):
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise ValueError(
            f"{where.rstrip('.') or cls.__name__}: expected a mapping of {cls.__name__} fields, got {value!r}"
        )
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - names)
    if unknown:
        raise ValueError(unknown_fields_message(unknown, sorted(names), where))
    try:
        return cls(**value)
    except TypeError as error:  # a required field is missing
        raise ValueError(f"{where.rstrip('.') or cls.__name__}: {error}") from None


def training_arguments_from_mapping(data: dict[str, Any], source: Any) -> TrainingArguments:
    """`TrainingArguments` from a loaded mapping; an unknown top-level field is one line with a suggestion.

    Args:
        data: The fields (``description`` and ``search`` removed).
        source: The configuration they came from, named in errors.
    """
    names = sorted(f.name for f in dataclasses.fields(TrainingArguments))
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"{source}: {unknown_fields_message(unknown, names)}")
    return TrainingArguments(**data)


def available_training_presets() -> list[str]:
    """Names of the training presets shipped with the package."""
    return sorted(e.name[: -len(".yaml")] for e in resources.files(_PRESETS).iterdir() if e.name.endswith(".yaml"))


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides (values parsed as YAML) to a nested mapping.

    ``tasks.vqa.batch_size=128``, ``curriculum.0.cycle_length=50``, ``data.vqa_train_splits=[train2014,val2014]``.
    """
    data = copy.deepcopy(data)
    for override in overrides:
        if "=" not in override:
            raise ValueError(f"override {override!r} is not of the form key=value")
        key, raw = override.split("=", 1)
        value = yaml.safe_load(raw)
        parts = key.split(".")
        node: Any = data
        for part in parts[:-1]:
            if isinstance(node, list):
                node = node[int(part)]
            else:
                node = node.setdefault(part, {})
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return data


def merge_fragment(data: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    """``data`` with ``fragment`` merged in: mappings merge key by key, any other value replaces the old one."""
    merged = copy.deepcopy(data)
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_fragment(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path}: expected a mapping of fields, got {type(data).__name__}")
    return data


def load_training_data(
    config: str | os.PathLike,
    overrides: list[str] | None = None,
    fragments: list[str | os.PathLike] | None = None,
) -> dict[str, Any]:
    """The mapping a training configuration describes: the preset or YAML file, then each fragment file merged in
    order (`merge_fragment`), then the ``KEY=VALUE`` overrides; ``description`` removed, ``search`` kept."""
    path = Path(config)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise FileNotFoundError(f"training configuration {path} does not exist")
        text = path.read_text()
    elif str(config) in available_training_presets():
        text = resources.files(_PRESETS).joinpath(f"{config}.yaml").read_text()
    else:
        raise ValueError(f"{config!r} is neither a YAML file nor a training preset ({available_training_presets()})")
    data = yaml.safe_load(text) or {}
    for fragment in fragments or []:
        data = merge_fragment(data, _read_yaml_mapping(Path(fragment), "training fragment"))
    data.pop("description", None)
    return apply_overrides(data, overrides or [])


def load_training_arguments(
    config: str | os.PathLike,
    overrides: list[str] | None = None,
    fragments: list[str | os.PathLike] | None = None,
) -> TrainingArguments:
    """Read a training configuration: a preset name (``demo``, ``paper_run1`` ...) or a YAML file path.

    Args:
        config: The preset name or YAML file.
        overrides: ``KEY=VALUE`` overrides applied last.
        fragments: YAML files merged in order on top of the configuration before the overrides (the preset
            fragment ``hvl search`` writes, for instance).

    The ``search`` section (the grid of ``hvl search``) is not part of the training arguments and is ignored here.
    """
    data = load_training_data(config, overrides, fragments)
    data.pop("search", None)
    return training_arguments_from_mapping(data, config)
