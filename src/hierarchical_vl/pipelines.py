"""Prediction helpers for VQA, image-caption retrieval and visual grounding, and their transformers pipelines.

Two ways in, one implementation:

* predictors, usable without the pipeline machinery::

      predictor = VQAPredictor.from_pretrained("path/to/checkpoint", feature_store=store)
      predictor.predict("what colour is the cat?", image="42", top_k=3)
      # [{"answer": "black", "score": 0.91}, ...]

* pipelines registered with transformers (after [`register_pipelines`])::

      vqa = pipeline("hierarchical-vl-vqa", model="path/to/checkpoint", feature_store=store)
      vqa({"question": "what colour is the cat?", "image_id": "42"}, top_k=3)

  The pipelines are thin wrappers: their ``preprocess``, ``_forward`` and ``postprocess`` call the predictor's
  ``encode``, ``run`` and ``decode``.

An image is given by its region features: an `(T, F)` array, a record ``{"features", "boxes", "width",
"height"}`` as a feature store returns it, an [`ImageRegions`], or an image id looked up in a feature store (any
object whose ``store[image_id]`` returns such a record and raises ``KeyError`` for unknown ids).

Checkpoints may hold a single-task head or the multi-task model; a multi-task model runs the task the predictor is
for. Scores are the model's sigmoid outputs (paper Eq. 7, 8 and 10).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import Pipeline, PreTrainedTokenizerBase
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_hierarchical_vl import HierarchicalVLConfig
from .modeling_hierarchical_vl import (
    HierarchicalVLForImageTextRetrieval,
    HierarchicalVLForMultiTask,
    HierarchicalVLForVisualGrounding,
    HierarchicalVLForVisualQuestionAnswering,
)
from .processing_hierarchical_vl import HierarchicalVLProcessor

__all__ = [
    "PIPELINE_TASKS",
    "GroundingPipeline",
    "GroundingPredictor",
    "ImageRegions",
    "RetrievalPipeline",
    "RetrievalPredictor",
    "UnknownImageError",
    "VQAPipeline",
    "VQAPredictor",
    "load_task_model",
    "predict_grounding",
    "predict_vqa",
    "rank_captions",
    "rank_images",
    "register_pipelines",
    "resolve_image",
]

logger = logging.getLogger(__name__)

PIPELINE_TASKS = {
    "vqa": "hierarchical-vl-vqa",
    "retrieval": "hierarchical-vl-retrieval",
    "grounding": "hierarchical-vl-grounding",
}
"""transformers pipeline task name of each model task."""

_HEADS = {
    "vqa": HierarchicalVLForVisualQuestionAnswering,
    "retrieval": HierarchicalVLForImageTextRetrieval,
    "grounding": HierarchicalVLForVisualGrounding,
}
_MULTI_TASK = HierarchicalVLForMultiTask.__name__


# --------------------------------------------------------------------------------------------------------------
# Images as region features
# --------------------------------------------------------------------------------------------------------------


class UnknownImageError(KeyError):
    """An image id that the feature store does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


@dataclass
class ImageRegions:
    """The detected regions of one image.

    Attributes:
        features: `(T, F)` region features (float16 or float32).
        boxes: `(T, 4)` boxes x1, y1, x2, y2 in pixels, or ``None``.
        width: Image width in pixels, or ``None``.
        height: Image height in pixels, or ``None``.
        image_id: The id the regions were looked up under, or ``None``.
    """

    features: np.ndarray
    boxes: np.ndarray | None = None
    width: float | None = None
    height: float | None = None
    image_id: Any = None

    def __post_init__(self) -> None:
        name = "image" if self.image_id is None else f"image {self.image_id!r}"
        if self.features is None:
            raise ValueError(f"{name} has no region features")
        self.features = _to_numpy(self.features)
        if self.features.ndim != 2:
            raise ValueError(f"region features of {name} must be (regions, width), got {self.features.shape}")
        if self.features.shape[0] < 1:
            raise ValueError(f"{name} has no region (0 rows of region features)")
        if self.boxes is not None:
            self.boxes = _to_numpy(self.boxes).astype(np.float32, copy=False)
            if self.boxes.shape != (self.features.shape[0], 4):
                raise ValueError(
                    f"{name}: boxes must be (regions, 4) = ({self.features.shape[0]}, 4), got {self.boxes.shape}"
                )
        for field_name in ("width", "height"):
            value = getattr(self, field_name)
            if value is not None:
                value = float(value)
                if not value > 0:
                    raise ValueError(f"{name}: {field_name} must be positive, got {value}")
                setattr(self, field_name, value)

    @property
    def num_regions(self) -> int:
        """Number of regions T."""
        return int(self.features.shape[0])

    @property
    def size(self) -> tuple[float, float] | None:
        """``(width, height)`` when both are known."""
        if self.width is None or self.height is None:
            return None
        return (self.width, self.height)

    @classmethod
    def from_record(cls, record: Any, image_id: Any = None) -> ImageRegions:
        """Regions from a feature-store record: a mapping (or an object with attributes) holding ``features`` and
        optionally ``boxes``, ``width``, ``height`` and ``image_id``."""
        if isinstance(record, Mapping):
            get = record.get
        else:

            def get(key, default=None):
                return getattr(record, key, default)

        image_id = get("image_id", image_id) if image_id is None else image_id
        features = get("features")
        if features is None:
            features = get("region_features")
        if features is None:
            name = "the record" if image_id is None else f"the record of image {image_id!r}"
            raise ValueError(f"{name} has no region features (no 'features' entry)")
        boxes = get("boxes")
        if boxes is None:
            boxes = get("region_boxes")
        return cls(features, boxes, get("width"), get("height"), image_id)

    @classmethod
    def from_store(cls, store: Any, image_id: Any) -> ImageRegions:
        """Regions of ``image_id`` read from a feature store (``store[image_id]`` -> record, ``KeyError`` if absent)."""
        try:
            record = store[image_id]
        except KeyError:
            where = getattr(store, "path", None)
            where = f" at {where}" if where is not None else f" ({type(store).__name__})"
            raise UnknownImageError(f"image id {image_id!r} is not in the feature store{where}") from None
        return cls.from_record(record, image_id=image_id)


