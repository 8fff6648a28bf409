"""The building blocks of the hierarchical vision-language model (Nguyen & Okatani, CVPR 2019).

The language and image encoders, the dense co-attention layer and its stack, the summary network, and the three task
decoders, each computing its task's scores and, given labels, its loss. `modeling_hierarchical_vl` assembles them
into the pretrained model classes.

Notation in shape comments: B batch, N words, T regions, K null tokens, h heads, d hidden size, F region feature
width, H phrases, A answers, G summary glimpses, L a sequence of either modality.

This file imports nothing else from the package but its configuration, so that a saved checkpoint can carry it as
remote code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .configuration_hierarchical_vl import HierarchicalVLConfig

__all__ = [
    "CoAttentionTerms",
    "DenseCoAttentionLayer",
    "HierarchicalVLEncoder",
    "HierarchicalVLGroundingDecoder",
    "HierarchicalVLImageEncoder",
    "HierarchicalVLLanguageEncoder",
    "HierarchicalVLRetrievalDecoder",
    "HierarchicalVLVQADecoder",
    "SummaryNetwork",
    "box_geometry",
]


def _masked_fill_min(scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Fill the positions where ``keep`` is False with the dtype's most negative value."""
    return scores.masked_fill(~keep, torch.finfo(scores.dtype).min)


