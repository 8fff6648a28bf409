"""Each task's split read from a corpus directory, and encoded for a model: the one reader of the corpus files.

The directory layout is the one ``hvl data demo`` writes, which follows the real releases::

    DIR/features/region_features.tsv      bottom-up-attention TSV (or a converted RegionFeatureStore directory)
    DIR/vqa/v2_OpenEnded_mscoco_<subtype>_questions.json, v2_mscoco_<subtype>_annotations.json
    DIR/captions/dataset_coco.json        Karpathy split file (or dataset_flickr30k.json)
    DIR/flickr30k_entities/               Sentences/, Annotations/, train.txt, val.txt, test.txt

Each part can be pointed elsewhere. Region features that are not yet a store are converted once into
``<features>.store`` next to them (see ``hvl features convert``) and reused afterwards. Training reads its splits
through the same `CorpusLayout` (built from its data arguments) and opens the store with `open_region_store`.

The file formats differ per task (VQA 2.0 JSON, a Karpathy split file, the Flickr30k Entities folders), so this is
the one place that knows, per task, where its annotations lie in a corpus and which loader reads them.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..configuration_hierarchical_vl import HierarchicalVLConfig
from ..data import (
    RegionFeatureStore,
    convert_region_features,
    load_flickr30k_entities,
    load_karpathy_captions,
    load_vqa,
)
from ..data.feature_store import source_changes
from ..tasks import TASK_SPECS, task_spec

__all__ = ["CorpusLayout", "EvaluationData", "load_evaluation_data", "open_region_store"]

logger = logging.getLogger(__name__)

_STORE_MARKER = "store.json"
_CAPTION_FILES = ("dataset_coco.json", "dataset_flickr30k.json")


@dataclass
class CorpusLayout:
    """Where each part of a corpus is; relative paths are taken under ``root``.

    Args:
        root: The corpus directory.
        features: Region features: a `RegionFeatureStore` directory or a file/directory the feature readers know.
        vqa_dir: Directory with the official VQA 2.0 JSON files.
        captions_file: Karpathy split file; by default ``captions/dataset_coco.json`` or
            ``captions/dataset_flickr30k.json``, whichever exists.
        entities_dir: Flickr30k Entities directory.
    """

    root: str | os.PathLike = "."
    features: str | os.PathLike = "features/region_features.tsv"
    vqa_dir: str | os.PathLike = "vqa"
    captions_file: str | os.PathLike | None = None
    entities_dir: str | os.PathLike = "flickr30k_entities"

    def path(self, value: str | os.PathLike) -> Path:
        """``value`` resolved against ``root``."""
        path = Path(value)
        return path if path.is_absolute() else Path(self.root) / path

    def captions_path(self) -> Path:
        """The Karpathy split file."""
        if self.captions_file is not None:
            return self.path(self.captions_file)
        for name in _CAPTION_FILES:
            candidate = self.path(Path("captions") / name)
            if candidate.exists():
                return candidate
        return self.path(Path("captions") / _CAPTION_FILES[0])

    def task_path(self, task: str) -> Path:
        """Where the annotations of ``task`` are: the VQA directory, the Karpathy file or the Entities directory."""
        task_spec(task)
        if task == "vqa":
            return self.path(self.vqa_dir)
        if task == "retrieval":
            return self.captions_path()
        if task == "grounding":
            return self.path(self.entities_dir)
        raise ValueError(f"the corpus layout has no annotations of {task!r}")

    def has_data(self, task: str) -> bool:
        """Whether the corpus holds annotations of ``task``."""
        return self.task_path(task).exists()

    def read_split(
        self, task: str, split: str, *, answer_vocab: list[str] | None = None, streaming: bool = False
    ) -> Any:
        """The annotation rows of one split of ``task`` (``datasets`` rows, as the ``load_*`` functions give).

        Args:
            task: The task.
            split: The split (``train``, ``val``, ``test``; VQA also ``test-dev``; Karpathy ``restval``).
            answer_vocab: The VQA answer pool the soft labels refer to (needed for VQA).
            streaming: Stream the files instead of building map-style datasets.
        """
        path = self.task_path(task)
        if task == "vqa":
            if answer_vocab is None:
                raise ValueError("reading VQA needs the answer pool (answer_vocab)")
            return load_vqa(path, split=split, answer_vocab=answer_vocab, streaming=streaming)
        if task == "retrieval":
            return load_karpathy_captions(path, split=split, streaming=streaming)
        return load_flickr30k_entities(path, split=split, streaming=streaming)


@dataclass
class EvaluationData:
    """The encoded evaluation split of each task; ``data.vqa``, ``data.retrieval``, ... name them (``None`` for
    tasks not loaded).

    Attributes:
        store: The region-feature store shared by the tasks.
        datasets: The encoded dataset of each loaded task (VQA questions with their 10 answers when annotated,
            Karpathy captions with their images, Flickr30k Entities sentences with their grounded phrases).
        splits: The split each task was read from.
    """

    store: RegionFeatureStore
    datasets: dict[str, Any] = field(default_factory=dict)
    splits: dict[str, str] = field(default_factory=dict)

    def for_task(self, task: str) -> Any:
        """The encoded dataset of ``task`` (``None`` when not loaded)."""
        task_spec(task)
        return self.datasets.get(task)

    def __getattr__(self, name: str) -> Any:
        if name in TASK_SPECS:
            return self.__dict__.get("datasets", {}).get(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def open_region_store(
    features: str | os.PathLike, store_path: str | os.PathLike | None = None, progress: bool = True
) -> RegionFeatureStore:
    """Open region features as a `RegionFeatureStore`, converting them once when they are in another format.

    Training and evaluation both open their features here. A converted store records the identity of its
    sources (see `~hierarchical_vl.data.feature_store.source_identity`); when the features changed since (other
    size, time or content) the store is rebuilt from them, with a warning naming the change. A store written by
    an older version records no identity: it opens as before, with a warning that it may be stale.

    Args:
        features: A store directory, or a file/directory in a format the feature readers know.
        store_path: Where the converted store goes (default: ``<features>.store`` next to the features).
        progress: Show the conversion's progress bar.

    A store given directly is the user's own: when the sources it recorded are still where they were and have
    changed, it is refused (it is never replaced without being named in a command).

    Raises:
        FileNotFoundError: If there is nothing at ``features``.
        ValueError: If a store given directly is older than the sources it was converted from.
    """
    features = Path(features)
    if (features / _STORE_MARKER).exists():
        return _checked_store(features)
    if not features.exists():
        raise FileNotFoundError(f"no region features at {features}")
    destination = Path(store_path) if store_path is not None else features.with_name(features.name + ".store")
    if not (destination / _STORE_MARKER).exists():
        logger.info("converting %s into the region store %s", features, destination)
        convert_region_features(features, destination, progress=progress)
        return RegionFeatureStore(destination)
    store = RegionFeatureStore(destination)
    recorded = store.metadata.get("source_identity")
    if recorded is None:
        logger.warning(
            "the region store %s records no identity of its sources (written by an older version): it is used as "
            "it is, but may be stale if %s changed since; delete it to convert again",
            destination,
            features,
        )
        return store
    changes = source_changes(recorded, features)
    if not changes:
        return store
    logger.warning(
        "%s changed since %s was converted (%s): converting again", features, destination, "; ".join(changes)
    )
    del store
    convert_region_features(features, destination, overwrite=True, progress=progress)
    return RegionFeatureStore(destination)


def _checked_store(path: Path) -> RegionFeatureStore:
    """The store at ``path``, refused when the sources it recorded still exist and have changed since."""
    store = RegionFeatureStore(path)
    recorded = store.metadata.get("source_identity") or []
    sources = [item.get("path") for item in recorded]
    if not sources or not all(isinstance(source, str) and Path(source).exists() for source in sources):
        return store  # an older store, or sources moved away: nothing to compare with
    changes = source_changes(recorded, sources)
    if changes:
        raise ValueError(
            f"the region store {path} is stale: {'; '.join(changes)}; convert again with "
            f"`hvl features convert {' '.join(sources)} {path} --overwrite`"
        )
    return store


def load_evaluation_data(
    layout: CorpusLayout,
    tasks: list[str],
    split: str,
    tokenizer: Any,
    *,
    config: HierarchicalVLConfig | None = None,
    answer_vocab: list[str] | None = None,
    max_question_words: int | None = None,
    max_caption_words: int | None = None,
    splits: dict[str, str] | None = None,
    store_path: str | os.PathLike | None = None,
    progress: bool = True,
) -> EvaluationData:
    """Read and encode the evaluation split of each task, with the model's input caps.

    Args:
        layout: Where the corpus is.
        tasks: Tasks to load (`TASK_SPECS` keys).
        split: Split of every task (``val`` or ``test``; VQA also ``test-dev``).
        tokenizer: The model's word-level tokenizer (or processor).
        config: The model's configuration: its word caps (``max_question_words`` for questions,
            ``max_caption_words`` for captions and grounding sentences, as in training) and its answer pool
            (``id2label``). The default configuration's caps when ``None``.
        answer_vocab: The answer pool in logit order, overriding the configuration's (needed for VQA without
            ``config``).
        max_question_words: Overrides the configuration's question cap.
        max_caption_words: Overrides the configuration's caption (and grounding sentence) cap.
        splits: Per-task split overriding ``split`` (e.g. ``{"vqa": "val"}``).
        store_path: Where converted region features go (see `open_region_store`).
        progress: Show the feature conversion's progress bar.
    """
    unknown = sorted(set(tasks) - set(TASK_SPECS))
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; choose from {list(TASK_SPECS)}")
    if "vqa" in tasks and answer_vocab is None and config is None:
        raise ValueError("VQA evaluation needs the model's answer pool (answer_vocab or config)")
    config = copy.deepcopy(config) if config is not None else HierarchicalVLConfig()
    if answer_vocab is not None:
        config.id2label = dict(enumerate(answer_vocab))
    for name, value in (("max_question_words", max_question_words), ("max_caption_words", max_caption_words)):
        if value is not None:
            setattr(config, name, value)
    answer_pool = [config.id2label[i] for i in range(config.num_answers)]
    task_splits = {task: (splits or {}).get(task, split) for task in tasks}
    store = open_region_store(layout.path(layout.features), store_path, progress=progress)
    data = EvaluationData(store=store, splits=task_splits)
    for task in tasks:
        rows = layout.read_split(task, task_splits[task], answer_vocab=answer_pool, streaming=True)
        data.datasets[task] = task_spec(task).encode(rows, store, tokenizer, config)
        if len(data.datasets[task]) == 0:
            raise ValueError(f"the {task_splits[task]} split of {task} has no examples")
    return data