def resolve_image(image: Any, feature_store: Any = None) -> ImageRegions:
    """Turn any accepted description of an image into [`ImageRegions`].

    Args:
        image: An [`ImageRegions`]; a record (mapping with ``features`` and optionally ``boxes``, ``width``,
            ``height``); an `(T, F)` array or tensor of region features; or an image id (``str`` or ``int``)
            looked up in ``feature_store``.
        feature_store: Where image ids are looked up.

    Raises:
        ValueError: No features were given, or they are malformed.
        UnknownImageError: The image id is not in the store (a ``KeyError``).
    """
    if isinstance(image, ImageRegions):
        return image
    if image is None:
        raise ValueError(
            "no region features given: pass an image as region features (an array (regions, width), a record "
            "with 'features', or ImageRegions) or as an image id together with a feature store"
        )
    if isinstance(image, (str, int, np.integer)):
        if feature_store is None:
            raise ValueError(
                f"image {image!r} is an image id, but no feature store was given to look it up in "
                "(pass feature_store=...)"
            )
        return ImageRegions.from_store(feature_store, image)
    if isinstance(image, Mapping) or (hasattr(image, "features") and not hasattr(image, "ndim")):
        return ImageRegions.from_record(image)
    if isinstance(image, (np.ndarray, torch.Tensor, list, tuple)):
        return ImageRegions(image)
    raise TypeError(f"cannot read region features from a {type(image).__name__}")


def _image_from_fields(fields: Mapping[str, Any], feature_store: Any) -> ImageRegions:
    """The image described by the keys ``image``, ``image_id`` or ``region_features`` (+ ``region_boxes``,
    ``image_size``) of a pipeline input."""
    if fields.get("image") is not None:
        return resolve_image(fields["image"], feature_store)
    if fields.get("image_id") is not None:
        return resolve_image(fields["image_id"], feature_store)
    if fields.get("region_features") is not None:
        size = fields.get("image_size")
        width, height = (None, None) if size is None else size
        return ImageRegions(fields["region_features"], fields.get("region_boxes"), width, height)
    return resolve_image(None)


