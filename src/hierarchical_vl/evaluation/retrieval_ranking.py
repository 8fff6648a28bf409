"""Fast exact image-caption ranking with the co-attention model: the full images x captions score matrix.

A co-attention model has no per-modality embedding to compare with a dot product: every (image, caption) pair goes
through the encoder up to the retrieval layer (COCO 1K: 5 folds x 1000 x 5000 = 25 million pairs; 5K: 125 million).
`RetrievalScorer` computes exactly the scores of the model's own forward pass, but only does per pair what depends
on the pair. The arithmetic lives in the model: `DenseCoAttentionLayer` splits into per-modality terms and a pair
step, and the retrieval heads' ``encode_captions`` / ``encode_images`` / ``score_encoded_pairs`` compute

    - once per caption and once per image: the language or image encoding and the first layer's terms (its
      projection, the fusion's own term ``W_1 x + b`` and the cross term ``[null ; x] W_2'^T``);
    - per pair: layer 1's affinity, softmaxes and two attention products (the fusion factorises:
      ``W_S [s ; A @ I_ext] + b = (W_S1 s + b) + A @ (I_ext W_S2^T)``), layers 2 .. l(retrieval) with the fusion's
      cross term over the shorter sequence, and the decoder.

Costs per pair at the paper's size (d=1024, 14 words, 36 regions, retrieval at layer 3), in multiply-adds: the
plain forward pass ~0.75 G (language and image encoders ~0.2 G, three layers ~0.5 G, decoder ~0.05 G); here
~0.33 G (layer 1 ~0.002 G, layers 2-3 ~0.27 G, decoder ~0.05 G), plus the per-item encodings once.

This module keeps what is about ranking rather than the model: pairs are scored in blocks of images x captions
(captions ordered by length and images by region count, so each block is trimmed to its own longest caption and
largest image); a block's scores can be saved to a cache directory as soon as it is done, so an interrupted run
resumes where it stopped. The cache is keyed by a fingerprint of the model's weights, the inputs and the settings,
and a cache written for anything else is refused.

Two-stage ranking (``shortlist=K``): a cheap score for every pair, then exact scores for each image's top-K
captions and each caption's top-K images (the union of both shortlists); the other pairs get ``-inf``. The cheap
score is by default a dual encoder (the retrieval decoder's summary networks and bilinear form applied to the
features before co-attention: one matrix product over all pairs), or ``first_stage="first-layer"``: the first
co-attention layer per pair, pooled the same way, which shortlists much closer to the exact ranking.
`shortlist_agreement` compares a two-stage matrix with the exact one.

With ``distributed=True`` under a ``torch.distributed`` process group (``accelerate launch``), the blocks are dealt
among the processes, each computes (or reads back from the cache) only its own, and every process returns the whole
matrix (``distributed_scoring``); the first-layer first stage is shared the same way. The result is the one a single
process computes: each entry comes from exactly one process's block, computed the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..atomic_files import atomic_path, write_text_atomic
from ..modeling_hierarchical_vl import CoAttentionTerms, SummaryNetwork
from ..processing_hierarchical_vl import tensor_from_array
from .distributed_scoring import BlockShare, broadcast_from_main, current_share, reduce_counts, sum_shares

__all__ = [
    "FIRST_STAGES",
    "RetrievalScorer",
    "ScoringStats",
    "StaleCacheError",
    "shortlist_agreement",
    "shortlist_mask",
]

FIRST_STAGES = ("dual-encoder", "first-layer")
"""The built-in first stages of two-stage ranking (see `RetrievalScorer.first_stage_scores`)."""

_CACHE_FORMAT = 1
_MANIFEST = "manifest.json"


class StaleCacheError(ValueError):
    """A score cache directory holds blocks computed for another model, other inputs or other settings."""


@dataclass
class ScoringStats:
    """What the last `RetrievalScorer.score_matrix` call did.

    Args:
        num_images: Rows of the score matrix.
        num_captions: Columns of the score matrix.
        pairs_scored: Pairs that went through the co-attention layers in this call (not counting cached blocks).
        blocks_total: Blocks of the image x caption grid.
        blocks_computed: Blocks computed in this call.
        blocks_loaded: Blocks read back from the cache directory.
        encode_seconds: Time spent on the per-modality encodings.
        pair_seconds: Time spent on the pair blocks.
        num_processes: Processes that shared the blocks (a ``torch.distributed`` job); the counts are totals over
            them and the times the slowest process's.
    """

    num_images: int = 0
    num_captions: int = 0
    pairs_scored: int = 0
    blocks_total: int = 0
    blocks_computed: int = 0
    blocks_loaded: int = 0
    encode_seconds: float = 0.0
    pair_seconds: float = 0.0
    num_processes: int = 1

    @property
    def pairs_per_second(self) -> float:
        """Exactly scored pairs per second of pair-block time (the per-modality encodings not included)."""
        return self.pairs_scored / self.pair_seconds if self.pair_seconds > 0 else float("nan")


def _as_tensor(value: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else tensor_from_array(value)
    return tensor if dtype is None else tensor.to(dtype)


def _prepare_text(text_inputs: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids (C, N) long, mask (C, N) bool)``, validated."""
    if "input_ids" not in text_inputs:
        raise ValueError("text_inputs needs input_ids (captions, words) and optionally attention_mask")
    input_ids = _as_tensor(text_inputs["input_ids"], torch.long)
    if input_ids.dim() != 2 or input_ids.shape[0] == 0:
        raise ValueError(f"input_ids must have shape (captions, words) with captions > 0, got {tuple(input_ids.shape)}")
    attention_mask = text_inputs.get("attention_mask")
    mask = (input_ids.ne(0) if attention_mask is None else _as_tensor(attention_mask).bool()).cpu()
    if mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask {tuple(mask.shape)} does not match input_ids {tuple(input_ids.shape)}")
    lengths = mask.sum(dim=1, keepdim=True)
    empty = (lengths.squeeze(1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"captions {empty[:10]} have no word in attention_mask")
    if not torch.equal(mask, torch.arange(mask.shape[1]) < lengths):
        raise ValueError("attention_mask must be right-padded: ones for the words, then zeros")
    return input_ids, mask


def _prepare_images(
    image_inputs: Mapping[str, Any], feature_dim: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(region_features (I, T, F), mask (I, T) bool, boxes (I, T, 4) or None)``, validated."""
    if "region_features" not in image_inputs:
        raise ValueError("image_inputs needs region_features (images, regions, features) and optionally region_mask")
    features = _as_tensor(image_inputs["region_features"])
    if features.dim() != 3 or features.shape[0] == 0:
        raise ValueError(
            f"region_features must have shape (images, regions, features) with images > 0, got {tuple(features.shape)}"
        )
    if features.shape[-1] != feature_dim:
        raise ValueError(
            f"region_features have width {features.shape[-1]}, but the model expects {feature_dim} "
            "(config.region_feature_dim)"
        )
    region_mask = image_inputs.get("region_mask")
    mask = torch.ones(features.shape[:2], dtype=torch.bool) if region_mask is None else _as_tensor(region_mask).bool()
    mask = mask.cpu()
    if mask.shape != features.shape[:2]:
        raise ValueError(f"region_mask {tuple(mask.shape)} does not match region_features {tuple(features.shape[:2])}")
    empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"images {empty[:10]} have no valid region in region_mask")
    boxes = image_inputs.get("region_boxes")
    return features, mask, None if boxes is None else _as_tensor(boxes, torch.float32)


def _hash_tensor(digest: Any, tensor: torch.Tensor) -> None:
    tensor = tensor.detach().to("cpu").contiguous()
    digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
    if tensor.numel():
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())


def shortlist_mask(cheap_scores: np.ndarray, k: int) -> np.ndarray:
    """Pairs to score exactly: each image's top-``k`` captions and each caption's top-``k`` images.

    Args:
        cheap_scores: `(n_images, n_captions)` first-stage scores, higher = better.
        k: Shortlist length per query (capped at the number of candidates).

    Returns:
        `(n_images, n_captions)` bool, True for the union of both directions' shortlists.
    """
    scores = np.asarray(cheap_scores, dtype=np.float32)
    if scores.ndim != 2:
        raise ValueError(f"cheap_scores must be (n_images, n_captions), got shape {scores.shape}")
    if k < 1:
        raise ValueError(f"the shortlist length must be >= 1, got {k}")
    n_images, n_captions = scores.shape
    mask = np.zeros(scores.shape, dtype=bool)
    k_captions = min(k, n_captions)
    top_captions = np.argpartition(-scores, k_captions - 1, axis=1)[:, :k_captions]  # (I, k)
    np.put_along_axis(mask, top_captions, True, axis=1)
    k_images = min(k, n_images)
    top_images = np.argpartition(-scores, k_images - 1, axis=0)[:k_images, :]  # (k, C)
    np.put_along_axis(mask, top_images, True, axis=0)
    return mask


def shortlist_agreement(two_stage: np.ndarray, exact: np.ndarray, top: int = 10) -> dict[str, float]:
    """How well a two-stage score matrix reproduces the exact ranking.

    Args:
        two_stage: `(n_images, n_captions)` scores with ``-inf`` for the pairs left out of the shortlist.
        exact: `(n_images, n_captions)` exact scores.
        top: Depth of the coverage check.

    Returns:
        Fractions in [0, 1]: ``i2t_top1`` (images whose best caption is the exact best caption), ``t2i_top1``
        (captions whose best image is the exact best image), ``i2t_top{top}_coverage`` and
        ``t2i_top{top}_coverage`` (share of the exact top-``top`` candidates of each query that were scored
        exactly, averaged over the queries), and ``pairs_scored`` (share of all pairs scored exactly).
    """
    two_stage = np.asarray(two_stage, dtype=np.float32)
    exact = np.asarray(exact, dtype=np.float32)
    if two_stage.shape != exact.shape or two_stage.ndim != 2:
        raise ValueError(
            f"score matrices must have one (n_images, n_captions) shape, got {two_stage.shape} and {exact.shape}"
        )
    scored = np.isfinite(two_stage)
    result = {
        "i2t_top1": float(np.mean(two_stage.argmax(axis=1) == exact.argmax(axis=1))),
        "t2i_top1": float(np.mean(two_stage.argmax(axis=0) == exact.argmax(axis=0))),
    }
    top_captions = min(top, exact.shape[1])
    best_captions = np.argpartition(-exact, top_captions - 1, axis=1)[:, :top_captions]  # (I, top)
    result[f"i2t_top{top}_coverage"] = float(np.take_along_axis(scored, best_captions, axis=1).mean())
    top_images = min(top, exact.shape[0])
    best_images = np.argpartition(-exact, top_images - 1, axis=0)[:top_images, :]  # (top, C)
    result[f"t2i_top{top}_coverage"] = float(np.take_along_axis(scored, best_images, axis=0).mean())
    result["pairs_scored"] = float(scored.mean())
    return result


class RetrievalScorer:
    """Scores every (image, caption) pair with a co-attention retrieval model, exactly and fast.

    Works with [`HierarchicalVLForImageTextRetrieval`] and [`HierarchicalVLForMultiTask`] with a retrieval decoder
    (the models with ``encode_captions`` / ``encode_images`` / ``score_encoded_pairs``). The scores are the model's
    matching logits (``sigmoid`` of them is the paper's score; the ranking is the same).

    Args:
        model: The retrieval model; it is put in eval mode while scoring and its mode is restored afterwards.
        batch_size: Pairs per forward pass through layers 1 .. l(retrieval).
        dtype: ``None`` for float32, or ``torch.bfloat16`` / ``torch.float16`` to run the pair work under autocast
            (meant for GPUs; the per-modality encodings are computed in float32).
        device: Where to score; the model is moved there. Defaults to the model's device.
        images_per_block: Images per block of the grid (the unit of progress and of the cache).
        captions_per_block: Captions per block of the grid.
        encode_batch_size: Captions or images per forward pass of the per-modality encoders.
        distributed: Share the blocks among the processes of the initialised ``torch.distributed`` process group
            (as under ``accelerate launch``): each process scores its share and every process returns the whole
            matrix (see ``distributed_scoring``). Every process must then make the same calls with the same inputs.
            Off by default: each process scores everything on its own.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        batch_size: int = 512,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        images_per_block: int = 64,
        captions_per_block: int = 1024,
        encode_batch_size: int = 256,
        distributed: bool = False,
    ):
        if not hasattr(model, "score_encoded_pairs") or "retrieval" not in getattr(model, "tasks", ()):
            raise ValueError(
                f"{type(model).__name__} cannot score image-caption pairs: use HierarchicalVLForImageTextRetrieval "
                "or a HierarchicalVLForMultiTask with a retrieval decoder"
            )
        if min(batch_size, images_per_block, captions_per_block, encode_batch_size) < 1:
            raise ValueError("batch_size, images_per_block, captions_per_block and encode_batch_size must be >= 1")
        if dtype not in (None, torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"dtype must be None, torch.float32, torch.bfloat16 or torch.float16, got {dtype}")
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device)
        self.batch_size = batch_size
        self.dtype = None if dtype == torch.float32 else dtype
        self.images_per_block = images_per_block
        self.captions_per_block = captions_per_block
        self.encode_batch_size = encode_batch_size
        self.distributed = distributed
        self.num_layers = model.config.layer_for("retrieval")
        self.last_stats = ScoringStats()
        self._weights_fingerprint: str | None = None

    # ----------------------------------------------------------------------------------------------------------
    # Public entry points
    # ----------------------------------------------------------------------------------------------------------

    def score_matrix(
        self,
        text_inputs: Mapping[str, Any],
        image_inputs: Mapping[str, Any],
        cache_dir: str | os.PathLike | None = None,
        progress: bool = True,
        shortlist: int | None = None,
        shortlist_scores: np.ndarray | None = None,
        first_stage: str = "dual-encoder",
        on_block: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """The `(n_images, n_captions)` float32 matrix of matching logits.

        Args:
            text_inputs: ``input_ids`` `(C, N)` and ``attention_mask`` `(C, N)` of the captions (right-padded).
            image_inputs: ``region_features`` `(I, T, F)`, ``region_mask`` `(I, T)` and, for models with box
                embeddings, ``region_boxes`` `(I, T, 4)`.
            cache_dir: Directory where finished blocks are saved; a later call with the same model, inputs and
                settings skips them. A directory written for anything else raises `StaleCacheError`. The blocks are
                named by their place in the grid, not by the process that computed them, so a cache written by one
                process serves several and the other way round; under several processes it must be a directory
                they all see (one machine or a shared file system).
            progress: Show a progress bar over the blocks.
            shortlist: Two-stage mode: score exactly only each image's top-``shortlist`` captions and each caption's
                top-``shortlist`` images under ``shortlist_scores``; the other pairs get ``-inf``.
            shortlist_scores: `(I, C)` first-stage scores of your own; by default ``first_stage`` computes them.
            first_stage: The built-in first stage (see `first_stage_scores`): ``dual-encoder`` (one matrix product
                over all pairs) or ``first-layer`` (the first co-attention layer per pair, a small fraction of an
                exact score's work, and a much closer shortlist).
            on_block: Called after each finished block with ``(blocks_done, blocks_total)`` of this process's share.

        Returns:
            `(I, C)` float32 scores; with ``shortlist``, ``-inf`` where a pair was not scored.
        """
        if first_stage not in FIRST_STAGES:
            raise ValueError(f"first_stage must be one of {FIRST_STAGES}, got {first_stage!r}")
        stats = ScoringStats()
        with self.model.inference():
            input_ids, text_mask = _prepare_text(text_inputs)
            features, image_mask, boxes = _prepare_images(image_inputs, self.model.config.region_feature_dim)
            n_images, n_captions = features.shape[0], input_ids.shape[0]
            stats.num_images, stats.num_captions = n_images, n_captions
            if shortlist is not None and shortlist_scores is not None:
                shortlist_scores = np.asarray(shortlist_scores, dtype=np.float32)
                if shortlist_scores.shape != (n_images, n_captions):
                    raise ValueError(
                        f"shortlist_scores must have shape {(n_images, n_captions)}, got {shortlist_scores.shape}"
                    )
            image_blocks, caption_blocks = self._blocks(text_mask, image_mask)
            grid = [(a, b) for a in range(len(image_blocks)) for b in range(len(caption_blocks))]  # image-major
            stats.blocks_total = len(grid)
            share = current_share(self.distributed)
            stats.num_processes = share.world_size
            cache = None
            if cache_dir is not None:
                given = shortlist_scores is not None
                fingerprint = self._fingerprint(
                    input_ids,
                    text_mask,
                    features,
                    image_mask,
                    boxes,
                    shortlist,
                    shortlist_scores,
                    None if shortlist is None else ("given" if given else first_stage),
                )
                cache = self._open_shared_cache(Path(cache_dir), fingerprint, n_images, n_captions, share)

            def block_path(a: int, b: int) -> Path | None:
                return None if cache is None else cache / f"block_{a:05d}_{b:05d}.npy"

            # Rank 0's view of the cache decides, for every process alike, what is read back and what is computed;
            # each list is dealt round-robin, so a resumed run stays balanced.
            cached = [j for j, (a, b) in enumerate(grid) if cache is not None and block_path(a, b).exists()]
            cached = set(broadcast_from_main(cached, share))
            to_compute = [j for j in range(len(grid)) if j not in cached]
            mine = [(j, True) for j in share.deal(sorted(cached))] + [(j, False) for j in share.deal(to_compute)]
            # The first-layer first stage is split over the processes too: all of them take part when any block
            # is still to be computed.
            shared_first_stage = (
                share.distributed
                and shortlist is not None
                and shortlist_scores is None
                and first_stage == "first-layer"
            )

            # The per-modality work is done on the first block that is not in the cache.
            encoded: dict[str, Any] = {}

            def encodings() -> dict[str, Any]:
                if not encoded:
                    start = time.perf_counter()
                    encoded["captions"], encoded["images"] = self._encode(
                        input_ids, text_mask, features, image_mask, boxes
                    )
                    encoded["pair_mask"] = None
                    if shortlist is not None:
                        cheap = shortlist_scores
                        if cheap is None:
                            cheap = self._first_stage_scores(
                                first_stage,
                                encoded["captions"],
                                encoded["images"],
                                image_blocks,
                                caption_blocks,
                                share,
                            )
                        encoded["pair_mask"] = shortlist_mask(cheap, shortlist)
                    stats.encode_seconds = time.perf_counter() - start
                return encoded

            if shared_first_stage and to_compute:
                encodings()
            # Several processes: each fills its own blocks, zeros elsewhere, and the shares are summed.
            scores = np.full((n_images, n_captions), 0.0 if share.distributed else -np.inf, dtype=np.float32)
            pair_start = time.perf_counter()
            bar = tqdm(total=len(mine), unit="block", desc="scoring pairs", disable=not progress or not share.is_main)
            try:
                for done, (j, from_cache) in enumerate(mine, start=1):
                    a, b = grid[j]
                    image_rows, caption_rows = image_blocks[a], caption_blocks[b]
                    path = block_path(a, b)
                    if from_cache:
                        block = self._load_block(path, (len(image_rows), len(caption_rows)))
                        stats.blocks_loaded += 1
                    else:
                        work = encodings()
                        pair_mask = work["pair_mask"]
                        block, count = self._score_block(
                            work["captions"],
                            work["images"],
                            image_rows,
                            caption_rows,
                            None if pair_mask is None else pair_mask[np.ix_(image_rows, caption_rows)],
                        )
                        stats.pairs_scored += count
                        stats.blocks_computed += 1
                        if path is not None:
                            with atomic_path(path) as temporary, open(temporary, "wb") as handle:
                                np.save(handle, block)
                    scores[np.ix_(image_rows, caption_rows)] = block
                    bar.update(1)
                    elapsed = time.perf_counter() - pair_start - stats.encode_seconds
                    if stats.pairs_scored and elapsed > 0:
                        bar.set_postfix(pairs_per_s=f"{stats.pairs_scored / elapsed:,.0f}", refresh=False)
                    if on_block is not None:
                        on_block(done, len(mine))
            finally:
                bar.close()
                stats.pair_seconds = time.perf_counter() - pair_start - stats.encode_seconds
                self.last_stats = stats
            if share.distributed:
                scores = sum_shares(scores, share)
                stats.pairs_scored, stats.blocks_computed, stats.blocks_loaded = (
                    int(value)
                    for value in reduce_counts([stats.pairs_scored, stats.blocks_computed, stats.blocks_loaded], share)
                )
                stats.encode_seconds, stats.pair_seconds = reduce_counts(
                    [stats.encode_seconds, stats.pair_seconds], share, "max"
                )
        return scores

    def first_stage_scores(
        self,
        text_inputs: Mapping[str, Any],
        image_inputs: Mapping[str, Any],
        first_stage: str = "dual-encoder",
    ) -> np.ndarray:
        """Cheap scores `(I, C)` of every pair, for a shortlist (higher = better).

        - ``dual-encoder``: the retrieval decoder applied to the features before co-attention,
          ``v_I = summary_I(i)``, ``v_S = summary_S(s)``, ``score = v_I^T W v_S``: one matrix product over all pairs.
        - ``first-layer``: the first co-attention layer per pair (its factorised form, ~1% of an exact score's
          multiply-adds at the paper's size), pooled with the summary networks' weights of the features before
          co-attention (computed once per item), then ``v_I^T W v_S``. It is bound by memory traffic, much
          faster than exact scoring and slower than the dual encoder; but it sees the pair through co-attention and
          shortlists much closer to the exact ranking.

        With ``distributed``, the first-layer stage's blocks are shared among the processes (each must call this).
        """
        if first_stage not in FIRST_STAGES:
            raise ValueError(f"first_stage must be one of {FIRST_STAGES}, got {first_stage!r}")
        with self.model.inference():
            input_ids, text_mask = _prepare_text(text_inputs)
            features, image_mask, boxes = _prepare_images(image_inputs, self.model.config.region_feature_dim)
            image_blocks, caption_blocks = self._blocks(text_mask, image_mask)
            captions, images = self._encode(input_ids, text_mask, features, image_mask, boxes)
            share = current_share(self.distributed)
            return self._first_stage_scores(first_stage, captions, images, image_blocks, caption_blocks, share)

    def dual_encoder_scores(self, text_inputs: Mapping[str, Any], image_inputs: Mapping[str, Any]) -> np.ndarray:
        """``first_stage_scores(..., "dual-encoder")``."""
        return self.first_stage_scores(text_inputs, image_inputs, "dual-encoder")

    # ----------------------------------------------------------------------------------------------------------
    # Blocks
    # ----------------------------------------------------------------------------------------------------------

    def _autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def _encode(self, input_ids, text_mask, features, image_mask, boxes) -> tuple[CoAttentionTerms, CoAttentionTerms]:
        """The per-caption and per-image terms (see the model's ``encode_captions`` / ``encode_images``)."""
        model, step = self.model, self.encode_batch_size
        captions = model.encode_captions(input_ids.to(self.device), text_mask.to(self.device), step, self.dtype)
        images = model.encode_images(
            features.to(self.device),
            image_mask.to(self.device),
            None if boxes is None else boxes.to(self.device),
            step,
            self.dtype,
        )
        return captions, images

    def _blocks(self, text_mask: torch.Tensor, image_mask: torch.Tensor) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Image rows and caption rows of the grid's blocks, sorted by length so a block is trimmed to its longest."""
        image_order = np.argsort(image_mask.sum(dim=1).numpy(), kind="stable")
        caption_order = np.argsort(text_mask.sum(dim=1).numpy(), kind="stable")
        image_blocks = [
            image_order[i : i + self.images_per_block] for i in range(0, len(image_order), self.images_per_block)
        ]
        caption_blocks = [
            caption_order[c : c + self.captions_per_block]
            for c in range(0, len(caption_order), self.captions_per_block)
        ]
        return image_blocks, caption_blocks

    def _block_pairs(
        self, captions: CoAttentionTerms, images: CoAttentionTerms, image_rows, caption_rows, block_mask
    ) -> tuple[np.ndarray, np.ndarray, torch.Tensor, torch.Tensor, int, int]:
        """A block's pairs: local (image, caption) positions, their global rows on the device, and the trim."""
        n_img, n_cap = len(image_rows), len(caption_rows)
        if block_mask is None:
            local_image = np.repeat(np.arange(n_img), n_cap)  # (P,) image-major grid
            local_caption = np.tile(np.arange(n_cap), n_img)
        else:
            local_image, local_caption = np.nonzero(block_mask)
        # Trim the block to its longest caption and largest image: padding never changes a real token's output.
        num_words = int(captions.mask[torch.as_tensor(caption_rows, device=self.device)].sum(dim=1).max())
        num_regions = int(images.mask[torch.as_tensor(image_rows, device=self.device)].sum(dim=1).max())
        image_index = torch.as_tensor(image_rows[local_image], device=self.device)  # (P,)
        caption_index = torch.as_tensor(caption_rows[local_caption], device=self.device)
        return local_image, local_caption, caption_index, image_index, num_words, num_regions

    def _score_block(
        self, captions: CoAttentionTerms, images: CoAttentionTerms, image_rows, caption_rows, block_mask
    ) -> tuple[np.ndarray, int]:
        """Exact scores `(len(image_rows), len(caption_rows))` of one block (``-inf`` outside ``block_mask``)."""
        block = np.full((len(image_rows), len(caption_rows)), -np.inf, dtype=np.float32)
        local_image, local_caption, t, i, n, r = self._block_pairs(
            captions, images, image_rows, caption_rows, block_mask
        )
        if local_image.size == 0:
            return block, 0
        with self._autocast():
            logits = self.model.score_encoded_pairs(captions, images, t, i, self.batch_size, n, r)
        # One device-to-host copy per block keeps the GPU queue full between batches.
        block[local_image, local_caption] = logits.cpu().numpy()
        return block, int(local_image.size)

    def _first_stage_scores(
        self,
        first_stage: str,
        captions: CoAttentionTerms,
        images: CoAttentionTerms,
        image_blocks: list[np.ndarray],
        caption_blocks: list[np.ndarray],
        share: BlockShare,
    ) -> np.ndarray:
        """`(I, C)` first-stage scores; the first-layer stage's blocks are shared among the processes of ``share``."""
        decoder = self.model.decoder("retrieval")
        step = self.encode_batch_size
        summaries = [
            [
                network(terms.features[s : s + step], terms.mask[s : s + step])
                for s in range(0, len(terms.features), step)
            ]
            for network, terms in ((decoder.text_summary, captions), (decoder.image_summary, images))
        ]
        (text_vectors, text_weights), (image_vectors, image_weights) = (
            (torch.cat([v for v, _ in parts]), torch.cat([w for _, w in parts])) for parts in summaries
        )  # (C, d), (C, N); (I, d), (I, T)
        if first_stage == "dual-encoder":
            return decoder.score_all(image_vectors, text_vectors).float().cpu().numpy()  # (I, C)
        first = self.model.hierarchical_vl.encoder.layers[0]
        scores = np.zeros((len(images.features), len(captions.features)), dtype=np.float32)
        grid = [(image_rows, caption_rows) for image_rows in image_blocks for caption_rows in caption_blocks]
        for j, (image_rows, caption_rows) in enumerate(grid):
            if share.owns(j):
                local_image, local_caption, t, i, n, r = self._block_pairs(
                    captions, images, image_rows, caption_rows, None
                )
                logits = []
                for start in range(0, t.numel(), self.batch_size):
                    tb, ib = t[start : start + self.batch_size], i[start : start + self.batch_size]
                    with self._autocast():
                        text, image, _ = first.forward_terms(captions.select(tb, n), images.select(ib, r))
                        logits.append(
                            decoder.score(
                                SummaryNetwork.pool(image, image_weights[ib, :r]),
                                SummaryNetwork.pool(text, text_weights[tb, :n]),
                            ).float()
                        )
                block = np.empty((len(image_rows), len(caption_rows)), dtype=np.float32)
                block[local_image, local_caption] = torch.cat(logits).cpu().numpy()
                scores[np.ix_(image_rows, caption_rows)] = block
        return sum_shares(scores, share)

    # ----------------------------------------------------------------------------------------------------------
    # Cache
    # ----------------------------------------------------------------------------------------------------------

    def _fingerprint(
        self, input_ids, text_mask, features, image_mask, boxes, shortlist, shortlist_scores, first_stage
    ) -> str:
        if self._weights_fingerprint is None:
            digest = hashlib.blake2b(digest_size=16)
            for name, tensor in sorted(self.model.state_dict().items()):
                digest.update(name.encode())
                _hash_tensor(digest, tensor)
            self._weights_fingerprint = digest.hexdigest()
        digest = hashlib.blake2b(digest_size=16)
        settings = {
            "format": _CACHE_FORMAT,
            "model": type(self.model).__name__,
            "weights": self._weights_fingerprint,
            "retrieval_layer": self.num_layers,
            "dtype": str(self.dtype),
            "images_per_block": self.images_per_block,
            "captions_per_block": self.captions_per_block,
            "shortlist": shortlist,
            "first_stage": first_stage,
        }
        digest.update(json.dumps(settings, sort_keys=True).encode())
        for tensor in (input_ids, text_mask, features, image_mask):
            _hash_tensor(digest, tensor)
        if boxes is not None and self.model.config.use_box_embedding:
            _hash_tensor(digest, boxes)
        if shortlist is not None and shortlist_scores is not None:
            _hash_tensor(digest, torch.from_numpy(shortlist_scores))
        return digest.hexdigest()

    def _open_shared_cache(
        self, cache_dir: Path, fingerprint: str, n_images: int, n_captions: int, share: BlockShare
    ) -> Path:
        """`_open_cache` by rank 0 first (it writes the manifest), then by the other processes, which only check it;
        a refusal is raised on every process."""
        if not share.distributed:
            return self._open_cache(cache_dir, fingerprint, n_images, n_captions)
        refusal = None
        if share.is_main:
            try:
                self._open_cache(cache_dir, fingerprint, n_images, n_captions)
            except StaleCacheError as error:
                refusal = str(error)
        refusal = broadcast_from_main(refusal, share)
        if refusal is not None:
            raise StaleCacheError(refusal)
        return cache_dir if share.is_main else self._open_cache(cache_dir, fingerprint, n_images, n_captions)

    @staticmethod
    def _load_block(path: Path, shape: tuple[int, int]) -> np.ndarray:
        """A cached block, checked: a float32 array of the block's shape (never unpickled)."""
        try:
            block = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"the score cache block {path} is listed by the main process but missing here: the cache directory "
                "must be shared by all processes"
            ) from None
        except ValueError as error:
            raise ValueError(f"the score cache block {path} is not a readable .npy array: {error}") from None
        if block.shape != shape or block.dtype != np.float32:
            raise ValueError(
                f"the score cache block {path} holds a {block.dtype} array of shape {block.shape}, expected float32 "
                f"{shape}; delete it to have it recomputed"
            )
        return block

    def _open_cache(self, cache_dir: Path, fingerprint: str, n_images: int, n_captions: int) -> Path:
        cache_dir.mkdir(parents=True, exist_ok=True)
        manifest_path = cache_dir / _MANIFEST
        manifest = {
            "fingerprint": fingerprint,
            "num_images": n_images,
            "num_captions": n_captions,
            "images_per_block": self.images_per_block,
            "captions_per_block": self.captions_per_block,
        }
        if manifest_path.exists():
            stored = json.loads(manifest_path.read_text(encoding="utf-8"))
            if stored.get("fingerprint") != fingerprint:
                raise StaleCacheError(
                    f"the score cache {cache_dir} was written for another model, other inputs or other settings "
                    f"(fingerprint {stored.get('fingerprint')} != {fingerprint}); delete it or choose another "
                    "cache directory"
                )
        else:
            stale = sorted(cache_dir.glob("block_*.npy"))
            if stale:
                raise StaleCacheError(
                    f"the score cache {cache_dir} holds {len(stale)} blocks but no {_MANIFEST}; delete it or choose "
                    "another cache directory"
                )
            write_text_atomic(manifest_path, json.dumps(manifest, indent=2))
        return cache_dir

    def stats_dict(self) -> dict[str, float]:
        """The last call's `ScoringStats` as a flat dict (with ``pairs_per_second``)."""
        values = asdict(self.last_stats)
        rate = self.last_stats.pairs_per_second
        values["pairs_per_second"] = rate if math.isfinite(rate) else 0.0
        return values
