"""Fast exact image-caption ranking with the co-attention model: the full images x captions score matrix.

A co-attention model has no per-modality embedding to compare with a dot product: every (image, caption) pair goes
through the encoder up to the retrieval layer (COCO 1K: 5 folds x 1000 x 5000 = 25 million pairs; 5K: 125 million).
`RetrievalScorer` computes exactly the scores of the model's own forward pass, but only does per pair what depends
on the pair.

What is computed once per caption and once per image
    - the language encoding (word embeddings, BiLSTM, projection) and the image encoding (projection, L2 norm);
    - the first co-attention layer's projections ``P_S = W_p^S s`` and ``P_I = W_p^I i``;
    - the affinities of the real tokens against the other modality's null tokens (the null tokens are constants);
    - the first layer's fusion, split by the algebra below.

The first layer's fusion factorises. With ``W_S = [W_S1 | W_S2]`` (`d x 2d`) and ``i_hat = A_w2r @ I_ext``
(``I_ext = [null_I ; i]``, ``A_w2r`` the head-averaged word-to-region attention, `(N, K+T)`)::

    W_S [s ; i_hat] + b_S = (W_S1 s + b_S)  +  A_w2r @ (I_ext W_S2^T)
                            ^ per caption       ^ per pair   ^ per image

and likewise ``W_I [i ; s_hat] + b_I = (W_I1 i + b_I) + A_r2w @ (S_ext W_I2^T)``. The first layer then costs per
pair only the affinity ``P_S P_I^T`` (`N x T x d`), two softmaxes and two small attention products
(`N x (K+T) x d` and `T x (K+N) x d`) instead of four `d x d` matrix products per token.

Layers 2 .. l(retrieval) and the retrieval decoder depend on the pair through and through; they run on large
gathered batches of pairs with the same computation as `DenseCoAttentionLayer` in eval mode, arranged for speed: one
matrix product per modality for its projection and fusion terms, and the fusion's cross term ``W_2 (A @ X_ext)``
taken as ``A @ (X_ext W_2^T)`` for the longer sequence, so that its `d x d` product runs over the shorter one (the
14 words rather than the 36 regions); the null tokens' terms are constants computed once. Every step is checked
against the model's own forward pass in the tests (float32: max difference ~1e-7).

Costs per pair at the paper's size (d=1024, 14 words, 36 regions, retrieval at layer 3), in multiply-adds: the
plain forward pass ~0.75 G (language and image encoders ~0.2 G, three layers ~0.5 G, decoder ~0.05 G); here
~0.33 G (layer 1 ~0.002 G, layers 2-3 ~0.27 G, decoder ~0.05 G), plus the per-item encodings once.

Pairs are scored in blocks of images x captions (captions ordered by length and images by region count, so each
block is trimmed to its own longest caption and largest image); a block's scores can be saved to a cache directory
as soon as it is done, so an interrupted run resumes where it stopped. The cache is keyed by a fingerprint of the
model's weights, the inputs and the settings, and a cache written for anything else is refused.

Two-stage ranking (``shortlist=K``): a cheap score for every pair, then exact scores for each image's top-K
captions and each caption's top-K images (the union of both shortlists); the other pairs get ``-inf``. The cheap
score is by default a dual encoder (the retrieval decoder's summary networks and bilinear form applied to the
features before co-attention: one matrix product over all pairs), or ``first_stage="first-layer"``: the first
co-attention layer per pair, pooled the same way, which shortlists much closer to the exact ranking.
`shortlist_agreement` compares a two-stage matrix with the exact one.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

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
    """

    num_images: int = 0
    num_captions: int = 0
    pairs_scored: int = 0
    blocks_total: int = 0
    blocks_computed: int = 0
    blocks_loaded: int = 0
    encode_seconds: float = 0.0
    pair_seconds: float = 0.0

    @property
    def pairs_per_second(self) -> float:
        """Exactly scored pairs per second of pair-block time (the per-modality encodings not included)."""
        return self.pairs_scored / self.pair_seconds if self.pair_seconds > 0 else float("nan")


@dataclass
class _CaptionEncodings:
    """Everything about the captions that does not depend on the image (rows = captions)."""

    features: torch.Tensor  # (C, N, d) word features before the first layer
    mask: torch.Tensor  # (C, N) bool
    projection: torch.Tensor  # (C, h, N, d/h) first-layer projection P_S, split into heads
    null_affinity: torch.Tensor  # (C, h, N, K) words against the image null tokens, scaled
    own_fusion: torch.Tensor  # (C, N, d) W_S1 s + b_S
    cross_fusion: torch.Tensor  # (C, K+N, d) [null_S ; s] W_I2^T, read by the regions' fusion
    lengths: np.ndarray  # (C,) real words