def _check_text(text: Any, what: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"the {what} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"the {what} is empty: give at least one word")
    return text


# --------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------


def load_task_model(pretrained_model_name_or_path: Any, task: str, **kwargs: Any):
    """Load the model of a checkpoint that can run ``task``, in eval mode.

    A checkpoint saved from the task's head loads as that head, one saved from [`HierarchicalVLForMultiTask`] as the
    multi-task model; any other (another task's head, the bare encoder) is refused because its ``task`` decoder
    would be untrained.

    Args:
        pretrained_model_name_or_path: A local folder or a Hub repository id.
        task: ``"vqa"``, ``"retrieval"`` or ``"grounding"``.
        **kwargs: Passed to ``from_pretrained`` (``revision``, ``token``, ``dtype``, ...).
    """
    if task not in _HEADS:
        raise ValueError(f"unknown task {task!r}; choose from {sorted(_HEADS)}")
    kwargs.pop("trust_remote_code", None)  # the classes are this package's own
    kwargs.pop("code_revision", None)
    config = kwargs.pop("config", None)
    if config is None:
        hub_keys = ("revision", "token", "local_files_only", "cache_dir", "subfolder")
        config = HierarchicalVLConfig.from_pretrained(
            pretrained_model_name_or_path, **{key: kwargs[key] for key in hub_keys if key in kwargs}
        )
    if getattr(config, "model_type", None) != HierarchicalVLConfig.model_type:
        raise ValueError(
            f"{pretrained_model_name_or_path} is not a hierarchical-vl checkpoint "
            f"(model_type {getattr(config, 'model_type', None)!r})"
        )
    architectures = list(config.architectures or [])
    head = _HEADS[task]
    if not architectures or head.__name__ in architectures:
        model_class = head
    elif _MULTI_TASK in architectures:
        if task not in config.task_layers:
            raise ValueError(
                f"the multi-task checkpoint {pretrained_model_name_or_path} has no {task} decoder "
                f"(its tasks: {sorted(config.task_layers)})"
            )
        model_class = HierarchicalVLForMultiTask
    else:
        raise ValueError(
            f"{pretrained_model_name_or_path} holds a {', '.join(architectures)}, which has no {task} decoder; "
            f"use a checkpoint of {head.__name__} or {_MULTI_TASK}"
        )
    return model_class.from_pretrained(pretrained_model_name_or_path, config=config, **kwargs).eval()


def _task_forward(model: Any, task: str):
    """A callable running ``task`` on ``model`` (a head of that task, or the multi-task model)."""
    if task not in getattr(model, "tasks", []):
        raise ValueError(
            f"a {type(model).__name__} cannot run {task}; use a {_HEADS[task].__name__} or a {_MULTI_TASK}"
        )
    return functools.partial(model.forward_task, task)


def _on(tensors: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in tensors.items()
    }


# --------------------------------------------------------------------------------------------------------------
# Predictors
# --------------------------------------------------------------------------------------------------------------


class _TaskPredictor:
    """What the three predictors share: the model, the processor, the feature store, input checks."""

    task = ""

    def __init__(self, model: Any, processor: Any, feature_store: Any = None, max_words: int | None = None):
        self.model = model
        self._run_model = _task_forward(model, self.task)
        if isinstance(processor, PreTrainedTokenizerBase):
            processor = HierarchicalVLProcessor(processor, max_regions=model.config.max_regions)
        if processor is None or not callable(processor) or getattr(processor, "tokenizer", None) is None:
            raise ValueError(
                "a HierarchicalVLProcessor (or the word tokenizer) is needed to prepare the inputs; pass "
                "processor=..., or load from a checkpoint folder that holds processor_config.json and tokenizer.json"
            )
        self.processor = processor
        self.feature_store = feature_store
        self.max_words = max_words or self._default_max_words(model.config)

    @staticmethod
    def _default_max_words(config: HierarchicalVLConfig) -> int:
        return config.max_caption_words

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: Any, feature_store: Any = None, device: Any = None, **kwargs: Any
    ):
        """Load the model and the processor of a checkpoint (a folder or a Hub repository id).

        Args:
            pretrained_model_name_or_path: The checkpoint.
            feature_store: Where image ids are looked up.
            device: Device to move the model to.
            **kwargs: Passed to the model's ``from_pretrained``.
        """
        model = load_task_model(pretrained_model_name_or_path, cls.task, **kwargs)
        if device is not None:
            model.to(device)
        hub_keys = ("revision", "token", "local_files_only", "cache_dir")
        processor = HierarchicalVLProcessor.from_pretrained(
            pretrained_model_name_or_path, **{key: kwargs[key] for key in hub_keys if key in kwargs}
        )
        return cls(model, processor, feature_store=feature_store)

    @property
    def config(self) -> HierarchicalVLConfig:
        return self.model.config

    def image(self, image: Any, feature_store: Any = None) -> ImageRegions:
        """Resolve ``image`` (see [`resolve_image`]) with this predictor's feature store by default."""
        return resolve_image(image, feature_store if feature_store is not None else self.feature_store)

    def _region_inputs(self, regions: Sequence[ImageRegions]) -> dict[str, torch.Tensor]:
        width = self.config.region_feature_dim
        for index, item in enumerate(regions):
            if item.features.shape[1] != width:
                name = f"image {item.image_id!r}" if item.image_id is not None else f"image {index}"
                raise ValueError(
                    f"{name} has region features of width {item.features.shape[1]}, but this model expects "
                    f"{width} (config.region_feature_dim)"
                )
        if not self.config.use_box_embedding:
            # Boxes only matter to the model with box embeddings; they are kept for the outputs.
            return dict(self.processor(region_features=[item.features for item in regions]))
        missing = [index for index, item in enumerate(regions) if item.boxes is None or item.size is None]
        if missing:
            raise ValueError(
                f"this model embeds region boxes (config.use_box_embedding): images {missing} need boxes, width "
                "and height"
            )
        return dict(
            self.processor(
                region_features=[item.features for item in regions],
                region_boxes=[item.boxes for item in regions],
                image_sizes=[item.size for item in regions],
            )
        )

    def _text_inputs(self, texts: Sequence[str], phrase_char_spans=None) -> dict[str, torch.Tensor]:
        return dict(self.processor(text=list(texts), phrase_char_spans=phrase_char_spans, max_words=self.max_words))

    def _forward(self, inputs: Mapping[str, Any]):
        with self.model.inference():
            return self._run_model(**_on(inputs, self.model.device))

    def words(self, text: str) -> list[str]:
        """The words of ``text`` as the model reads them (one per token, after truncation), in their original case."""
        encoded = self.processor.tokenizer(
            text, add_special_tokens=False, truncation=True, max_length=self.max_words, return_offsets_mapping=True
        )
        return [text[start:end] for start, end in encoded["offset_mapping"]]


