"""VQA 2.0 as ``datasets`` datasets, read from the official question and annotation JSON files.

One row per question: ``question_id``, ``image_id``, ``question``, ``question_type``, ``answer_type``,
``multiple_choice_answer``, the 10 ``answers`` (``answer``, ``answer_confidence``, ``answer_id``), and the training
targets ``labels`` (ids into the answer vocabulary, a ``ClassLabel`` whose names are the vocabulary, so it is saved
with the dataset) with their soft ``scores`` = min(1, 0.3 x number of annotators who gave the answer) for every
in-vocabulary answer among the 10. Test splits have no annotations: their answer fields are empty.

The answer vocabulary is the ``multiple_choice_answer`` strings seen more than 8 times in the training annotations
(most frequent first). Answers are compared after [`normalize_answer_text`] (lowercase, single spaces); pass
another ``normalize`` (e.g. the official VQA normalisation) to change that.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .generator_datasets import _features, _import_datasets, _load_splits
from .json_stream import BadRecordError, iter_json_array

__all__ = [
    "ANSWER_MIN_COUNT",
    "VQA_ANSWERS_PER_QUESTION",
    "VQA_SPLIT_FILES",
    "BadRecordError",
    "build_vqa_answer_vocab",
    "load_vqa",
    "normalize_answer_text",
    "vqa_answer_vocab",
    "vqa_data_files",
    "vqa_soft_score",
]

ANSWER_MIN_COUNT = 9
"""The answer pool holds the ``multiple_choice_answer`` strings seen more than 8 times in training (DESIGN, Sec. 1):
at least this many times."""

VQA_SPLIT_FILES = {
    "train": "train2014",
    "val": "val2014",
    "test": "test2015",
    "test-dev": "test-dev2015",
}
"""Split name -> the data subtype in the official file names."""

_AnswerNormalizer = Callable[[str], str]

VQA_ANSWERS_PER_QUESTION = 10
"""Every VQA 2.0 annotation holds the answers of this many annotators."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bad_record(file: str | os.PathLike, kind: str, number: int, record: Any, problem: str) -> BadRecordError:
    qid = record.get("question_id") if isinstance(record, dict) else None
    which = f"{kind} {number}" + (f" (question_id {qid!r})" if qid is not None else "")
    return BadRecordError(f"{os.fspath(file)}: {which}: {problem}")


def _check_fields(file: str | os.PathLike, kind: str, number: int, record: Any, fields: Mapping[str, Any]) -> None:
    """Refuses a record that is not an object, lacks one of ``fields`` or has a value of the wrong type."""
    if not isinstance(record, dict):
        raise _bad_record(file, kind, number, record, f"not a JSON object but {type(record).__name__}")
    for name, expected in fields.items():
        if name not in record:
            raise _bad_record(file, kind, number, record, f"missing key {name!r}")
        value = record[name]
        ok = _is_int(value) if expected is int else isinstance(value, expected)
        if not ok:
            wanted = "an integer" if expected is int else f"a {expected.__name__}"
            shown = "null" if value is None else f"{type(value).__name__} {value!r:.60}"
            raise _bad_record(file, kind, number, record, f"{name!r} must be {wanted}, not {shown}")


