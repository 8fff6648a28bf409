"""VQA accuracy, exactly as the official VQA evaluation code computes it.

The official code (``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` of the VQA authors) scores a predicted answer
against the 10 human answers of a question. Two versions of it are in use and both are offered here:

Current version (default, ``legacy=False``)
    1. The prediction and the 10 human answers have newlines and tabs replaced by spaces and are stripped.
    2. If the 10 stripped human answers are *not* all identical, the prediction and each human answer are normalised
       by [`normalize_vqa_answer`] (punctuation, then lowercase, number words to digits, articles dropped,
       contractions restored). If they are all identical, nothing is normalised: the prediction must match them
       character for character (this keeps answers that read text in the image intact).

Legacy version (``legacy=True``, the code before its 2021 fix, used by the VQA challenges and papers of 2015-2020)
    1. The prediction has newlines and tabs replaced by spaces, is stripped and is *always* fully normalised by
       [`normalize_vqa_answer`].
    2. The human answers are not stripped. If they are not all identical, each one goes through the punctuation step
       only (no lowercasing, no number words, no articles, no contractions); otherwise they are left untouched.

In both versions the question accuracy is the average over the 10 human answers of
``min(1, #(the other 9 answers equal to the prediction) / 3)``, so a prediction given by 0, 1, 2, 3 or >= 4
annotators scores 0, 0.3, 0.6, 0.9 or 1. Accuracies are reported in percent rounded to 2 decimals, overall and per
answer type, each the mean of the per-question accuracies (``round(100 * mean, 2)`` as in the official code).

Faithful details of the official code kept on purpose: the number-word table maps "none" to "0" as well as
"zero".."ten"; the few contraction keys with a capital ("Im", "Ive", "I'dve") never match, since words are lowercased
first; at most 32 periods are stripped (see ``_PERIOD_STRIP_COUNT``). The official loop leaves out one answer
*record* at a time; records have unique ``answer_id`` values, so leaving out answer i by position is the same.

Submission files use the official format ``[{"question_id": int, "answer": str}, ...]``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Container, Iterable, Mapping, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..atomic_files import write_text_atomic

__all__ = [
    "ANSWER_TYPES",
    "NUM_VQA_ANSWERS",
    "normalize_vqa_answer",
    "read_vqa_submission",
    "vqa_accuracy",
    "vqa_question_accuracy",
    "write_vqa_submission",
]

NUM_VQA_ANSWERS = 10
"""Number of human answers per question in VQA 2.0 (the official formula averages over them)."""

ANSWER_TYPES = ("yes/no", "number", "other")
"""The answer types of VQA 2.0, in the order they are reported."""

_TABLES_FILE = "vqa_normalization.json"

# The two regular expressions of the official code. ``_PERIOD_STRIP`` is written there as "(?!<=\d)(\.)(?!\d)":
# its first group is a (no-op) negative *lookahead*, so it removes every period that is not followed by a digit.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
# The official code calls ``periodStrip.sub("", text, re.UNICODE)``, which passes re.UNICODE (32) as the *count*
# argument: at most 32 periods are removed. Kept for exactness; it only matters for texts with over 32 periods.
_PERIOD_STRIP_COUNT = int(re.UNICODE)


@lru_cache(maxsize=1)
def _tables() -> dict[str, Any]:
    """The normalisation tables (punctuation, number words, articles, contractions), loaded once."""
    text = resources.files(__package__).joinpath(_TABLES_FILE).read_text(encoding="utf-8")
    tables = json.loads(text)
    return {
        "punctuation": tuple(tables["punctuation"]),
        "number_words": dict(tables["number_words"]),
        "articles": frozenset(tables["articles"]),
        "contractions": dict(tables["contractions"]),
    }


def _clean_whitespace(text: str) -> str:
    """Newlines and tabs to spaces, then strip (the first step applied to every answer)."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def _process_punctuation(text: str) -> str:
    """The official ``processPunctuation``.

    For each punctuation mark, in the order of the table: if the *input* text has the mark next to a space, or the
    input text contains a digit-comma-digit, every occurrence of the mark is deleted; otherwise every occurrence is
    replaced by a space. Then periods not followed by a digit are removed.
    """
    out = text
    has_digit_comma = _COMMA_STRIP.search(text) is not None
    for mark in _tables()["punctuation"]:
        if (mark + " " in text or " " + mark in text) or has_digit_comma:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


