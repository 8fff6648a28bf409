"""The hierarchical vision-language model of Nguyen & Okatani (CVPR 2019).

A shared encoder of stacked dense co-attention layers fuses region features and word features; task decoders
read the encoder at different depths (grounding at layer 2, image-caption retrieval at 3, VQA at 5 in the paper).
A task only runs the encoder up to its own layer.

Notation in shape comments: B batch, N words, T regions, K null tokens, h heads, d hidden size, F region feature
width, H phrases, A answers, G summary glimpses.

This file imports nothing else from the package but its configuration, so that a saved checkpoint can carry it as
remote code.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_hierarchical_vl import TASKS, HierarchicalVLConfig

__all__ = [
    "DenseCoAttentionLayer",
    "HierarchicalVLEncoder",
    "HierarchicalVLForImageTextRetrieval",
    "HierarchicalVLForMultiTask",
    "HierarchicalVLForVisualGrounding",
    "HierarchicalVLForVisualQuestionAnswering",
    "HierarchicalVLGroundingOutput",
    "HierarchicalVLModel",
    "HierarchicalVLModelOutput",
    "HierarchicalVLPreTrainedModel",
    "HierarchicalVLRetrievalOutput",
    "HierarchicalVLVQAOutput",
    "SummaryNetwork",
]


def _masked_fill_min(scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Fill the positions where ``keep`` is False with the dtype's most negative value."""
    return scores.masked_fill(~keep, torch.finfo(scores.dtype).min)


# --------------------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------------------


@dataclass
class HierarchicalVLModelOutput(ModelOutput):
    r"""Output of the shared encoder.

    Args:
        text_last_hidden_state: `(B, N, d)` word features after the last layer that was run.
        image_last_hidden_state: `(B, T, d)` region features after the last layer that was run.
        text_hidden_states: tuple of `(B, N, d)`, the input features then the output of each layer run
            (returned with ``output_hidden_states=True``).
        image_hidden_states: tuple of `(B, T, d)`, likewise for the regions.
        attentions: tuple with one pair per layer run (returned with ``output_attentions=True``):
            ``word_to_region`` `(B, N, K + T)` (each word's attention over the null tokens then the regions,
            averaged over heads) and ``region_to_word`` `(B, T, K + N)`.
    """

    text_last_hidden_state: torch.Tensor | None = None
    image_last_hidden_state: torch.Tensor | None = None
    text_hidden_states: tuple[torch.Tensor, ...] | None = None
    image_hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None


@dataclass
class HierarchicalVLVQAOutput(ModelOutput):
    r"""Output of the VQA head.

    Args:
        loss: scalar soft-score binary cross-entropy, summed over answers and averaged over the batch
            (returned when ``labels`` is given).
        logits: `(B, A)` answer logits; ``sigmoid(logits)`` are the answer scores.
        text_attention: `(B, N)` the decoder's summary attention over words.
        image_attention: `(B, T)` the decoder's summary attention over regions.
        text_hidden_states, image_hidden_states, attentions: as in [`HierarchicalVLModelOutput`].
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    text_attention: torch.Tensor | None = None
    image_attention: torch.Tensor | None = None
    text_hidden_states: tuple[torch.Tensor, ...] | None = None
    image_hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None


@dataclass
class HierarchicalVLRetrievalOutput(ModelOutput):
    r"""Output of the image-caption retrieval head.

    Args:
        loss: scalar binary cross-entropy averaged over the pairs (returned when ``labels`` is given).
        logits: `(B,)` matching logits of the (image, caption) pairs; ``sigmoid(logits)`` is the paper's score.
        text_attention: `(B, N)` the decoder's summary attention over words.
        image_attention: `(B, T)` the decoder's summary attention over regions.
        text_hidden_states, image_hidden_states, attentions: as in [`HierarchicalVLModelOutput`].
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    text_attention: torch.Tensor | None = None
    image_attention: torch.Tensor | None = None
    text_hidden_states: tuple[torch.Tensor, ...] | None = None
    image_hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None


@dataclass
class HierarchicalVLGroundingOutput(ModelOutput):
    r"""Output of the visual grounding head.

    Args:
        loss: scalar binary cross-entropy averaged over the valid (phrase, region) pairs
            (returned when ``labels`` is given).
        logits: `(B, H, T)` phrase-region logits; padded regions hold the dtype's most negative value.
        text_hidden_states, image_hidden_states, attentions: as in [`HierarchicalVLModelOutput`].
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    text_hidden_states: tuple[torch.Tensor, ...] | None = None
    image_hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None


# --------------------------------------------------------------------------------------------------------------
# Encoders of each modality
# --------------------------------------------------------------------------------------------------------------


class HierarchicalVLLanguageEncoder(nn.Module):
    """Word embeddings (GloVe-initialisable) and a bidirectional LSTM, projected to d.

    ``output = Linear(Dropout([embedding ; lstm_out]))``: `(B, N, E + 2 * lstm_hidden) -> (B, N, d)`.
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
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.projection = nn.Linear(
            config.word_embedding_dim + 2 * config.lstm_hidden_size, config.hidden_size
        )

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


