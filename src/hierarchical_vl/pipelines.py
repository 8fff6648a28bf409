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
Scores are the model's sigmoid outputs (paper Eq. 7, 8 and 10).

``precision="int8"`` (or ``"bf16"``), given to a pipeline (``pipeline(..., precision="int8")``) or a predictor,
runs the model through [`optimize_for_inference`] once it is loaded: the CPU inference fast path.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers import Pipeline, PreTrainedTokenizerBase
from transformers.pipelines import PIPELINE_REGISTRY

from .data.image_regions import ImageRegions, UnknownImageError, resolve_image
from .inference_optimization import optimize_for_inference
from .loading import load_checkpoint, load_processor
from .modeling_hierarchical_vl import HierarchicalVLForMultiTask
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
# Input checks
# --------------------------------------------------------------------------------------------------------------

_IMAGE_KEYS = ("image", "image_id", "region_features", "region_boxes", "image_size")


def _resolve(image: Any, feature_store: Any) -> ImageRegions:
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


def _image_of(fields: Mapping[str, Any], feature_store: Any) -> ImageRegions:
    """The image of a pipeline input: its ``image``, ``image_id`` or ``region_features`` (with ``region_boxes``
    and ``image_size`` ``(width, height)``)."""
    if fields.get("image") is not None:
        return _resolve(fields["image"], feature_store)
    if fields.get("image_id") is not None:
        return _resolve(fields["image_id"], feature_store)
    if fields.get("region_features") is not None:
        size = fields.get("image_size")
        width, height = (None, None) if size is None else size
        return ImageRegions(fields["region_features"], fields.get("region_boxes"), width, height)
    return resolve_image(None)