def _process_digit_article(text: str) -> str:
    """The official ``processDigitArticle``: lowercase, split on whitespace, number words to digits, drop
    articles, restore contractions, join with single spaces."""
    tables = _tables()
    number_words, articles, contractions = tables["number_words"], tables["articles"], tables["contractions"]
    words = [number_words.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in articles]
    return " ".join(contractions.get(word, word) for word in words)


def normalize_vqa_answer(text: str, *, digits_and_articles: bool = True) -> str:
    """Normalise an answer the way the official VQA evaluation does.

    Steps: newlines and tabs to spaces and strip; punctuation processing; then, when ``digits_and_articles`` is
    true, lowercase, number words ("zero" ... "ten", and "none") to digits, articles ("a", "an", "the") dropped and
    contractions restored ("dont" -> "don't").

    Examples: ``"Yes."`` -> ``"yes"``, ``"1,000"`` -> ``"1000"``, ``"two dogs"`` -> ``"2 dogs"``,
    ``"a dog"`` -> ``"dog"``, ``"dont know"`` -> ``"don't know"``.

    Args:
        text: The answer.
        digits_and_articles: Apply the second stage (the official ``processDigitArticle``). With ``False`` only
            whitespace cleaning and punctuation processing are applied, which is what the legacy code did to the
            human answers.

    Returns:
        The normalised answer.
    """
    if not isinstance(text, str):
        raise TypeError(f"VQA answers must be strings, got {type(text).__name__}: {text!r}")
    out = _process_punctuation(_clean_whitespace(text))
    return _process_digit_article(out) if digits_and_articles else out


def _answer_strings(answers: Any, where: str) -> list[str]:
    """The human answers of one question as strings (accepts strings or official ``{"answer": ...}`` records)."""
    if isinstance(answers, (str, bytes)) or not isinstance(answers, Iterable):
        raise ValueError(f"{where}: expected a list of {NUM_VQA_ANSWERS} answers, got {type(answers).__name__}")
    out = []
    for answer in answers:
        if isinstance(answer, Mapping):
            if "answer" not in answer:
                raise ValueError(f"{where}: answer record {answer!r} has no 'answer' field")
            answer = answer["answer"]
        if not isinstance(answer, str):
            raise ValueError(f"{where}: answers must be strings, got {type(answer).__name__}: {answer!r}")
        out.append(answer)
    if len(out) != NUM_VQA_ANSWERS:
        raise ValueError(f"{where}: expected {NUM_VQA_ANSWERS} human answers, got {len(out)}")
    return out


def _question_accuracy(prediction: str, answers: list[str], legacy: bool) -> float:
    if legacy:
        prediction = normalize_vqa_answer(prediction)
        if len(set(answers)) > 1:
            answers = [_process_punctuation(answer) for answer in answers]
    else:
        prediction = _clean_whitespace(prediction)
        answers = [_clean_whitespace(answer) for answer in answers]
        if len(set(answers)) > 1:
            answers = [normalize_vqa_answer(answer) for answer in answers]
            prediction = normalize_vqa_answer(prediction)
    equal = [answer == prediction for answer in answers]
    total = sum(equal)
    # Leave-one-out over the annotators: answer i sees the matches among the other answers.
    accs = [min(1.0, float(total - hit) / 3) for hit in equal]
    return float(sum(accs)) / len(accs)


def vqa_question_accuracy(prediction: str, answers: Sequence[str], legacy: bool = False) -> float:
    """Accuracy of one predicted answer against the 10 human answers of a question.

    Args:
        prediction: The predicted answer (raw; it is normalised here).
        answers: The 10 human answers, as strings or as official ``{"answer": ...}`` records.
        legacy: Use the pre-2021 official code (see the module docstring).

    Returns:
        The accuracy in [0, 1]: 0, 0.3, 0.6, 0.9 or 1 for 0, 1, 2, 3 or >= 4 matching answers.
    """
    if not isinstance(prediction, str):
        raise ValueError(f"the prediction must be a string, got {type(prediction).__name__}: {prediction!r}")
    return _question_accuracy(prediction, _answer_strings(answers, "answers"), legacy)


