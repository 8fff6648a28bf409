"""The transformers pipelines of the three tasks: VQA, image-caption retrieval and visual grounding.

This module is the pipeline code a checkpoint carries (``pipeline_hierarchical_vl.py``, see
[`hierarchical_vl.remote_pipelines`]): it imports only torch, numpy, transformers and modules that are saved beside
it, so that where this package is not installed ::

    vqa = pipeline("hierarchical-vl-vqa", model="path/to/checkpoint", trust_remote_code=True)
    vqa({"question": "what colour is the cat?", "region_features": features, "region_boxes": boxes})

works from the checkpoint alone. With the package installed, [`hierarchical_vl.pipelines`] registers subclasses of
these pipelines that also read raw images through a region-feature extractor; everything else is this code.

An image is given by its region features (see [`resolve_image`]): an `(T, F)` array, a record ``{"features",
"boxes", "width", "height"}``, an [`ImageRegions`], or an image id looked up in the ``feature_store`` (any object
whose ``store[image_id]`` returns such a record, a plain dict included). Scores are the model's sigmoid outputs
(paper Eq. 7, 8 and 10).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers import Pipeline, PreTrainedTokenizerBase

from .data.image_regions import ImageRegions, UnknownImageError, resolve_image
from .processing_hierarchical_vl import HierarchicalVLProcessor
from .tasks import TASK_SPECS

__all__ = [
    "GroundingPipeline",
    "ImageRegions",
    "RetrievalPipeline",
    "UnknownImageError",
    "VQAPipeline",
    "resolve_image",
]

logger = logging.getLogger(__name__)

_MULTI_TASK = "HierarchicalVLForMultiTask"

# --------------------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------------------

_IMAGE_KEYS = ("image", "image_id", "region_features", "region_boxes", "image_size")


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
    up, and ``max_words``, the cap on words (the task's cap in the model config by default).
    """

    model_task = ""
    """The `TASK_SPECS` key of the task the pipeline runs."""
    _input_keys: tuple[str, ...] = ()
    _load_processor = None  # loaded from the checkpoint when there; a tokenizer given instead is wrapped
    _load_tokenizer = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False

    def __init__(self, model: Any, processor: Any = None, tokenizer: Any = None, **kwargs: Any):
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
                f"or a {_MULTI_TASK}"
            )
        super().__init__(model, processor=processor, tokenizer=processor.tokenizer, **kwargs)

    @property
    def feature_store(self) -> Any:
        """The feature store given to the constructor (a call's ``feature_store`` overrides it), or ``None``."""
        return self._preprocess_params.get("feature_store")

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

    def _sanitize_parameters(self, feature_store=None, max_words=None, **unknown):
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown parameters {sorted(unknown)}")
        if max_words is not None and (not isinstance(max_words, (int, np.integer)) or max_words < 1):
            raise ValueError(f"max_words must be a positive integer, got {max_words!r}")
        return _given(feature_store=feature_store, max_words=max_words)

    def _resolve_image(self, image: Any, feature_store: Any) -> ImageRegions:
        """One image of an input as [`ImageRegions`] (see [`resolve_image`])."""
        return resolve_image(image, feature_store)

    def _image_of(self, fields: Mapping[str, Any], feature_store: Any) -> ImageRegions:
        """The image of a pipeline input: its ``image``, ``image_id`` or ``region_features`` (with
        ``region_boxes`` and ``image_size`` ``(width, height)``)."""
        if fields.get("image") is not None:
            return self._resolve_image(fields["image"], feature_store)
        if fields.get("image_id") is not None:
            return self._resolve_image(fields["image_id"], feature_store)
        if fields.get("region_features") is not None:
            size = fields.get("image_size")
            width, height = (None, None) if size is None else size
            return ImageRegions(fields["region_features"], fields.get("region_boxes"), width, height)
        return resolve_image(None)

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
        regions = self._image_of(inputs, feature_store)
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
            regions = [self._image_of(inputs, feature_store)]
        elif not len(images):
            raise ValueError("give at least one image")
        else:
            regions = [self._resolve_image(image, feature_store) for image in images]
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
        regions = self._image_of(inputs, feature_store)
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
