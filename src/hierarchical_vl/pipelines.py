"""transformers pipelines for VQA, image-caption retrieval and visual grounding, and thin predictors over them.

After [`register_pipelines`] (done by ``import hierarchical_vl``)::

    vqa = pipeline("hierarchical-vl-vqa", model="path/to/checkpoint", feature_store=store)
    vqa({"question": "what colour is the cat?", "image_id": "42"}, top_k=3)
    # [{"answer": "black", "score": 0.91}, ...]

The predictors build the same pipelines around a model and a processor and give them task-shaped methods::

    VQAPredictor.from_pretrained("path/to/checkpoint", feature_store=store).predict("what colour is the cat?", "42")

An image is given by its region features (see [`resolve_image`]): an `(T, F)` array, a record ``{"features",
"boxes", "width", "height"}``, an [`ImageRegions`], or an image id looked up in the ``feature_store``. With a
region-feature extractor (``feature_extractor=`` a [`RegionFeatureExtractor`] or its folder, or a ``detector/``
folder saved beside the checkpoint), an image can also be the picture itself: a PIL image, an image file path or
an (H, W, 3) uint8 array::

    vqa = pipeline("hierarchical-vl-vqa", model="path/to/checkpoint", feature_extractor="path/to/detector")
    vqa({"question": "what colour is the cat?", "image": "cat.jpg"})

Checkpoints may hold a single-task head or the multi-task model; a multi-task model runs the pipeline's task.
Words of a question or caption that are not in the checkpoint's vocabulary are read as ``<unk>``: the pipelines
log them, and with ``return_unknown_words=True`` their output is a dict whose ``unknown_words`` lists them.
Scores are the model's sigmoid outputs (paper Eq. 7, 8 and 10). The pipelines here are those of
[`pipeline_hierarchical_vl`], the pipeline code every checkpoint carries (so that ``trust_remote_code=True`` runs
them where this package is not installed), plus raw images and the inference precision.

``precision="int8"`` (or ``"bf16"``), given to a pipeline (``pipeline(..., precision="int8")``) or a predictor,
runs the model through [`optimize_for_inference`] once it is loaded: the CPU inference fast path.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from transformers.pipelines import PIPELINE_REGISTRY

from . import pipeline_hierarchical_vl as _core
from .data.image_regions import ImageRegions, UnknownImageError, resolve_image
from .inference_optimization import optimize_for_inference
from .loading import load_checkpoint, load_processor
from .pipeline_hierarchical_vl import _given
from .processing_hierarchical_vl import HierarchicalVLProcessor
from .tasks import TASK_SPECS

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
    "register_pipelines",
    "resolve_image",
]

logger = logging.getLogger(__name__)

PIPELINE_TASKS = {task: spec.pipeline_id for task, spec in TASK_SPECS.items()}
"""transformers pipeline task name of each model task (from the task registry)."""

_HUB_KEYS = ("revision", "token", "local_files_only", "cache_dir")


def _hub_kwargs(kwargs: Mapping[str, Any], *extra: str) -> dict[str, Any]:
    return {key: kwargs[key] for key in (*_HUB_KEYS, *extra) if key in kwargs}


# --------------------------------------------------------------------------------------------------------------
# Pipelines: the checkpoint's pipeline code plus raw images through a region-feature extractor
# --------------------------------------------------------------------------------------------------------------


class _RawImages:
    """What the installed package adds to the pipelines of [`pipeline_hierarchical_vl`]: images given as pictures
    (a PIL image, an image file path, an (H, W, 3) uint8 array), turned into regions by a region-feature extractor
    (``feature_extractor=``, a [`RegionFeatureExtractor`] or its folder, or a ``detector/`` folder saved beside the
    checkpoint), and the model's inference precision: ``precision`` (``"int8"``, ``"bf16"`` or ``"fp32"``, given to
    the constructor; see [`optimize_for_inference`]; the model as loaded by default)."""

    def __init__(
        self, model: Any, processor: Any = None, tokenizer: Any = None, precision: str | None = None, **kwargs: Any
    ):
        if precision is not None:
            model = optimize_for_inference(model, precision)
        # transformers' own ``feature_extractor`` argument (audio) carries the region-feature extractor here
        extractor = kwargs.pop("feature_extractor", None) or kwargs.pop("region_feature_extractor", None)
        if extractor is None:  # a detector saved beside the checkpoint
            from .extraction.raw_images import detector_beside

            extractor = detector_beside(getattr(getattr(model, "config", None), "_name_or_path", None))
        if extractor is not None:
            kwargs["region_feature_extractor"] = extractor
        super().__init__(model, processor=processor, tokenizer=tokenizer, **kwargs)

    @property
    def feature_store(self) -> Any:
        """The feature store given to the constructor (a call's ``feature_store`` overrides it), or ``None``."""
        store = self._preprocess_params.get("feature_store")
        return getattr(store, "store", store) if type(store).__name__ == "RawImageLookup" else store

    @property
    def region_feature_extractor(self) -> Any:
        """The region-feature extractor that turns raw images into regions, or ``None``."""
        return getattr(self, "_raw_images", None)

    def _sanitize_parameters(self, feature_extractor=None, region_feature_extractor=None, **kwargs):
        feature_extractor = feature_extractor if feature_extractor is not None else region_feature_extractor
        preprocess, forward, postprocess = super()._sanitize_parameters(**kwargs)
        feature_store = preprocess.get("feature_store")
        if feature_extractor is None and feature_store is not None:  # a call's store: keep the extractor
            feature_extractor = getattr(self, "_raw_images", None)
        if feature_extractor is not None:
            preprocess["feature_store"] = self._raw_image_lookup(feature_extractor, feature_store)
        return preprocess, forward, postprocess

    def _raw_image_lookup(self, feature_extractor: Any, feature_store: Any) -> Any:
        """The feature store wrapped so that raw images run through ``feature_extractor`` (kept for later calls)."""
        from .extraction import RegionFeatureExtractor
        from .extraction.raw_images import RawImageLookup

        if isinstance(feature_extractor, RawImageLookup):
            feature_extractor = feature_extractor.extractor
        if not isinstance(feature_extractor, RegionFeatureExtractor):
            feature_extractor = RegionFeatureExtractor.from_pretrained(feature_extractor)
        self._raw_images = feature_extractor
        if feature_store is None:
            feature_store = (
                self._preprocess_params.get("feature_store") if hasattr(self, "_preprocess_params") else None
            )
        if isinstance(feature_store, RawImageLookup):
            feature_store = feature_store.store
        return RawImageLookup(feature_extractor, feature_store)

    def _resolve_image(self, image: Any, feature_store: Any) -> ImageRegions:
        """[`resolve_image`], and a raw image (PIL image, image path, uint8 array) when an extractor is configured."""
        from .extraction.raw_images import RawImageLookup, is_raw_image

        if isinstance(feature_store, RawImageLookup) and is_raw_image(image):
            return ImageRegions.from_record(feature_store.regions(image))
        if feature_store is None and is_raw_image(image) and not isinstance(image, (str, np.ndarray)):
            raise ValueError(
                "the image is a picture, but no region-feature extractor is configured: pass feature_extractor=... "
                "(a RegionFeatureExtractor or its folder) or save one as detector/ beside the checkpoint"
            )
        return resolve_image(image, feature_store)


class VQAPipeline(_RawImages, _core.VQAPipeline):
    __doc__ = _core.VQAPipeline.__doc__


class RetrievalPipeline(_RawImages, _core.RetrievalPipeline):
    __doc__ = _core.RetrievalPipeline.__doc__


class GroundingPipeline(_RawImages, _core.GroundingPipeline):
    __doc__ = _core.GroundingPipeline.__doc__


class _TaskModelLoader:
    """What transformers' ``pipeline()`` calls to load a checkpoint (the registered ``pt_model``); one subclass per
    task, made by [`register_pipelines`]."""

    model_task = ""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any):
        return load_checkpoint(pretrained_model_name_or_path, task=cls.model_task, **kwargs)


