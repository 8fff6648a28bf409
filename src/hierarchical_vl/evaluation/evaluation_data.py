"""Each task's split read from a corpus directory, and encoded for a model: the one reader of the corpus files.

The directory layout is the one ``hvl data demo`` writes, which follows the real releases::

    DIR/features/region_features.tsv      bottom-up-attention TSV (or a converted RegionFeatureStore directory)
    DIR/vqa/v2_OpenEnded_mscoco_<subtype>_questions.json, v2_mscoco_<subtype>_annotations.json
    DIR/captions/dataset_coco.json        Karpathy split file (or dataset_flickr30k.json)
    DIR/flickr30k_entities/               Sentences/, Annotations/, train.txt, val.txt, test.txt

Each part can be pointed elsewhere. Region features that are not yet a store are converted once into
``<features>.store`` next to them (see ``hvl features convert``) and reused afterwards. The features can be several
sources converted into one store, as the releases come (`feature_sources`): a list of files, a glob
(``bottom_up/trainval/*.tsv*``) or a directory of TSV shards (``bottom_up/trainval``). Training reads its splits
through the same `CorpusLayout` (built from its data arguments) and opens the store with `open_region_store`.

COCO and Flickr30k number their images independently, so features of both are named per corpus, a mapping
``{coco: [bottom_up/trainval], flickr30k: bottom_up/flickr30k}`` (`corpus_feature_sources`): they are converted
into one store keyed by corpus image id (``coco/36979``, ``flickr30k/36979``; see ``hierarchical_vl.data.corpora``)
and each task's annotation rows get the image ids of their corpus (`CorpusLayout.task_corpus`: VQA on COCO,
Flickr30k Entities on Flickr30k, retrieval on the corpus of each Karpathy file). Retrieval may read several
Karpathy files, ``{coco: dataset_coco.json, flickr30k: dataset_flickr30k.json}`` (`CorpusLayout.caption_files`):
training takes the union, evaluation one of them (``caption_eval_corpus``).

Region features can also stream from a Parquet export or a Hub dataset (`streamed_feature_source`:
``hf://datasets/ORG/NAME`` or ``parquet:path/to/export``), for corpora that are not on local disk: training reads
them through a shuffle buffer (``hierarchical_vl.data.StreamingRegionFeatures``) and evaluation keeps the few images
of its splits in memory, read in one pass (`streamed_images_store`).

The file formats differ per task (VQA 2.0 JSON, a Karpathy split file, the Flickr30k Entities folders), so this is
the one place that knows, per task, where its annotations lie in a corpus and which loader reads them.
"""

from __future__ import annotations

import copy
import glob
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..configuration_hierarchical_vl import HierarchicalVLConfig
from ..data import (
    RegionFeatureStore,
    RegionFeatureWindow,
    SplitImages,
    StreamingRegionFeatures,
    convert_region_features,
    load_flickr30k_entities,
    load_karpathy_captions,
    load_vqa,
)
from ..data.corpora import DEFAULT_TASK_CORPORA, check_corpus_name, with_corpus_image_ids
from ..data.feature_store import source_changes
from ..tasks import TASK_SPECS, task_spec
from .protocols import CAPTION_CORPORA, caption_corpus

__all__ = [
    "CorpusLayout",
    "EvaluationData",
    "corpus_feature_sources",
    "feature_sources",
    "load_evaluation_data",
    "open_region_store",
    "streamed_feature_source",
    "streamed_images_store",
]

logger = logging.getLogger(__name__)

_STORE_MARKER = "store.json"
_HUB_STREAM_PREFIX = "hf://datasets/"
_PARQUET_STREAM_PREFIX = "parquet:"
_CAPTION_FILES = ("dataset_coco.json", "dataset_flickr30k.json")
_GLOB_CHARACTERS = frozenset("*?[")
_SEVERAL_SOURCES_STORE = "region_features.store"
"""The default store name of several sources, in their common directory."""