class HierarchicalVLImageEncoder(nn.Module):
    """Linear projection of region features to d followed by L2 normalisation of each region vector.

    With ``config.use_box_embedding`` a projection of the normalised box (x1, y1, x2, y2, area) is added before the
    normalisation (an extension, off in the paper's model).
    """

    def __init__(self, config: HierarchicalVLConfig):
        super().__init__()
        self.projection = nn.Linear(config.region_feature_dim, config.hidden_size)
        self.box_projection = nn.Linear(5, config.hidden_size) if config.use_box_embedding else None

    def forward(
        self, region_features: torch.Tensor, region_boxes: torch.Tensor | None = None
    ) -> torch.Tensor:
        features = self.projection(region_features.to(self.projection.weight.dtype))  # (B, T, d)
        if self.box_projection is not None:
            if region_boxes is None:
                raise ValueError(
                    "this model uses box embeddings (config.use_box_embedding): pass region_boxes"
                )
            boxes = region_boxes.to(features.dtype)  # (B, T, 4) in [0, 1]
            area = ((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])).unsqueeze(-1)
            features = features + self.box_projection(torch.cat([boxes, area], dim=-1))
        return F.normalize(features, p=2, dim=-1)


# --------------------------------------------------------------------------------------------------------------
# Dense co-attention
# --------------------------------------------------------------------------------------------------------------


