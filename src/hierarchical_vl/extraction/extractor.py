"""`RegionFeatureExtractor`: images in, bottom-up-attention region features out.

Per image: the detector's input (see ``image_processing``), res2-res4, the RPN's proposals (RoIs), RoI pooling
and res5 mean-pooled to one feature per RoI, the object and attribute classifiers, and the selection rule of the
original feature script (``tools/generate_tsv.py``): class-wise NMS of the RoIs, each RoI scored by its best
surviving class, kept when that score is at least ``conf_threshold``, then topped up to ``min_boxes`` or cut to
``max_boxes`` by score. The boxes returned are the selected RoIs (not class-regressed boxes) in original pixels.

No image is ever padded to the size of another (the community port pads a batch to its largest image, which
changes the features near the borders and the proposals): each image runs through the backbone at its own size
(optionally together with images of the same size), its proposals are clipped to its own size, and its RoIs go
through res5 in chunks of its own, so an image gives the same result alone and inside any batch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .box_ops import classwise_nms_max_scores
from .configuration_extractor import RegionFeatureExtractorConfig
from .image_processing import ImageGeometry, detector_input, load_rgb_image
from .modeling_detector import BottomUpDetector
from .weights import (
    OWN_CONFIG_NAME,
    OWN_WEIGHTS_NAME,
    config_from_port_yaml,
    load_detector_state,
    read_port_state_dict,
    resolve_detector_files,
)

__all__ = ["RegionFeatureExtractor", "RegionFeatures"]


@dataclass
class RegionFeatures:
    """The regions of one image.

    Attributes:
        boxes: (K, 4) float32 boxes x1 y1 x2 y2 in original pixels.
        features: (K, F) float32 mean-pooled res5 features (``pool5_flat``).
        object_ids: (K,) int64 Visual Genome object class (0-based, background excluded).
        object_scores: (K,) float32 probability of that class.
        attribute_ids: (K,) int64 attribute class (0-based, "no attribute" excluded).
        attribute_scores: (K,) float32 probability of that attribute.
        width: Original image width.
        height: Original image height.
        image_id: The id given with the image, if any.
    """

    boxes: np.ndarray
    features: np.ndarray
    object_ids: np.ndarray
    object_scores: np.ndarray
    attribute_ids: np.ndarray
    attribute_scores: np.ndarray
    width: int
    height: int
    image_id: Any = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_boxes(self) -> int:
        return int(self.boxes.shape[0])

    def to_record(self, image_id: Any = None):
        """A [`RegionFeatureRecord`] (with LXMERT's object/attribute columns as ``extras``) for the writers."""
        from ..data.feature_readers import RegionFeatureRecord, canonical_image_id

        key = image_id if image_id is not None else self.image_id
        if key is None:
            raise ValueError("a record needs an image id")
        extras = {
            "objects_id": self.object_ids.astype(np.int64),
            "objects_conf": self.object_scores.astype(np.float32),
            "attrs_id": self.attribute_ids.astype(np.int64),
            "attrs_conf": self.attribute_scores.astype(np.float32),
        }
        return RegionFeatureRecord(
            canonical_image_id(key), float(self.width), float(self.height), self.boxes, self.features, extras
        )


def select_regions(max_conf: torch.Tensor, config: RegionFeatureExtractorConfig) -> torch.Tensor:
    """The feature script's choice of RoIs from their selection scores ``max_conf`` (R,).

    Returns:
        Indices: those with ``max_conf >= conf_threshold`` in RoI order when their number is within
        [min_boxes, max_boxes]; otherwise the top ``min_boxes`` (or ``max_boxes``) by score, highest first.
    """
    confident = torch.nonzero(max_conf >= config.conf_threshold).flatten()
    if config.min_boxes <= confident.numel() <= config.max_boxes:
        return confident
    count = config.min_boxes if confident.numel() < config.min_boxes else config.max_boxes
    order = torch.sort(max_conf, descending=True, stable=True).indices
    return order[: min(count, max_conf.numel())]


class RegionFeatureExtractor:
    """The bottom-up-attention region-feature extractor.

    Args:
        config: The detector configuration.
        detector: The detector modules (random weights from ``config`` when ``None``; see `init_random_weights`).
        device: Where to run (default CPU).
        autocast_dtype: ``torch.bfloat16`` or ``torch.float16`` to run under autocast on an accelerator (ignored on
            CPU, where the detector runs in float32).
        roi_chunk: RoIs per res5 call (bounds memory).
        batch_same_size: Run images of the same input size through the backbone together. Faster on an
            accelerator, but convolution kernels may round differently for another batch size, so results then
            differ from the image alone at the float-rounding level; off by default (bitwise batch invariance).

    Example::

        extractor = RegionFeatureExtractor.from_pretrained("unc-nlp/frcnn-vg-finetuned")
        regions = extractor("photo.jpg")[0]  # boxes, features, object/attribute ids and scores
    """

    def __init__(
        self,
        config: RegionFeatureExtractorConfig,
        detector: BottomUpDetector | None = None,
        *,
        device: str | torch.device | None = None,
        autocast_dtype: torch.dtype | None = None,
        roi_chunk: int = 64,
        batch_same_size: bool = False,
    ):
        self.config = config
        self.detector = (detector if detector is not None else BottomUpDetector(config).init_random_weights()).eval()
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.detector.to(self.device)
        self.autocast_dtype = autocast_dtype
        self.roi_chunk = roi_chunk
        self.batch_same_size = batch_same_size

    # ---------------------------------------------------------------- construction and saving
    @classmethod
    def from_preset(cls, name: str, *, seed: int = 0, **kwargs: Any) -> RegionFeatureExtractor:
        """A detector of a preset (``tiny``, ``vg-adaptive``, ``vg-36``) with random weights (tests, benchmarks)."""
        config = RegionFeatureExtractorConfig.from_preset(name)
        return cls(config, BottomUpDetector(config).init_random_weights(seed), **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str | os.PathLike,
        *,
        num_boxes: int | None = None,
        config_overrides: dict[str, Any] | None = None,
        device: str | torch.device | None = None,
        autocast_dtype: torch.dtype | None = None,
        **hub_kwargs: Any,
    ) -> RegionFeatureExtractor:
        """Loads a detector: this package's format (``config.json`` + ``model.safetensors``, see
        [`save_pretrained`]) or the community port's (``config.yaml`` + ``pytorch_model.bin``), from a directory or
        a Hub id such as ``unc-nlp/frcnn-vg-finetuned``.

        Args:
            path_or_hub_id: Directory or Hub repository id.
            num_boxes: A fixed number of boxes per image (e.g. 36: the fixed release's rule, conf 0.4).
            config_overrides: Other configuration fields to change (e.g. ``{"max_boxes": 50}``).
            device: Where to run.
            autocast_dtype: See the class.
            **hub_kwargs: Passed to ``huggingface_hub.hf_hub_download`` (``revision``, ``cache_dir``, ...).

        Raises:
            FileNotFoundError: The directory holds no detector.
            ValueError: The weights do not fit the configuration (the keys are named).
        """
        kind, config_file, weights_file = resolve_detector_files(path_or_hub_id, **hub_kwargs)
        overrides = dict(config_overrides or {})
        if kind == "own":
            config = RegionFeatureExtractorConfig.from_json_file(config_file)
            from safetensors.torch import load_file

            state = load_file(str(weights_file))
        else:
            config = config_from_port_yaml(config_file)
            state = read_port_state_dict(weights_file)
        config = config.with_selection(num_boxes=num_boxes, **overrides)
        detector = BottomUpDetector(config)
        load_detector_state(detector, state, str(weights_file))
        return cls(config, detector, device=device, autocast_dtype=autocast_dtype)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Writes ``config.json`` and ``model.safetensors`` into ``directory`` (each atomically)."""
        from safetensors.torch import save_file

        from ..atomic_files import atomic_path

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.detector.state_dict().items()}
        with atomic_path(directory / OWN_WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", "architecture": "bottom-up-attention-frcnn"})
        self.config.to_json_file(directory / OWN_CONFIG_NAME)
        return directory

    def to(self, device: str | torch.device) -> RegionFeatureExtractor:
        self.device = torch.device(device)
        self.detector.to(self.device)
        return self

    # ---------------------------------------------------------------- inference
    def _autocast(self):
        if self.autocast_dtype is None or self.device.type == "cpu":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def __call__(
        self,
        images: Any,
        *,
        boxes: Sequence[Any] | None = None,
        image_ids: Sequence[Any] | None = None,
    ) -> list[RegionFeatures]:
        """Extracts the regions of one image or a list of images.

        Args:
            images: A PIL image, an image path, an (H, W, 3) uint8 RGB array, or a list of them.
            boxes: Given-boxes mode: per image, (K, 4) boxes x1 y1 x2 y2 in original pixels; the result holds
                exactly these boxes, in this order, with their features and class predictions (no RPN, no
                selection).
            image_ids: Ids to attach to the results.

        Returns:
            One [`RegionFeatures`] per image, in order.
        """
        single = not isinstance(images, (list, tuple))
        images = [images] if single else list(images)
        if boxes is not None:
            boxes = [boxes] if single else list(boxes)
            if len(boxes) != len(images):
                raise ValueError(f"{len(boxes)} box lists for {len(images)} images")
        ids = list(image_ids) if image_ids is not None else [None] * len(images)
        if len(ids) != len(images):
            raise ValueError(f"{len(ids)} image ids for {len(images)} images")
        with torch.inference_mode(), self._autocast():
            return self._extract(images, boxes, ids)

    def _given_boxes(self, given: Any, geometry: ImageGeometry, index: int) -> torch.Tensor:
        array = np.asarray(given, dtype=np.float32)
        if array.ndim != 2 or array.shape[1] != 4 or array.shape[0] == 0:
            raise ValueError(f"image {index}: given boxes must be a non-empty (K, 4) array, not {array.shape}")
        if not np.isfinite(array).all() or (array[:, 2] < array[:, 0]).any() or (array[:, 3] < array[:, 1]).any():
            raise ValueError(f"image {index}: given boxes must be finite x1 y1 x2 y2 with x2 >= x1 and y2 >= y1")
        return geometry.to_resized(torch.from_numpy(array).to(self.device))

    def _extract(self, images: list[Any], given: list[Any] | None, ids: list[Any]) -> list[RegionFeatures]:
        config = self.config
        inputs, geometries = [], []
        for image in images:
            tensor, geometry = detector_input(load_rgb_image(image), config)
            inputs.append(tensor)
            geometries.append(geometry)
        res4: list[torch.Tensor | None] = [None] * len(images)
        groups: dict[Any, list[int]] = {}
        for i, tensor in enumerate(inputs):
            key = tuple(tensor.shape[1:]) if self.batch_same_size else i
            groups.setdefault(key, []).append(i)
        rois: list[torch.Tensor | None] = [None] * len(images)
        for members in groups.values():
            size = tuple(inputs[members[0]].shape[1:])
            batch = torch.stack([inputs[i] for i in members]).to(self.device)  # (n, 3, h, w), one size: no padding
            features = self.detector.backbone(batch)  # (n, C, h/16, w/16)
            if given is None:
                proposals = self.detector.proposal_generator(features, [size] * len(members))
            for j, i in enumerate(members):
                res4[i] = features[j]
                rois[i] = self._given_boxes(given[i], geometries[i], i) if given is not None else proposals[j]
        # per image: RoI pooling and res5 over its RoIs in chunks of roi_chunk (the same chunks in any batch)
        heads = self.detector.roi_heads
        pooled_per_image = [heads.pool(res4[i], rois[i].float(), self.roi_chunk).float() for i in range(len(images))]
        counts = [p.shape[0] for p in pooled_per_image]
        pooled = torch.cat(pooled_per_image, dim=0)
        class_logits, attr_logits = heads.box_predictor(pooled)
        class_probs = torch.softmax(class_logits.float(), dim=-1)[:, : config.num_classes]  # background is last
        attr_probs = torch.softmax(attr_logits.float(), dim=-1)[:, : config.num_attributes]  # "no attribute" last
        results = []
        start = 0
        for i, count in enumerate(counts):
            part = slice(start, start + count)
            start += count
            image_rois = rois[i].float()
            if given is None:
                max_conf = classwise_nms_max_scores(image_rois, class_probs[part], config.nms_threshold)
                keep = select_regions(max_conf, config)
            else:
                keep = torch.arange(count, device=pooled.device)
            object_scores, object_ids = class_probs[part][keep].max(dim=1)
            attribute_scores, attribute_ids = attr_probs[part][keep].max(dim=1)
            if given is None:
                boxes = geometries[i].to_original(image_rois[keep])
            else:
                boxes = torch.from_numpy(np.asarray(given[i], dtype=np.float32))
            results.append(
                RegionFeatures(
                    boxes=boxes.detach().cpu().numpy().astype(np.float32),
                    features=pooled[part][keep].detach().cpu().numpy().astype(np.float32),
                    object_ids=object_ids.cpu().numpy().astype(np.int64),
                    object_scores=object_scores.cpu().numpy().astype(np.float32),
                    attribute_ids=attribute_ids.cpu().numpy().astype(np.int64),
                    attribute_scores=attribute_scores.cpu().numpy().astype(np.float32),
                    width=geometries[i].width,
                    height=geometries[i].height,
                    image_id=ids[i],
                )
            )
        return results