@dataclass
class _ImageEncodings:
    """Everything about the images that does not depend on the caption (rows = images)."""

    features: torch.Tensor  # (I, T, d) region features before the first layer
    mask: torch.Tensor  # (I, T) bool
    projection: torch.Tensor  # (I, h, T, d/h) first-layer projection P_I, split into heads
    null_affinity: torch.Tensor  # (I, h, T, K) regions against the text null tokens, scaled
    own_fusion: torch.Tensor  # (I, T, d) W_I1 i + b_I
    cross_fusion: torch.Tensor  # (I, K+T, d) [null_I ; i] W_S2^T, read by the words' fusion
    lengths: np.ndarray  # (I,) real regions


@dataclass
class _LaterLayer:
    """The weights of a co-attention layer after the first, arranged for pair batches.

    One matrix product per modality computes the projection, the fusion's own term and (for the shorter sequence)
    the other modality's cross term: ``[W_p ; W_1 ; W_2']``, `(3d, d)`, with ``W_2'`` the other fusion's half that
    reads this modality.
    """

    text_stack: torch.Tensor  # (3d, d) [W_p^S ; W_S1 ; W_I2]
    text_bias: torch.Tensor  # (3d,) [0 ; b_S ; 0]
    image_stack: torch.Tensor  # (3d, d) [W_p^I ; W_I1 ; W_S2]
    image_bias: torch.Tensor  # (3d,) [0 ; b_I ; 0]
    text_null: torch.Tensor  # (K, d) text null tokens
    image_null: torch.Tensor  # (K, d) image null tokens
    text_null_heads: torch.Tensor  # (h, K, d/h) projected text null tokens
    image_null_heads: torch.Tensor  # (h, K, d/h) projected image null tokens
    text_null_cross: torch.Tensor  # (K, d) null_S W_I2^T
    image_null_cross: torch.Tensor  # (K, d) null_I W_S2^T
    scale: float