class DenseCoAttentionLayer(nn.Module):
    """One dense co-attention layer (paper Eq. 2-3, DCN's attention with null tokens and heads).

    Both modalities get ``K`` learned null tokens prepended, are projected without bias, and split into ``h`` heads.
    The affinity ``A = P_S P_I^T / sqrt(d / h)`` is normalised over regions (per word) and over words (per region);
    the per-head maps are averaged and applied to the unprojected features. The attended features are fused with a
    residual: ``s' = s + Dropout(ReLU(W_S [s ; i_hat] + b_S))`` and likewise for the regions.
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

    def project(self, text: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-modality projections ``(P_S, P_I)`` of the real tokens: `(B, N, d)`, `(B, T, d)`.

        They depend on one modality only, so pair scoring can compute them once per caption and per image.
        """
        return self.text_projection(text), self.image_projection(image)

    def forward(
        self,
        text: torch.Tensor,  # (B, N, d)
        image: torch.Tensor,  # (B, T, d)
        text_mask: torch.Tensor,  # (B, N) bool
        image_mask: torch.Tensor,  # (B, T) bool
        projections: tuple[torch.Tensor, torch.Tensor] | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        batch_size, num_words, d = text.shape
        num_regions = image.shape[1]
        k, h = self.num_null_tokens, self.num_heads
        text_proj, image_proj = projections if projections is not None else self.project(text, image)

        # Null tokens: the same K vectors for every example; their projections are computed once.
        text_null = self.text_null_tokens.to(text.dtype).unsqueeze(0).expand(batch_size, -1, -1)  # (B, K, d)
        image_null = self.image_null_tokens.to(image.dtype).unsqueeze(0).expand(batch_size, -1, -1)
        text_ext = torch.cat([text_null, text], dim=1)  # (B, K+N, d)
        image_ext = torch.cat([image_null, image], dim=1)  # (B, K+T, d)
        text_null_proj = self.text_projection(self.text_null_tokens.to(text.dtype))  # (K, d)
        image_null_proj = self.image_projection(self.image_null_tokens.to(image.dtype))
        text_proj_ext = torch.cat([text_null_proj.unsqueeze(0).expand(batch_size, -1, -1), text_proj], dim=1)
        image_proj_ext = torch.cat(
            [image_null_proj.unsqueeze(0).expand(batch_size, -1, -1), image_proj], dim=1
        )

        ones = text_mask.new_ones(batch_size, k)
        text_mask_ext = torch.cat([ones, text_mask], dim=1)  # (B, K+N)
        image_mask_ext = torch.cat([ones, image_mask], dim=1)  # (B, K+T)

        queries = text_proj_ext.view(batch_size, k + num_words, h, d // h).transpose(1, 2)  # (B, h, K+N, d/h)
        keys = image_proj_ext.view(batch_size, k + num_regions, h, d // h).transpose(1, 2)  # (B, h, K+T, d/h)
        affinity = torch.matmul(queries, keys.transpose(-1, -2)) * self.scale  # (B, h, K+N, K+T)

        # Each real word attends over the null image tokens and the valid regions.
        word_scores = _masked_fill_min(
            affinity[:, :, k:, :], image_mask_ext[:, None, None, :]
        )  # (B, h, N, K+T)
        word_to_region = word_scores.softmax(dim=-1).mean(dim=1)  # (B, N, K+T)
        # Each real region attends over the null text tokens and the valid words.
        region_scores = _masked_fill_min(
            affinity[:, :, :, k:].transpose(-1, -2), text_mask_ext[:, None, None, :]
        )  # (B, h, T, K+N)
        region_to_word = region_scores.softmax(dim=-1).mean(dim=1)  # (B, T, K+N)

        image_hat = torch.bmm(word_to_region.to(image_ext.dtype), image_ext)  # (B, N, d)
        text_hat = torch.bmm(region_to_word.to(text_ext.dtype), text_ext)  # (B, T, d)

        text_out = text + self.dropout(F.relu(self.text_fusion(torch.cat([text, image_hat], dim=-1))))
        image_out = image + self.dropout(F.relu(self.image_fusion(torch.cat([image, text_hat], dim=-1))))
        attentions = (word_to_region, region_to_word) if output_attentions else None
        return text_out, image_out, attentions


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
        first_layer_projections: tuple[torch.Tensor, torch.Tensor] | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> HierarchicalVLModelOutput:
        num_layers = len(self.layers) if num_layers is None else num_layers
        if not 1 <= num_layers <= len(self.layers):
            raise ValueError(f"num_layers must be in 1..{len(self.layers)}, got {num_layers}")
        text_states = (text,) if output_hidden_states else None
        image_states = (image,) if output_hidden_states else None
        attentions = () if output_attentions else None
        for index, layer in enumerate(self.layers[:num_layers]):
            projections = first_layer_projections if index == 0 else None
            text, image, layer_attentions = layer(
                text, image, text_mask, image_mask, projections, output_attentions
            )
            if output_hidden_states:
                text_states += (text,)
                image_states += (image,)
            if output_attentions:
                attentions += (layer_attentions,)
        return HierarchicalVLModelOutput(
            text_last_hidden_state=text,
            image_last_hidden_state=image,
            text_hidden_states=text_states,
            image_hidden_states=image_states,
            attentions=attentions,
        )


# --------------------------------------------------------------------------------------------------------------
# Decoders
# --------------------------------------------------------------------------------------------------------------


class SummaryNetwork(nn.Module):
    """Attention pooling with G glimpses (paper Eq. 4-6).

    ``MLP(d -> d, ReLU, d -> G)`` scores each element; a masked softmax over the sequence gives G maps that are
    averaged; the summary is the weighted sum of the features.
    """

    def __init__(self, config: HierarchicalVLConfig):
        super().__init__()
        self.hidden = nn.Linear(config.hidden_size, config.hidden_size)
        # No bias: a constant added to every element's score cancels in the softmax over the sequence.
        self.scores = nn.Linear(config.hidden_size, config.summary_glimpses, bias=False)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.scores(self.dropout(F.relu(self.hidden(features))))  # (B, L, G)
        scores = _masked_fill_min(scores.float(), mask.unsqueeze(-1))
        weights = scores.softmax(dim=1).mean(dim=-1)  # (B, L)
        summary = torch.bmm(weights.to(features.dtype).unsqueeze(1), features).squeeze(1)  # (B, d)
        return summary, weights


class HierarchicalVLVQADecoder(nn.Module):
    """``sigmoid(MLP([v_I ; v_S]))``: two summary networks and an MLP over the answer pool (paper Eq. 8)."""

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

    def forward(self, text, image, text_mask, image_mask):
        text_vector, text_weights = self.text_summary(text, text_mask)  # (B, d), (B, N)
        image_vector, image_weights = self.image_summary(image, image_mask)  # (B, d), (B, T)
        logits = self.classifier(torch.cat([image_vector, text_vector], dim=-1))  # (B, A)
        return logits, text_weights, image_weights


class HierarchicalVLRetrievalDecoder(nn.Module):
    """``sigmoid(v_I^T W v_S)``: two summary networks and a bilinear score (paper Eq. 7)."""

    def __init__(self, config: HierarchicalVLConfig):
        super().__init__()
        self.text_summary = SummaryNetwork(config)
        self.image_summary = SummaryNetwork(config)
        self.bilinear = nn.Linear(config.hidden_size, config.hidden_size, bias=False)  # W: v_I^T (W v_S)

    def forward(self, text, image, text_mask, image_mask):
        text_vector, text_weights = self.text_summary(text, text_mask)  # (B, d), (B, N)
        image_vector, image_weights = self.image_summary(image, image_mask)  # (B, d), (B, T)
        logits = (image_vector * self.bilinear(text_vector)).sum(dim=-1)  # (B,)
        return logits, text_weights, image_weights


class HierarchicalVLGroundingDecoder(nn.Module):
    """``sigmoid(p_h^T W i_t)`` with ``p_h`` the mean of the word features over the phrase's span (Eq. 9-10)."""

    def __init__(self, config: HierarchicalVLConfig):
        super().__init__()
        self.bilinear = nn.Linear(config.hidden_size, config.hidden_size, bias=False)  # W: p_h^T (W i_t)

    def forward(self, text, image, image_mask, phrase_spans, phrase_mask):
        num_words = text.shape[1]
        positions = torch.arange(num_words, device=text.device)  # (N,)
        starts, ends = phrase_spans[..., 0:1], phrase_spans[..., 1:2]  # (B, H, 1)
        in_span = (positions >= starts) & (positions <= ends) & phrase_mask.bool().unsqueeze(-1)  # (B, H, N)
        pooling = in_span.to(text.dtype) / in_span.sum(-1, keepdim=True).clamp(min=1).to(text.dtype)
        phrases = torch.bmm(pooling, text)  # (B, H, d)
        logits = torch.bmm(phrases, self.bilinear(image).transpose(1, 2))  # (B, H, T)
        return _masked_fill_min(logits, image_mask.unsqueeze(1))


# --------------------------------------------------------------------------------------------------------------
# Pretrained model classes
# --------------------------------------------------------------------------------------------------------------


class HierarchicalVLPreTrainedModel(PreTrainedModel):
    """Weights initialisation and the shared ``base_model_prefix`` of every head."""

    config_class = HierarchicalVLConfig
    config: HierarchicalVLConfig
    base_model_prefix = "hierarchical_vl"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules = ["DenseCoAttentionLayer"]
    # A single-task head (or the bare encoder) loads out of a multi-task checkpoint without complaint.
    _keys_to_ignore_on_load_unexpected = [r"(vqa|retrieval|grounding)_decoder\."]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Xavier (Glorot) uniform weights, zero biases, LSTM forget-gate bias 1, learned null tokens and states."""
        gain = self.config.initializer_gain
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight, gain=gain)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.xavier_uniform_(module.weight, gain=gain)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LSTM):
            hidden = module.hidden_size
            for name, param in module.named_parameters():
                if name.startswith("weight"):
                    init.xavier_uniform_(param, gain=gain)
                elif name.startswith("bias_ih"):
                    # Gate order (input, forget, cell, output); b_ih + b_hh gives the forget gate a bias of 1.
                    if not getattr(param, "_is_hf_initialized", False):
                        param.zero_()
                        param[hidden : 2 * hidden].fill_(1.0)
                elif name.startswith("bias_hh"):
                    init.zeros_(param)
        elif isinstance(module, HierarchicalVLLanguageEncoder):
            init.zeros_(module.initial_hidden)
            init.zeros_(module.initial_cell)
        elif isinstance(module, DenseCoAttentionLayer):
            init.xavier_uniform_(module.text_null_tokens, gain=gain)
            init.xavier_uniform_(module.image_null_tokens, gain=gain)

    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        """Eval mode and no autograd for the duration, restoring the previous mode afterwards."""
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            self.train(was_training)

    def load_glove_embeddings(self, embeddings: torch.Tensor) -> None:
        """Copy a `(vocab_size, word_embedding_dim)` matrix (e.g. from GloVe) into the word embeddings."""
        table = self.base_model.text_embeddings.word_embeddings.weight
        if tuple(embeddings.shape) != tuple(table.shape):
            raise ValueError(
                f"embedding matrix has shape {tuple(embeddings.shape)}, expected {tuple(table.shape)}"
            )
        with torch.no_grad():
            table.copy_(embeddings.to(table.dtype))


class HierarchicalVLModel(HierarchicalVLPreTrainedModel):
    """The shared encoder: language and image encoders followed by ``num_layers`` dense co-attention layers.

    Inputs (as produced by `HierarchicalVLProcessor`):
        input_ids: `(B, N)` word ids, padded on the right with 0.
        attention_mask: `(B, N)` 1 for real words.
        region_features: `(B, T, F)` region features (float16 or float32; cast to the model's dtype).
        region_mask: `(B, T)` 1 for real regions (defaults to all ones).
        region_boxes: `(B, T, 4)` boxes normalised to [0, 1]; used only with ``config.use_box_embedding``.
    """

    def __init__(self, config: HierarchicalVLConfig):
        super().__init__(config)
        self.text_embeddings = HierarchicalVLLanguageEncoder(config)
        self.image_embeddings = HierarchicalVLImageEncoder(config)
        self.encoder = HierarchicalVLEncoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.text_embeddings.word_embeddings = value

    def check_inputs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        region_features: torch.Tensor,
        region_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate the inputs and return boolean ``(text_mask, image_mask)``; raise ``ValueError`` with the problem."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape (batch, words), got {tuple(input_ids.shape)}")
        if region_features.dim() != 3:
            raise ValueError(
                f"region_features must have shape (batch, regions, features), got {tuple(region_features.shape)}"
            )
        if region_features.shape[-1] != self.config.region_feature_dim:
            raise ValueError(
                f"region_features have width {region_features.shape[-1]}, but this model expects "
                f"{self.config.region_feature_dim} (config.region_feature_dim)"
            )
        if input_ids.shape[0] != region_features.shape[0]:
            raise ValueError(
                f"batch size mismatch: input_ids has {input_ids.shape[0]} rows, region_features has "
                f"{region_features.shape[0]}"
            )
        if attention_mask is None:
            attention_mask = input_ids.ne(0)
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask {tuple(attention_mask.shape)} does not match input_ids {tuple(input_ids.shape)}"
            )
        if region_mask is None:
            region_mask = region_features.new_ones(region_features.shape[:2], dtype=torch.bool)
        if region_mask.shape != region_features.shape[:2]:
            raise ValueError(
                f"region_mask {tuple(region_mask.shape)} does not match region_features {tuple(region_features.shape[:2])}"
            )
        text_mask, image_mask = attention_mask.bool(), region_mask.bool()
        empty_text = (~text_mask.any(dim=1)).nonzero().flatten().tolist()
        if empty_text:
            raise ValueError(f"empty text: examples {empty_text} have no word in attention_mask")
        lengths = text_mask.sum(dim=1, keepdim=True)
        if not torch.equal(text_mask, torch.arange(text_mask.shape[1], device=text_mask.device) < lengths):
            raise ValueError("attention_mask must be right-padded: ones for the words, then zeros")
        no_regions = (~image_mask.any(dim=1)).nonzero().flatten().tolist()
        if no_regions:
            raise ValueError(f"examples {no_regions} have no valid region in region_mask")
        if (input_ids.min() < 0) or (input_ids.max() >= self.config.vocab_size):
            raise ValueError(f"input_ids must be in [0, {self.config.vocab_size}) (config.vocab_size)")
        return text_mask, image_mask

    def embed_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Word features before the co-attention layers: `(B, N)` -> `(B, N, d)`."""
        return self.text_embeddings(input_ids, attention_mask)

    def embed_image(
        self, region_features: torch.Tensor, region_boxes: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Region features before the co-attention layers: `(B, T, F)` -> `(B, T, d)`."""
        return self.image_embeddings(region_features, region_boxes)

    def forward(
        self,
        input_ids: torch.Tensor,
        region_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        region_mask: torch.Tensor | None = None,
        region_boxes: torch.Tensor | None = None,
        num_layers: int | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        **kwargs,
    ) -> HierarchicalVLModelOutput:
        """Encode up to ``num_layers`` co-attention layers (all of them by default)."""
        text_mask, image_mask = self.check_inputs(input_ids, attention_mask, region_features, region_mask)
        text = self.embed_text(input_ids, text_mask)  # (B, N, d)
        image = self.embed_image(region_features, region_boxes)  # (B, T, d)
        return self.encoder(
            text,
            image,
            text_mask,
            image_mask,
            num_layers=num_layers,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )


def _head_output_extras(encoded: HierarchicalVLModelOutput) -> dict:
    return {
        "text_hidden_states": encoded.text_hidden_states,
        "image_hidden_states": encoded.image_hidden_states,
        "attentions": encoded.attentions,
    }


class _TaskHeadsMixin:
    """The decoders and losses of the three tasks; shared by the single-task heads and the multi-task model."""

    hierarchical_vl: HierarchicalVLModel
    config: HierarchicalVLConfig

    @property
    def tasks(self) -> list[str]:
        """The tasks this model has a decoder for."""
        return [task for task in TASKS if hasattr(self, f"{task}_decoder")]

    def forward_task(self, task: str, **inputs):
        """Run ``task`` whether this is that task's head or the multi-task model (which takes ``task`` first)."""
        if task not in self.tasks:
            raise ValueError(f"{type(self).__name__} has no {task} decoder; it can run {self.tasks}")
        if isinstance(self, HierarchicalVLForMultiTask):
            return self(task, **inputs)
        return self(**inputs)

    def _build_decoder(self, task: str) -> None:
        if task == "vqa":
            self.vqa_decoder = HierarchicalVLVQADecoder(self.config)
        elif task == "retrieval":
            self.retrieval_decoder = HierarchicalVLRetrievalDecoder(self.config)
        elif task == "grounding":
            self.grounding_decoder = HierarchicalVLGroundingDecoder(self.config)
        else:
            raise ValueError(f"unknown task {task!r}; known tasks are {list(TASKS)}")

    def _encode(self, task, input_ids, region_features, attention_mask, region_mask, region_boxes, **flags):
        return self.hierarchical_vl(
            input_ids=input_ids,
            region_features=region_features,
            attention_mask=attention_mask,
            region_mask=region_mask,
            region_boxes=region_boxes,
            num_layers=self.config.layer_for(task),
            **flags,
        )

    def _forward_vqa(
        self, input_ids, region_features, attention_mask, region_mask, region_boxes, labels, **flags
    ):
        encoded = self._encode(
            "vqa", input_ids, region_features, attention_mask, region_mask, region_boxes, **flags
        )
        text_mask, image_mask = self._masks(input_ids, attention_mask, region_features, region_mask)
        logits, text_weights, image_weights = self.vqa_decoder(
            encoded.text_last_hidden_state, encoded.image_last_hidden_state, text_mask, image_mask
        )
        loss = None
        if labels is not None:
            if labels.shape != logits.shape:
                raise ValueError(
                    f"VQA labels must have shape {tuple(logits.shape)} (batch, answers), got {tuple(labels.shape)}"
                )
            # Soft-score BCE, summed over the answer pool and averaged over the batch.
            loss = (
                F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="sum")
                / logits.shape[0]
            )
        return HierarchicalVLVQAOutput(
            loss=loss,
            logits=logits,
            text_attention=text_weights,
            image_attention=image_weights,
            **_head_output_extras(encoded),
        )

    def _forward_retrieval(
        self, input_ids, region_features, attention_mask, region_mask, region_boxes, labels, **flags
    ):
        encoded = self._encode(
            "retrieval", input_ids, region_features, attention_mask, region_mask, region_boxes, **flags
        )
        text_mask, image_mask = self._masks(input_ids, attention_mask, region_features, region_mask)
        logits, text_weights, image_weights = self.retrieval_decoder(
            encoded.text_last_hidden_state, encoded.image_last_hidden_state, text_mask, image_mask
        )
        loss = None
        if labels is not None:
            if labels.shape != logits.shape:
                raise ValueError(
                    f"retrieval labels must have shape {tuple(logits.shape)} (pairs,), got {tuple(labels.shape)}"
                )
            loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float())
        return HierarchicalVLRetrievalOutput(
            loss=loss,
            logits=logits,
            text_attention=text_weights,
            image_attention=image_weights,
            **_head_output_extras(encoded),
        )

    def _forward_grounding(
        self,
        input_ids,
        region_features,
        attention_mask,
        region_mask,
        region_boxes,
        phrase_spans,
        phrase_mask,
        labels,
        **flags,
    ):
        if phrase_spans is None:
            raise ValueError(
                "visual grounding needs phrase_spans (batch, phrases, 2) with inclusive word indices"
            )
        if (
            phrase_spans.dim() != 3
            or phrase_spans.shape[0] != input_ids.shape[0]
            or phrase_spans.shape[-1] != 2
        ):
            raise ValueError(
                f"phrase_spans must have shape (batch, phrases, 2), got {tuple(phrase_spans.shape)}"
            )
        if phrase_mask is None:
            phrase_mask = phrase_spans.new_ones(phrase_spans.shape[:2])
        encoded = self._encode(
            "grounding", input_ids, region_features, attention_mask, region_mask, region_boxes, **flags
        )
        text_mask, image_mask = self._masks(input_ids, attention_mask, region_features, region_mask)
        valid_phrases = phrase_mask.bool()
        lengths = text_mask.sum(dim=1, keepdim=True)  # (B, 1)
        starts, ends = phrase_spans[..., 0], phrase_spans[..., 1]
        bad = valid_phrases & ((starts < 0) | (ends < starts) | (ends >= lengths))
        if bad.any():
            example, phrase = bad.nonzero()[0].tolist()
            raise ValueError(
                f"phrase {phrase} of example {example} has span {phrase_spans[example, phrase].tolist()} outside its "
                f"{int(lengths[example])} words"
            )
        logits = self.grounding_decoder(
            encoded.text_last_hidden_state,
            encoded.image_last_hidden_state,
            image_mask,
            phrase_spans,
            phrase_mask,
        )
        loss = None
        if labels is not None:
            if labels.shape != logits.shape:
                raise ValueError(
                    f"grounding labels must have shape {tuple(logits.shape)} (batch, phrases, regions), got {tuple(labels.shape)}"
                )
            valid = valid_phrases.unsqueeze(-1) & image_mask.unsqueeze(1)  # (B, H, T)
            loss = F.binary_cross_entropy_with_logits(logits.float()[valid], labels.float()[valid])
        return HierarchicalVLGroundingOutput(loss=loss, logits=logits, **_head_output_extras(encoded))

    @torch.no_grad()
    def score_pairs(
        self,
        text_inputs: dict[str, torch.Tensor],
        image_inputs: dict[str, torch.Tensor],
        text_index: torch.Tensor,
        image_index: torch.Tensor,
        batch_size: int = 256,
    ) -> torch.Tensor:
        """Matching logits of many (image, caption) pairs, computing what depends on one modality only once.

        Each caption's language encoding and first-layer projection, and each image's, are computed once; the
        pairs then gather them and run the remaining co-attention work in batches of ``batch_size``.

        Args:
            text_inputs: ``input_ids`` and ``attention_mask`` of the captions, `(C, N)`.
            image_inputs: ``region_features`` `(I, T, F)`, optional ``region_mask`` `(I, T)` and ``region_boxes``.
            text_index: `(P,)` caption row of each pair.
            image_index: `(P,)` image row of each pair.
            batch_size: pairs per forward pass.

        Returns:
            `(P,)` float32 logits.
        """
        encoded_text, text_mask, encoded_image, image_mask = self.encode_modalities(
            text_inputs, image_inputs, batch_size
        )
        return self.score_encoded_pairs(
            encoded_text, text_mask, encoded_image, image_mask, text_index, image_index, batch_size
        )

    @torch.no_grad()
    def encode_modalities(
        self,
        text_inputs: dict[str, torch.Tensor],
        image_inputs: dict[str, torch.Tensor],
        batch_size: int = 256,
    ) -> tuple[
        tuple[torch.Tensor, torch.Tensor], torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor
    ]:
        """Per-modality work of pair scoring: features before the first layer and their first-layer projections.

        Returns:
            ``((text (C, N, d), text_projection (C, N, d)), text_mask (C, N),
            (image (I, T, d), image_projection (I, T, d)), image_mask (I, T))``.
        """
        model = self.hierarchical_vl
        first = model.encoder.layers[0]
        input_ids = text_inputs["input_ids"]
        attention_mask = text_inputs.get("attention_mask")
        text_mask = (input_ids.ne(0) if attention_mask is None else attention_mask).bool()
        features = image_inputs["region_features"]
        image_mask = image_inputs.get("region_mask")
        image_mask = (features.new_ones(features.shape[:2]) if image_mask is None else image_mask).bool()
        boxes = image_inputs.get("region_boxes")
        texts, text_projections = [], []
        for start in range(0, input_ids.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            text = model.embed_text(input_ids[rows], text_mask[rows])
            texts.append(text)
            text_projections.append(first.text_projection(text))
        images, image_projections = [], []
        for start in range(0, features.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            image = model.embed_image(features[rows], None if boxes is None else boxes[rows])
            images.append(image)
            image_projections.append(first.image_projection(image))
        return (
            (torch.cat(texts), torch.cat(text_projections)),
            text_mask,
            (torch.cat(images), torch.cat(image_projections)),
            image_mask,
        )

    @torch.no_grad()
    def score_encoded_pairs(
        self,
        encoded_text: tuple[torch.Tensor, torch.Tensor],
        text_mask: torch.Tensor,
        encoded_image: tuple[torch.Tensor, torch.Tensor],
        image_mask: torch.Tensor,
        text_index: torch.Tensor,
        image_index: torch.Tensor,
        batch_size: int = 256,
    ) -> torch.Tensor:
        """Matching logits `(P,)` of pairs of already encoded captions and images (see `encode_modalities`)."""
        if text_index.shape != image_index.shape:
            raise ValueError("text_index and image_index must have the same shape")
        text, text_projection = encoded_text
        image, image_projection = encoded_image
        num_layers = self.config.layer_for("retrieval")
        scores = []
        for start in range(0, text_index.numel(), batch_size):
            t = text_index[start : start + batch_size].to(text.device)
            i = image_index[start : start + batch_size].to(image.device)
            encoded = self.hierarchical_vl.encoder(
                text[t],
                image[i],
                text_mask[t],
                image_mask[i],
                num_layers=num_layers,
                first_layer_projections=(text_projection[t], image_projection[i]),
            )
            logits, _, _ = self.retrieval_decoder(
                encoded.text_last_hidden_state, encoded.image_last_hidden_state, text_mask[t], image_mask[i]
            )
            scores.append(logits.float())
        return torch.cat(scores) if scores else text.new_zeros(0, dtype=torch.float32)

    @staticmethod
    def _masks(input_ids, attention_mask, region_features, region_mask):
        text_mask = input_ids.ne(0) if attention_mask is None else attention_mask.bool()
        if region_mask is None:
            region_mask = region_features.new_ones(region_features.shape[:2], dtype=torch.bool)
        return text_mask, region_mask.bool()


class HierarchicalVLForVisualQuestionAnswering(_TaskHeadsMixin, HierarchicalVLPreTrainedModel):
    """The encoder up to ``config.task_layers["vqa"]`` and the VQA decoder."""

    def __init__(self, config: HierarchicalVLConfig):
        super().__init__(config)
        self.hierarchical_vl = HierarchicalVLModel(config)
        self._build_decoder("vqa")
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        region_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        region_mask: torch.Tensor | None = None,
        region_boxes: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        **kwargs,
    ) -> HierarchicalVLVQAOutput:
        """Answer logits `(B, A)`; with ``labels`` `(B, A)` soft scores, the soft-score BCE loss."""
        return self._forward_vqa(
            input_ids,
            region_features,
            attention_mask,
            region_mask,
            region_boxes,
            labels,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )


class HierarchicalVLForImageTextRetrieval(_TaskHeadsMixin, HierarchicalVLPreTrainedModel):
    """The encoder up to ``config.task_layers["retrieval"]`` and the image-caption matching decoder."""

    def __init__(self, config: HierarchicalVLConfig):
        super().__init__(config)
        self.hierarchical_vl = HierarchicalVLModel(config)
        self._build_decoder("retrieval")
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        region_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        region_mask: torch.Tensor | None = None,
        region_boxes: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        **kwargs,
    ) -> HierarchicalVLRetrievalOutput:
        """Matching logits `(B,)` of row-aligned (image, caption) pairs; with ``labels`` `(B,)` in {0, 1}, the BCE."""
        return self._forward_retrieval(
            input_ids,
            region_features,
            attention_mask,
            region_mask,
            region_boxes,
            labels,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )


class HierarchicalVLForVisualGrounding(_TaskHeadsMixin, HierarchicalVLPreTrainedModel):
    """The encoder up to ``config.task_layers["grounding"]`` and the phrase-region scoring decoder."""

    def __init__(self, config: HierarchicalVLConfig):
        super().__init__(config)
        self.hierarchical_vl = HierarchicalVLModel(config)
        self._build_decoder("grounding")
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        region_features: torch.Tensor,
        phrase_spans: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        region_mask: torch.Tensor | None = None,
        region_boxes: torch.Tensor | None = None,
        phrase_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        **kwargs,
    ) -> HierarchicalVLGroundingOutput:
        """Phrase-region logits `(B, H, T)` for ``phrase_spans`` `(B, H, 2)` (inclusive word indices)."""
        return self._forward_grounding(
            input_ids,
            region_features,
            attention_mask,
            region_mask,
            region_boxes,
            phrase_spans,
            phrase_mask,
            labels,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )


class HierarchicalVLForMultiTask(_TaskHeadsMixin, HierarchicalVLPreTrainedModel):
    """The shared encoder with the decoder of every task in ``config.task_layers``.

    Each call runs one task (``task="vqa" | "retrieval" | "grounding"``) and the encoder only up to that task's
    layer. Decoder parameter names are those of the single-task heads, so any head loads its encoder and decoder
    out of a multi-task checkpoint.
    """

    def __init__(self, config: HierarchicalVLConfig):
        super().__init__(config)
        self.hierarchical_vl = HierarchicalVLModel(config)
        for task in TASKS:
            if task in config.task_layers:
                self._build_decoder(task)
        self.post_init()

    def forward(
        self,
        task: str,
        input_ids: torch.Tensor,
        region_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        region_mask: torch.Tensor | None = None,
        region_boxes: torch.Tensor | None = None,
        phrase_spans: torch.Tensor | None = None,
        phrase_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        **kwargs,
    ) -> HierarchicalVLVQAOutput | HierarchicalVLRetrievalOutput | HierarchicalVLGroundingOutput:
        """Run ``task``: the encoder to ``config.task_layers[task]``, then that task's decoder (and loss)."""
        if task not in self.tasks:
            raise ValueError(
                f"unknown or unconfigured task {task!r}; this model has decoders for {self.tasks}"
            )
        flags = {"output_hidden_states": output_hidden_states, "output_attentions": output_attentions}
        common = (input_ids, region_features, attention_mask, region_mask, region_boxes)
        if task == "vqa":
            return self._forward_vqa(*common, labels, **flags)
        if task == "retrieval":
            return self._forward_retrieval(*common, labels, **flags)
        return self._forward_grounding(*common, phrase_spans, phrase_mask, labels, **flags)
