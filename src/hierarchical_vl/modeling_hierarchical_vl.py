"""The hierarchical vision-language model of Nguyen & Okatani (CVPR 2019).

A shared encoder of stacked dense co-attention layers fuses region features and word features; task decoders
read the encoder at different depths (grounding at layer 2, image-caption retrieval at 3, VQA at 5 in the paper).
A task only runs the encoder up to its own layer.

Notation in shape comments: B batch, N words, T regions, K null tokens, h heads, d hidden size, F region feature
width, H phrases, A answers, G summary glimpses.

The building blocks (modality encoders, the dense co-attention layer, the summary network and the task decoders)
live in `layers_hierarchical_vl`; this file assembles them into the pretrained classes. The two files import nothing
else from the package but its configuration, so that a saved checkpoint can carry them as remote code.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_hierarchical_vl import TASKS, HierarchicalVLConfig
from .layers_hierarchical_vl import (
    CoAttentionTerms,
    DenseCoAttentionLayer,
    HierarchicalVLEncoder,
    HierarchicalVLGroundingDecoder,
    HierarchicalVLImageEncoder,
    HierarchicalVLLanguageEncoder,
    HierarchicalVLRetrievalDecoder,
    HierarchicalVLVQADecoder,
    SummaryNetwork,
)

__all__ = [
    "CoAttentionTerms",
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
class _SummaryDecoderOutput(ModelOutput):
    """The fields of the heads whose decoder pools each modality with summary networks (VQA and retrieval)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    text_attention: torch.Tensor | None = None
    image_attention: torch.Tensor | None = None
    text_hidden_states: tuple[torch.Tensor, ...] | None = None
    image_hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None


@dataclass
class HierarchicalVLVQAOutput(_SummaryDecoderOutput):
    r"""Output of the VQA head.

    Args:
        loss: scalar soft-score binary cross-entropy, summed over answers and averaged over the batch
            (returned when ``labels`` is given).
        logits: `(B, A)` answer logits; ``sigmoid(logits)`` are the answer scores.
        text_attention: `(B, N)` the decoder's summary attention over words.
        image_attention: `(B, T)` the decoder's summary attention over regions.
        text_hidden_states, image_hidden_states, attentions: as in [`HierarchicalVLModelOutput`].
    """


@dataclass
class HierarchicalVLRetrievalOutput(_SummaryDecoderOutput):
    r"""Output of the image-caption retrieval head.

    Args:
        loss: scalar binary cross-entropy averaged over the pairs (returned when ``labels`` is given).
        logits: `(B,)` matching logits of the (image, caption) pairs; ``sigmoid(logits)`` is the paper's score.
        text_attention: `(B, N)` the decoder's summary attention over words.
        image_attention: `(B, T)` the decoder's summary attention over regions.
        text_hidden_states, image_hidden_states, attentions: as in [`HierarchicalVLModelOutput`].
    """


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


_DECODERS: dict[str, tuple[type[nn.Module], type[ModelOutput]]] = {
    "grounding": (HierarchicalVLGroundingDecoder, HierarchicalVLGroundingOutput),
    "retrieval": (HierarchicalVLRetrievalDecoder, HierarchicalVLRetrievalOutput),
    "vqa": (HierarchicalVLVQADecoder, HierarchicalVLVQAOutput),
}
"""Per task: the decoder (an attribute ``<task>_decoder`` of a head) and its output class."""


# --------------------------------------------------------------------------------------------------------------
# Pretrained model classes
# --------------------------------------------------------------------------------------------------------------


