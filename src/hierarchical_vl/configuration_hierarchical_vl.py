"""Configuration of the hierarchical vision-language model."""

from __future__ import annotations

import json
import math
import os
from importlib import resources
from typing import Any

from transformers import PretrainedConfig

TASKS = ("grounding", "retrieval", "vqa")
"""Task names understood by the model, in the order of their default encoder depth."""

__all__ = ["CONFIG_VERSION", "TASKS", "HierarchicalVLConfig", "available_presets"]

_PRESET_PACKAGE = "hierarchical_vl.presets"
_PACKAGE_MODULE = "hierarchical_vl.configuration_hierarchical_vl"

CONFIG_VERSION = 2
"""Version of the configuration format, written into every new ``config.json`` as ``config_version``.

1 (the format of package versions up to 0.1, which wrote no ``config_version``): the language projection and the
summary networks used ``hidden_dropout``, the LSTM forget gates had an effective bias of 1 (all in ``b_ih``), the
learned initial LSTM states started at zero and weights were Xavier-uniform. 2: the fields below say each of these,
with DCN's values as defaults.
"""

_VERSION_1_VALUES = {
    "lstm_forget_bias": 1.0,
    "initial_state_init": "zeros",
    "initializer_distribution": "uniform",
}
"""What version 1 did for the fields that version 2 added (the two dropouts followed ``hidden_dropout``)."""

_INITIAL_STATE_INITS = ("xavier", "zeros")
_INITIALIZER_DISTRIBUTIONS = ("normal", "uniform")