def _aligned(
    predictions: Any, references: Any, answer_types: Any, name: str = "answer_types"
) -> tuple[list, list, list, list | None]:
    """Question ids, predictions, references and answer types (or the per-question values of the argument
    ``name``) in one order (the order of the references)."""
    if isinstance(references, Mapping):
        if not isinstance(predictions, Mapping):
            raise ValueError("references are keyed by question id, so predictions must be a dict as well")
        keys = list(references)
        missing = [key for key in keys if key not in predictions]
        extra = [key for key in predictions if key not in references]
        if missing or extra:
            raise ValueError(
                "predictions and references must cover the same questions: "
                f"{len(missing)} question(s) without a prediction (e.g. {missing[:5]}), "
                f"{len(extra)} prediction(s) for unknown questions (e.g. {extra[:5]})"
            )
        preds = [predictions[key] for key in keys]
        refs = [references[key] for key in keys]
        if answer_types is None:
            types = None
        elif isinstance(answer_types, Mapping):
            absent = [key for key in keys if key not in answer_types]
            if absent:
                raise ValueError(f"{name} has no entry for {len(absent)} question(s), e.g. {absent[:5]}")
            types = [answer_types[key] for key in keys]
        else:
            raise ValueError(f"references are keyed by question id, so {name} must be a dict as well")
        return keys, preds, refs, types
    if isinstance(predictions, Mapping):
        raise ValueError("predictions are keyed by question id, so references must be a dict as well")
    preds, refs = list(predictions), list(references)
    if len(preds) != len(refs):
        raise ValueError(f"got {len(preds)} predictions but {len(refs)} references")
    types = None
    if answer_types is not None:
        if isinstance(answer_types, Mapping):
            raise ValueError(f"predictions and references are lists, so {name} must be a list as well")
        types = list(answer_types)
        if len(types) != len(refs):
            raise ValueError(f"got {len(types)} {name.replace('_', ' ')} but {len(refs)} references")
    return list(range(len(refs))), preds, refs, types


def _percent(values: list[float]) -> float:
    return round(100 * float(sum(values)) / len(values), 2)


def vqa_accuracy(
    predictions: Mapping[Any, str] | Sequence[str],
    references: Mapping[Any, Sequence[str]] | Sequence[Sequence[str]],
    answer_types: Mapping[Any, str] | Sequence[str] | None = None,
    legacy: bool = False,
    question_types: Mapping[Any, str] | Sequence[str] | None = None,
) -> dict[str, Any]:
    """VQA accuracy of a set of predictions, overall, per answer type and optionally per question type.

    Args:
        predictions: Predicted answers, either a dict question id -> answer or a list parallel to ``references``.
        references: The 10 human answers of each question (strings or official ``{"answer": ...}`` records),
            keyed like ``predictions``. With dicts, both must have exactly the same question ids.
        answer_types: Optional answer type of each question ("yes/no", "number", "other"), keyed like
            ``references``.
        legacy: Use the pre-2021 official code (see the module docstring).
        question_types: Optional question type of each question (the annotations' ``question_type``, e.g.
            "what color is the"), keyed like ``references``: adds the per-question-type breakdown.

    Returns:
        ``{"overall": float, "per_answer_type": {type: float}, "counts": {"overall": int, type: int}}`` with
        accuracies in percent rounded to 2 decimals. ``per_answer_type`` lists only the types present, the three
        VQA types first; it is empty without ``answer_types``. With ``question_types`` the result also has
        ``"per_question_type": {type: float}`` (rounded the same way, types in sorted order) and
        ``"question_type_counts": {type: int}``.
    """
    keys, preds, refs, types = _aligned(predictions, references, answer_types)
    question_kinds = None
    if question_types is not None:
        question_kinds = _aligned(predictions, references, question_types, "question_types")[3]
    if not refs:
        raise ValueError("no questions to score: predictions and references are empty")
    accs = []
    for key, prediction, answers in zip(keys, preds, refs):
        where = f"question {key!r}"
        if not isinstance(prediction, str):
            raise ValueError(f"{where}: the prediction must be a string, got {type(prediction).__name__}")
        accs.append(_question_accuracy(prediction, _answer_strings(answers, where), legacy))
    by_type: dict[str, list[float]] = {}
    if types is not None:
        for key, answer_type, acc in zip(keys, types, accs):
            if not isinstance(answer_type, str):
                raise ValueError(f"question {key!r}: the answer type must be a string, got {answer_type!r}")
            by_type.setdefault(answer_type, []).append(acc)
    order = [t for t in ANSWER_TYPES if t in by_type] + sorted(t for t in by_type if t not in ANSWER_TYPES)
    result: dict[str, Any] = {
        "overall": _percent(accs),
        "per_answer_type": {t: _percent(by_type[t]) for t in order},
        "counts": {"overall": len(accs), **{t: len(by_type[t]) for t in order}},
    }
    if question_kinds is not None:
        by_kind: dict[str, list[float]] = {}
        for key, kind, acc in zip(keys, question_kinds, accs):
            if not isinstance(kind, str):
                raise ValueError(f"question {key!r}: the question type must be a string, got {kind!r}")
            by_kind.setdefault(kind, []).append(acc)
        result["per_question_type"] = {kind: _percent(by_kind[kind]) for kind in sorted(by_kind)}
        result["question_type_counts"] = {kind: len(by_kind[kind]) for kind in sorted(by_kind)}
    return result