class HierarchicalVLPreTrainedModel(PreTrainedModel):
    """Weights initialisation, the shared ``base_model_prefix`` of every head, and running a head's task."""

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
        """Xavier (Glorot) weights, zero biases, the LSTM forget-gate bias, learned null tokens and LSTM states.

        ``config.initializer_distribution`` picks Xavier-normal (DCN) or Xavier-uniform; ``config.lstm_forget_bias``
        is split equally over ``b_ih`` and ``b_hh``; ``config.initial_state_init`` sets h0/c0 to Xavier (DCN) or
        zeros. Parameters loaded from a checkpoint are left as loaded; those it lacks are set here.
        """
        config = self.config
        gain = config.initializer_gain
        xavier = init.xavier_normal_ if config.initializer_distribution == "normal" else init.xavier_uniform_
        if isinstance(module, nn.Linear):
            xavier(module.weight, gain=gain)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            xavier(module.weight, gain=gain)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LSTM):
            hidden = module.hidden_size
            for name, param in module.named_parameters():
                if name.startswith("weight"):
                    xavier(param, gain=gain)
                elif name.startswith("bias") and not getattr(param, "_is_hf_initialized", False):
                    # Gate order (input, forget, cell, output); b_ih + b_hh is the forget gate's effective bias.
                    param.zero_()
                    param[hidden : 2 * hidden].fill_(config.lstm_forget_bias / 2)
        elif isinstance(module, HierarchicalVLLanguageEncoder):
            states = (module.initial_hidden, module.initial_cell)
            if config.initial_state_init == "zeros":
                for state in states:
                    init.zeros_(state)
            else:  # DCN: one Xavier-initialised (2 * 2L, H) parameter holding h0 and c0
                rows, hidden = module.initial_hidden.shape
                _xavier_with_fans(states, hidden, 2 * rows, gain, config.initializer_distribution)
        elif isinstance(module, DenseCoAttentionLayer):
            xavier(module.text_null_tokens, gain=gain)
            xavier(module.image_null_tokens, gain=gain)

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
            raise ValueError(f"embedding matrix has shape {tuple(embeddings.shape)}, expected {tuple(table.shape)}")
        with torch.no_grad():
            table.copy_(embeddings.to(table.dtype))

    @property
    def tasks(self) -> list[str]:
        """The tasks this model has a decoder for."""
        return [task for task in TASKS if isinstance(getattr(self, f"{task}_decoder", None), nn.Module)]

    def decoder(self, task: str) -> nn.Module:
        """The decoder of ``task`` (``ValueError`` if this model has none)."""
        if task not in self.tasks:
            raise ValueError(f"{type(self).__name__} has no {task!r} decoder; it can run {self.tasks}")
        return getattr(self, f"{task}_decoder")

    def forward_task(self, task: str, **inputs):
        """Run ``task`` on this head: the same call for a single-task head and the multi-task model."""
        self.decoder(task)
        return self(**inputs)

    def _run_task(self, task: str, inputs: dict, labels, output_attentions, output_hidden_states, return_dict):
        """The encoder up to ``task``'s layer, then its decoder (and loss when ``labels`` are given)."""
        output_class = _DECODERS[task][1]
        decoder = self.decoder(task)
        config = self.config
        return_dict = return_dict if return_dict is not None else config.return_dict
        encoder = self.hierarchical_vl
        text_mask, image_mask = encoder.check_inputs(
            inputs["input_ids"], inputs["attention_mask"], inputs["region_features"], inputs["region_mask"]
        )
        encoded = encoder.encode(
            inputs["input_ids"],
            inputs["region_features"],
            text_mask,
            image_mask,
            inputs["region_boxes"],
            num_layers=config.layer_for(task),
            output_attentions=output_attentions if output_attentions is not None else config.output_attentions,
            output_hidden_states=output_hidden_states
            if output_hidden_states is not None
            else config.output_hidden_states,
        )
        decoded = decoder(
            encoded.text_last_hidden_state,
            encoded.image_last_hidden_state,
            text_mask,
            image_mask,
            labels=labels,
            **{name: inputs[name] for name in decoder.extra_inputs},
        )
        output = output_class(
            **decoded,
            text_hidden_states=encoded.text_hidden_states,
            image_hidden_states=encoded.image_hidden_states,
            attentions=encoded.attentions,
        )
        return output if return_dict else output.to_tuple()


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
                f"region_mask {tuple(region_mask.shape)} does not match region_features "
                f"{tuple(region_features.shape[:2])}"
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

    def embed_image(self, region_features: torch.Tensor, region_boxes: torch.Tensor | None = None) -> torch.Tensor:
        """Region features before the co-attention layers: `(B, T, F)` -> `(B, T, d)`."""
        return self.image_embeddings(region_features, region_boxes)

    def encode(
        self,
        input_ids: torch.Tensor,
        region_features: torch.Tensor,
        text_mask: torch.Tensor,
        image_mask: torch.Tensor,
        region_boxes: torch.Tensor | None = None,
        num_layers: int | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> HierarchicalVLModelOutput:
        """The encoder on inputs whose masks `check_inputs` returned."""
        text, image, text_states, image_states, attentions = self.encoder(
            self.embed_text(input_ids, text_mask),  # (B, N, d)
            self.embed_image(region_features, region_boxes),  # (B, T, d)
            text_mask,
            image_mask,
            num_layers=num_layers,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )
        return HierarchicalVLModelOutput(
            text_last_hidden_state=text,
            image_last_hidden_state=image,
            text_hidden_states=text_states,
            image_hidden_states=image_states,
            attentions=attentions,
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        region_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        region_mask: torch.Tensor | None = None,
        region_boxes: torch.Tensor | None = None,
        num_layers: int | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> HierarchicalVLModelOutput | tuple:
        """Encode up to ``num_layers`` co-attention layers (all of them by default)."""
        config = self.config
        text_mask, image_mask = self.check_inputs(input_ids, attention_mask, region_features, region_mask)
        output = self.encode(
            input_ids,
            region_features,
            text_mask,
            image_mask,
            region_boxes,
            num_layers,
            output_hidden_states=output_hidden_states
            if output_hidden_states is not None
            else config.output_hidden_states,
            output_attentions=output_attentions if output_attentions is not None else config.output_attentions,
        )
        return output if (return_dict if return_dict is not None else config.return_dict) else output.to_tuple()


class _PairScoringMixin:
    """Exact matching logits of many (image, caption) pairs, doing once what depends on one modality only.

    Each caption's language encoding and first-layer terms (`CoAttentionTerms` with ``own`` and ``cross``), and each
    image's, are computed once (`encode_captions`, `encode_images`); a pair then costs layer 1's affinity, softmaxes
    and attention products only, layers 2 .. l(retrieval) on the gathered pair batch (with the fusion's cross term
    over the shorter sequence) and the decoder. The logits equal the model's forward pass (float32: ~1e-7).
    """

    def _pair_layers(self) -> list[DenseCoAttentionLayer]:
        self.decoder("retrieval")
        return list(self.hierarchical_vl.encoder.layers[: self.config.layer_for("retrieval")])

    @torch.no_grad()
    def encode_captions(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        batch_size: int = 256,
        dtype: torch.dtype | None = None,
    ) -> CoAttentionTerms:
        """Caption terms `(C, ...)`: features before co-attention and the first layer's per-caption terms.

        ``dtype`` stores the projections and cross terms (e.g. bfloat16, for pair work under autocast).
        """
        mask = (input_ids.ne(0) if attention_mask is None else attention_mask).bool()
        first = self._pair_layers()[0]
        parts = []
        for start in range(0, input_ids.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            text = self.hierarchical_vl.embed_text(input_ids[rows], mask[rows]).float()  # (b, N, d)
            parts.append(_store(first.modality_terms("text", text, mask[rows], own=True, cross=True), dtype))
        return CoAttentionTerms.cat(parts)

    @torch.no_grad()
    def encode_images(
        self,
        region_features: torch.Tensor,
        region_mask: torch.Tensor | None = None,
        region_boxes: torch.Tensor | None = None,
        batch_size: int = 256,
        dtype: torch.dtype | None = None,
    ) -> CoAttentionTerms:
        """Image terms `(I, ...)`: features before co-attention and the first layer's per-image terms."""
        mask = (region_features.new_ones(region_features.shape[:2]) if region_mask is None else region_mask).bool()
        first = self._pair_layers()[0]
        parts = []
        for start in range(0, region_features.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            boxes = None if region_boxes is None else region_boxes[rows]
            image = self.hierarchical_vl.embed_image(region_features[rows], boxes).float()  # (b, T, d)
            parts.append(_store(first.modality_terms("image", image, mask[rows], own=True, cross=True), dtype))
        return CoAttentionTerms.cat(parts)

    @torch.no_grad()
    def score_encoded_pairs(
        self,
        captions: CoAttentionTerms,
        images: CoAttentionTerms,
        text_index: torch.Tensor,
        image_index: torch.Tensor,
        batch_size: int = 256,
        num_words: int | None = None,
        num_regions: int | None = None,
    ) -> torch.Tensor:
        """Matching logits `(P,)` float32 of the pairs ``(images[image_index], captions[text_index])``.

        ``num_words`` / ``num_regions`` trim every batch to that many tokens (at least the longest of the pairs);
        by default each batch is trimmed to its own longest caption and largest image.
        """
        if text_index.shape != image_index.shape:
            raise ValueError("text_index and image_index must have the same shape")
        layers = self._pair_layers()
        scores = []
        for start in range(0, text_index.numel(), batch_size):
            t = text_index[start : start + batch_size].to(captions.features.device)
            i = image_index[start : start + batch_size].to(images.features.device)
            n = num_words or int(captions.mask[t].sum(dim=1).max())
            r = num_regions or int(images.mask[i].sum(dim=1).max())
            text_terms, image_terms = captions.select(t, n), images.select(i, r)
            text, image, _ = layers[0].forward_terms(text_terms, image_terms)
            words_first = n <= r  # the fusion's cross term runs over the shorter sequence
            for layer in layers[1:]:
                text, image, _ = layer.forward_terms(
                    layer.modality_terms("text", text, text_terms.mask, cross=words_first),
                    layer.modality_terms("image", image, image_terms.mask, cross=not words_first),
                )
            logits = self.retrieval_decoder(text, image, text_terms.mask, image_terms.mask)["logits"]
            scores.append(logits.float())
        return torch.cat(scores) if scores else captions.features.new_zeros(0, dtype=torch.float32)

    @torch.no_grad()
    def score_pairs(
        self,
        text_inputs: dict[str, torch.Tensor],
        image_inputs: dict[str, torch.Tensor],
        text_index: torch.Tensor,
        image_index: torch.Tensor,
        batch_size: int = 256,
    ) -> torch.Tensor:
        """Matching logits `(P,)` float32 of many (image, caption) pairs.

        Args:
            text_inputs: ``input_ids`` and ``attention_mask`` of the captions, `(C, N)`.
            image_inputs: ``region_features`` `(I, T, F)`, optional ``region_mask`` `(I, T)` and ``region_boxes``.
            text_index: `(P,)` caption row of each pair.
            image_index: `(P,)` image row of each pair.
            batch_size: Pairs per forward pass.
        """
        captions = self.encode_captions(text_inputs["input_ids"], text_inputs.get("attention_mask"), batch_size)
        images = self.encode_images(
            image_inputs["region_features"],
            image_inputs.get("region_mask"),
            image_inputs.get("region_boxes"),
            batch_size,
        )
        return self.score_encoded_pairs(captions, images, text_index, image_index, batch_size)


def _xavier_with_fans(
    tensors: tuple[torch.Tensor, ...], fan_in: int, fan_out: int, gain: float, distribution: str
) -> None:
    """Xavier initialisation of ``tensors`` as parts of one matrix with the given fans (each loaded one is kept)."""
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    for tensor in tensors:
        if distribution == "normal":
            init.normal_(tensor, 0.0, std)
        else:
            init.uniform_(tensor, -math.sqrt(3.0) * std, math.sqrt(3.0) * std)


def _store(terms: CoAttentionTerms, dtype: torch.dtype | None) -> CoAttentionTerms:
    """``terms`` with the projection and cross term stored in ``dtype`` (unchanged for ``None``)."""
    if dtype is None:
        return terms
    return replace(terms, projection=terms.projection.to(dtype), cross=terms.cross.to(dtype))


_MODEL_INPUTS = (
    "input_ids",
    "region_features",
    "attention_mask",
    "region_mask",
    "region_boxes",
    "phrase_spans",
    "phrase_mask",
)


def _inputs(arguments: dict) -> dict:
    """The model inputs among a ``forward``'s arguments (its ``locals()``)."""
    return {name: arguments[name] for name in _MODEL_INPUTS if name in arguments}


class _SingleTaskHead(HierarchicalVLPreTrainedModel):
    """The encoder up to ``config.task_layers[task]`` and the decoder of one task (set by each head's ``task``)."""

    task = ""

    def __init__(self, config: HierarchicalVLConfig):
        super().__init__(config)
        self.hierarchical_vl = HierarchicalVLModel(config)
        setattr(self, f"{self.task}_decoder", _DECODERS[self.task][0](config))
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        region_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        region_mask: torch.Tensor | None = None,
        region_boxes: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> HierarchicalVLVQAOutput | HierarchicalVLRetrievalOutput | tuple:
        """The task's logits (and, with ``labels``, its loss); see the head's class docstring for the shapes."""
        return self._run_task(
            self.task, _inputs(locals()), labels, output_attentions, output_hidden_states, return_dict
        )


class HierarchicalVLForVisualQuestionAnswering(_SingleTaskHead):
    """The encoder up to ``config.task_layers["vqa"]`` and the VQA decoder.

    Returns a `HierarchicalVLVQAOutput`: answer logits `(B, A)`; with ``labels`` `(B, A)` soft scores, the
    soft-score BCE loss.
    """

    task = "vqa"


class HierarchicalVLForImageTextRetrieval(_PairScoringMixin, _SingleTaskHead):
    """The encoder up to ``config.task_layers["retrieval"]`` and the image-caption matching decoder.

    Returns a `HierarchicalVLRetrievalOutput`: matching logits `(B,)` of row-aligned (image, caption) pairs; with
    ``labels`` `(B,)` in {0, 1}, the BCE. `score_pairs` scores many pairs, sharing the per-modality work.
    """

    task = "retrieval"


class HierarchicalVLForVisualGrounding(_SingleTaskHead):
    """The encoder up to ``config.task_layers["grounding"]`` and the phrase-region scoring decoder.

    Returns a `HierarchicalVLGroundingOutput`: phrase-region logits `(B, H, T)` for ``phrase_spans`` `(B, H, 2)`
    (inclusive word indices); with ``labels`` `(B, H, T)`, the BCE over the valid pairs.
    """

    task = "grounding"

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
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> HierarchicalVLGroundingOutput | tuple:
        return self._run_task(
            "grounding", _inputs(locals()), labels, output_attentions, output_hidden_states, return_dict
        )


class HierarchicalVLForMultiTask(_PairScoringMixin, HierarchicalVLPreTrainedModel):
    """The shared encoder with the decoder of every task in ``config.task_layers``.

    Each call runs one task (``task="vqa" | "retrieval" | "grounding"``, a keyword argument) and the encoder only up
    to that task's layer. Decoder parameter names are those of the single-task heads, so any head loads its encoder
    and decoder out of a multi-task checkpoint.
    """

    def __init__(self, config: HierarchicalVLConfig):
        super().__init__(config)
        self.hierarchical_vl = HierarchicalVLModel(config)
        for task, (decoder_class, _) in _DECODERS.items():
            if task in config.task_layers:
                setattr(self, f"{task}_decoder", decoder_class(config))
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        region_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        region_mask: torch.Tensor | None = None,
        region_boxes: torch.Tensor | None = None,
        phrase_spans: torch.Tensor | None = None,
        phrase_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        *,
        task: str,
    ) -> HierarchicalVLVQAOutput | HierarchicalVLRetrievalOutput | HierarchicalVLGroundingOutput | tuple:
        """Run ``task``: the encoder to ``config.task_layers[task]``, then that task's decoder (and loss)."""
        if task not in _DECODERS:
            raise ValueError(f"unknown task {task!r}; this model has decoders for {self.tasks}")
        inputs = _inputs(locals())
        extra = _DECODERS[task][0].extra_inputs
        unused = [name for name in ("phrase_spans", "phrase_mask") if inputs[name] is not None and name not in extra]
        if unused:
            raise ValueError(f"{', '.join(unused)} {'is' if len(unused) == 1 else 'are'} not an input of {task!r}")
        return self._run_task(task, inputs, labels, output_attentions, output_hidden_states, return_dict)

    def forward_task(self, task: str, **inputs):
        self.decoder(task)
        return self(**inputs, task=task)

    def _pair_layers(self) -> list[DenseCoAttentionLayer]:
        if "retrieval" not in self.tasks:
            raise AttributeError("this multi-task model has no retrieval decoder: it cannot score image-caption pairs")
        return super()._pair_layers()
