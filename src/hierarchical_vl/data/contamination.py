"""Contamination guard: no image may be trained on by one task and evaluated on by another.

Multi-task training shares the encoder, so an image seen in training by any task leaks into every task's evaluation.
The case that matters: the Karpathy COCO val/test images are COCO val2014 images, where the VQA 2.0 val questions
live. Training VQA on train + val while testing retrieval on Karpathy test (or training retrieval on restval while
testing VQA on val) evaluates on images the shared encoder has seen. The paper therefore ran two trainings: all
train splits, testing retrieval and grounding; then VQA train + val, testing VQA.

[`find_contamination`] lists every image id that is in a training split of one task and an evaluation split of
another (or of the same task); [`check_contamination`] raises [`ContaminationError`] on any, unless
explicitly allowed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .feature_readers import canonical_image_id

__all__ = [
    "ContaminationError",
    "ContaminationReport",
    "Overlap",
    "SplitImages",
    "check_contamination",
    "find_contamination",
    "run_splits",
]

logger = logging.getLogger(__name__)

_ROLES = ("train", "eval")


@dataclass(frozen=True)
class SplitImages:
    """The images of one split of one task and its role in a run.

    Attributes:
        task: Task name, e.g. ``"vqa"``.
        split: Split name, e.g. ``"val2014"`` or ``"test"``.
        role: ``"train"`` or ``"eval"``.
        image_ids: The split's image ids, in canonical form
            ([`~hierarchical_vl.data.feature_readers.canonical_image_id`]).
    """

    task: str
    split: str
    role: str
    image_ids: frozenset[str]

    @classmethod
    def from_ids(cls, task: str, split: str, role: str, image_ids: Iterable[Any]) -> SplitImages:
        """From any iterable of image ids (ints or strings)."""
        if role not in _ROLES:
            raise ValueError(f"role must be one of {_ROLES}, got {role!r}")
        return cls(task, split, role, frozenset(canonical_image_id(i) for i in image_ids))

    @classmethod
    def from_rows(cls, task: str, split: str, role: str, rows: Any) -> SplitImages:
        """From annotation rows (a ``datasets`` dataset, map-style or streaming, an encoded dataset, or dicts)."""
        image_ids = getattr(rows, "image_ids", None)
        if image_ids is not None and not callable(image_ids):  # an encoded dataset
            return cls.from_ids(task, split, role, image_ids.tolist())
        if hasattr(rows, "select_columns") and hasattr(rows, "iter"):
            ids: list[Any] = []
            for batch in rows.select_columns(["image_id"]).iter(batch_size=50_000):
                ids.extend(batch["image_id"])
            return cls.from_ids(task, split, role, ids)
        return cls.from_ids(task, split, role, (row["image_id"] for row in rows))

    @property
    def name(self) -> str:
        return f"{self.task}/{self.split}"


@dataclass(frozen=True)
class Overlap:
    """Images shared by a training split and an evaluation split."""

    train: str
    eval: str
    image_ids: tuple[str, ...]


@dataclass
class ContaminationReport:
    """Every (training split, evaluation split) pair that shares images.

    Attributes:
        overlaps: The offending pairs with their shared image ids (sorted).
        splits: The splits that were checked.
    """

    overlaps: list[Overlap] = field(default_factory=list)
    splits: list[SplitImages] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.overlaps

    @property
    def image_ids(self) -> list[str]:
        """All contaminated image ids (sorted)."""
        return sorted({i for overlap in self.overlaps for i in overlap.image_ids}, key=_sort_key)

    def __bool__(self) -> bool:
        """True when there is contamination."""
        return bool(self.overlaps)

    def format(self, max_ids: int = 10) -> str:
        """A readable summary: one line per offending pair with some of its image ids."""
        if self.clean:
            names = ", ".join(f"{s.name} ({s.role})" for s in self.splits)
            return f"no image is in both a training and an evaluation split ({names})"
        lines = [f"{len(self.image_ids)} images are in a training split and an evaluation split:"]
        for overlap in self.overlaps:
            shown = ", ".join(overlap.image_ids[:max_ids])
            more = f", ... ({len(overlap.image_ids)} in all)" if len(overlap.image_ids) > max_ids else ""
            lines.append(f"  trained by {overlap.train}, evaluated by {overlap.eval}: {shown}{more}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "image_ids": self.image_ids,
            "overlaps": [{"train": o.train, "eval": o.eval, "image_ids": list(o.image_ids)} for o in self.overlaps],
        }


class ContaminationError(RuntimeError):
    """A run would evaluate on images that it trains on."""

    def __init__(self, report: ContaminationReport):
        self.report = report
        super().__init__(
            report.format() + "\nRefusing to start: use splits without shared images (e.g. two runs "
            "as in the paper), or allow it explicitly (hvl train --allow-contamination, or the override "
            "data.allow_contamination=true; check_contamination(..., allow=True) in Python)."
        )


def _sort_key(image_id: str) -> tuple[int, int | str]:
    return (0, int(image_id)) if image_id.isdigit() else (1, image_id)


def find_contamination(splits: Sequence[SplitImages]) -> ContaminationReport:
    """Reports every image id in a training split of one task and an evaluation split of another (or the same).

    Args:
        splits: The run's splits with their roles.

    Returns:
        The report; false (``not report``) when the splits are clean.
    """
    overlaps = []
    train = [s for s in splits if s.role == "train"]
    evaluate = [s for s in splits if s.role == "eval"]
    for t in train:
        for e in evaluate:
            shared = t.image_ids & e.image_ids
            if shared:
                overlaps.append(Overlap(t.name, e.name, tuple(sorted(shared, key=_sort_key))))
    return ContaminationReport(overlaps, list(splits))


def check_contamination(splits: Sequence[SplitImages], *, allow: bool = False) -> ContaminationReport:
    """Finds contamination and refuses it unless ``allow``.

    Args:
        splits: The run's splits with their roles.
        allow: Only log the report (as a warning) instead of raising.

    Returns:
        The report (see [`find_contamination`]).

    Raises:
        ContaminationError: When a training split and an evaluation split share images and ``allow`` is false.
    """
    report = find_contamination(splits)
    if report and not allow:
        raise ContaminationError(report)
    if report:
        logger.warning("contamination allowed explicitly:\n%s", report.format())
    return report


def run_splits(train: Mapping[str, Mapping[str, Any]], evaluate: Mapping[str, Mapping[str, Any]]) -> list[SplitImages]:
    """Builds the split list of a run from ``{task: {split: rows or image ids}}`` for training and evaluation.

    Example::

        splits = run_splits(
            train={"vqa": {"train": vqa["train"]}, "retrieval": {"train": captions["train"]}},
            evaluate={"vqa": {"val": vqa["val"]}, "retrieval": {"test": captions["test"]}},
        )
        check_contamination(splits)

    Args:
        train: The training splits: task -> split name -> rows (a dataset or dicts) or image ids.
        evaluate: The evaluation splits, likewise.

    Returns:
        One [`SplitImages`] per split, training splits first.
    """
    out = []
    for role, groups in (("train", train), ("eval", evaluate)):
        for task, by_split in groups.items():
            for split, rows in by_split.items():
                is_ids = isinstance(rows, (set, frozenset)) or (
                    isinstance(rows, (list, tuple)) and not any(isinstance(r, Mapping) for r in rows[:1])
                )
                if is_ids:
                    out.append(SplitImages.from_ids(task, split, role, rows))
                else:
                    out.append(SplitImages.from_rows(task, split, role, rows))
    return out