class HierarchicalVLConfig(PretrainedConfig):
    r"""Configuration of a [`HierarchicalVLModel`] and its task heads.

    The defaults are the model of Nguyen & Okatani (CVPR 2019): five dense co-attention layers at d=1024 over
    Faster R-CNN region features and GloVe + BiLSTM word features, with the grounding decoder at layer 2, the
    image-caption retrieval decoder at layer 3 and the VQA decoder at layer 5. Where the paper is silent the defaults
    are those of the authors' DCN code: dropout 0.1 before the language projection, none in the summary networks,
    an effective LSTM forget-gate bias of 2, Xavier-initialised learned LSTM states and Xavier-normal weights.

    Args:
        vocab_size: Number of words in the word-level vocabulary (pad id 0).
        word_embedding_dim: Width of the word embeddings (300 for GloVe 840B).
        freeze_word_embeddings: Keep the (GloVe-initialised) embeddings fixed during training.
        lstm_hidden_size: Hidden units per direction of the bidirectional LSTM.
        lstm_num_layers: Number of stacked bidirectional LSTM layers.
        lstm_dropout: Dropout between the LSTM layers (0.1 in the paper).
        region_feature_dim: Width of the input region features (2048 for bottom-up attention).
        use_box_embedding: Add a learned projection of each region's normalised box geometry (x1/W, y1/H, x2/W,
            y2/H, area/(W*H), as LXMERT and UNITER feed it) to its projected features; the model then needs
            ``region_boxes`` (an extension; off in the paper's model and by default).
        hidden_size: Width d of the shared representation.
        num_layers: Number L of dense co-attention layers in the encoder.
        num_attention_heads: Heads h of each co-attention layer (``hidden_size`` must be divisible by it).
        num_null_tokens: Learned "nowhere to attend" vectors prepended to each modality in every layer.
        hidden_dropout: Dropout in the co-attention fusion layers and the VQA classifier MLP (0.3 in the paper).
        text_projection_dropout: Dropout on ``[embedding ; lstm_out]`` before the language projection to d (0.1,
            DCN's ``droprnn``).
        summary_dropout: Dropout inside the summary networks' scoring MLP (0.0: DCN has none).
        summary_glimpses: K parallel attention maps of each summary network.
        task_layers: Encoder depth (1-based) at which each task's decoder reads, e.g.
            ``{"grounding": 2, "retrieval": 3, "vqa": 5}``.
        num_answers: Size of the VQA answer pool (taken from ``id2label`` when that is given). ``num_labels``, the
            name every transformers configuration understands, is accepted as well and means the same.
        max_regions: Cap on regions per image, the one cap of training, evaluation and the processor.
        max_question_words: Cap on words per VQA question (training, evaluation and inference alike).
        max_caption_words: Cap on words per caption and per grounding sentence (likewise).
        initializer_gain: Gain of the Xavier (Glorot) initialisation.
        initializer_distribution: ``"normal"`` (Xavier-normal, DCN's) or ``"uniform"`` (Xavier-uniform) for every
            weight matrix, the word embeddings, the null tokens and Xavier-initialised LSTM states.
        lstm_forget_bias: Effective forget-gate bias of every LSTM layer and direction, split equally over ``b_ih``
            and ``b_hh`` (2.0: DCN sets 1 in each).
        initial_state_init: Initialisation of the learned initial LSTM states h0 and c0: ``"xavier"`` (DCN's, with
            the fans of DCN's single `(2 * 2 * lstm_num_layers, lstm_hidden_size)` parameter that holds both) or
            ``"zeros"``.
        config_version: Format version of the configuration ([`CONFIG_VERSION`] for a new one). A ``config.json``
            without it was written by version 0.1: loading it (`from_pretrained`, `from_dict`, `from_json_file`)
            fills the fields it lacks with that version's behaviour, so an old checkpoint trains as it did.
        custom_pipelines: The pipelines whose code the checkpoint carries (``pipeline_hierarchical_vl.py``), as
            transformers' ``custom_pipelines`` (see the property); written into ``config.json`` together with that
            code only, never by `to_dict`.

    The common transformers names answer too: ``num_hidden_layers`` is ``num_layers``, ``num_labels`` the size of
    the answer pool; ``return_dict``, ``output_attentions`` and ``output_hidden_states`` set the models' defaults.
    """

    model_type = "hierarchical_vl"
    attribute_map = {"num_hidden_layers": "num_layers"}

    def __init__(
        self,
        vocab_size: int = 20000,
        word_embedding_dim: int = 300,
        freeze_word_embeddings: bool = True,
        lstm_hidden_size: int = 450,
        lstm_num_layers: int = 2,
        lstm_dropout: float = 0.1,
        region_feature_dim: int = 2048,
        use_box_embedding: bool = False,
        hidden_size: int = 1024,
        num_layers: int = 5,
        num_attention_heads: int = 4,
        num_null_tokens: int = 3,
        hidden_dropout: float = 0.3,
        text_projection_dropout: float = 0.1,
        summary_dropout: float = 0.0,
        summary_glimpses: int = 4,
        task_layers: dict[str, int] | None = None,
        num_answers: int | None = None,
        max_regions: int = 100,
        max_question_words: int = 14,
        max_caption_words: int = 32,
        initializer_gain: float = 1.0,
        initializer_distribution: str = "normal",
        lstm_forget_bias: float = 2.0,
        initial_state_init: str = "xavier",
        config_version: int = CONFIG_VERSION,
        **kwargs: Any,
    ):
        self._custom_pipelines = dict(kwargs.pop("custom_pipelines", None) or {})
        id2label = kwargs.get("id2label")
        num_labels = kwargs.pop("num_labels", None)
        if num_answers is not None and num_labels is not None and num_answers != num_labels:
            raise ValueError(
                f"num_answers={num_answers} and num_labels={num_labels} disagree; they name the same thing (the "
                "size of the VQA answer pool): give one of them"
            )
        if num_answers is None:
            num_answers = num_labels
        if id2label:
            num_answers = len(id2label)
        elif num_answers is None:
            num_answers = 3129
        if id2label is None:
            kwargs["num_labels"] = num_answers
        self.vocab_size = vocab_size
        self.word_embedding_dim = word_embedding_dim
        self.freeze_word_embeddings = freeze_word_embeddings
        self.lstm_hidden_size = lstm_hidden_size
        self.lstm_num_layers = lstm_num_layers
        self.lstm_dropout = lstm_dropout
        self.region_feature_dim = region_feature_dim
        self.use_box_embedding = use_box_embedding
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_attention_heads = num_attention_heads
        self.num_null_tokens = num_null_tokens
        self.hidden_dropout = hidden_dropout
        self.text_projection_dropout = text_projection_dropout
        self.summary_dropout = summary_dropout
        self.summary_glimpses = summary_glimpses
        self.task_layers = dict(task_layers) if task_layers is not None else {"grounding": 2, "retrieval": 3, "vqa": 5}
        self.max_regions = max_regions
        self.max_question_words = max_question_words
        self.max_caption_words = max_caption_words
        self.initializer_gain = initializer_gain
        self.initializer_distribution = initializer_distribution
        self.lstm_forget_bias = lstm_forget_bias
        self.initial_state_init = initial_state_init
        self.config_version = config_version
        super().__init__(**kwargs)
        if id2label is None and len(self.id2label) != num_answers:
            self.num_labels = num_answers
        if not self.label2id or len(self.label2id) != len(self.id2label):
            self.label2id = {label: index for index, label in self.id2label.items()}
        self._validate()

    @property
    def custom_pipelines(self) -> dict[str, Any]:
        """The pipelines of ``config.json``'s ``custom_pipelines``, which ``pipeline(task, model=checkpoint,
        trust_remote_code=True)`` loads from the checkpoint's own code.

        Empty in the class of the installed package: there ``import hierarchical_vl`` registers the same pipelines,
        which then serve these tasks without remote code (transformers would otherwise demand
        ``trust_remote_code=True`` for them). The copy of this module that a checkpoint carries returns them.
        """
        return {} if __name__ == _PACKAGE_MODULE else dict(self._custom_pipelines)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a dictionary (``custom_pipelines`` is written with the pipeline code only)."""
        output = super().to_dict()
        output.pop("_custom_pipelines", None)
        return output

    @property
    def num_answers(self) -> int:
        """Size of the VQA answer pool (``len(id2label)``)."""
        return len(self.id2label)

    def _validate(self) -> None:
        positive = {
            "vocab_size": self.vocab_size,
            "word_embedding_dim": self.word_embedding_dim,
            "lstm_hidden_size": self.lstm_hidden_size,
            "lstm_num_layers": self.lstm_num_layers,
            "region_feature_dim": self.region_feature_dim,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "num_attention_heads": self.num_attention_heads,
            "summary_glimpses": self.summary_glimpses,
            "max_regions": self.max_regions,
            "max_question_words": self.max_question_words,
            "max_caption_words": self.max_caption_words,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"HierarchicalVLConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.num_null_tokens, int) or self.num_null_tokens < 0:
            raise ValueError(f"HierarchicalVLConfig.num_null_tokens must be >= 0, got {self.num_null_tokens!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"HierarchicalVLConfig.hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        for name in ("lstm_dropout", "hidden_dropout", "text_projection_dropout", "summary_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
                raise ValueError(f"HierarchicalVLConfig.{name} must be in [0, 1), got {value!r}")
        choices = {
            "initializer_distribution": _INITIALIZER_DISTRIBUTIONS,
            "initial_state_init": _INITIAL_STATE_INITS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"HierarchicalVLConfig.{name} must be one of {list(allowed)}, got {getattr(self, name)!r}"
                )
        bias = self.lstm_forget_bias
        if not isinstance(bias, (int, float)) or isinstance(bias, bool) or not math.isfinite(bias):
            raise ValueError(f"HierarchicalVLConfig.lstm_forget_bias must be a finite number, got {bias!r}")
        if self.config_version not in range(1, CONFIG_VERSION + 1) or isinstance(self.config_version, bool):
            raise ValueError(
                f"HierarchicalVLConfig.config_version must be an integer in 1..{CONFIG_VERSION}, got "
                f"{self.config_version!r} (a newer version of the package wrote it?)"
            )
        unknown = sorted(set(self.task_layers) - set(TASKS))
        if unknown:
            raise ValueError(f"Unknown task name(s) in task_layers: {unknown}; known tasks are {list(TASKS)}")
        if not self.task_layers:
            raise ValueError("task_layers must name at least one task")
        for task, layer in self.task_layers.items():
            if not isinstance(layer, int) or isinstance(layer, bool) or not 1 <= layer <= self.num_layers:
                raise ValueError(
                    f"task_layers[{task!r}] = {layer!r} is not a layer of the encoder "
                    f"(must be an integer in 1..num_layers={self.num_layers})"
                )
        if self.num_answers < 1:
            raise ValueError("the VQA answer pool (id2label / num_answers) must not be empty")

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> HierarchicalVLConfig:
        """Build a configuration from a saved dictionary; one of version 1 keeps that version's behaviour.

        Every loading path (`from_pretrained`, the Auto classes, `from_json_file`) comes here, so this is where a
        ``config.json`` without ``config_version`` gets the values that version 1 used for the fields it lacks
        (see [`CONFIG_VERSION`]).
        """
        return super().from_dict(_upgraded(config_dict), **kwargs)

    @classmethod
    def from_json_file(cls, json_file: str | os.PathLike) -> HierarchicalVLConfig:
        """Build a configuration from a ``config.json`` (of any version, see `from_dict`)."""
        return cls.from_dict(cls._dict_from_json_file(json_file))

    def layer_for(self, task: str) -> int:
        """The encoder depth at which ``task``'s decoder reads."""
        if task not in self.task_layers:
            raise ValueError(f"Task {task!r} is not configured; configured tasks are {sorted(self.task_layers)}")
        return self.task_layers[task]

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> HierarchicalVLConfig:
        """Build a configuration from a named preset shipped with the package (``paper``, ``tiny``, ...).

        Args:
            name: Preset name, one of [`available_presets`].
            **overrides: Fields replacing the preset's values.
        """
        presets = available_presets()
        if name not in presets:
            raise ValueError(f"Unknown preset {name!r}; available presets: {presets}")
        values = json.loads(resources.files(_PRESET_PACKAGE).joinpath(f"{name}.json").read_text())
        values.pop("description", None)
        if {"num_labels", "id2label"} & set(overrides):  # the override sizes the answer pool, not the preset
            values.pop("num_answers", None)
        values.update(overrides)
        return cls(**values)


def _upgraded(config_dict: dict[str, Any]) -> dict[str, Any]:
    """``config_dict`` with the fields that its format version lacks set to what that version did."""
    if "config_version" in config_dict:
        return config_dict
    old = dict(config_dict)
    hidden_dropout = old.get("hidden_dropout", 0.3)
    old.setdefault("text_projection_dropout", hidden_dropout)
    old.setdefault("summary_dropout", hidden_dropout)
    for name, value in _VERSION_1_VALUES.items():
        old.setdefault(name, value)
    old["config_version"] = 1
    return old


def available_presets() -> list[str]:
    """Names of the model presets shipped with the package."""
    return sorted(
        entry.name[: -len(".json")]
        for entry in resources.files(_PRESET_PACKAGE).iterdir()
        if entry.name.endswith(".json")
    )