FeatureSources = str | os.PathLike | Sequence[str | os.PathLike]
"""One region-feature source, or several converted into one store (see `feature_sources`)."""
CorpusFeatureSources = Mapping[str, FeatureSources]
"""Region-feature sources named per corpus, converted into one store keyed by corpus image id (see
`corpus_feature_sources`)."""
CaptionFiles = str | os.PathLike | Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike]
"""One Karpathy file, several (each of its own corpus) or a mapping corpus -> file (`CorpusLayout.caption_files`)."""


def _is_glob(value: str | os.PathLike) -> bool:
    return any(character in _GLOB_CHARACTERS for character in str(value))


def _tsv_shards(directory: Path) -> list[Path]:
    """The TSV files of a directory (``*.tsv``, ``*.tsv.<n>``), sorted; empty for a store, LMDB or npz directory."""
    if (directory / _STORE_MARKER).exists() or (directory / "data.mdb").exists():
        return []
    files = [p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")]
    if any(p.suffix in (".npz", ".npy") for p in files):
        return []
    return sorted(p for p in files if ".tsv" in (suffix.lower() for suffix in p.suffixes))


def streamed_feature_source(
    features: FeatureSources | CorpusFeatureSources, root: str | os.PathLike | None = None
) -> str | None:
    """The streamed source that ``features`` names, or ``None`` for features read from local files.

    ``hf://datasets/ORG/NAME[@REVISION]`` names a Hub dataset (downloaded into the Hub cache as it is first read),
    ``parquet:PATH`` a local Parquet export (``hvl features export-parquet``; PATH relative to ``root``). Either is
    the one feature source (not an item of a list or mapping).

    Args:
        features: ``data.features`` (or ``hvl evaluate --features``).
        root: Base directory of a relative PATH.

    Raises:
        ValueError: If a streamed source is an item of a list or mapping.
    """
    if isinstance(features, str):
        if features.startswith(_HUB_STREAM_PREFIX):
            return features
        if features.startswith(_PARQUET_STREAM_PREFIX):
            path = Path(features[len(_PARQUET_STREAM_PREFIX) :])
            return str(Path(root) / path if root is not None and not path.is_absolute() else path)
        return None
    if isinstance(features, os.PathLike):
        return None
    if isinstance(features, Mapping):
        values = list(features.values())
        items = [item for value in values for item in ([value] if isinstance(value, (str, os.PathLike)) else value)]
    else:
        items = list(features)
    for item in items:
        if isinstance(item, str) and item.startswith((_HUB_STREAM_PREFIX, _PARQUET_STREAM_PREFIX)):
            raise ValueError(f"streamed region features ({item}) must be the only feature source, not one of several")
    return None


def streamed_images_store(source: str, rows: Mapping[str, Any]) -> RegionFeatureWindow:
    """The images of some annotation rows, read from a streamed source into an in-memory store.

    Args:
        source: A `streamed_feature_source`.
        rows: Annotation rows per task (the evaluation splits): their images are kept.
    """
    ids = set()
    for task, task_rows in rows.items():
        ids |= SplitImages.from_rows(task, "eval", "eval", task_rows).image_ids
    return StreamingRegionFeatures(source, buffer_size=1).images(sorted(ids))


def feature_sources(features: FeatureSources, root: str | os.PathLike | None = None) -> list[Path]:
    """The region-feature sources that ``features`` names, in conversion order.

    Each item is a file or directory in a format the feature readers know, a store directory (alone), a glob
    (``trainval/*.tsv*``, sorted matches) or a directory of bottom-up TSV shards (its ``*.tsv`` and ``*.tsv.<n>``
    files, sorted; the 10-100-box COCO release is such a directory). Relative items are taken under ``root``.

    Args:
        features: One source or a list of them.
        root: Base directory of relative items (none when ``None``).

    Returns:
        The files and directories to convert (one path for one source, as given).

    Raises:
        FileNotFoundError: If a glob matches nothing.
        ValueError: If the list is empty or names a store among other sources.
    """
    items = [features] if isinstance(features, (str, os.PathLike)) else list(features)
    if not items:
        raise ValueError("no region-feature sources given")
    sources: list[Path] = []
    for item in items:
        path = Path(item)
        if root is not None and not path.is_absolute():
            path = Path(root) / path
        if _is_glob(item):
            matches = sorted(Path(match) for match in glob.glob(str(path), recursive=True))
            if not matches:
                raise FileNotFoundError(f"no region-feature files match {path}")
            sources.extend(matches)
        elif path.is_dir() and _tsv_shards(path):
            sources.extend(_tsv_shards(path))
        else:
            sources.append(path)
    if len(sources) > 1:
        stores = [str(source) for source in sources if (source / _STORE_MARKER).exists()]
        if stores:
            raise ValueError(f"a region store ({stores[0]}) must be the only feature source, not one of {len(sources)}")
    return sources


def corpus_feature_sources(
    features: CorpusFeatureSources, root: str | os.PathLike | None = None
) -> list[tuple[str, Path]]:
    """The ``(corpus, source)`` pairs of region features named per corpus, in conversion order.

    Each corpus's value is anything `feature_sources` takes (a file, a list, a glob, a directory of TSV shards).

    Args:
        features: Corpus name -> its sources, e.g. ``{"coco": ["bottom_up/trainval"], "flickr30k":
            "bottom_up/flickr30k"}``.
        root: Base directory of relative items.

    Raises:
        ValueError: If the mapping is empty, a key is not a corpus name, or a corpus names a region store (a store
            is not converted again: name the files it was converted from).
    """
    if not features:
        raise ValueError("no corpus named in the region features mapping")
    pairs: list[tuple[str, Path]] = []
    for corpus, items in features.items():
        check_corpus_name(corpus, "region features key")
        sources = feature_sources(items, root)
        stores = [source for source in sources if (source / _STORE_MARKER).exists()]
        if stores:
            raise ValueError(
                f"the {corpus} region features name the region store {stores[0]}: a store is not converted again; "
                "name the files it was converted from, or give the one store keyed by corpus alone"
            )
        pairs.extend((corpus, source) for source in sources)
    return pairs


def _store_corpora(path: Path) -> list[str | None] | None:
    """The ``source_corpora`` a store at ``path`` recorded (``None`` for none, or when ``path`` is no store)."""
    try:
        metadata = json.loads((path / _STORE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    corpora = metadata.get("source_corpora") if isinstance(metadata, dict) else None
    return list(corpora) if isinstance(corpora, list) and any(corpora) else None


def _default_store_path(
    features: FeatureSources | CorpusFeatureSources, sources: list[Path], root: str | os.PathLike | None
) -> Path:
    """``<features>.store`` next to one named file or directory (a directory of shards included), else
    ``region_features.store`` in the sources' common directory."""
    if isinstance(features, (str, os.PathLike)) and not _is_glob(features):
        path = Path(features)
        if root is not None and not path.is_absolute():
            path = Path(root) / path
        return path.with_name(path.name + ".store")
    return Path(os.path.commonpath([str(source.parent.absolute()) for source in sources])) / _SEVERAL_SOURCES_STORE


@dataclass
class CorpusLayout:
    """Where each part of a corpus is; relative paths are taken under ``root``.

    Args:
        root: The corpus directory.
        features: Region features: a `RegionFeatureStore` directory, a file/directory the feature readers know, a
            glob or a directory of TSV shards, or a list of these converted into one store (`feature_sources`);
            or a mapping corpus -> such sources (`corpus_feature_sources`), converted into one store keyed by
            corpus image id, whose images each task looks up in its own corpus.
        vqa_dir: Directory with the official VQA 2.0 JSON files.
        captions_file: Karpathy split file; by default ``captions/dataset_coco.json`` or
            ``captions/dataset_flickr30k.json``, whichever exists. Several files (a list, or a mapping corpus ->
            file) are several caption corpora (`caption_files`).
        entities_dir: Flickr30k Entities directory.
        task_corpora: The corpus of each task's images where it is not the default (`DEFAULT_TASK_CORPORA`:
            VQA ``coco``, grounding ``flickr30k``; retrieval: the corpus of its Karpathy file).
        caption_eval_corpus: The caption corpus that retrieval evaluates (default: the first of `caption_files`).
    """

    root: str | os.PathLike = "."
    features: FeatureSources | CorpusFeatureSources = "features/region_features.tsv"
    vqa_dir: str | os.PathLike = "vqa"
    captions_file: CaptionFiles | None = None
    entities_dir: str | os.PathLike = "flickr30k_entities"
    task_corpora: Mapping[str, str] | None = None
    caption_eval_corpus: str | None = None

    def path(self, value: str | os.PathLike) -> Path:
        """``value`` resolved against ``root``."""
        path = Path(value)
        return path if path.is_absolute() else Path(self.root) / path

    def captions_path(self) -> Path:
        """The Karpathy split file evaluated (of `caption_eval_corpus` when there are several)."""
        if self.captions_file is None:
            for name in _CAPTION_FILES:
                candidate = self.path(Path("captions") / name)
                if candidate.exists():
                    return candidate
            return self.path(Path("captions") / _CAPTION_FILES[0])
        if isinstance(self.captions_file, (str, os.PathLike)):
            return self.path(self.captions_file)
        return self.caption_files()[self.task_corpus("retrieval")]

    @property
    def corpus_keyed(self) -> bool:
        """Whether the region store keys images by corpus image id (``coco/42``): the features are named per corpus,
        or are one store converted so."""
        if isinstance(self.features, Mapping):
            return True
        if isinstance(self.features, (str, os.PathLike)):
            return _store_corpora(self.path(self.features)) is not None
        return False

    def caption_files(self) -> dict[str, Path]:
        """The Karpathy file of each caption corpus, in order: the mapping's names; for files not named, the
        corpus the file holds (`~hierarchical_vl.evaluation.protocols.caption_corpus`; ``task_corpora.retrieval``
        names one file's corpus).

        Raises:
            ValueError: If two files hold the same corpus without names, or a name is not a corpus name.
        """
        files = self.captions_file
        if isinstance(files, Mapping):
            if not files:
                raise ValueError("no caption corpus named in the captions_file mapping")
            return {check_corpus_name(corpus, "captions_file key"): self.path(path) for corpus, path in files.items()}
        if files is None or isinstance(files, (str, os.PathLike)):
            path = self.captions_path()
            configured = (self.task_corpora or {}).get("retrieval")
            return {configured or self._file_corpus(path): path}
        if not files:
            raise ValueError("no Karpathy file in the captions_file list")
        result: dict[str, Path] = {}
        for item in files:
            path = self.path(item)
            corpus = self._file_corpus(path)
            if corpus in result:
                raise ValueError(
                    f"the Karpathy files {result[corpus]} and {path} both hold {corpus} captions: name each corpus "
                    "(captions_file: {name: file, ...})"
                )
            result[corpus] = path
        return result

    @staticmethod
    def _file_corpus(path: Path) -> str:
        if path.exists():
            return caption_corpus(path)
        return next((corpus for corpus in CAPTION_CORPORA if corpus in path.name.lower()), CAPTION_CORPORA[0])

    def task_corpus(self, task: str) -> str:
        """The corpus of the images that the evaluated annotations of ``task`` refer to.

        Retrieval: ``caption_eval_corpus`` (default: the first of `caption_files`); the other tasks:
        ``task_corpora`` or `DEFAULT_TASK_CORPORA`.

        Raises:
            ValueError: If ``caption_eval_corpus`` names none of the caption corpora.
        """
        task_spec(task)
        if task != "retrieval":
            return (self.task_corpora or {}).get(task) or DEFAULT_TASK_CORPORA[task]
        corpora = list(self.caption_files())
        if self.caption_eval_corpus is None:
            return corpora[0]
        if self.caption_eval_corpus not in corpora:
            raise ValueError(
                f"caption_eval_corpus {self.caption_eval_corpus!r} is none of the caption corpora {corpora}"
            )
        return self.caption_eval_corpus

    def corpora(self, task: str) -> list[str]:
        """The corpora whose annotations of ``task`` training reads: every caption corpus for retrieval, the
        task's corpus otherwise."""
        return list(self.caption_files()) if task == "retrieval" else [self.task_corpus(task)]

    def task_path(self, task: str, corpus: str | None = None) -> Path:
        """Where the annotations of ``task`` are: the VQA directory, the Karpathy file (of ``corpus``, by default
        the evaluated one) or the Entities directory."""
        task_spec(task)
        if task == "vqa":
            return self.path(self.vqa_dir)
        if task == "retrieval":
            return self.captions_path() if corpus is None else self.caption_files()[corpus]
        if task == "grounding":
            return self.path(self.entities_dir)
        raise ValueError(f"the corpus layout has no annotations of {task!r}")

    def has_data(self, task: str) -> bool:
        """Whether the corpus holds annotations of ``task``."""
        return self.task_path(task).exists()

    def read_split(
        self,
        task: str,
        split: str,
        *,
        answer_vocab: list[str] | None = None,
        answer_normalizer: Any = None,
        streaming: bool = False,
        corpus: str | None = None,
    ) -> Any:
        """The annotation rows of one split of ``task`` (``datasets`` rows, as the ``load_*`` functions give).

        When the store keys images by corpus (`corpus_keyed`), each row's ``image_id`` is its corpus image id
        (``coco/42``, `~hierarchical_vl.data.corpora.with_corpus_image_ids`).

        Args:
            task: The task.
            split: The split (``train``, ``val``, ``test``; VQA also ``test-dev``; Karpathy also ``restval`` and
                ``train+restval``, see `~hierarchical_vl.data.load_karpathy_captions`).
            answer_vocab: The VQA answer pool the soft labels refer to (needed for VQA).
            answer_normalizer: How VQA answers are compared with the pool's for the soft labels (the loader's
                default when ``None``); the one the pool was counted with.
            streaming: Stream the files instead of building map-style datasets.
            corpus: The caption corpus to read (retrieval; default: the evaluated one, `task_corpus`).
        """
        if corpus is not None and task != "retrieval" and corpus != self.task_corpus(task):
            raise ValueError(f"{task} annotations are of the {self.task_corpus(task)} corpus, not {corpus!r}")
        corpus = corpus or self.task_corpus(task)
        path = self.task_path(task, corpus)
        if task == "vqa":
            if answer_vocab is None:
                raise ValueError("reading VQA needs the answer pool (answer_vocab)")
            options = {} if answer_normalizer is None else {"normalize": answer_normalizer}
            rows = load_vqa(path, split=split, answer_vocab=answer_vocab, streaming=streaming, **options)
        elif task == "retrieval":
            rows = load_karpathy_captions(path, split=split, streaming=streaming)
        else:
            rows = load_flickr30k_entities(path, split=split, streaming=streaming)
        return with_corpus_image_ids(rows, corpus) if self.corpus_keyed else rows


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
    features: FeatureSources | CorpusFeatureSources,
    store_path: str | os.PathLike | None = None,
    progress: bool = True,
    *,
    root: str | os.PathLike | None = None,
) -> RegionFeatureStore:
    """Open region features as a `RegionFeatureStore`, converting them once when they are in another format.

    Training and evaluation both open their features here. A converted store records the identity of its
    sources (see `~hierarchical_vl.data.feature_store.source_identity`); when the features changed since (other
    size, time or content, or another list of sources: a shard added or removed) the store is rebuilt from them,
    with a warning naming the change. A store written by an older version records no identity: it opens as before,
    with a warning that it may be stale.

    Args:
        features: A store directory, or the sources to convert (see `feature_sources`): a file/directory in a
            format the feature readers know, a glob, a directory of TSV shards, or a list of these, converted
            together into one store; or a mapping corpus -> such sources (`corpus_feature_sources`), converted
            into one store whose keys are corpus image ids (``flickr30k/36979``). A store converted with other
            corpora (or none) is converted again.
        store_path: Where the converted store goes (default: ``<features>.store`` next to one named source,
            ``region_features.store`` in the common directory of several).
        progress: Show the conversion's progress bar.
        root: Base directory of relative ``features`` (none when ``None``).

    A store given directly is the user's own: when the sources it recorded are still where they were and have
    changed, it is refused (it is never replaced without being named in a command).

    Raises:
        FileNotFoundError: If there is nothing at a source, or a glob matches nothing.
        ValueError: If a store given directly is older than the sources it was converted from.
    """
    if streamed_feature_source(features, root) is not None:
        raise ValueError(f"{features} streams: read it with StreamingRegionFeatures, it is not a local store")
    corpora: list[str | None] | None = None
    if isinstance(features, Mapping):
        pairs = corpus_feature_sources(features, root)
        sources, corpora = [source for _, source in pairs], [corpus for corpus, _ in pairs]
    else:
        sources = feature_sources(features, root)
        if len(sources) == 1 and (sources[0] / _STORE_MARKER).exists():
            return _checked_store(sources[0])
    for source in sources:
        if not source.exists():
            raise FileNotFoundError(f"no region features at {source}")
    one = len(sources) == 1 and corpora is None
    convert = sources[0] if one else sources  # one source: recorded exactly as before
    shown = sources[0] if len(sources) == 1 else f"{len(sources)} feature sources ({sources[0]}, ...)"
    destination = Path(store_path) if store_path is not None else _default_store_path(features, sources, root)
    if not (destination / _STORE_MARKER).exists():
        logger.info("converting %s into the region store %s", shown, destination)
        convert_region_features(convert, destination, progress=progress, corpora=corpora)
        return RegionFeatureStore(destination)
    store = RegionFeatureStore(destination)
    recorded = store.metadata.get("source_identity")
    recorded_corpora = _store_corpora(destination)
    if recorded_corpora != corpora:
        logger.warning(
            "the region store %s was converted for the corpora %s, not %s: converting %s again",
            destination,
            recorded_corpora,
            corpora,
            shown,
        )
        del store
        convert_region_features(convert, destination, overwrite=True, progress=progress, corpora=corpora)
        return RegionFeatureStore(destination)
    if recorded is None:
        logger.warning(
            "the region store %s records no identity of its sources (written by an older version): it is used as "
            "it is, but may be stale if %s changed since; delete it to convert again",
            destination,
            shown,
        )
        return store
    changes = source_changes(recorded, convert)
    if not changes:
        return store
    logger.warning("%s changed since %s was converted (%s): converting again", shown, destination, "; ".join(changes))
    del store
    convert_region_features(convert, destination, overwrite=True, progress=progress, corpora=corpora)
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
        corpora = _store_corpora(path)
        again = (
            f"name its sources per corpus ({', '.join(dict.fromkeys(str(c) for c in corpora))}) as the features, "
            "which converts them again into a store keyed by corpus"
            if corpora is not None
            else f"`hvl features convert {' '.join(sources)} {path} --overwrite`"
        )
        raise ValueError(f"the region store {path} is stale: {'; '.join(changes)}; convert again: {again}")
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

    Streamed features (`streamed_feature_source`) are read once, keeping the splits' images in memory.
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
    rows = {
        task: layout.read_split(task, task_splits[task], answer_vocab=answer_pool, streaming=True) for task in tasks
    }
    streamed = streamed_feature_source(layout.features, layout.root)
    if streamed is not None:
        store = streamed_images_store(streamed, rows)
    else:
        store = open_region_store(layout.features, store_path, progress=progress, root=layout.root)
    data = EvaluationData(store=store, splits=task_splits)
    for task in tasks:
        data.datasets[task] = task_spec(task).encode(rows[task], store, tokenizer, config)
        if len(data.datasets[task]) == 0:
            raise ValueError(f"the {task_splits[task]} split of {task} has no examples")
    return data