def _linear_parameters(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(weight (out, in), bias (out,) or None)`` of a linear layer, plain or dynamically quantised.

    A dynamically quantised ``Linear`` (int8 inference) exposes ``weight()`` and ``bias()`` as methods, the weight
    a quantised tensor; its dequantised value is returned then.
    """
    if callable(layer.weight):
        return layer.weight().dequantize(), layer.bias()
    return layer.weight, layer.bias


def _input_dtype(layer: nn.Module) -> torch.dtype:
    """The floating dtype a linear layer takes: its weight's, float32 for a dynamically quantised one."""
    weight = layer.weight
    return torch.float32 if callable(weight) else weight.dtype


# --------------------------------------------------------------------------------------------------------------
# Encoders of each modality
# --------------------------------------------------------------------------------------------------------------


class HierarchicalVLLanguageEncoder(nn.Module):
    """Word embeddings (GloVe-initialisable) and a bidirectional LSTM, projected to d.

    ``output = Linear(Dropout([embedding ; lstm_out]))``: `(B, N, E + 2 * lstm_hidden) -> (B, N, d)`, the dropout
    being ``config.text_projection_dropout``. The learned initial states h0 and c0 are together DCN's single
    `(2 * 2L, H)` parameter.
    Sequences are packed, so padding never reaches the real words' states.
    """

    def __init__(self, config: HierarchicalVLConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.word_embedding_dim, padding_idx=0)
        self.word_embeddings.weight.requires_grad = not config.freeze_word_embeddings
        self.lstm = nn.LSTM(
            config.word_embedding_dim,
            config.lstm_hidden_size,
            num_layers=config.lstm_num_layers,
            bidirectional=True,
            batch_first=True,
            dropout=config.lstm_dropout if config.lstm_num_layers > 1 else 0.0,
        )
        state_shape = (2 * config.lstm_num_layers, config.lstm_hidden_size)
        self.initial_hidden = nn.Parameter(torch.zeros(state_shape))  # (2L, H) learned h0
        self.initial_cell = nn.Parameter(torch.zeros(state_shape))  # (2L, H) learned c0
        self.dropout = nn.Dropout(config.text_projection_dropout)
        self.projection = nn.Linear(config.word_embedding_dim + 2 * config.lstm_hidden_size, config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        batch_size, num_words = input_ids.shape
        embeddings = self.word_embeddings(input_ids)  # (B, N, E)
        lengths = attention_mask.sum(dim=1).to("cpu", torch.int64)  # (B,)
        packed = pack_padded_sequence(embeddings, lengths, batch_first=True, enforce_sorted=False)
        h0 = self.initial_hidden.unsqueeze(1).expand(-1, batch_size, -1).contiguous()  # (2L, B, H)
        c0 = self.initial_cell.unsqueeze(1).expand(-1, batch_size, -1).contiguous()
        packed_out, _ = self.lstm(packed, (h0.to(embeddings.dtype), c0.to(embeddings.dtype)))
        lstm_out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=num_words)  # (B, N, 2H)
        features = torch.cat([embeddings, lstm_out.to(embeddings.dtype)], dim=-1)  # (B, N, E + 2H)
        return self.projection(self.dropout(features))  # (B, N, d)


def box_geometry(region_boxes: torch.Tensor) -> torch.Tensor:
    """The geometry of each region that the box embedding reads, as LXMERT and UNITER feed it.

    Args:
        region_boxes: `(..., 4)` boxes x1 y1 x2 y2 divided by the image's width and height (``region_boxes`` of
            the processor), zeros for padding regions.

    Returns:
        `(..., 5)` ``(x1 / W, y1 / H, x2 / W, y2 / H, area / (W * H))`` in the boxes' dtype; zeros for padding.
    """
    width = region_boxes[..., 2] - region_boxes[..., 0]  # (...)
    height = region_boxes[..., 3] - region_boxes[..., 1]  # (...)
    return torch.cat([region_boxes, (width * height).unsqueeze(-1)], dim=-1)  # (..., 5)


class HierarchicalVLImageEncoder(nn.Module):
    """Linear projection of region features to d followed by L2 normalisation of each region vector.

    With ``config.use_box_embedding`` a learned projection of each region's [`box_geometry`] (x1/W, y1/H, x2/W,
    y2/H, area/(W*H)) is added to its projected features before the normalisation (an extension, off in the paper's
    model and by default).
    """

    def __init__(self, config: HierarchicalVLConfig):
        super().__init__()
        self.projection = nn.Linear(config.region_feature_dim, config.hidden_size)
        self.box_projection = nn.Linear(5, config.hidden_size) if config.use_box_embedding else None

    def forward(self, region_features: torch.Tensor, region_boxes: torch.Tensor | None = None) -> torch.Tensor:
        features = self.projection(region_features.to(_input_dtype(self.projection)))  # (B, T, d)
        if self.box_projection is not None:
            if region_boxes is None:
                raise ValueError("this model uses box embeddings (config.use_box_embedding): pass region_boxes")
            geometry = box_geometry(region_boxes.to(features.dtype))  # (B, T, 5)
            features = features + self.box_projection(geometry)  # (B, T, d)
        return F.normalize(features, p=2, dim=-1)


# --------------------------------------------------------------------------------------------------------------
# Dense co-attention
# --------------------------------------------------------------------------------------------------------------


@dataclass
class CoAttentionTerms:
    """What a dense co-attention layer computes from one modality alone (rows are examples, or items to pair).

    The layer's work splits into terms of one modality (these) and the pair step (`attention_maps`, `fuse`). Pair
    scoring computes the first layer's terms once per caption and once per image and gathers them per pair.

    Args:
        features: `(B, L, d)` the layer's input features of this modality.
        mask: `(B, L)` bool, True for real tokens.
        projection: `(B, L, d)` the bias-free projection ``P = W_p x`` that the affinity reads.
        own: `(B, L, d)` or ``None``: ``W_1 x + b``, this modality's own term of its fusion layer
            (the factorised fusion; computed when the other modality's ``cross`` is given).
        cross: `(B, K + L, d)` or ``None``: ``[null ; x] W_2'^T``, the term of the other modality's fusion that reads
            this modality. With it, the other modality's fusion costs one attention product instead of a `d x d`
            product per token: ``W_2' (A @ X_ext) = A @ (X_ext W_2'^T)``.
    """

    features: torch.Tensor
    mask: torch.Tensor
    projection: torch.Tensor
    own: torch.Tensor | None = None
    cross: torch.Tensor | None = None

    def select(self, rows: torch.Tensor, length: int | None = None) -> CoAttentionTerms:
        """The terms of ``rows`` (`(P,)` indices), trimmed to the first ``length`` tokens."""
        length = self.features.shape[1] if length is None else length
        num_null = None if self.cross is None else self.cross.shape[1] - self.features.shape[1]

        def take(tensor: torch.Tensor | None, extra: int = 0) -> torch.Tensor | None:
            return None if tensor is None else tensor[:, : extra + length][rows]

        return CoAttentionTerms(
            take(self.features),
            take(self.mask),
            take(self.projection),
            take(self.own),
            take(self.cross, num_null or 0),
        )

    @classmethod
    def cat(cls, parts: list[CoAttentionTerms]) -> CoAttentionTerms:
        """Row-wise concatenation of terms computed in batches."""
        return cls(
            **{
                field.name: None
                if getattr(parts[0], field.name) is None
                else torch.cat([getattr(p, field.name) for p in parts])
                for field in fields(cls)
            }
        )


class DenseCoAttentionLayer(nn.Module):
    """One dense co-attention layer (paper Eq. 2-3, DCN's attention with null tokens and heads).

    Both modalities get ``K`` learned null tokens prepended, are projected without bias, and split into ``h`` heads.
    The affinity ``A = P_S P_I^T / sqrt(d / h)`` is normalised over regions (per word) and over words (per region);
    the per-head maps are averaged and applied to the unprojected features. The attended features are fused with a
    residual: ``s' = s + Dropout(ReLU(W_S [s ; i_hat] + b_S))`` and likewise for the regions.

    The computation is split so that pair scoring can reuse it: `modality_terms` (one modality alone),
    `attention_maps` (the affinity and both softmaxes) and `fuse` (the attended features and the fusion);
    ``forward`` is exactly these three steps. `fuse` takes the fusion's cross term in either of two equal forms:
    ``W_2 (A @ X_ext)`` (the plain form, used in training) or ``A @ (X_ext W_2^T)`` when the other modality's terms
    carry ``cross`` (cheaper when ``X_ext W_2^T`` is computed once per item, or when that modality is the shorter one).
    """

    def __init__(self, config: HierarchicalVLConfig):
        super().__init__()
        d = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.num_null_tokens = config.num_null_tokens
        self.scale = 1.0 / math.sqrt(d // self.num_heads)
        self.text_null_tokens = nn.Parameter(torch.zeros(config.num_null_tokens, d))  # (K, d)
        self.image_null_tokens = nn.Parameter(torch.zeros(config.num_null_tokens, d))  # (K, d)
        self.text_projection = nn.Linear(d, d, bias=False)
        self.image_projection = nn.Linear(d, d, bias=False)
        self.text_fusion = nn.Linear(2 * d, d)
        self.image_fusion = nn.Linear(2 * d, d)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def _parts(self, modality: str) -> tuple[nn.Parameter, nn.Linear, nn.Linear, nn.Linear]:
        """``(null tokens, projection, own fusion, other modality's fusion)`` of ``"text"`` or ``"image"``."""
        if modality == "text":
            return self.text_null_tokens, self.text_projection, self.text_fusion, self.image_fusion
        if modality == "image":
            return self.image_null_tokens, self.image_projection, self.image_fusion, self.text_fusion
        raise ValueError(f"modality must be 'text' or 'image', got {modality!r}")

    def _extend(self, null: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """``[null ; x]``: `(K, d)`, `(B, L, d)` -> `(B, K + L, d)`."""
        return torch.cat([null.to(features.dtype).unsqueeze(0).expand(features.shape[0], -1, -1), features], dim=1)

    def modality_terms(
        self,
        modality: str,
        features: torch.Tensor,
        mask: torch.Tensor,
        *,
        own: bool = False,
        cross: bool = False,
    ) -> CoAttentionTerms:
        """The terms of one modality (``"text"``: `(B, N, d)` words, ``"image"``: `(B, T, d)` regions).

        Args:
            modality: ``"text"`` or ``"image"``.
            features: `(B, L, d)` features.
            mask: `(B, L)` bool mask.
            own: Also compute ``W_1 x + b`` (needed with the other modality's ``cross``).
            cross: Also compute ``[null ; x] W_2'^T`` for the other modality's fusion.
        """
        null, projection, own_fusion, other_fusion = self._parts(modality)
        d = features.shape[-1]
        terms = CoAttentionTerms(features, mask, projection(features))
        if own:
            weight, bias = _linear_parameters(own_fusion)
            terms.own = F.linear(features, weight[:, :d], bias)  # (B, L, d)
        if cross:
            weight, _ = _linear_parameters(other_fusion)
            terms.cross = F.linear(self._extend(null, features), weight[:, d:])  # (B, K+L, d)
        return terms

    def attention_maps(self, text: CoAttentionTerms, image: CoAttentionTerms) -> tuple[torch.Tensor, torch.Tensor]:
        """Head-averaged attention ``(word_to_region (B, N, K+T), region_to_word (B, T, K+N))``.

        Each real word attends over the image null tokens and the valid regions, each real region over the text null
        tokens and the valid words.
        """
        batch_size, num_words, d = text.projection.shape
        num_regions = image.projection.shape[1]
        k, h = self.num_null_tokens, self.num_heads
        # Null tokens: the same K vectors for every example; their projections are computed once.
        text_null = self.text_projection(self.text_null_tokens.to(text.features.dtype))  # (K, d)
        image_null = self.image_projection(self.image_null_tokens.to(image.features.dtype))
        text_proj = self._extend(text_null.to(text.projection.dtype), text.projection)  # (B, K+N, d)
        image_proj = self._extend(image_null.to(image.projection.dtype), image.projection)  # (B, K+T, d)
        queries = text_proj.view(batch_size, k + num_words, h, d // h).transpose(1, 2)  # (B, h, K+N, d/h)
        keys = image_proj.view(batch_size, k + num_regions, h, d // h).transpose(1, 2)  # (B, h, K+T, d/h)
        affinity = torch.matmul(queries, keys.transpose(-1, -2)) * self.scale  # (B, h, K+N, K+T)

        ones = text.mask.new_ones(batch_size, k)
        text_mask = torch.cat([ones, text.mask], dim=1)  # (B, K+N)
        image_mask = torch.cat([ones, image.mask], dim=1)  # (B, K+T)
        word_scores = _masked_fill_min(affinity[:, :, k:, :], image_mask[:, None, None, :])  # (B, h, N, K+T)
        word_to_region = word_scores.softmax(dim=-1).mean(dim=1)  # (B, N, K+T)
        region_scores = _masked_fill_min(
            affinity[:, :, :, k:].transpose(-1, -2), text_mask[:, None, None, :]
        )  # (B, h, T, K+N)
        region_to_word = region_scores.softmax(dim=-1).mean(dim=1)  # (B, T, K+N)
        return word_to_region, region_to_word

    def fuse(
        self,
        text: CoAttentionTerms,
        image: CoAttentionTerms,
        word_to_region: torch.Tensor,  # (B, N, K+T)
        region_to_word: torch.Tensor,  # (B, T, K+N)
        text_extended: torch.Tensor | None = None,  # (B, K+N, d) [null_S ; s], for the plain form
        image_extended: torch.Tensor | None = None,  # (B, K+T, d) [null_I ; i], for the plain form
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's outputs ``(s' (B, N, d), i' (B, T, d))`` from the attention maps.

        A modality whose terms carry ``cross`` is attended in the factorised form ``A @ (X_ext W_2^T)`` (and the
        attending modality's ``own`` term is used or computed); otherwise in the plain form ``W_2 (A @ X_ext)``.
        """
        text_update = self._fusion_input(text, image, word_to_region, image_extended, self.text_fusion)
        image_update = self._fusion_input(image, text, region_to_word, text_extended, self.image_fusion)
        return text.features + self.dropout(F.relu(text_update)), image.features + self.dropout(F.relu(image_update))

    @staticmethod
    def _fusion_input(
        own: CoAttentionTerms,
        other: CoAttentionTerms,
        attention: torch.Tensor,  # (B, L, K+L')
        other_extended: torch.Tensor | None,  # (B, K+L', d)
        fusion: nn.Linear,
    ) -> torch.Tensor:
        """``W [x ; A @ Y_ext] + b`` of one modality, `(B, L, d)`, before the ReLU."""
        if other.cross is None:  # plain form: attend to the unprojected features, then the fusion layer
            attended = torch.bmm(attention.to(other_extended.dtype), other_extended)  # (B, L, d)
            return fusion(torch.cat([own.features, attended], dim=-1))
        own_term = own.own
        if own_term is None:
            weight, bias = _linear_parameters(fusion)
            own_term = F.linear(own.features, weight[:, : own.features.shape[-1]], bias)  # (B, L, d)
        return own_term + torch.bmm(attention.to(other.cross.dtype), other.cross)

    def forward(
        self,
        text: torch.Tensor,  # (B, N, d)
        image: torch.Tensor,  # (B, T, d)
        text_mask: torch.Tensor,  # (B, N) bool
        image_mask: torch.Tensor,  # (B, T) bool
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        return self.forward_terms(
            self.modality_terms("text", text, text_mask),
            self.modality_terms("image", image, image_mask),
            output_attentions,
        )

    def forward_terms(
        self, text: CoAttentionTerms, image: CoAttentionTerms, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """The layer on precomputed terms: ``(s', i', (word_to_region, region_to_word) or None)``."""
        # The sequences the plain fusion form attends to are built first, so that the operations run in the order
        # of the layer's first implementation and gradients accumulate in the same order, bit for bit.
        text_extended = None if text.cross is not None else self._extend(self.text_null_tokens, text.features)
        image_extended = None if image.cross is not None else self._extend(self.image_null_tokens, image.features)
        word_to_region, region_to_word = self.attention_maps(text, image)
        text_out, image_out = self.fuse(text, image, word_to_region, region_to_word, text_extended, image_extended)
        return text_out, image_out, ((word_to_region, region_to_word) if output_attentions else None)


class HierarchicalVLEncoder(nn.Module):
    """A stack of dense co-attention layers that can stop after any layer."""

    def __init__(self, config: HierarchicalVLConfig):
        super().__init__()
        self.layers = nn.ModuleList(DenseCoAttentionLayer(config) for _ in range(config.num_layers))

    def forward(
        self,
        text: torch.Tensor,  # (B, N, d)
        image: torch.Tensor,  # (B, T, d)
        text_mask: torch.Tensor,  # (B, N) bool
        image_mask: torch.Tensor,  # (B, T) bool
        num_layers: int | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> tuple:
        """``(text (B, N, d), image (B, T, d), text states, image states, attention maps)`` after ``num_layers``.

        The states (the input, then each layer's output) and the maps (one ``(word_to_region, region_to_word)``
        pair per layer) are ``None`` unless asked for.
        """
        num_layers = len(self.layers) if num_layers is None else num_layers
        if not 1 <= num_layers <= len(self.layers):
            raise ValueError(f"num_layers must be in 1..{len(self.layers)}, got {num_layers}")
        text_states = (text,) if output_hidden_states else None
        image_states = (image,) if output_hidden_states else None
        attentions = () if output_attentions else None
        for layer in self.layers[:num_layers]:
            text, image, layer_attentions = layer(text, image, text_mask, image_mask, output_attentions)
            if output_hidden_states:
                text_states += (text,)
                image_states += (image,)
            if output_attentions:
                attentions += (layer_attentions,)
        return text, image, text_states, image_states, attentions


# --------------------------------------------------------------------------------------------------------------
# Decoders: each computes its task's scores and, given labels, its loss
# --------------------------------------------------------------------------------------------------------------


class SummaryNetwork(nn.Module):
    """Attention pooling with G glimpses (paper Eq. 4-6).

    ``MLP(d -> d, ReLU, Dropout(config.summary_dropout), d -> G)`` scores each element (DCN has no dropout there:
    ``summary_dropout`` 0); a masked softmax over the sequence gives G maps that are averaged; the summary is the
    weighted sum of the features.
    """

    def __init__(self, config: HierarchicalVLConfig):
        super().__init__()
        self.hidden = nn.Linear(config.hidden_size, config.hidden_size)
        # No bias: a constant added to every element's score cancels in the softmax over the sequence.
        self.scores = nn.Linear(config.hidden_size, config.summary_glimpses, bias=False)
        self.dropout = nn.Dropout(config.summary_dropout)

    def weights(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`(B, L)` pooling weights of `(B, L, d)` features (the mean of the G glimpses' softmaxes)."""
        scores = self.scores(self.dropout(F.relu(self.hidden(features))))  # (B, L, G)
        scores = _masked_fill_min(scores.float(), mask.unsqueeze(-1))
        return scores.softmax(dim=1).mean(dim=-1)  # (B, L)

    @staticmethod
    def pool(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The summary vector `(B, d)`: features `(B, L, d)` weighted by `(B, L)`."""
        return torch.bmm(weights.to(features.dtype).unsqueeze(1), features).squeeze(1)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = self.weights(features, mask)
        return self.pool(features, weights), weights


class HierarchicalVLVQADecoder(nn.Module):
    """``sigmoid(MLP([v_I ; v_S]))``: two summary networks and an MLP over the answer pool (paper Eq. 8).

    Loss: soft-score binary cross-entropy, summed over the answer pool and averaged over the batch.
    """

    extra_inputs: tuple[str, ...] = ()
    """Model inputs of the task besides text and regions (passed to ``forward`` by keyword)."""

    def __init__(self, config: HierarchicalVLConfig):
        super().__init__()
        self.text_summary = SummaryNetwork(config)
        self.image_summary = SummaryNetwork(config)
        self.classifier = nn.Sequential(
            nn.Linear(2 * config.hidden_size, config.hidden_size),
            nn.ReLU(),
            nn.Dropout(config.hidden_dropout),
            nn.Linear(config.hidden_size, config.num_answers),
        )

    def forward(self, text, image, text_mask, image_mask, labels=None) -> dict[str, torch.Tensor | None]:
        text_vector, text_weights = self.text_summary(text, text_mask)  # (B, d), (B, N)
        image_vector, image_weights = self.image_summary(image, image_mask)  # (B, d), (B, T)
        logits = self.classifier(torch.cat([image_vector, text_vector], dim=-1))  # (B, A)
        loss = None
        if labels is not None:
            _check_labels("VQA", labels, logits, "(batch, answers)")
            loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="sum") / len(logits)
        return {
            "loss": loss,
            "logits": logits,
            "text_attention": text_weights,
            "image_attention": image_weights,
        }


class HierarchicalVLRetrievalDecoder(nn.Module):
    """``sigmoid(v_I^T W v_S)``: two summary networks and a bilinear score (paper Eq. 7).

    Loss: binary cross-entropy over the (image, caption) pairs, averaged.
    """

    extra_inputs: tuple[str, ...] = ()
    """Model inputs of the task besides text and regions (passed to ``forward`` by keyword)."""

    def __init__(self, config: HierarchicalVLConfig):
        super().__init__()
        self.text_summary = SummaryNetwork(config)
        self.image_summary = SummaryNetwork(config)
        self.bilinear = nn.Linear(config.hidden_size, config.hidden_size, bias=False)  # W: v_I^T (W v_S)

    def score(self, image_vector: torch.Tensor, text_vector: torch.Tensor) -> torch.Tensor:
        """``v_I^T W v_S`` of row-aligned summary vectors `(B, d)` -> `(B,)`."""
        return (image_vector * self.bilinear(text_vector)).sum(dim=-1)

    def score_all(self, image_vectors: torch.Tensor, text_vectors: torch.Tensor) -> torch.Tensor:
        """``v_I^T W v_S`` of every pair: `(I, d)`, `(C, d)` -> `(I, C)`."""
        return image_vectors @ self.bilinear(text_vectors).T

    def forward(self, text, image, text_mask, image_mask, labels=None) -> dict[str, torch.Tensor | None]:
        text_vector, text_weights = self.text_summary(text, text_mask)  # (B, d), (B, N)
        image_vector, image_weights = self.image_summary(image, image_mask)  # (B, d), (B, T)
        logits = self.score(image_vector, text_vector)  # (B,)
        loss = None
        if labels is not None:
            _check_labels("retrieval", labels, logits, "(pairs,)")
            loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float())
        return {
            "loss": loss,
            "logits": logits,
            "text_attention": text_weights,
            "image_attention": image_weights,
        }


class HierarchicalVLGroundingDecoder(nn.Module):
    """``sigmoid(p_h^T W i_t)`` with ``p_h`` the mean of the word features over the phrase's span (Eq. 9-10).

    Loss: binary cross-entropy over the valid (phrase, region) pairs, averaged.
    """

    extra_inputs: tuple[str, ...] = ("phrase_spans", "phrase_mask")
    """Model inputs of the task besides text and regions (passed to ``forward`` by keyword)."""

    def __init__(self, config: HierarchicalVLConfig):
        super().__init__()
        self.bilinear = nn.Linear(config.hidden_size, config.hidden_size, bias=False)  # W: p_h^T (W i_t)

    def forward(
        self, text, image, text_mask, image_mask, labels=None, phrase_spans=None, phrase_mask=None
    ) -> dict[str, torch.Tensor | None]:
        phrase_spans, valid = _check_phrases(phrase_spans, phrase_mask, text_mask)
        positions = torch.arange(text.shape[1], device=text.device)  # (N,)
        starts, ends = phrase_spans[..., 0:1], phrase_spans[..., 1:2]  # (B, H, 1)
        in_span = (positions >= starts) & (positions <= ends) & valid.unsqueeze(-1)  # (B, H, N)
        pooling = in_span.to(text.dtype) / in_span.sum(-1, keepdim=True).clamp(min=1).to(text.dtype)
        phrases = torch.bmm(pooling, text)  # (B, H, d)
        logits = torch.bmm(phrases, self.bilinear(image).transpose(1, 2))  # (B, H, T)
        logits = _masked_fill_min(logits, image_mask.unsqueeze(1))
        loss = None
        if labels is not None:
            _check_labels("grounding", labels, logits, "(batch, phrases, regions)")
            pairs = valid.unsqueeze(-1) & image_mask.unsqueeze(1)  # (B, H, T)
            loss = F.binary_cross_entropy_with_logits(logits.float()[pairs], labels.float()[pairs])
        return {"loss": loss, "logits": logits}


def _check_labels(task: str, labels: torch.Tensor, logits: torch.Tensor, shape: str) -> None:
    if labels.shape != logits.shape:
        raise ValueError(f"{task} labels must have shape {tuple(logits.shape)} {shape}, got {tuple(labels.shape)}")


def _check_phrases(
    phrase_spans: torch.Tensor | None, phrase_mask: torch.Tensor | None, text_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated ``(phrase_spans (B, H, 2), valid phrases (B, H) bool)``."""
    if phrase_spans is None:
        raise ValueError("visual grounding needs phrase_spans (batch, phrases, 2) with inclusive word indices")
    if phrase_spans.dim() != 3 or phrase_spans.shape[0] != text_mask.shape[0] or phrase_spans.shape[-1] != 2:
        raise ValueError(f"phrase_spans must have shape (batch, phrases, 2), got {tuple(phrase_spans.shape)}")
    valid = (phrase_spans.new_ones(phrase_spans.shape[:2]) if phrase_mask is None else phrase_mask).bool()
    lengths = text_mask.sum(dim=1, keepdim=True)  # (B, 1)
    starts, ends = phrase_spans[..., 0], phrase_spans[..., 1]
    bad = valid & ((starts < 0) | (ends < starts) | (ends >= lengths))
    if bad.any():
        example, phrase = bad.nonzero()[0].tolist()
        raise ValueError(
            f"phrase {phrase} of example {example} has span {phrase_spans[example, phrase].tolist()} outside its "
            f"{int(lengths[example])} words"
        )
    return phrase_spans, valid
