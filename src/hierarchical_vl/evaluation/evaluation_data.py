"""The evaluation split of each task, read from a corpus directory and encoded for the model.

The directory layout is the one ``hvl data demo`` writes, which follows the real releases::

    DIR/features/region_features.tsv      bottom-up-attention TSV (or a converted RegionFeatureStore directory)
    DIR/vqa/v2_OpenEnded_mscoco_<subtype>_questions.json, v2_mscoco_<subtype>_annotations.json
    DIR/captions/dataset_coco.json        Karpathy split file (or dataset_flickr30k.json)
    DIR/flickr30k_entities/               Sentences/, Annotations/, train.txt, val.txt, test.txt

Each part can be pointed elsewhere. Region features that are not yet a store are converted once into
``<features>.store`` next to them (see ``hvl features convert``) and reused afterwards.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..configuration_hierarchical_vl import TASKS
from ..data import (
    EncodedCaptionDataset,
    EncodedGroundingDataset,
    EncodedVQADataset,
    RegionFeatureStore,
    convert_region_features,
    load_flickr30k_entities,
    load_karpathy_captions,
    load_vqa,
)

__all__ = ["CorpusLayout", "EvaluationData", "load_evaluation_data", "open_region_store"]

logger = logging.getLogger(__name__)

_STORE_MARKER = "store.json"
_CAPTION_FILES = ("dataset_coco.json", "dataset_flickr30k.json")

# Words kept per grounding sentence: long enough that no Flickr30k Entities phrase is cut off (a cut phrase would
# silently leave the evaluation set).
GROUNDING_MAX_WORDS = 128


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


@dataclass
class EvaluationData:
    """The encoded evaluation split of each task (``None`` for tasks not loaded).

    Attributes:
        store: The region-feature store shared by the tasks.
        vqa: VQA questions of the split (with the 10 answers when the split is annotated).
        retrieval: Karpathy captions of the split, with their images.
        grounding: Flickr30k Entities sentences of the split, with their grounded phrases.
        splits: The split each task was read from.
    """

    store: RegionFeatureStore
    vqa: EncodedVQADataset | None = None
    retrieval: EncodedCaptionDataset | None = None
    grounding: EncodedGroundingDataset | None = None
    splits: dict[str, str] = field(default_factory=dict)

    def for_task(self, task: str) -> Any:
        """The encoded dataset of ``task``."""
        return getattr(self, task)


def open_region_store(features: str | os.PathLike, store_path: str | os.PathLike | None = None,
                      progress: bool = True) -> RegionFeatureStore:
    """Open region features as a `RegionFeatureStore`, converting them once when they are in another format.

    Args:
        features: A store directory, or a file/directory in a format the feature readers know.
        store_path: Where the converted store goes (default: ``<features>.store`` next to the features, where
            training puts it too).
        progress: Show the conversion's progress bar.
    """
    features = Path(features)
    if (features / _STORE_MARKER).exists():
        return RegionFeatureStore(features)
    if not features.exists():
        raise FileNotFoundError(f"no region features at {features}")
    destination = Path(store_path) if store_path is not None else features.with_name(features.name + ".store")
    if not (destination / _STORE_MARKER).exists():
        logger.info("converting %s into the region store %s", features, destination)
        convert_region_features(features, destination, progress=progress)
    return RegionFeatureStore(destination)


def load_evaluation_data(
    layout: CorpusLayout,
    tasks: list[str],
    split: str,
    tokenizer: Any,
    *,
    answer_vocab: list[str] | None = None,
    max_question_words: int = 14,
    max_caption_words: int = 32,
    max_sentence_words: int = GROUNDING_MAX_WORDS,
    splits: dict[str, str] | None = None,
    store_path: str | os.PathLike | None = None,
    progress: bool = True,
) -> EvaluationData:
    """Read and encode the evaluation split of each task.

    Args:
        layout: Where the corpus is.
        tasks: Tasks to load (``vqa``, ``retrieval``, ``grounding``).
        split: Split of every task (``val`` or ``test``; VQA also ``test-dev``).
        tokenizer: The model's word-level tokenizer.
        answer_vocab: The model's answer pool in logit order (``config.id2label``); needed for VQA.
        max_question_words: Words kept per question (as in training).
        max_caption_words: Words kept per caption (as in training).
        max_sentence_words: Words kept per grounding sentence.
        splits: Per-task split overriding ``split`` (e.g. ``{"vqa": "val"}``).
        store_path: Where converted region features go (see `open_region_store`).
        progress: Show the feature conversion's progress bar.
    """
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; choose from {list(TASKS)}")
    task_splits = {task: (splits or {}).get(task, split) for task in tasks}
    store = open_region_store(layout.path(layout.features), store_path, progress=progress)
    data = EvaluationData(store=store, splits=task_splits)
    if "vqa" in tasks:
        if answer_vocab is None:
            raise ValueError("VQA evaluation needs the model's answer pool (answer_vocab)")
        rows = load_vqa(layout.path(layout.vqa_dir), split=task_splits["vqa"], answer_vocab=answer_vocab,
                        streaming=True)
        data.vqa = EncodedVQADataset(rows, store, tokenizer, answer_vocab=answer_vocab,
                                     max_question_length=max_question_words)
    if "retrieval" in tasks:
        rows = load_karpathy_captions(layout.captions_path(), split=task_splits["retrieval"], streaming=True)
        data.retrieval = EncodedCaptionDataset(rows, store, tokenizer, max_caption_length=max_caption_words)
    if "grounding" in tasks:
        rows = load_flickr30k_entities(layout.path(layout.entities_dir), split=task_splits["grounding"],
                                       streaming=True)
        data.grounding = EncodedGroundingDataset(rows, store, tokenizer, max_sentence_length=max_sentence_words)
    for task in tasks:
        if len(data.for_task(task)) == 0:
            raise ValueError(f"the {task_splits[task]} split of {task} has no examples")
    return data