def register_pipelines() -> None:
    """Register the three pipelines with transformers, so that ``pipeline("hierarchical-vl-vqa", model=...)``,
    ``"hierarchical-vl-retrieval"`` and ``"hierarchical-vl-grounding"`` work. Idempotent."""
    for pipeline_class in (VQAPipeline, RetrievalPipeline, GroundingPipeline):
        spec = TASK_SPECS[pipeline_class.model_task]
        if PIPELINE_REGISTRY.supported_tasks.get(spec.pipeline_id, {}).get("impl") is pipeline_class:
            continue
        loader = type(f"{spec.head}Loader", (_TaskModelLoader,), {"model_task": spec.name, "__module__": __name__})
        PIPELINE_REGISTRY.register_pipeline(
            spec.pipeline_id, pipeline_class=pipeline_class, pt_model=loader, type="multimodal"
        )


# --------------------------------------------------------------------------------------------------------------
# Predictors: the pipelines behind task-shaped methods
# --------------------------------------------------------------------------------------------------------------


class _Predictor:
    """Builds the pipeline of ``pipeline_class`` around a model and its processor.

    Args:
        model: The task's head or a [`HierarchicalVLForMultiTask`] with the task's decoder.
        processor: The [`HierarchicalVLProcessor`] (or the word tokenizer) of the checkpoint.
        feature_store: Where image ids are looked up.
        max_words: Cap on words (the task's cap in the model config by default).
        feature_extractor: A [`RegionFeatureExtractor`] (or its folder) that turns raw images into regions.
        precision: ``"int8"``, ``"bf16"`` or ``"fp32"``: the inference precision the model is run in (see
            [`optimize_for_inference`]); ``None`` keeps the model as given.
    """

    pipeline_class: type[_core._HierarchicalVLPipeline] = _core._HierarchicalVLPipeline

    def __init__(
        self,
        model: Any,
        processor: Any,
        feature_store: Any = None,
        max_words: int | None = None,
        feature_extractor: Any = None,
        precision: str | None = None,
    ):
        options = _given(feature_store=feature_store, max_words=max_words, region_feature_extractor=feature_extractor)
        device = None if getattr(model, "hf_device_map", None) else model.device  # stay where the model is
        self.pipeline = self.pipeline_class(model, processor=processor, device=device, precision=precision, **options)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: Any,
        feature_store: Any = None,
        device: Any = None,
        feature_extractor: Any = None,
        precision: str | None = None,
        **kwargs: Any,
    ):
        """Load the model and the processor of a checkpoint (a folder or a Hub repository id).

        Args:
            pretrained_model_name_or_path: The checkpoint.
            feature_store: Where image ids are looked up.
            device: Device to move the model to.
            feature_extractor: Turns raw images into regions (default: a ``detector/`` folder beside the
                checkpoint, if any).
            precision: The inference precision to run the loaded model in (see the class).
            **kwargs: Passed to the model's ``from_pretrained``.
        """
        model = load_checkpoint(pretrained_model_name_or_path, task=cls.pipeline_class.model_task, **kwargs)
        if device is not None:
            model.to(device)
        processor = load_processor(pretrained_model_name_or_path, model.config, **_hub_kwargs(kwargs))
        return cls(
            model, processor, feature_store=feature_store, feature_extractor=feature_extractor, precision=precision
        )

    @property
    def model(self) -> Any:
        return self.pipeline.model

    @property
    def processor(self) -> HierarchicalVLProcessor:
        return self.pipeline.processor

    @property
    def feature_store(self) -> Any:
        return self.pipeline.feature_store