def _as_tensor(value: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
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


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` through a temporary file and ``os.replace`` (never a half-written file)."""
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            np.save(handle, array)
        os.replace(handle.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise


def _atomic_write_text(path: Path, text: str) -> None:
    handle = tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False, encoding="utf-8"
    )
    try:
        with handle:
            handle.write(text)
        os.replace(handle.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise


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
        raise ValueError(f"score matrices must have one (n_images, n_captions) shape, got {two_stage.shape} and {exact.shape}")
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

    Works with [`HierarchicalVLForImageTextRetrieval`] and [`HierarchicalVLForMultiTask`] (any model with a
    ``hierarchical_vl`` encoder, a ``retrieval_decoder`` and ``config.task_layers["retrieval"]``). The scores are
    the model's matching logits (``sigmoid`` of them is the paper's score; the ranking is the same).

    Args:
        model: The retrieval model; it is put in eval mode while scoring and its mode is restored afterwards.
        batch_size: Pairs per forward pass through layers 1 .. l(retrieval).
        dtype: ``None`` for float32, or ``torch.bfloat16`` / ``torch.float16`` to run the pair work under autocast
            (meant for GPUs; the per-modality encodings stay in float32).
        device: Where to score; the model is moved there. Defaults to the model's device.
        images_per_block: Images per block of the grid (the unit of progress and of the cache).
        captions_per_block: Captions per block of the grid.
        encode_batch_size: Captions or images per forward pass of the per-modality encoders.
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
    ):
        for name in ("hierarchical_vl", "retrieval_decoder"):
            if not hasattr(model, name):
                raise ValueError(
                    f"{type(model).__name__} has no {name}: use HierarchicalVLForImageTextRetrieval or a "
                    "HierarchicalVLForMultiTask with a retrieval decoder"
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
                settings skips them. A directory written for anything else raises `StaleCacheError`.
            progress: Show a progress bar over the blocks.
            shortlist: Two-stage mode: score exactly only each image's top-``shortlist`` captions and each caption's
                top-``shortlist`` images under ``shortlist_scores``; the other pairs get ``-inf``.
            shortlist_scores: `(I, C)` first-stage scores of your own; by default ``first_stage`` computes them.
            first_stage: The built-in first stage (see `first_stage_scores`): ``dual-encoder`` (one matrix product
                over all pairs) or ``first-layer`` (the first co-attention layer per pair, ~1% of an exact score's
                work, and a much closer shortlist).
            on_block: Called after each finished block with ``(blocks_done, blocks_total)``.

        Returns:
            `(I, C)` float32 scores; with ``shortlist``, ``-inf`` where a pair was not scored.
        """
        stats = ScoringStats()
        with self._scoring_mode():
            input_ids, text_mask = _prepare_text(text_inputs)
            features, image_mask, boxes = _prepare_images(image_inputs, self.model.config.region_feature_dim)
            n_images, n_captions = features.shape[0], input_ids.shape[0]
            stats.num_images, stats.num_captions = n_images, n_captions
            if first_stage not in FIRST_STAGES:
                raise ValueError(f"first_stage must be one of {FIRST_STAGES}, got {first_stage!r}")
            if shortlist is not None and shortlist_scores is not None:
                shortlist_scores = np.asarray(shortlist_scores, dtype=np.float32)
                if shortlist_scores.shape != (n_images, n_captions):
                    raise ValueError(
                        f"shortlist_scores must have shape {(n_images, n_captions)}, got {shortlist_scores.shape}"
                    )

            image_blocks, caption_blocks = self._blocks(text_mask, image_mask)
            stats.blocks_total = len(image_blocks) * len(caption_blocks)
            cache = None
            if cache_dir is not None:
                given = shortlist_scores is not None
                fingerprint = self._fingerprint(
                    input_ids, text_mask, features, image_mask, boxes, shortlist, shortlist_scores,
                    None if shortlist is None else ("given" if given else first_stage),
                )
                cache = self._open_cache(Path(cache_dir), fingerprint, n_images, n_captions)

            # The per-modality work is done on the first block that is not in the cache.
            encoded: dict[str, Any] = {}

            def encodings() -> dict[str, Any]:
                if not encoded:
                    start = time.perf_counter()
                    encoded["captions"] = self._encode_captions(input_ids, text_mask)
                    encoded["images"] = self._encode_images(features, image_mask, boxes)
                    encoded["later_layers"] = [self._arrange_layer(layer) for layer in self._layers[1:]]
                    encoded["pair_mask"] = None
                    if shortlist is not None:
                        cheap = shortlist_scores
                        if cheap is None:
                            cheap = self._first_stage_scores(
                                first_stage, encoded["captions"], encoded["images"], image_blocks, caption_blocks
                            )
                        encoded["pair_mask"] = shortlist_mask(cheap, shortlist)
                    stats.encode_seconds = time.perf_counter() - start
                return encoded

            scores = np.full((n_images, n_captions), -np.inf, dtype=np.float32)
            pair_start = time.perf_counter()
            bar = tqdm(total=stats.blocks_total, unit="block", desc="scoring pairs", disable=not progress)
            try:
                for a, image_rows in enumerate(image_blocks):
                    for b, caption_rows in enumerate(caption_blocks):
                        path = None if cache is None else cache / f"block_{a:05d}_{b:05d}.npy"
                        if path is not None and path.exists():
                            block = np.load(path)
                            stats.blocks_loaded += 1
                        else:
                            work = encodings()
                            pair_mask = work["pair_mask"]
                            block, count = self._score_block(
                                functools.partial(
                                    self._score_pairs, work["captions"], work["images"], work["later_layers"]
                                ),
                                work["captions"],
                                work["images"],
                                image_rows,
                                caption_rows,
                                None if pair_mask is None else pair_mask[np.ix_(image_rows, caption_rows)],
                            )
                            stats.pairs_scored += count
                            stats.blocks_computed += 1
                            if path is not None:
                                _atomic_save_npy(path, block)
                        scores[np.ix_(image_rows, caption_rows)] = block
                        bar.update(1)
                        elapsed = time.perf_counter() - pair_start - stats.encode_seconds
                        if stats.pairs_scored and elapsed > 0:
                            bar.set_postfix(pairs_per_s=f"{stats.pairs_scored / elapsed:,.0f}", refresh=False)
                        if on_block is not None:
                            on_block(stats.blocks_loaded + stats.blocks_computed, stats.blocks_total)
            finally:
                bar.close()
                stats.pair_seconds = time.perf_counter() - pair_start - stats.encode_seconds
                self.last_stats = stats
        return scores

    def first_stage_scores(
        self, text_inputs: Mapping[str, Any], image_inputs: Mapping[str, Any], first_stage: str = "dual-encoder"
    ) -> np.ndarray:
        """Cheap scores `(I, C)` of every pair, for a shortlist (higher = better).

        - ``dual-encoder``: the retrieval decoder applied to the features before co-attention,
          ``v_I = summary_I(i)``, ``v_S = summary_S(s)``, ``score = v_I^T W v_S``: one matrix product over all pairs.
        - ``first-layer``: the first co-attention layer per pair (its factorised form, ~1% of an exact score's
          multiply-adds at the paper's size), pooled with the summary networks' weights of the features before
          co-attention (computed once per item), then ``v_I^T W v_S``. It is bound by memory traffic (one pass
          over every pair's first-layer activations): 5-25x faster than exact scoring on a 2-core CPU, about 10x
          slower than the dual encoder; but it sees the pair through co-attention and shortlists much closer to
          the exact ranking.
        """
        if first_stage not in FIRST_STAGES:
            raise ValueError(f"first_stage must be one of {FIRST_STAGES}, got {first_stage!r}")
        with self._scoring_mode():
            input_ids, text_mask = _prepare_text(text_inputs)
            features, image_mask, boxes = _prepare_images(image_inputs, self.model.config.region_feature_dim)
            image_blocks, caption_blocks = self._blocks(text_mask, image_mask)
            return self._first_stage_scores(
                first_stage,
                self._encode_captions(input_ids, text_mask),
                self._encode_images(features, image_mask, boxes),
                image_blocks,
                caption_blocks,
            )

    def dual_encoder_scores(self, text_inputs: Mapping[str, Any], image_inputs: Mapping[str, Any]) -> np.ndarray:
        """``first_stage_scores(..., "dual-encoder")``."""
        return self.first_stage_scores(text_inputs, image_inputs, "dual-encoder")

    # ----------------------------------------------------------------------------------------------------------
    # Per-modality work
    # ----------------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _scoring_mode(self):
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            self.model.train(was_training)

    def _autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    @property
    def _layers(self) -> list[torch.nn.Module]:
        """The co-attention layers up to the retrieval decoder's."""
        return list(self.model.hierarchical_vl.encoder.layers[: self.num_layers])

    @property
    def _first_layer(self) -> torch.nn.Module:
        return self.model.hierarchical_vl.encoder.layers[0]

    def _arrange_layer(self, layer: torch.nn.Module) -> _LaterLayer:
        d = self.model.config.hidden_size
        store = self.dtype or torch.float32
        zeros = layer.text_fusion.bias.new_zeros(d)
        text_weight, image_weight = layer.text_fusion.weight, layer.image_fusion.weight  # (d, 2d) each
        text_stack = torch.cat([layer.text_projection.weight, text_weight[:, :d], image_weight[:, d:]])
        image_stack = torch.cat([layer.image_projection.weight, image_weight[:, :d], text_weight[:, d:]])
        text_null, image_null = layer.text_null_tokens, layer.image_null_tokens  # (K, d)
        return _LaterLayer(
            text_stack=text_stack.to(store),
            text_bias=torch.cat([zeros, layer.text_fusion.bias, zeros]),
            image_stack=image_stack.to(store),
            image_bias=torch.cat([zeros, layer.image_fusion.bias, zeros]),
            text_null=text_null,
            image_null=image_null,
            text_null_heads=self._split_heads(layer.text_projection(text_null).unsqueeze(0))[0],
            image_null_heads=self._split_heads(layer.image_projection(image_null).unsqueeze(0))[0],
            text_null_cross=F.linear(text_null, image_weight[:, d:]),
            image_null_cross=F.linear(image_null, text_weight[:, d:]),
            scale=layer.scale,
        )

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, d = x.shape
        h = self._first_layer.num_heads
        return x.view(batch, length, h, d // h).transpose(1, 2)  # (B, h, L, d/h)

    def _encode_captions(self, input_ids: torch.Tensor, mask: torch.Tensor) -> _CaptionEncodings:
        base, layer = self.model.hierarchical_vl, self._first_layer
        d = self.model.config.hidden_size
        store = self.dtype or torch.float32
        null_image = self._split_heads(layer.image_projection(layer.image_null_tokens).unsqueeze(0))[0]  # (h, K, d/h)
        w_own, w_cross = layer.text_fusion.weight[:, :d], layer.image_fusion.weight[:, d:]  # (d, d) each
        parts: dict[str, list[torch.Tensor]] = {key: [] for key in ("s", "p", "null", "own", "cross")}
        for start in range(0, input_ids.shape[0], self.encode_batch_size):
            ids = input_ids[start : start + self.encode_batch_size].to(self.device)
            rows_mask = mask[start : start + self.encode_batch_size].to(self.device)
            s = base.embed_text(ids, rows_mask).float()  # (b, N, d)
            projection = self._split_heads(layer.text_projection(s))  # (b, h, N, d/h)
            null_s = layer.text_null_tokens.unsqueeze(0).expand(s.shape[0], -1, -1)  # (b, K, d)
            parts["s"].append(s)
            parts["p"].append(projection.to(store))
            parts["null"].append(torch.matmul(projection, null_image.transpose(-1, -2)) * layer.scale)  # (b, h, N, K)
            parts["own"].append(F.linear(s, w_own, layer.text_fusion.bias))  # (b, N, d)
            parts["cross"].append(F.linear(torch.cat([null_s, s], dim=1), w_cross).to(store))  # (b, K+N, d)
        return _CaptionEncodings(
            features=torch.cat(parts["s"]),
            mask=mask.to(self.device),
            projection=torch.cat(parts["p"]),
            null_affinity=torch.cat(parts["null"]),
            own_fusion=torch.cat(parts["own"]),
            cross_fusion=torch.cat(parts["cross"]),
            lengths=mask.sum(dim=1).numpy(),
        )

    def _encode_images(
        self, region_features: torch.Tensor, mask: torch.Tensor, boxes: torch.Tensor | None
    ) -> _ImageEncodings:
        base, layer = self.model.hierarchical_vl, self._first_layer
        d = self.model.config.hidden_size
        store = self.dtype or torch.float32
        null_text = self._split_heads(layer.text_projection(layer.text_null_tokens).unsqueeze(0))[0]  # (h, K, d/h)
        w_own, w_cross = layer.image_fusion.weight[:, :d], layer.text_fusion.weight[:, d:]  # (d, d) each
        parts: dict[str, list[torch.Tensor]] = {key: [] for key in ("i", "p", "null", "own", "cross")}
        for start in range(0, region_features.shape[0], self.encode_batch_size):
            rows = slice(start, start + self.encode_batch_size)
            row_boxes = None if boxes is None else boxes[rows].to(self.device)
            i = base.embed_image(region_features[rows].to(self.device), row_boxes).float()  # (b, T, d)
            projection = self._split_heads(layer.image_projection(i))  # (b, h, T, d/h)
            null_i = layer.image_null_tokens.unsqueeze(0).expand(i.shape[0], -1, -1)  # (b, K, d)
            parts["i"].append(i)
            parts["p"].append(projection.to(store))
            parts["null"].append(torch.matmul(projection, null_text.transpose(-1, -2)) * layer.scale)  # (b, h, T, K)
            parts["own"].append(F.linear(i, w_own, layer.image_fusion.bias))  # (b, T, d)
            parts["cross"].append(F.linear(torch.cat([null_i, i], dim=1), w_cross).to(store))  # (b, K+T, d)
        return _ImageEncodings(
            features=torch.cat(parts["i"]),
            mask=mask.to(self.device),
            projection=torch.cat(parts["p"]),
            null_affinity=torch.cat(parts["null"]),
            own_fusion=torch.cat(parts["own"]),
            cross_fusion=torch.cat(parts["cross"]),
            lengths=mask.sum(dim=1).numpy(),
        )

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

    def _first_stage_scores(
        self,
        first_stage: str,
        captions: _CaptionEncodings,
        images: _ImageEncodings,
        image_blocks: list[np.ndarray],
        caption_blocks: list[np.ndarray],
    ) -> np.ndarray:
        if first_stage == "dual-encoder":
            return self._dual_encoder_scores(captions, images)
        decoder = self.model.retrieval_decoder
        step = self.encode_batch_size
        text_weights = torch.cat(
            [
                decoder.text_summary(captions.features[c : c + step], captions.mask[c : c + step])[1]
                for c in range(0, captions.features.shape[0], step)
            ]
        )  # (C, N)
        image_weights = torch.cat(
            [
                decoder.image_summary(images.features[i : i + step], images.mask[i : i + step])[1]
                for i in range(0, images.features.shape[0], step)
            ]
        )  # (I, T)
        scores = np.empty((images.features.shape[0], captions.features.shape[0]), dtype=np.float32)
        for image_rows in image_blocks:
            for caption_rows in caption_blocks:
                scores[np.ix_(image_rows, caption_rows)] = self._first_layer_proxy_block(
                    captions, images, text_weights, image_weights, image_rows, caption_rows
                )
        return scores

    def _dual_encoder_scores(self, captions: _CaptionEncodings, images: _ImageEncodings) -> np.ndarray:
        decoder = self.model.retrieval_decoder
        step = self.encode_batch_size
        text_vectors = torch.cat(
            [
                decoder.bilinear(decoder.text_summary(captions.features[c : c + step], captions.mask[c : c + step])[0])
                for c in range(0, captions.features.shape[0], step)
            ]
        )  # (C, d): W v_S
        image_vectors = torch.cat(
            [
                decoder.image_summary(images.features[i : i + step], images.mask[i : i + step])[0]
                for i in range(0, images.features.shape[0], step)
            ]
        )  # (I, d)
        return (image_vectors @ text_vectors.T).float().cpu().numpy()  # (I, C)

    # ----------------------------------------------------------------------------------------------------------
    # Pair work
    # ----------------------------------------------------------------------------------------------------------

    def _score_block(
        self,
        pair_scores: Callable[[torch.Tensor, torch.Tensor, int, int], torch.Tensor],
        captions: _CaptionEncodings,
        images: _ImageEncodings,
        image_rows: np.ndarray,
        caption_rows: np.ndarray,
        block_mask: np.ndarray | None,
    ) -> tuple[np.ndarray, int]:
        """Scores `(len(image_rows), len(caption_rows))` of one block (``-inf`` outside ``block_mask``).

        ``pair_scores(caption_index, image_index, num_words, num_regions)`` scores a batch of pairs.
        """
        n_img, n_cap = len(image_rows), len(caption_rows)
        block = np.full((n_img, n_cap), -np.inf, dtype=np.float32)
        if block_mask is None:
            local_image = np.repeat(np.arange(n_img), n_cap)  # (P,) image-major grid
            local_caption = np.tile(np.arange(n_cap), n_img)
        else:
            local_image, local_caption = np.nonzero(block_mask)
        if local_image.size == 0:
            return block, 0
        # Trim the block to its longest caption and largest image: padding never changes a real token's output.
        num_words = int(captions.lengths[caption_rows].max())
        num_regions = int(images.lengths[image_rows].max())
        image_index = torch.as_tensor(image_rows[local_image], device=self.device)  # (P,)
        caption_index = torch.as_tensor(caption_rows[local_caption], device=self.device)
        logits = []
        for start in range(0, local_image.size, self.batch_size):
            stop = start + self.batch_size
            with self._autocast():
                batch = pair_scores(caption_index[start:stop], image_index[start:stop], num_words, num_regions)
            logits.append(batch.float())
        # One device-to-host copy per block keeps the GPU queue full between batches.
        block[local_image, local_caption] = torch.cat(logits).cpu().numpy()
        return block, int(local_image.size)

    def _score_pairs(
        self,
        captions: _CaptionEncodings,
        images: _ImageEncodings,
        later_layers: list[_LaterLayer],
        t: torch.Tensor,  # (B,) caption rows
        i: torch.Tensor,  # (B,) image rows
        num_words: int,
        num_regions: int,
    ) -> torch.Tensor:
        """Exact matching logits `(B,)` of the pairs ``(images[i], captions[t])``."""
        text, image, text_mask, image_mask = self._first_layer_pairs(captions, images, t, i, num_words, num_regions)
        # Layers 2 .. l(retrieval) on the pair batch, then the decoder as the model runs it.
        for later in later_layers:
            text, image = self._later_layer(later, text, image, text_mask, image_mask)
        logits, _, _ = self.model.retrieval_decoder(text, image, text_mask, image_mask)
        return logits  # (B,)

    def _first_layer_proxy_block(
        self,
        captions: _CaptionEncodings,
        images: _ImageEncodings,
        text_weights: torch.Tensor,  # (C, N) summary weights of the words before co-attention
        image_weights: torch.Tensor,  # (I, T) summary weights of the regions before co-attention
        image_rows: np.ndarray,
        caption_rows: np.ndarray,
    ) -> np.ndarray:
        """First-stage scores `(len(image_rows), len(caption_rows))`: the first layer on every pair of the block,
        pooled with per-item weights, then ``v_I^T W v_S``.

        The block is a full grid, so nothing is gathered per pair: the attention products run as one batched
        product per image (``A_w2r @ (I_ext W_S2^T)``) and per caption (``A_r2w @ (S_ext W_I2^T)``), and the
        residual part of the pooled vectors (``sum_n w_n s_n``) is computed once per item.
        """
        layer = self._first_layer
        k = layer.num_null_tokens
        n = int(captions.lengths[caption_rows].max())
        r = int(images.lengths[image_rows].max())
        q = torch.as_tensor(caption_rows, device=self.device)
        text_projection = captions.projection[:, :, :n][q]  # (Q, h, N, d/h)
        text_null = captions.null_affinity[:, :, :n][q].float()  # (Q, h, N, K)
        text_mask = captions.mask[:, :n][q]  # (Q, N)
        text_own = captions.own_fusion[:, :n][q]  # (Q, N, d)
        text_cross = captions.cross_fusion[:, : k + n][q]  # (Q, K+N, d)
        text_weight = text_weights[:, :n][q]  # (Q, N)
        text_pooled = torch.einsum("qn,qnd->qd", text_weight, captions.features[:, :n][q])  # (Q, d)
        num_captions = len(caption_rows)
        step = max(1, self.batch_size // num_captions)
        scores = []
        for start in range(0, len(image_rows), step):
            i = torch.as_tensor(image_rows[start : start + step], device=self.device)
            with self._autocast():
                image_projection = images.projection[:, :, :r][i]  # (R, h, T, d/h)
                image_mask = images.mask[:, :r][i]  # (R, T)
                num_images = len(i)
                affinity = torch.einsum("qhne,rhte->rqhnt", text_projection, image_projection).float() * layer.scale
                floor = torch.finfo(affinity.dtype).min
                shape = (num_images, num_captions, *text_null.shape[1:])
                word_to_region = torch.cat(
                    [text_null.unsqueeze(0).expand(shape),
                     affinity.masked_fill(~image_mask[:, None, None, None, :], floor)],
                    dim=-1,
                ).softmax(dim=-1).mean(dim=2)  # (R, Q, N, K+T)
                image_null = images.null_affinity[:, :, :r][i].float()  # (R, h, T, K)
                region_to_word = torch.cat(
                    [image_null.unsqueeze(1).expand(num_images, num_captions, *image_null.shape[1:]),
                     affinity.transpose(-1, -2).masked_fill(~text_mask[None, :, None, None, :], floor)],
                    dim=-1,
                ).softmax(dim=-1).mean(dim=2)  # (R, Q, T, K+N)
                image_cross = images.cross_fusion[:, : k + r][i]  # (R, K+T, d)
                text_term = torch.bmm(
                    word_to_region.reshape(num_images, num_captions * n, k + r).to(image_cross.dtype), image_cross
                ).view(num_images, num_captions, n, -1)  # (R, Q, N, d)
                image_term = torch.bmm(
                    region_to_word.transpose(0, 1).reshape(num_captions, num_images * r, k + n).to(text_cross.dtype),
                    text_cross,
                ).view(num_captions, num_images, r, -1).transpose(0, 1)  # (R, Q, T, d)
                text_vector = text_pooled + torch.einsum(
                    "qn,rqnd->rqd", text_weight.to(text_term.dtype), F.relu(text_own + text_term)
                )  # (R, Q, d)
                image_own = images.own_fusion[:, :r][i].unsqueeze(1)  # (R, 1, T, d)
                image_weight = image_weights[:, :r][i]  # (R, T)
                image_pooled = torch.einsum("rt,rtd->rd", image_weight, images.features[:, :r][i])  # (R, d)
                image_vector = image_pooled.unsqueeze(1) + torch.einsum(
                    "rt,rqtd->rqd", image_weight.to(image_term.dtype), F.relu(image_own + image_term)
                )  # (R, Q, d)
                logits = (image_vector * self.model.retrieval_decoder.bilinear(text_vector)).sum(dim=-1)  # (R, Q)
            scores.append(logits.float())
        return torch.cat(scores).cpu().numpy()

    def _first_layer_pairs(
        self,
        captions: _CaptionEncodings,
        images: _ImageEncodings,
        t: torch.Tensor,  # (B,) caption rows
        i: torch.Tensor,  # (B,) image rows
        num_words: int,
        num_regions: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first layer's outputs of a pair batch: ``(text (B, N, d), image (B, T, d), text_mask, image_mask)``."""
        n, r = num_words, num_regions
        layer = self._first_layer
        k = layer.num_null_tokens
        text_mask = captions.mask[:, :n][t]  # (B, N)
        image_mask = images.mask[:, :r][i]  # (B, T)

        # Layer 1, factorised: only the affinities and the attention products depend on the pair.
        affinity = torch.matmul(
            captions.projection[:, :, :n][t], images.projection[:, :, :r][i].transpose(-1, -2)
        ).float() * layer.scale  # (B, h, N, T)
        floor = torch.finfo(affinity.dtype).min
        word_scores = torch.cat(
            [captions.null_affinity[:, :, :n][t].float(), affinity.masked_fill(~image_mask[:, None, None, :], floor)],
            dim=-1,
        )  # (B, h, N, K+T)
        word_to_region = word_scores.softmax(dim=-1).mean(dim=1)  # (B, N, K+T)
        region_scores = torch.cat(
            [
                images.null_affinity[:, :, :r][i].float(),
                affinity.transpose(-1, -2).masked_fill(~text_mask[:, None, None, :], floor),
            ],
            dim=-1,
        )  # (B, h, T, K+N)
        region_to_word = region_scores.softmax(dim=-1).mean(dim=1)  # (B, T, K+N)
        image_cross = images.cross_fusion[:, : k + r][i]  # (B, K+T, d) = I_ext W_S2^T
        text_cross = captions.cross_fusion[:, : k + n][t]  # (B, K+N, d) = S_ext W_I2^T
        text_fused = captions.own_fusion[:, :n][t] + torch.bmm(word_to_region.to(image_cross.dtype), image_cross)
        image_fused = images.own_fusion[:, :r][i] + torch.bmm(region_to_word.to(text_cross.dtype), text_cross)
        text = captions.features[:, :n][t] + F.relu(text_fused)  # (B, N, d)
        image = images.features[:, :r][i] + F.relu(image_fused)  # (B, T, d)
        return text, image, text_mask, image_mask

    def _later_layer(
        self,
        layer: _LaterLayer,
        text: torch.Tensor,  # (B, N, d)
        image: torch.Tensor,  # (B, T, d)
        text_mask: torch.Tensor,  # (B, N) bool
        image_mask: torch.Tensor,  # (B, T) bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One co-attention layer on a pair batch, equal to `DenseCoAttentionLayer.forward` in eval mode.

        The fusion's cross term ``W_2 @ (A @ X_ext)`` is computed as ``A @ (X_ext W_2^T)`` when the attending
        sequence is the longer one (the other modality's null rows of ``X_ext W_2^T`` are constants): the `d x d`
        product then runs over the shorter sequence only. With 14 words and 36 regions that saves 36 - 14 token
        products per layer. The null-null block of the affinity, which the layer never reads, is not computed.
        """
        d = text.shape[-1]
        num_words, num_regions = text.shape[1], image.shape[1]
        words_first = num_words <= num_regions  # the words are the shorter sequence
        text_rows = 3 * d if words_first else 2 * d
        image_rows = 2 * d if words_first else 3 * d
        text_all = F.linear(text, layer.text_stack[:text_rows], layer.text_bias[:text_rows])  # (B, N, 2d or 3d)
        image_all = F.linear(image, layer.image_stack[:image_rows], layer.image_bias[:image_rows])  # (B, T, ...)
        text_projection = self._split_heads(text_all[..., :d])  # (B, h, N, d/h)
        image_projection = self._split_heads(image_all[..., :d])  # (B, h, T, d/h)

        affinity = torch.matmul(text_projection, image_projection.transpose(-1, -2)).float() * layer.scale
        floor = torch.finfo(affinity.dtype).min
        word_null = torch.matmul(text_projection, layer.image_null_heads.to(text_projection.dtype).transpose(-1, -2))
        region_null = torch.matmul(image_projection, layer.text_null_heads.to(image_projection.dtype).transpose(-1, -2))
        word_scores = torch.cat(
            [word_null.float() * layer.scale, affinity.masked_fill(~image_mask[:, None, None, :], floor)], dim=-1
        )  # (B, h, N, K+T)
        region_scores = torch.cat(
            [
                region_null.float() * layer.scale,
                affinity.transpose(-1, -2).masked_fill(~text_mask[:, None, None, :], floor),
            ],
            dim=-1,
        )  # (B, h, T, K+N)
        k = layer.text_null.shape[0]
        word_to_region = word_scores.softmax(dim=-1).mean(dim=1)  # (B, N, K+T)
        region_to_word = region_scores.softmax(dim=-1).mean(dim=1)  # (B, T, K+N)

        if words_first:
            # Words: W_S2 i_hat directly. Regions: A_r2w @ (S_ext W_I2^T), S W_I2^T from the stacked product.
            image_hat = torch.bmm(word_to_region[..., k:].to(image.dtype), image) + torch.matmul(
                word_to_region[..., :k].to(image.dtype), layer.image_null.to(image.dtype)
            )  # (B, N, d)
            text_cross = F.linear(image_hat, layer.image_stack[2 * d :])  # (B, N, d)
            image_cross = torch.bmm(region_to_word[..., k:].to(text_all.dtype), text_all[..., 2 * d :]) + torch.matmul(
                region_to_word[..., :k], layer.text_null_cross
            )  # (B, T, d)
        else:
            text_hat = torch.bmm(region_to_word[..., k:].to(text.dtype), text) + torch.matmul(
                region_to_word[..., :k].to(text.dtype), layer.text_null.to(text.dtype)
            )  # (B, T, d)
            image_cross = F.linear(text_hat, layer.text_stack[2 * d :])  # (B, T, d)
            text_cross = torch.bmm(word_to_region[..., k:].to(image_all.dtype), image_all[..., 2 * d :]) + torch.matmul(
                word_to_region[..., :k], layer.image_null_cross
            )  # (B, N, d)
        text = text + F.relu(text_all[..., d : 2 * d] + text_cross)
        image = image + F.relu(image_all[..., d : 2 * d] + image_cross)
        return text, image

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
            _atomic_write_text(manifest_path, json.dumps(manifest, indent=2))
        return cache_dir

    def stats_dict(self) -> dict[str, float]:
        """The last call's `ScoringStats` as a flat dict (with ``pairs_per_second``)."""
        values = asdict(self.last_stats)
        rate = self.last_stats.pairs_per_second
        values["pairs_per_second"] = rate if math.isfinite(rate) else 0.0
        return values