def _checked_questions(file: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The question records of a questions file, each checked; duplicate question ids are refused."""
    seen: set[int] = set()
    for number, q in enumerate(iter_json_array(file, "questions"), start=1):
        _check_fields(file, "question", number, q, {"question_id": int, "image_id": int, "question": str})
        if q["question_id"] in seen:
            raise _bad_record(file, "question", number, q, "duplicate question_id (already in this split)")
        seen.add(q["question_id"])
        yield q


def _checked_annotations(file: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The annotation records of an annotations file, each checked (10 answers with text, types, unique ids)."""
    seen: set[int] = set()
    for number, a in enumerate(iter_json_array(file, "annotations"), start=1):
        _check_fields(
            file,
            "annotation",
            number,
            a,
            {"question_id": int, "image_id": int, "multiple_choice_answer": str, "answers": list},
        )
        for name in ("question_type", "answer_type"):
            if name in a and not isinstance(a[name], str):
                raise _bad_record(file, "annotation", number, a, f"{name!r} must be a string")
        answers = a["answers"]
        if len(answers) != VQA_ANSWERS_PER_QUESTION:
            raise _bad_record(
                file, "annotation", number, a, f"has {len(answers)} answers, not {VQA_ANSWERS_PER_QUESTION}"
            )
        for i, x in enumerate(answers, start=1):
            if not isinstance(x, dict) or not isinstance(x.get("answer"), str):
                raise _bad_record(file, "annotation", number, a, f"answer {i} has no 'answer' string")
            if "answer_id" in x and not _is_int(x["answer_id"]):
                raise _bad_record(file, "annotation", number, a, f"answer {i}: 'answer_id' must be an integer")
            if "answer_confidence" in x and not isinstance(x["answer_confidence"], str):
                raise _bad_record(file, "annotation", number, a, f"answer {i}: 'answer_confidence' must be a string")
        if a["question_id"] in seen:
            raise _bad_record(file, "annotation", number, a, "duplicate question_id (already in this split)")
        seen.add(a["question_id"])
        yield a


def normalize_answer_text(text: str) -> str:
    """Lowercases an answer and collapses its whitespace (the default comparison of answers)."""
    return " ".join(text.lower().split())


def vqa_soft_score(count: int) -> float:
    """Soft score of an answer given by ``count`` of the 10 annotators: min(1, 0.3 x count) -> 0, .3, .6, .9, 1."""
    return round(min(1.0, 0.3 * count), 1)


def vqa_data_files(directory: str | os.PathLike) -> dict[str, tuple[Path, Path | None]]:
    """Finds the official VQA 2.0 files in a directory.

    Looks for ``v2_OpenEnded_mscoco_<subtype>_questions.json`` and ``v2_mscoco_<subtype>_annotations.json``.

    Returns:
        Split name (``train``, ``val``, ``test``, ``test-dev``) -> (questions file, annotations file or None).
    """
    directory = Path(directory)
    found = {}
    for split, subtype in VQA_SPLIT_FILES.items():
        questions = directory / f"v2_OpenEnded_mscoco_{subtype}_questions.json"
        annotations = directory / f"v2_mscoco_{subtype}_annotations.json"
        if questions.exists():
            found[split] = (questions, annotations if annotations.exists() else None)
    if not found:
        raise FileNotFoundError(f"no VQA 2.0 question files (v2_OpenEnded_mscoco_*_questions.json) in {directory}")
    return found


def build_vqa_answer_vocab(
    annotation_files: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    min_count: int = ANSWER_MIN_COUNT,
    normalize: _AnswerNormalizer = normalize_answer_text,
) -> list[str]:
    """The answer vocabulary: ``multiple_choice_answer`` strings seen at least ``min_count`` times.

    The default `ANSWER_MIN_COUNT` is "more than 8 times" of the paper. The files are streamed.

    Args:
        annotation_files: One or more official annotation files.
        min_count: Fewest occurrences of a kept answer.
        normalize: How answers are compared.

    Returns:
        Answers, most frequent first (ties alphabetically).

    Raises:
        BadRecordError: On an annotation with missing keys, wrong types, other than 10 answers or a repeated id.
    """
    if isinstance(annotation_files, (str, os.PathLike)):
        annotation_files = [annotation_files]
    counts: Counter[str] = Counter()
    for file in annotation_files:
        for annotation in _checked_annotations(file):
            counts[normalize(annotation["multiple_choice_answer"])] += 1
    return [
        answer for answer, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if count >= min_count
    ]


_VQA_FEATURES = {
    "question_id": "int64",
    "image_id": "int64",
    "question": "string",
    "question_type": "string",
    "answer_type": "string",
    "multiple_choice_answer": "string",
    "answers": [{"answer": "string", "answer_confidence": "string", "answer_id": "int32"}],
}
"""The features of the VQA rows before ``labels`` and ``scores`` (a `_features` spec)."""


def _vqa_features(answer_vocab: Sequence[str]) -> Any:
    """The explicit ``datasets.Features`` of the VQA rows, with the vocabulary as ``ClassLabel`` names."""
    datasets = _import_datasets()
    labels = datasets.ClassLabel(names=list(answer_vocab))
    return _features({**_VQA_FEATURES, "labels": [labels], "scores": ["float32"]})


def vqa_answer_vocab(dataset: Any) -> list[str]:
    """The answer vocabulary saved in a VQA dataset's features (``labels`` names)."""
    return list(dataset.features["labels"].feature.names)


def _soft_targets(
    answers: Sequence[str], index: Mapping[str, int], normalize: _AnswerNormalizer
) -> tuple[list[int], list[float]]:
    counts = Counter(normalize(a) for a in answers)
    pairs = sorted((index[a], vqa_soft_score(c)) for a, c in counts.items() if a in index)
    # Scores rounded to float32 here, so streaming rows equal the (float32) map-style rows exactly.
    return [p[0] for p in pairs], np.asarray([p[1] for p in pairs], dtype=np.float32).tolist()


def _generate_vqa(
    questions_file: str,
    annotations_file: str | None,
    answer_vocab: Sequence[str],
    normalize: _AnswerNormalizer,
) -> Iterator[dict[str, Any]]:
    """Joins questions and annotations by question id while streaming both files.

    The official files list both in the same order; questions met out of order wait in a dict, so other orders
    work too (with more memory).
    """
    index = {answer: i for i, answer in enumerate(answer_vocab)}
    questions = _checked_questions(questions_file)
    if annotations_file is None:
        for q in questions:
            yield {
                "question_id": q["question_id"],
                "image_id": q["image_id"],
                "question": q["question"],
                "question_type": "",
                "answer_type": "",
                "multiple_choice_answer": "",
                "answers": [],
                "labels": [],
                "scores": [],
            }
        return
    pending: dict[int, dict] = {}
    for a in _checked_annotations(annotations_file):
        question_id = a["question_id"]
        q = pending.pop(question_id, None)
        while q is None:
            try:
                candidate = next(questions)
            except StopIteration:
                raise ValueError(
                    f"{annotations_file}: question {question_id} has an annotation but is not in {questions_file}"
                ) from None
            if candidate["question_id"] == question_id:
                q = candidate
            else:
                pending[candidate["question_id"]] = candidate
        if q["image_id"] != a["image_id"]:
            raise ValueError(
                f"{annotations_file}: question {question_id} is on image {a['image_id']} but "
                f"{questions_file} says image {q['image_id']}"
            )
        answers = a["answers"]
        labels, scores = _soft_targets([x["answer"] for x in answers], index, normalize)
        yield {
            "question_id": question_id,
            "image_id": a["image_id"],
            "question": q["question"],
            "question_type": a.get("question_type", ""),
            "answer_type": a.get("answer_type", ""),
            "multiple_choice_answer": a.get("multiple_choice_answer", ""),
            "answers": [
                {
                    "answer": x["answer"],
                    "answer_confidence": x.get("answer_confidence", ""),
                    "answer_id": x.get("answer_id", i + 1),
                }
                for i, x in enumerate(answers)
            ],
            "labels": labels,
            "scores": scores,
        }
    unanswered = len(pending) + sum(1 for _ in questions)
    if unanswered:
        raise ValueError(f"{questions_file}: {unanswered} questions have no annotation in {annotations_file}")


def load_vqa(
    data_files: str | os.PathLike | Mapping[str, tuple[str | os.PathLike, str | os.PathLike | None]],
    *,
    split: str | None = None,
    answer_vocab: Sequence[str] | None = None,
    vocab_splits: Sequence[str] = ("train",),
    min_answer_count: int = ANSWER_MIN_COUNT,
    normalize: _AnswerNormalizer = normalize_answer_text,
    streaming: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> Any:
    """Loads VQA 2.0 splits as ``datasets`` datasets.

    Args:
        data_files: A directory with the official file names (see [`vqa_data_files`]), or split name ->
            (questions file, annotations file or ``None`` for test splits).
        split: Load only this split (returns a ``Dataset``); all splits (a ``DatasetDict``) when ``None``.
        answer_vocab: The answer vocabulary; built from the annotations of ``vocab_splits`` when ``None``.
        vocab_splits: Splits whose ``multiple_choice_answer`` strings make the vocabulary.
        min_answer_count: Keep answers seen at least this often (9 = more than 8 times).
        normalize: How answers are compared (vocabulary and soft scores).
        streaming: Return ``IterableDataset`` (``IterableDatasetDict``) that stream the JSON files.
        cache_dir: Cache directory of the map-style datasets (the ``datasets`` default when ``None``).

    Returns:
        ``Dataset``/``IterableDataset`` for one split, else ``DatasetDict``/``IterableDatasetDict``.

    Raises:
        BadRecordError: (while the rows are generated) On a question or annotation with a missing key, a null or
            wrongly typed value, other than 10 answers, or a question id repeated within its file, naming the file,
            the record and the problem.
    """
    _import_datasets()  # fails before any file is read when ``datasets`` is missing
    files = vqa_data_files(data_files) if isinstance(data_files, (str, os.PathLike)) else dict(data_files)
    if split is not None and split not in files:
        raise KeyError(f"no VQA split {split!r}; have {sorted(files)}")
    if answer_vocab is None:
        sources = [files[s][1] for s in vocab_splits if s in files and files[s][1] is not None]
        if not sources:
            raise ValueError(
                f"cannot build the answer vocabulary: no annotations for splits {list(vocab_splits)}; "
                "pass answer_vocab="
            )
        answer_vocab = build_vqa_answer_vocab(sources, min_count=min_answer_count, normalize=normalize)
    answer_vocab = list(answer_vocab)
    features = _vqa_features(answer_vocab)
    splits = {}
    for name in [split] if split is not None else list(files):
        questions, annotations = files[name]
        gen_kwargs = {
            "questions_file": str(questions),
            "annotations_file": None if annotations is None else str(annotations),
            # a tuple: ``datasets`` would treat a list in gen_kwargs as shards
            "answer_vocab": tuple(answer_vocab),
            "normalize": normalize,
        }
        splits[name] = (gen_kwargs, (questions, annotations, answer_vocab, normalize))
    return _load_splits(_generate_vqa, features, splits, split=split, streaming=streaming, cache_dir=cache_dir)