class VQAPredictor(_Predictor):
    """Answers questions about images: a [`VQAPipeline`] behind ``predict`` and ``predict_batch``."""

    pipeline_class = VQAPipeline

    def predict(
        self,
        question: str,
        image: Any,
        top_k: int = 5,
        return_attention: bool = False,
        return_unknown_words: bool = False,
    ):
        """The ``top_k`` answers to one question about ``image`` (see [`resolve_image`]), as [`VQAPipeline`]
        returns them (``return_unknown_words``: with the question's words that are not in the vocabulary)."""
        return self.pipeline(
            {"question": question, "image": image},
            top_k=top_k,
            return_attention=return_attention,
            return_unknown_words=return_unknown_words,
        )

    def predict_batch(
        self,
        questions: Sequence[str],
        images: Sequence[Any],
        top_k: int = 5,
        batch_size: int = 64,
        return_attention: bool = False,
        return_unknown_words: bool = False,
    ) -> list:
        """[`predict`] for many (question, image) pairs, ``batch_size`` per forward pass."""
        if len(questions) != len(images):
            raise ValueError(f"got {len(questions)} questions but {len(images)} images")
        inputs = [{"question": question, "image": image} for question, image in zip(questions, images)]
        options = {"return_attention": return_attention, "return_unknown_words": return_unknown_words}
        return self.pipeline(inputs, batch_size=batch_size, top_k=top_k, **options)


class RetrievalPredictor(_Predictor):
    """Ranks captions and images: a [`RetrievalPipeline`] behind ``rank_captions``, ``rank_images``, ``score`` and
    ``explain``; ``batch_size`` is the number of (image, caption) pairs per forward pass."""

    pipeline_class = RetrievalPipeline

    def rank_captions(self, image: Any, captions: Sequence[str], top_k: int | None = None, batch_size: int = 256):
        """Captions ranked for one image, best first: ``[{"caption", "index", "score"}, ...]``."""
        return self.pipeline({"image": image, "captions": captions}, top_k=top_k, batch_size=batch_size)

    def rank_images(self, caption: str, images: Sequence[Any], top_k: int | None = None, batch_size: int = 256):
        """Images ranked for one caption, best first: ``[{"image_id", "index", "score"}, ...]``."""
        return self.pipeline({"caption": caption, "images": images}, top_k=top_k, batch_size=batch_size)

    def score(self, images: Sequence[Any], captions: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Matching scores of every (image, caption) pair: `(I, C)` float32."""
        scores = self.pipeline({"images": images, "captions": captions}, batch_size=batch_size)
        return np.asarray(scores, dtype=np.float32)

    def explain(self, image: Any, caption: str) -> dict[str, Any]:
        """Score of one pair, the decoder's attention over its words and regions and the caption's words that are
        not in the vocabulary: ``{"score", "attention", "unknown_words"}``."""
        return self.pipeline({"image": image, "caption": caption}, return_attention=True, return_unknown_words=True)


class GroundingPredictor(_Predictor):
    """Finds the regions that phrases of a caption refer to: a [`GroundingPipeline`] behind ``predict``."""

    pipeline_class = GroundingPipeline

    def predict(
        self,
        caption: str,
        image: Any,
        phrases: Sequence[str | tuple[int, int]],
        top_k: int = 1,
        return_unknown_words: bool = False,
    ):
        """The ``top_k`` regions of each phrase of ``caption`` (texts or ``(start, end)`` character spans), as
        [`GroundingPipeline`] returns them (``return_unknown_words``: with the caption's unknown words)."""
        inputs = {"caption": caption, "image": image, "phrases": phrases}
        return self.pipeline(inputs, top_k=top_k, return_unknown_words=return_unknown_words)