def _check_submission_record(where: str, question_id: Any, answer: Any, seen: Container[int], repeated: str) -> None:
    """Raises a ValueError naming ``where`` if a submission record's question id is not an integer, its answer
    is not a string, or its question is already in ``seen`` (then the message says the question ``repeated``)."""
    if isinstance(question_id, bool) or not isinstance(question_id, int):
        raise ValueError(f"{where}: question_id must be an integer, got {question_id!r}")
    if not isinstance(answer, str):
        raise ValueError(f"{where} (question {question_id}): answer must be a string, got {answer!r}")
    if question_id in seen:
        raise ValueError(f"{where}: question {question_id} {repeated}")


def _submission_records(predictions: Any) -> list[dict[str, Any]]:
    if isinstance(predictions, Mapping):
        items: Iterable[Any] = predictions.items()
    else:
        items = predictions
    records, seen = [], set()
    for index, item in enumerate(items):
        if isinstance(item, Mapping):
            if "question_id" not in item or "answer" not in item:
                raise ValueError(f"prediction {index}: a record needs 'question_id' and 'answer', got {item!r}")
            question_id, answer = item["question_id"], item["answer"]
        else:
            try:
                question_id, answer = item
            except (TypeError, ValueError):
                raise ValueError(
                    f"prediction {index}: expected a (question_id, answer) pair or a record, got {item!r}"
                ) from None
        if hasattr(question_id, "item") and not isinstance(question_id, (str, bytes)):
            question_id = question_id.item()  # numpy integers
        _check_submission_record(f"prediction {index}", question_id, answer, seen, "is predicted twice")
        seen.add(question_id)
        records.append({"question_id": question_id, "answer": answer})
    return records


def write_vqa_submission(
    predictions: Mapping[int, str] | Iterable[tuple[int, str]] | Iterable[Mapping[str, Any]],
    path: str | os.PathLike[str],
) -> Path:
    """Write predictions in the official VQA submission format, atomically.

    The file is a JSON list ``[{"question_id": int, "answer": str}, ...]`` (UTF-8, on one line). It is written
    through `hierarchical_vl.atomic_files`, so a reader never sees a partial file.

    Args:
        predictions: A dict question id -> answer, or an iterable of ``(question_id, answer)`` pairs or of
            ``{"question_id": ..., "answer": ...}`` records.
        path: Destination file.

    Returns:
        The path written.
    """
    return write_text_atomic(path, json.dumps(_submission_records(predictions), ensure_ascii=False))


def read_vqa_submission(path: str | os.PathLike[str]) -> dict[int, str]:
    """Read and validate an official-format VQA submission file.

    Args:
        path: A JSON file holding ``[{"question_id": int, "answer": str}, ...]``.

    Returns:
        A dict question id -> answer, in file order.

    Raises:
        ValueError: The file is not valid JSON, is not a list, or a record lacks a field, has a field of the wrong
            type or repeats a question id. The message names the file and the record.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, list):
        raise ValueError(
            f"{path}: a VQA submission is a JSON list of {{'question_id', 'answer'}} records, "
            f"got a JSON {type(data).__name__}"
        )
    out: dict[int, str] = {}
    for index, record in enumerate(data):
        where = f"{path}: record {index}"
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected an object, got {record!r}")
        missing = [field for field in ("question_id", "answer") if field not in record]
        if missing:
            raise ValueError(f"{where}: missing field(s) {missing} in {record!r}")
        question_id, answer = record["question_id"], record["answer"]
        _check_submission_record(where, question_id, answer, out, "appears twice")
        out[question_id] = answer
    return out