def _attention_record(
    words: list[str],
    word_weights: torch.Tensor,
    region_weights: torch.Tensor,
    regions: ImageRegions,
    num_regions: int,
) -> dict[str, Any]:
    """The decoder's summary attention in plain Python types (see [`visualization.render_attention`])."""
    return {
        "words": words,
        "word_weights": word_weights[: len(words)].float().tolist(),
        "region_weights": region_weights[:num_regions].float().tolist(),
        "boxes": None if regions.boxes is None else regions.boxes[:num_regions].tolist(),
        "image_size": None if regions.size is None else list(regions.size),
        "image_id": regions.image_id,
    }


class VQAPredictor(_TaskPredictor):
    """Answers questions about images with a VQA head or a multi-task model.

    Answers are the labels of ``model.config.id2label``; each comes with its score ``sigmoid(logit)``.

    Args:
        model: A [`HierarchicalVLForVisualQuestionAnswering`] or a [`HierarchicalVLForMultiTask`] with a VQA decoder.
        processor: The [`HierarchicalVLProcessor`] (or the word tokenizer) of the checkpoint.
        feature_store: Where image ids are looked up.
        max_words: Cap on question words (``config.max_question_words`` by default).
    """

    task = "vqa"

    @staticmethod
    def _default_max_words(config: HierarchicalVLConfig) -> int:
        return config.max_question_words

    def predict(
        self, question: str, image: Any, top_k: int = 5, return_attention: bool = False
    ) -> list[dict[str, Any]] | dict[str, Any]:
        """The ``top_k`` answers to one question, best first.

        Args:
            question: The question.
            image: The image (see [`resolve_image`]).
            top_k: Number of answers.
            return_attention: Also return the decoder's attention over words and regions.

        Returns:
            ``[{"answer", "score"}, ...]``; with ``return_attention``, ``{"answers": [...], "attention": {"words",
            "word_weights", "region_weights", "boxes", "image_size", "image_id"}}``.
        """
        return self.predict_batch([question], [image], top_k=top_k, return_attention=return_attention)[0]

    def predict_batch(
        self,
        questions: Sequence[str],
        images: Sequence[Any],
        top_k: int = 5,
        batch_size: int = 64,
        return_attention: bool = False,
    ) -> list:
        """[`predict`] for many (question, image) pairs, ``batch_size`` per forward pass."""
        if len(questions) != len(images):
            raise ValueError(f"got {len(questions)} questions but {len(images)} images")
        results: list = []
        for start in range(0, len(questions), batch_size):
            stop = start + batch_size
            inputs, examples = self.encode(questions[start:stop], images[start:stop])
            results.extend(self.decode(self.run(inputs), examples, top_k, return_attention))
        return results

    def encode(
        self, questions: Sequence[str], images: Sequence[Any], feature_store: Any = None
    ) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
        """Model inputs of a batch and, per example, what decoding needs (the question and its regions)."""
        questions = [_check_text(question, "question") for question in questions]
        regions = [self.image(image, feature_store) for image in images]
        inputs = {**self._text_inputs(questions), **self._region_inputs(regions)}
        examples = [{"question": q, "regions": r} for q, r in zip(questions, regions)]
        return inputs, examples

    def run(self, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """One forward pass: ``logits`` `(B, A)`, ``text_attention`` `(B, N)`, ``image_attention`` `(B, T)` and the
        masks."""
        output = self._forward(inputs)
        return {
            "logits": output.logits,
            "text_attention": output.text_attention,
            "image_attention": output.image_attention,
            "attention_mask": inputs["attention_mask"],
            "region_mask": inputs["region_mask"],
        }

    def decode(
        self,
        outputs: Mapping[str, torch.Tensor],
        examples: Sequence[Mapping[str, Any]],
        top_k: int = 5,
        return_attention: bool = False,
    ) -> list:
        """Top-k answers (and attention) of each example of a batch."""
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        scores = torch.sigmoid(outputs["logits"].float().cpu())  # (B, A)
        values, indices = scores.topk(min(top_k, scores.shape[-1]), dim=-1)  # (B, k)
        id2label = self.config.id2label
        results = []
        for row, example in enumerate(examples):
            answers = [
                {"answer": id2label[int(index)], "score": float(value)}
                for value, index in zip(values[row].tolist(), indices[row].tolist())
            ]
            if not return_attention:
                results.append(answers)
                continue
            num_regions = int(outputs["region_mask"][row].sum())
            attention = _attention_record(
                self.words(example["question"]),
                outputs["text_attention"][row].cpu(),
                outputs["image_attention"][row].cpu(),
                example["regions"],
                num_regions,
            )
            results.append({"answers": answers, "attention": attention})
        return results


class RetrievalPredictor(_TaskPredictor):
    """Ranks captions for an image, or images for a caption, with a retrieval head or a multi-task model.

    Each (image, caption) pair gets the matching score ``sigmoid(v_I^T W v_S)``. The work that depends on one
    modality only is done once per caption and once per image (``model.score_pairs``), the pairs are scored in
    batches of ``batch_size``.

    Args:
        model: A [`HierarchicalVLForImageTextRetrieval`] or a [`HierarchicalVLForMultiTask`] with a retrieval decoder.
        processor: The [`HierarchicalVLProcessor`] (or the word tokenizer) of the checkpoint.
        feature_store: Where image ids are looked up.
        max_words: Cap on caption words (``config.max_caption_words`` by default).
    """

    task = "retrieval"

    def rank_captions(
        self, image: Any, captions: Sequence[str], top_k: int | None = None, batch_size: int = 256
    ) -> list[dict[str, Any]]:
        """Captions ranked for one image, best first: ``[{"caption", "index", "score"}, ...]``."""
        inputs, example = self.encode([image], captions, query="image")
        return self.decode(self.run(inputs, batch_size), example, top_k)

    def rank_images(
        self, caption: str, images: Sequence[Any], top_k: int | None = None, batch_size: int = 256
    ) -> list[dict[str, Any]]:
        """Images ranked for one caption, best first: ``[{"image_id", "index", "score"}, ...]``."""
        inputs, example = self.encode(images, [caption], query="caption")
        return self.decode(self.run(inputs, batch_size), example, top_k)

    def score(self, images: Sequence[Any], captions: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Matching scores of every (image, caption) pair: `(I, C)` float32."""
        inputs, _ = self.encode(images, captions, query="image")
        logits = self.run(inputs, batch_size)["logits"]  # (I * C,)
        return torch.sigmoid(logits).numpy().reshape(len(images), len(captions))

    def explain(self, image: Any, caption: str) -> dict[str, Any]:
        """Score of one pair and the decoder's attention over its words and regions: ``{"score", "attention"}``."""
        caption = _check_text(caption, "caption")
        regions = self.image(image)
        inputs = {**self._text_inputs([caption]), **self._region_inputs([regions])}
        output = self._forward(inputs)
        attention = _attention_record(
            self.words(caption),
            output.text_attention[0].cpu(),
            output.image_attention[0].cpu(),
            regions,
            int(inputs["region_mask"][0].sum()),
        )
        return {"score": float(torch.sigmoid(output.logits[0].float())), "attention": attention}

    def encode(
        self, images: Sequence[Any], captions: Sequence[str], query: str = "image", feature_store: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Inputs of all (image, caption) pairs, image-major, and what decoding needs.

        Args:
            images: The images (see [`resolve_image`]).
            captions: The captions.
            query: ``"image"`` to rank the captions (of one image), ``"caption"`` to rank the images.
            feature_store: Overrides the predictor's store.
        """
        if query not in ("image", "caption"):
            raise ValueError(f"query must be 'image' or 'caption', got {query!r}")
        if isinstance(captions, str):
            captions = [captions]
        if not len(captions):
            raise ValueError("give at least one caption")
        if not len(images):
            raise ValueError("give at least one image")
        captions = [_check_text(caption, "caption") for caption in captions]
        regions = [self.image(image, feature_store) for image in images]
        image_index = torch.arange(len(regions)).repeat_interleave(len(captions))  # (P,) image-major
        text_index = torch.arange(len(captions)).repeat(len(regions))  # (P,)
        inputs = {
            "text_inputs": self._text_inputs(captions),
            "image_inputs": self._region_inputs(regions),
            "text_index": text_index,
            "image_index": image_index,
        }
        return inputs, {"query": query, "captions": captions, "regions": regions}

    def run(self, inputs: Mapping[str, Any], batch_size: int = 256) -> dict[str, torch.Tensor]:
        """Matching logits `(P,)` of the encoded pairs."""
        device = self.model.device
        with self.model.inference():
            logits = self.model.score_pairs(
                _on(inputs["text_inputs"], device),
                _on(inputs["image_inputs"], device),
                inputs["text_index"],
                inputs["image_index"],
                batch_size=batch_size,
            )
        return {"logits": logits.float().cpu()}

    def decode(
        self, outputs: Mapping[str, torch.Tensor], example: Mapping[str, Any], top_k: int | None = None
    ) -> list[dict[str, Any]]:
        """The ranking, best first (ties keep the input order)."""
        scores = torch.sigmoid(outputs["logits"].float()).numpy()  # (P,)
        order = np.argsort(-scores, kind="stable")
        if top_k is not None:
            order = order[:top_k]
        if example["query"] == "image":
            return [
                {"caption": example["captions"][i], "index": int(i), "score": float(scores[i])} for i in order
            ]
        return [
            {"image_id": example["regions"][i].image_id, "index": int(i), "score": float(scores[i])} for i in order
        ]


class GroundingPredictor(_TaskPredictor):
    """Finds the regions that phrases of a caption refer to, with a grounding head or a multi-task model.

    Each (phrase, region) pair gets ``sigmoid(p_h^T W i_t)``; the best boxes of each phrase are returned.

    Args:
        model: A [`HierarchicalVLForVisualGrounding`] or a [`HierarchicalVLForMultiTask`] with a grounding decoder.
        processor: The [`HierarchicalVLProcessor`] (or the word tokenizer) of the checkpoint.
        feature_store: Where image ids are looked up.
        max_words: Cap on caption words (``config.max_caption_words`` by default).
    """

    task = "grounding"

    def predict(
        self, caption: str, image: Any, phrases: Sequence[str | tuple[int, int]], top_k: int = 1
    ) -> list[dict[str, Any]]:
        """The ``top_k`` regions of each phrase.

        Args:
            caption: The caption.
            image: The image (see [`resolve_image`]).
            phrases: Each phrase as its text (found in the caption, left to right) or as its ``(start, end)``
                character span (end exclusive).
            top_k: Regions per phrase.

        Returns:
            One entry per phrase: ``{"phrase", "span": [start, end], "boxes": [{"region", "score", "box"}, ...]}``,
            best region first; ``box`` is x1, y1, x2, y2 in pixels (``None`` without boxes). A phrase whose words
            were all cut by the word cap has no boxes.
        """
        inputs, examples = self.encode([caption], [image], [phrases])
        return self.decode(self.run(inputs), examples, top_k)[0]

    def encode(
        self,
        captions: Sequence[str],
        images: Sequence[Any],
        phrases: Sequence[Sequence[str | tuple[int, int]]],
        feature_store: Any = None,
    ) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
        """Model inputs of a batch of (caption, image, phrases) and, per example, what decoding needs."""
        if not len(captions) == len(images) == len(phrases):
            raise ValueError(f"got {len(captions)} captions, {len(images)} images and {len(phrases)} phrase lists")
        captions = [_check_text(caption, "caption") for caption in captions]
        spans = [_phrase_char_spans(caption, items) for caption, items in zip(captions, phrases)]
        regions = [self.image(image, feature_store) for image in images]
        inputs = {**self._text_inputs(captions, phrase_char_spans=spans), **self._region_inputs(regions)}
        examples = [{"caption": c, "spans": s, "regions": r} for c, s, r in zip(captions, spans, regions)]
        return inputs, examples

    def run(self, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """One forward pass: ``logits`` `(B, H, T)` and the masks."""
        output = self._forward(inputs)
        return {"logits": output.logits, "phrase_mask": inputs["phrase_mask"], "region_mask": inputs["region_mask"]}

    def decode(
        self, outputs: Mapping[str, torch.Tensor], examples: Sequence[Mapping[str, Any]], top_k: int = 1
    ) -> list[list[dict[str, Any]]]:
        """Best regions of each phrase of each example."""
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        logits = outputs["logits"].float().cpu()  # (B, H, T)
        results = []
        for row, example in enumerate(examples):
            regions = example["regions"]
            num_regions = int(outputs["region_mask"][row].sum())
            scores = torch.sigmoid(logits[row, :, :num_regions])  # (H, T)
            phrases = []
            for column, (start, end) in enumerate(example["spans"]):
                entry = {"phrase": example["caption"][start:end], "span": [start, end], "boxes": []}
                if not int(outputs["phrase_mask"][row, column]):
                    logger.warning(
                        "phrase %r lies beyond the first %d words of the caption and was not grounded",
                        entry["phrase"],
                        self.max_words,
                    )
                else:
                    values, indices = scores[column].topk(min(top_k, num_regions))
                    entry["boxes"] = [
                        {
                            "region": int(index),
                            "score": float(value),
                            "box": None if regions.boxes is None else regions.boxes[int(index)].tolist(),
                        }
                        for value, index in zip(values.tolist(), indices.tolist())
                    ]
                phrases.append(entry)
            results.append(phrases)
        return results


def _phrase_char_spans(caption: str, phrases: Sequence[str | tuple[int, int]]) -> list[tuple[int, int]]:
    """Character spans ``[start, end)`` of the phrases; texts are searched left to right (then anywhere, then
    ignoring case)."""
    if isinstance(phrases, str) or not len(phrases):
        raise ValueError("give the phrases to ground as a non-empty list of texts or (start, end) spans")
    spans, cursor = [], 0
    for phrase in phrases:
        if isinstance(phrase, str):
            if not phrase.strip():
                raise ValueError("a phrase is empty")
            start = caption.find(phrase, cursor)
            if start < 0:
                start = caption.find(phrase)
            if start < 0:
                start = caption.lower().find(phrase.lower())
            if start < 0:
                raise ValueError(f"phrase {phrase!r} does not occur in the caption {caption!r}")
            end = start + len(phrase)
        else:
            start, end = (int(value) for value in phrase)
            if not 0 <= start < end <= len(caption):
                raise ValueError(
                    f"phrase span ({start}, {end}) is not inside the caption of {len(caption)} characters"
                )
        if not caption[start:end].strip():
            raise ValueError(f"phrase span ({start}, {end}) covers no word of the caption")
        spans.append((start, end))
        cursor = end
    return spans


def predict_vqa(model: Any, processor: Any, question: str, image: Any, top_k: int = 5, feature_store: Any = None):
    """One-call VQA: the ``top_k`` answers to ``question`` about ``image`` (see [`VQAPredictor.predict`])."""
    return VQAPredictor(model, processor, feature_store).predict(question, image, top_k=top_k)


def rank_captions(
    model: Any, processor: Any, image: Any, captions: Sequence[str], top_k: int | None = None, feature_store=None
):
    """One-call retrieval: ``captions`` ranked for ``image`` (see [`RetrievalPredictor.rank_captions`])."""
    return RetrievalPredictor(model, processor, feature_store).rank_captions(image, captions, top_k=top_k)


def rank_images(
    model: Any, processor: Any, caption: str, images: Sequence[Any], top_k: int | None = None, feature_store=None
):
    """One-call retrieval: ``images`` ranked for ``caption`` (see [`RetrievalPredictor.rank_images`])."""
    return RetrievalPredictor(model, processor, feature_store).rank_images(caption, images, top_k=top_k)


def predict_grounding(
    model: Any, processor: Any, caption: str, image: Any, phrases, top_k: int = 1, feature_store: Any = None
):
    """One-call grounding: the best boxes of each phrase (see [`GroundingPredictor.predict`])."""
    return GroundingPredictor(model, processor, feature_store).predict(caption, image, phrases, top_k=top_k)


# --------------------------------------------------------------------------------------------------------------
# transformers pipelines
# --------------------------------------------------------------------------------------------------------------


class _HierarchicalVLPipeline(Pipeline):
    """Builds the task's predictor from the pipeline's model and processor; subclasses map the pipeline's steps
    onto the predictor's ``encode``, ``run`` and ``decode``."""

    predictor_class: type[_TaskPredictor] = _TaskPredictor
    input_keys: tuple[str, ...] = ()
    _load_processor = None  # loaded from the checkpoint when there; a tokenizer given instead is wrapped
    _load_tokenizer = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False

    def __init__(self, *args: Any, feature_store: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.predictor = self.predictor_class(
            self.model, self.processor if self.processor is not None else self.tokenizer, feature_store
        )

    def __call__(self, inputs: Any = None, **kwargs: Any):
        """Run on one input (a dict), a list of them, or on the input given as keyword arguments."""
        if inputs is None:
            inputs = {key: kwargs.pop(key) for key in self.input_keys if key in kwargs}
            if not inputs:
                raise ValueError(f"give the input as a dict or as keyword arguments among {list(self.input_keys)}")
        return super().__call__(inputs, **kwargs)

    @staticmethod
    def _check_input(inputs: Any, required: tuple[str, ...]) -> Mapping[str, Any]:
        if not isinstance(inputs, Mapping):
            raise TypeError(f"each input must be a dict with {list(required)}, got {type(inputs).__name__}")
        missing = [key for key in required if inputs.get(key) is None]
        if missing:
            raise ValueError(f"the input lacks {missing}")
        return inputs


def _one(value: Any) -> Any:
    """The single example of a pipeline step: after native batching and unbatching items arrive unwrapped, without
    batching as one-element lists."""
    return value[0] if isinstance(value, list) else value


class VQAPipeline(_HierarchicalVLPipeline):
    """``pipeline("hierarchical-vl-vqa", model=checkpoint)``: top-k answers to a question about an image.

    Input: ``{"question": str}`` plus the image as ``image`` (anything [`resolve_image`] accepts), ``image_id``
    (looked up in the ``feature_store`` given to the pipeline or the call), or ``region_features`` with optional
    ``region_boxes`` and ``image_size`` ``(width, height)``. Parameters: ``top_k`` (5), ``return_attention``.
    Lists of inputs are batched with the pipeline's ``batch_size``.
    """

    predictor_class = VQAPredictor
    input_keys = ("question", "image", "image_id", "region_features", "region_boxes", "image_size")

    def _sanitize_parameters(self, top_k=None, return_attention=None, feature_store=None, **kwargs):
        preprocess = {} if feature_store is None else {"feature_store": feature_store}
        postprocess = {}
        if top_k is not None:
            postprocess["top_k"] = top_k
        if return_attention is not None:
            postprocess["return_attention"] = return_attention
        return preprocess, {}, postprocess

    def preprocess(self, inputs, feature_store=None):
        inputs = self._check_input(inputs, ("question",))
        store = feature_store if feature_store is not None else self.predictor.feature_store
        tensors, examples = self.predictor.encode([inputs["question"]], [_image_from_fields(inputs, store)])
        return {**tensors, "example": examples[0]}

    def _forward(self, model_inputs):
        examples = model_inputs.pop("example")
        return {**self.predictor.run(model_inputs), "example": examples}

    def postprocess(self, model_outputs, top_k=5, return_attention=False):
        example = _one(model_outputs.pop("example"))
        return self.predictor.decode(model_outputs, [example], top_k, return_attention)[0]


class RetrievalPipeline(_HierarchicalVLPipeline):
    """``pipeline("hierarchical-vl-retrieval", model=checkpoint)``: ranks captions for an image or images for a
    caption.

    Input: ``{"image": ..., "captions": [...]}`` (or ``image_id``) ranks the captions; ``{"caption": str,
    "images": [...]}`` (or ``image_ids``) ranks the images. Parameters: ``top_k`` (all by default) and
    ``batch_size``, the number of (image, caption) pairs per forward pass (256).
    """

    predictor_class = RetrievalPredictor
    input_keys = ("image", "image_id", "captions", "caption", "images", "image_ids")

    def __call__(self, inputs: Any = None, batch_size: int | None = None, **kwargs: Any):
        if batch_size is not None:
            kwargs["pair_batch_size"] = batch_size
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(self, top_k=None, pair_batch_size=None, feature_store=None, **kwargs):
        preprocess = {} if feature_store is None else {"feature_store": feature_store}
        forward = {} if pair_batch_size is None else {"batch_size": pair_batch_size}
        postprocess = {} if top_k is None else {"top_k": top_k}
        return preprocess, forward, postprocess

    def preprocess(self, inputs, feature_store=None):
        inputs = self._check_input(inputs, ())
        store = feature_store if feature_store is not None else self.predictor.feature_store
        if inputs.get("captions") is not None:
            images, captions, query = [_image_from_fields(inputs, store)], inputs["captions"], "image"
        elif inputs.get("caption") is not None:
            images = inputs.get("images") if inputs.get("images") is not None else inputs.get("image_ids")
            if images is None:
                raise ValueError("to rank images for a caption, give 'images' (or 'image_ids')")
            captions, query = [inputs["caption"]], "caption"
        else:
            raise ValueError("give 'captions' (to rank them for an image) or 'caption' (to rank 'images')")
        tensors, example = self.predictor.encode(images, captions, query=query, feature_store=store)
        return {**tensors, "example": example}

    def _forward(self, model_inputs, batch_size=256):
        example = model_inputs.pop("example")
        return {**self.predictor.run(model_inputs, batch_size), "example": example}

    def postprocess(self, model_outputs, top_k=None):
        return self.predictor.decode(model_outputs, model_outputs["example"], top_k)

    def get_iterator(self, inputs, num_workers, batch_size, *args, **kwargs):
        # Batching happens over pairs inside one input; inputs themselves go one at a time.
        return super().get_iterator(inputs, num_workers, 1, *args, **kwargs)


class GroundingPipeline(_HierarchicalVLPipeline):
    """``pipeline("hierarchical-vl-grounding", model=checkpoint)``: the best boxes of each phrase of a caption.

    Input: ``{"caption": str, "phrases": [...]}`` (phrase texts or ``(start, end)`` character spans) plus the image
    as in [`VQAPipeline`]. Parameter: ``top_k`` regions per phrase (1).
    """

    predictor_class = GroundingPredictor
    input_keys = ("caption", "phrases", "image", "image_id", "region_features", "region_boxes", "image_size")

    def _sanitize_parameters(self, top_k=None, feature_store=None, **kwargs):
        preprocess = {} if feature_store is None else {"feature_store": feature_store}
        postprocess = {} if top_k is None else {"top_k": top_k}
        return preprocess, {}, postprocess

    def preprocess(self, inputs, feature_store=None):
        inputs = self._check_input(inputs, ("caption", "phrases"))
        store = feature_store if feature_store is not None else self.predictor.feature_store
        tensors, examples = self.predictor.encode(
            [inputs["caption"]], [_image_from_fields(inputs, store)], [inputs["phrases"]]
        )
        return {**tensors, "example": examples[0]}

    def _forward(self, model_inputs):
        examples = model_inputs.pop("example")
        return {**self.predictor.run(model_inputs), "example": examples}

    def postprocess(self, model_outputs, top_k=1):
        example = _one(model_outputs.pop("example"))
        return self.predictor.decode(model_outputs, [example], top_k)[0]


class _TaskModelLoader:
    """What the pipeline factory calls to load a checkpoint for a task (see [`load_task_model`])."""

    task = ""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any):
        return load_task_model(pretrained_model_name_or_path, cls.task, **kwargs)


class _VQAModelLoader(_TaskModelLoader):
    task = "vqa"


class _RetrievalModelLoader(_TaskModelLoader):
    task = "retrieval"


class _GroundingModelLoader(_TaskModelLoader):
    task = "grounding"


_PIPELINES = {
    "vqa": (VQAPipeline, _VQAModelLoader),
    "retrieval": (RetrievalPipeline, _RetrievalModelLoader),
    "grounding": (GroundingPipeline, _GroundingModelLoader),
}


def register_pipelines() -> None:
    """Register the three pipelines with transformers, so that ``pipeline("hierarchical-vl-vqa", model=...)``,
    ``"hierarchical-vl-retrieval"`` and ``"hierarchical-vl-grounding"`` work. Idempotent."""
    for task, (pipeline_class, loader) in _PIPELINES.items():
        name = PIPELINE_TASKS[task]
        if PIPELINE_REGISTRY.supported_tasks.get(name, {}).get("impl") is pipeline_class:
            continue
        PIPELINE_REGISTRY.register_pipeline(name, pipeline_class=pipeline_class, pt_model=loader, type="multimodal")