def _check_input(inputs: Any, required: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(inputs, Mapping):
        raise TypeError(f"each input must be a dict with {list(required)}, got {type(inputs).__name__}")
    missing = [key for key in required if inputs.get(key) is None]
    if missing:
        raise ValueError(f"the input lacks {missing}")
    return inputs


def _check_text(text: Any, what: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"the {what} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"the {what} is empty: give at least one word")
    return text


def _check_top_k(top_k: int | None) -> None:
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(f"top_k must be an integer of at least 1, got {top_k!r}")


def _given(**parameters: Any) -> dict[str, Any]:
    """The parameters the caller set (``None`` means "not given", so the step's default applies)."""
    return {key: value for key, value in parameters.items() if value is not None}


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
                raise ValueError(f"phrase span ({start}, {end}) is not inside the caption of {len(caption)} characters")
        if not caption[start:end].strip():
            raise ValueError(f"phrase span ({start}, {end}) covers no word of the caption")
        spans.append((start, end))
        cursor = end
    return spans


# --------------------------------------------------------------------------------------------------------------
# Pipelines
# --------------------------------------------------------------------------------------------------------------


class _HierarchicalVLPipeline(Pipeline):
    """What the three pipelines share: the processor, the task check, image and text encoding, the forward pass.

    Pipeline-wide parameters (given to the constructor or to a call): ``feature_store``, where image ids are looked
    up, and ``max_words``, the cap on words (the task's cap in the model config by default). Given to the
    constructor only: ``precision`` (``"int8"``, ``"bf16"`` or ``"fp32"``), the model's inference precision
    (see [`optimize_for_inference`]; the model as loaded by default).
    """

    model_task = ""
    """The `TASK_SPECS` key of the task the pipeline runs."""
    _input_keys: tuple[str, ...] = ()
    _load_processor = None  # loaded from the checkpoint when there; a tokenizer given instead is wrapped
    _load_tokenizer = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False

    def __init__(
        self, model: Any, processor: Any = None, tokenizer: Any = None, precision: str | None = None, **kwargs: Any
    ):
        # transformers' own ``feature_extractor`` argument (audio) carries the region-feature extractor here
        extractor = kwargs.pop("feature_extractor", None) or kwargs.pop("region_feature_extractor", None)
        if extractor is None:  # a detector saved beside the checkpoint
            from .extraction.raw_images import detector_beside

            extractor = detector_beside(getattr(getattr(model, "config", None), "_name_or_path", None))
        if extractor is not None:
            kwargs["region_feature_extractor"] = extractor
        if isinstance(processor, PreTrainedTokenizerBase):
            processor, tokenizer = None, processor
        if processor is None and tokenizer is not None:
            processor = HierarchicalVLProcessor.from_config(tokenizer, model.config)
        if processor is None or not callable(processor) or getattr(processor, "tokenizer", None) is None:
            raise ValueError(
                "a HierarchicalVLProcessor (or the word tokenizer) is needed to prepare the inputs; pass "
                "processor=..., or load from a checkpoint folder that holds processor_config.json and tokenizer.json"
            )
        if self.model_task not in getattr(model, "tasks", ()):
            raise ValueError(
                f"a {type(model).__name__} cannot run {self.model_task}; use a {TASK_SPECS[self.model_task].head} "
                f"or a {HierarchicalVLForMultiTask.__name__}"
            )
        if precision is not None:
            model = optimize_for_inference(model, precision)
        super().__init__(model, processor=processor, tokenizer=processor.tokenizer, **kwargs)

    @property
    def feature_store(self) -> Any:
        """The feature store given to the constructor (a call's ``feature_store`` overrides it), or ``None``."""
        store = self._preprocess_params.get("feature_store")
        return getattr(store, "store", store) if type(store).__name__ == "RawImageLookup" else store

    @property
    def region_feature_extractor(self) -> Any:
        """The region-feature extractor that turns raw images into regions, or ``None``."""
        return getattr(self, "_raw_images", None)

    def __call__(self, inputs: Any = None, **kwargs: Any):
        """Run on one input (a dict), a list of them (see the class), or the input given as keyword arguments."""
        if inputs is None:
            inputs = {key: kwargs.pop(key) for key in self._input_keys if key in kwargs}
            if not inputs:
                raise ValueError(f"give the input as a dict or as keyword arguments among {list(self._input_keys)}")
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        if isinstance(inputs, list) and not inputs:
            return []
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(
        self, feature_store=None, max_words=None, feature_extractor=None, region_feature_extractor=None, **unknown
    ):
        feature_extractor = feature_extractor if feature_extractor is not None else region_feature_extractor
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown parameters {sorted(unknown)}")
        if max_words is not None and (not isinstance(max_words, (int, np.integer)) or max_words < 1):
            raise ValueError(f"max_words must be a positive integer, got {max_words!r}")
        if feature_extractor is None and feature_store is not None:  # a call's store: keep the extractor
            feature_extractor = getattr(self, "_raw_images", None)
        if feature_extractor is not None:
            feature_store = self._raw_image_lookup(feature_extractor, feature_store)
        return _given(feature_store=feature_store, max_words=max_words)

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

    def _unknown_words(self, texts: Sequence[str]) -> list[list[str]]:
        """The words of each text that are not in the vocabulary (`HierarchicalVLTokenizer.unknown_words`), logged
        when there are any."""
        found = [self.processor.unknown_words(text) for text in texts]
        unknown = list(dict.fromkeys(word for words in found for word in words))
        if unknown:
            logger.warning("words not in the vocabulary, read as %s: %s", self.tokenizer.unk_token, unknown)
        return found

    def _text_inputs(self, texts: list[str], max_words: int | None, phrase_char_spans=None) -> dict[str, Any]:
        """``input_ids`` and ``attention_mask`` `(B, N)` (with ``phrase_spans`` `(B, H, 2)` and ``phrase_mask``)."""
        if max_words is None:
            max_words = TASK_SPECS[self.model_task].max_words(self.model.config)
        return dict(self.processor(text=texts, phrase_char_spans=phrase_char_spans, max_words=max_words))

    def _region_inputs(self, regions: Sequence[ImageRegions]) -> dict[str, Any]:
        """``region_features`` `(B, T, F)` and ``region_mask`` `(B, T)` (with ``region_boxes`` when the model
        embeds boxes)."""
        config = self.model.config
        for index, item in enumerate(regions):
            if item.features.shape[1] != config.region_feature_dim:
                name = f"image {item.image_id!r}" if item.image_id is not None else f"image {index}"
                raise ValueError(
                    f"{name} has region features of width {item.features.shape[1]}, but this model expects "
                    f"{config.region_feature_dim} (config.region_feature_dim)"
                )
        features = [item.features for item in regions]
        if not config.use_box_embedding:  # boxes only matter to the model with box embeddings
            return dict(self.processor(region_features=features))
        missing = [index for index, item in enumerate(regions) if item.boxes is None or item.size is None]
        if missing:
            raise ValueError(
                f"this model embeds region boxes (config.use_box_embedding): images {missing} need boxes, width "
                "and height"
            )
        boxes, sizes = [item.boxes for item in regions], [item.size for item in regions]
        return dict(self.processor(region_features=features, region_boxes=boxes, image_sizes=sizes))

    def _run_model(self, model_inputs: Mapping[str, Any]):
        with self.model.inference():
            return self.model.forward_task(self.model_task, **model_inputs)

    def _attention(self, outputs: Mapping[str, torch.Tensor], text: str, regions: ImageRegions) -> dict[str, Any]:
        """The decoder's summary attention of the first row of ``outputs`` in plain Python types (see
        [`visualization.render_attention`]): ``{"words", "word_weights", "region_weights", "boxes",
        "image_size", "image_id"}``."""
        num_words, num_regions = int(outputs["attention_mask"][0].sum()), int(outputs["region_mask"][0].sum())
        offsets = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        return {
            "words": [text[start:end] for start, end in offsets[:num_words]],
            "word_weights": outputs["text_attention"][0, :num_words].float().tolist(),
            "region_weights": outputs["image_attention"][0, :num_regions].float().tolist(),
            "boxes": None if regions.boxes is None else regions.boxes[:num_regions].tolist(),
            "image_size": None if regions.size is None else list(regions.size),
            "image_id": regions.image_id,
        }


class VQAPipeline(_HierarchicalVLPipeline):
    """``pipeline("hierarchical-vl-vqa", model=checkpoint)``: the top-k answers to a question about an image.

    Input: ``{"question": str}`` plus the image as ``image`` (anything [`resolve_image`] accepts), ``image_id``
    (looked up in the ``feature_store``), or ``region_features`` with optional ``region_boxes`` and ``image_size``
    ``(width, height)``; or the same as keyword arguments. A list of inputs is batched, ``batch_size`` per forward
    pass.

    Parameters: ``top_k`` answers (5); ``return_attention`` (``False``) also returns the decoder's attention over
    words and regions; ``return_unknown_words`` (``False``) also returns the question's words that are not in the
    vocabulary.

    Returns:
        ``[{"answer", "score"}, ...]``, best first; with ``return_attention`` or ``return_unknown_words``,
        ``{"answers": [...], "attention": {"words", "word_weights", "region_weights", "boxes", "image_size",
        "image_id"}, "unknown_words": [...]}`` with the keys asked for.
    """

    model_task = "vqa"
    _input_keys = ("question", *_IMAGE_KEYS)

    def _sanitize_parameters(self, top_k=None, return_attention=None, return_unknown_words=None, **kwargs):
        _check_top_k(top_k)
        postprocess = _given(top_k=top_k, return_attention=return_attention, return_unknown_words=return_unknown_words)
        return super()._sanitize_parameters(**kwargs), {}, postprocess

    def preprocess(self, inputs, feature_store=None, max_words=None):
        inputs = _check_input(inputs, ("question",))
        question = _check_text(inputs["question"], "question")
        regions = _image_of(inputs, feature_store)
        model_inputs = {**self._text_inputs([question], max_words), **self._region_inputs([regions])}
        example = {"question": question, "regions": regions, "unknown_words": self._unknown_words([question])[0]}
        return {**model_inputs, "example": example}

    def _forward(self, model_inputs):
        example = model_inputs.pop("example")
        output = self._run_model(model_inputs)
        return {
            "logits": output.logits,  # (B, A)
            "text_attention": output.text_attention,  # (B, N)
            "image_attention": output.image_attention,  # (B, T)
            "attention_mask": model_inputs["attention_mask"],
            "region_mask": model_inputs["region_mask"],
            "example": example,
        }

    def postprocess(self, model_outputs, top_k=5, return_attention=False, return_unknown_words=False):
        scores = torch.sigmoid(model_outputs["logits"][0].float())  # (A,)
        values, indices = scores.topk(min(top_k, scores.numel()))
        id2label = self.model.config.id2label
        answers = [
            {"answer": id2label[index], "score": value} for value, index in zip(values.tolist(), indices.tolist())
        ]
        if not (return_attention or return_unknown_words):
            return answers
        example = model_outputs["example"]
        result: dict[str, Any] = {"answers": answers}
        if return_attention:
            result["attention"] = self._attention(model_outputs, example["question"], example["regions"])
        if return_unknown_words:
            result["unknown_words"] = example["unknown_words"]
        return result


class RetrievalPipeline(_HierarchicalVLPipeline):
    """``pipeline("hierarchical-vl-retrieval", model=checkpoint)``: ranks captions for an image or images for a
    caption, or scores pairs.

    Inputs (images as in [`VQAPipeline`]):

    * ``{"image": ..., "captions": [...]}`` (or ``image_id``): the captions ranked for the image,
      ``[{"caption", "index", "score"}, ...]``;
    * ``{"caption": str, "images": [...]}`` (or ``image_ids``): the images ranked for the caption,
      ``[{"image_id", "index", "score"}, ...]``;
    * ``{"images": [...], "captions": [...]}``: the score of every pair, ``scores[image][caption]`` (lists);
    * ``{"image": ..., "caption": str}``: one pair, ``{"score"}`` (and ``"attention"``, as in [`VQAPipeline`],
      with ``return_attention``).

    Rankings are best first, ties in input order. Each pair's score is ``sigmoid(v_I^T W v_S)``; what depends on
    one modality only is computed once per caption and once per image (``model.score_pairs``).

    Parameters: ``top_k`` (all by default); ``batch_size``, the (image, caption) pairs per forward pass (256);
    ``return_attention`` (one pair only); ``return_unknown_words`` (``False``): the output becomes a dict with the
    words of each caption that are not in the vocabulary, ``{"ranking" (or "scores"): ..., "unknown_words": [[...]
    per caption]}`` (one pair: ``{"score", "unknown_words": [...]}``).
    """

    model_task = "retrieval"
    _input_keys = ("captions", "caption", "images", "image_ids", *_IMAGE_KEYS)

    def __call__(self, inputs: Any = None, batch_size: int | None = None, **kwargs: Any):
        batch_size = batch_size if batch_size is not None else self._batch_size
        return super().__call__(inputs, **_given(pair_batch_size=batch_size), **kwargs)

    def get_iterator(self, inputs, num_workers, batch_size, *args, **kwargs):
        # Batching happens over the pairs of one input; inputs themselves go one at a time.
        return super().get_iterator(inputs, num_workers, 1, *args, **kwargs)

    def _sanitize_parameters(
        self, top_k=None, pair_batch_size=None, return_attention=None, return_unknown_words=None, **kwargs
    ):
        _check_top_k(top_k)
        if pair_batch_size is not None and pair_batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {pair_batch_size}")
        forward = _given(batch_size=pair_batch_size)
        postprocess = _given(top_k=top_k, return_attention=return_attention, return_unknown_words=return_unknown_words)
        return super()._sanitize_parameters(**kwargs), forward, postprocess

    def preprocess(self, inputs, feature_store=None, max_words=None):
        inputs = _check_input(inputs, ())
        images = inputs.get("images") if inputs.get("images") is not None else inputs.get("image_ids")
        captions = inputs.get("captions")
        if captions is not None:
            query = "matrix" if images is not None else "image"
        elif inputs.get("caption") is not None:
            captions = [inputs["caption"]]
            query = "caption" if images is not None else "pair"
        else:
            raise ValueError("give 'captions' (to rank them for an image) or 'caption' (to rank 'images')")
        captions = [captions] if isinstance(captions, str) else list(captions)
        images = [images] if isinstance(images, (str, int, np.integer)) else images
        if not captions:
            raise ValueError("give at least one caption")
        captions = [_check_text(caption, "caption") for caption in captions]
        if images is None:
            regions = [_image_of(inputs, feature_store)]
        elif not len(images):
            raise ValueError("give at least one image")
        else:
            regions = [_resolve(image, feature_store) for image in images]
        text_inputs, image_inputs = self._text_inputs(captions, max_words), self._region_inputs(regions)
        example = {"query": query, "captions": captions, "regions": regions}
        example["unknown_words"] = self._unknown_words(captions)
        if query == "pair":  # one forward pass, which also gives the attention
            return {**text_inputs, **image_inputs, "example": example}
        return {"text_inputs": text_inputs, "image_inputs": image_inputs, "example": example}

    def _forward(self, model_inputs, batch_size=256):
        example = model_inputs.pop("example")
        if example["query"] == "pair":
            output = self._run_model(model_inputs)
            return {
                "logits": output.logits,  # (1,)
                "text_attention": output.text_attention,
                "image_attention": output.image_attention,
                "attention_mask": model_inputs["attention_mask"],
                "region_mask": model_inputs["region_mask"],
                "example": example,
            }
        num_images, num_captions = len(example["regions"]), len(example["captions"])
        image_index = torch.arange(num_images).repeat_interleave(num_captions)  # (P,) image-major
        text_index = torch.arange(num_captions).repeat(num_images)  # (P,)
        with self.model.inference():
            logits = self.model.score_pairs(
                model_inputs["text_inputs"], model_inputs["image_inputs"], text_index, image_index, batch_size
            )
        return {"logits": logits, "example": example}  # (P,)

    def postprocess(self, model_outputs, top_k=None, return_attention=False, return_unknown_words=False):
        example = model_outputs["example"]
        scores = torch.sigmoid(model_outputs["logits"].float()).numpy()  # (P,)
        if example["query"] == "pair":
            result = {"score": float(scores[0])}
            if return_attention:
                result["attention"] = self._attention(model_outputs, example["captions"][0], example["regions"][0])
            if return_unknown_words:
                result["unknown_words"] = example["unknown_words"][0]
            return result
        if return_attention:
            raise ValueError("return_attention needs a single pair: give one image and one 'caption'")
        regions = example["regions"]
        if example["query"] == "matrix":
            output = scores.reshape(len(regions), len(example["captions"])).tolist()
        elif example["query"] == "image":
            order = np.argsort(-scores, kind="stable")[:top_k]
            output = [{"caption": example["captions"][i], "index": int(i), "score": float(scores[i])} for i in order]
        else:
            order = np.argsort(-scores, kind="stable")[:top_k]
            output = [{"image_id": regions[i].image_id, "index": int(i), "score": float(scores[i])} for i in order]
        if not return_unknown_words:
            return output
        key = "scores" if example["query"] == "matrix" else "ranking"
        return {key: output, "unknown_words": example["unknown_words"]}


class GroundingPipeline(_HierarchicalVLPipeline):
    """``pipeline("hierarchical-vl-grounding", model=checkpoint)``: the best boxes of each phrase of a caption.

    Input: ``{"caption": str, "phrases": [...]}`` (each phrase as its text, found in the caption left to right, or
    as its ``(start, end)`` character span, end exclusive) plus the image as in [`VQAPipeline`]. A list of inputs is
    batched, ``batch_size`` per forward pass. Each (phrase, region) pair is scored ``sigmoid(p_h^T W i_t)``.

    Parameters: ``top_k`` regions per phrase (1); ``return_unknown_words`` (``False``) also returns the caption's
    words that are not in the vocabulary.

    Returns:
        One entry per phrase: ``{"phrase", "span": [start, end], "boxes": [{"region", "score", "box"}, ...]}``,
        best region first; ``box`` is x1, y1, x2, y2 in pixels (``None`` without boxes). A phrase whose words were
        all cut by the word cap has no boxes. With ``return_unknown_words``, ``{"phrases": [...], "unknown_words":
        [...]}``.
    """

    model_task = "grounding"
    _input_keys = ("caption", "phrases", *_IMAGE_KEYS)

    def _sanitize_parameters(self, top_k=None, return_unknown_words=None, **kwargs):
        _check_top_k(top_k)
        postprocess = _given(top_k=top_k, return_unknown_words=return_unknown_words)
        return super()._sanitize_parameters(**kwargs), {}, postprocess

    def preprocess(self, inputs, feature_store=None, max_words=None):
        inputs = _check_input(inputs, ("caption", "phrases"))
        caption = _check_text(inputs["caption"], "caption")
        spans = _phrase_char_spans(caption, inputs["phrases"])
        regions = _image_of(inputs, feature_store)
        model_inputs = {
            **self._text_inputs([caption], max_words, phrase_char_spans=[spans]),
            **self._region_inputs([regions]),
        }
        unknown = self._unknown_words([caption])[0]
        return {
            **model_inputs,
            "example": {"caption": caption, "spans": spans, "regions": regions, "unknown_words": unknown},
        }

    def _forward(self, model_inputs):
        example = model_inputs.pop("example")
        output = self._run_model(model_inputs)
        return {
            "logits": output.logits,  # (B, H, T)
            "phrase_mask": model_inputs["phrase_mask"],  # (B, H)
            "attention_mask": model_inputs["attention_mask"],
            "region_mask": model_inputs["region_mask"],
            "example": example,
        }

    def postprocess(self, model_outputs, top_k=1, return_unknown_words=False):
        example = model_outputs["example"]
        caption, boxes = example["caption"], example["regions"].boxes
        num_regions = int(model_outputs["region_mask"][0].sum())
        scores = torch.sigmoid(model_outputs["logits"][0, :, :num_regions].float())  # (H, T)
        phrases = []
        for column, (start, end) in enumerate(example["spans"]):
            entry = {"phrase": caption[start:end], "span": [start, end], "boxes": []}
            if not int(model_outputs["phrase_mask"][0, column]):
                logger.warning(
                    "phrase %r lies beyond the first %d words of the caption and was not grounded",
                    entry["phrase"],
                    int(model_outputs["attention_mask"][0].sum()),
                )
            else:
                values, indices = scores[column].topk(min(top_k, num_regions))
                entry["boxes"] = [
                    {"region": index, "score": value, "box": None if boxes is None else boxes[index].tolist()}
                    for value, index in zip(values.tolist(), indices.tolist())
                ]
            phrases.append(entry)
        return {"phrases": phrases, "unknown_words": example["unknown_words"]} if return_unknown_words else phrases


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

    pipeline_class: type[_HierarchicalVLPipeline] = _HierarchicalVLPipeline

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
