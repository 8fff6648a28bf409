"""Evaluation: fast exact retrieval ranking, per-task evaluation over dataset splits and the ``hvl evaluate`` command."""

from __future__ import annotations

from .retrieval_ranking import RetrievalScorer, ScoringStats, StaleCacheError, shortlist_agreement, shortlist_mask

__all__ = [
    "RetrievalScorer",
    "ScoringStats",
    "StaleCacheError",
    "shortlist_agreement",
    "shortlist_mask",
]
