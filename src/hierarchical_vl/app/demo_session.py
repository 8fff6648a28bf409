"""What the demo app computes, without its user interface: one model behind the three predictors, the feature
store the images are picked from, the pictures of those images, and the drawings of every answer.

[`DemoSession`] holds no Gradio object, so it runs (and is tested) where Gradio is not installed; the app
(`hierarchical_vl.app.demo_app`) only lays its results out. Inference goes through the predictors of
`hierarchical_vl.pipelines` and the drawings through `hierarchical_vl.visualization`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..data.demo_images import DEMO_IMAGE_FOLDER
from ..extraction.image_sources import IMAGE_SUFFIXES
from ..extraction.raw_images import detector_beside
from ..loading import load_checkpoint, load_processor
from ..pipelines import GroundingPredictor, RetrievalPredictor, VQAPredictor
from ..visualization import render_attention, render_grounding, render_regions

__all__ = ["DemoSession", "default_image_root", "split_lines"]

logger = logging.getLogger(__name__)

_PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", *(s for s in IMAGE_SUFFIXES if s not in (".png", ".jpg", ".jpeg")))


def default_image_root(features: str | os.PathLike | None) -> Path | None:
    """The picture folder of a feature store: an ``images/`` folder beside the store (or the feature file), or
    in the folder above it (a demo corpus keeps its features in ``features/`` and its pictures in ``images/``).

    Args:
        features: The store directory or feature file (``None`` for none).

    Returns:
        The folder, or ``None`` when there is none.
    """
    if features is None:
        return None
    path = Path(features).resolve()
    for folder in (path.parent, path.parent.parent):
        candidate = folder / DEMO_IMAGE_FOLDER
        if candidate.is_dir():
            return candidate
    return None


def split_lines(text: str | None, separators: str = "\n") -> list[str]:
    """The non-empty stripped items of ``text`` split at any of ``separators``, duplicates dropped, in order."""
    items: list[str] = []
    for character in separators[1:]:
        text = (text or "").replace(character, separators[0])
    for item in (text or "").split(separators[0]):
        item = item.strip()
        if item and item not in items:
            items.append(item)
    return items


def _store_ids(store: Any) -> list[str]:
    if store is None:
        return []
    if hasattr(store, "ids"):
        return [str(image_id) for image_id in store.ids()]
    return [str(image_id) for image_id in store]


class DemoSession:
    """A checkpoint's predictors over a feature store, and pictures of their answers.

    Args:
        model: A task head or a [`HierarchicalVLForMultiTask`]; the session offers the tasks it has.
        processor: Its [`HierarchicalVLProcessor`].
        feature_store: Where the images to pick from are looked up by id (a [`RegionFeatureStore`] or any
            mapping of id to record), or ``None``.
        image_root: Folder of the pictures of the store's images, ``<image_id>.png`` (or another image suffix);
            without a picture, answers are drawn on a blank canvas of the image's size.
        feature_extractor: A [`RegionFeatureExtractor`]; with it, photos are accepted as well as image ids.
        top_k: Answers, boxes per phrase and ranked images shown.
        max_ranked_images: Store images a caption is matched against (the first ones of the store).

    Raises:
        ValueError: If there is neither a feature store nor an extractor (no image could be given).
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        feature_store: Any = None,
        image_root: str | os.PathLike | None = None,
        feature_extractor: Any = None,
        top_k: int = 5,
        max_ranked_images: int = 500,
    ):
        if feature_store is None and feature_extractor is None:
            raise ValueError(
                "the demo needs images: give a region-feature store (--features) or a region-feature extractor "
                "(--detector, or a detector/ folder beside the checkpoint)"
            )
        if top_k < 1 or max_ranked_images < 1:
            raise ValueError(f"top_k and max_ranked_images must be at least 1, got {top_k} and {max_ranked_images}")
        self.model = model
        self.feature_store = feature_store
        self.image_root = None if image_root is None else Path(image_root)
        self.feature_extractor = feature_extractor
        self.top_k = top_k
        self.max_ranked_images = max_ranked_images
        self.image_ids = _store_ids(feature_store)
        self._known_ids = frozenset(self.image_ids)
        options = {"feature_store": feature_store, "feature_extractor": feature_extractor}
        tasks = tuple(getattr(model, "tasks", ()))
        self.vqa = VQAPredictor(model, processor, **options) if "vqa" in tasks else None
        self.retrieval = RetrievalPredictor(model, processor, **options) if "retrieval" in tasks else None
        self.grounding = GroundingPredictor(model, processor, **options) if "grounding" in tasks else None

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | os.PathLike,
        features: str | os.PathLike | None = None,
        *,
        images: str | os.PathLike | None = None,
        detector: str | os.PathLike | None = None,
        device: str | None = None,
        top_k: int = 5,
        max_ranked_images: int = 500,
        **hub_kwargs: Any,
    ) -> DemoSession:
        """Loads a checkpoint once for all its tasks, opens the features and finds the pictures.

        Args:
            checkpoint: A checkpoint folder or a Hub repository id.
            features: A region-feature store, or feature files converted once into a store beside them (see
                `hierarchical_vl.evaluation.open_region_store`).
            images: The picture folder (default: [`default_image_root`] of ``features``).
            detector: A region-feature extractor folder or Hub id (default: ``detector/`` beside the checkpoint).
            device: Device of the model (the default device when ``None``).
            top_k: See the class.
            max_ranked_images: See the class.
            **hub_kwargs: Passed to ``from_pretrained`` (``revision``, ``token``, ...).
        """
        model = load_checkpoint(checkpoint, **hub_kwargs)
        if device is not None:
            model.to(device)
        processor = load_processor(checkpoint, model.config, **hub_kwargs)
        store = None
        if features is not None:
            from ..evaluation.evaluation_data import open_region_store

            store = open_region_store(features, progress=False)
        extractor = None
        detector = detector if detector is not None else detector_beside(checkpoint)
        if detector is not None:
            from ..extraction import RegionFeatureExtractor

            extractor = RegionFeatureExtractor.from_pretrained(detector, device=device)
        image_root = images if images is not None else default_image_root(features)
        if images is not None and not Path(images).is_dir():
            raise FileNotFoundError(f"the picture folder {images} does not exist")
        return cls(model, processor, store, image_root, extractor, top_k=top_k, max_ranked_images=max_ranked_images)

    @property
    def tasks(self) -> list[str]:
        """The tasks the model answers, in the app's order."""
        return [task for task in ("vqa", "retrieval", "grounding") if getattr(self, task) is not None]

    @property
    def accepts_photos(self) -> bool:
        """Whether photos can be given (a region-feature extractor is configured)."""
        return self.feature_extractor is not None

    # ----------------------------------------------------------------------------------------------------------
    # Images
    # ----------------------------------------------------------------------------------------------------------

    def picture_path(self, image_id: Any) -> Path | None:
        """The picture file of a store image, or ``None``. Ids that are not plain file names never match."""
        if self.image_root is None or image_id is None:
            return None
        name = str(image_id)
        if not name or name in (".", "..") or Path(name).name != name or "\\" in name or "\x00" in name:
            return None
        for suffix in _PICTURE_SUFFIXES:
            path = self.image_root / f"{name}{suffix}"
            if path.is_file():
                return path
        return None

    def gallery(self, limit: int = 48, scanned: int = 1000) -> list[tuple[Path, str]]:
        """``(picture, image id)`` of the first ``limit`` store images that have a picture, among the first
        ``scanned``."""
        found = []
        for image_id in self.image_ids[:scanned]:
            path = self.picture_path(image_id)
            if path is not None:
                found.append((path, image_id))
                if len(found) == limit:
                    break
        return found

    def _image(self, image_id: Any, photo: Any) -> tuple[Any, Any]:
        """The image given to a predictor (the photo, else the id) and the picture to draw on."""
        if photo is not None:
            if not self.accepts_photos:
                raise ValueError("photos need a region-feature extractor: start the app with --detector DIR")
            picture = photo if isinstance(photo, Image.Image) else Image.open(photo)
            return picture.convert("RGB"), picture
        if image_id is None or not str(image_id).strip():
            raise ValueError("pick an image" + (" or upload a photo" if self.accepts_photos else ""))
        image_id = str(image_id).strip()
        if image_id not in self._known_ids:
            raise ValueError(f"image {image_id!r} is not in the feature store")
        return image_id, self.picture_path(image_id)

    def preview(self, image_id: Any) -> Image.Image | None:
        """The picture of a store image; without one, its region boxes on a blank canvas; ``None`` if unknown."""
        if image_id is None or str(image_id) not in self._known_ids:
            return None
        path = self.picture_path(image_id)
        if path is not None:
            return Image.open(path).convert("RGB")
        record = self.feature_store[str(image_id)]
        boxes = record.get("boxes")
        if boxes is None or not len(boxes):
            return None
        size = (record["width"], record["height"]) if record.get("width") else None
        return render_regions(boxes, np.ones(len(boxes)), image_size=size, top_k=len(boxes))

    # ----------------------------------------------------------------------------------------------------------
    # Tasks
    # ----------------------------------------------------------------------------------------------------------

    def _needs(self, task: str) -> Any:
        predictor = getattr(self, task)
        if predictor is None:
            raise ValueError(f"this checkpoint has no {task} decoder")
        return predictor

    def answer(self, question: str, image_id: Any = None, photo: Any = None) -> dict[str, Any]:
        """The top answers to a question about a store image or a photo, and the VQA decoder's attention drawn
        on the picture.

        Returns:
            ``{"answers": [{"answer", "score"}, ...], "picture": PIL image or None}`` (no picture when the regions
            have no boxes).
        """
        image, picture = self._image(image_id, photo)
        result = self._needs("vqa").predict(question, image, top_k=self.top_k, return_attention=True)
        answers = result["answers"]
        drawing = None
        if result["attention"].get("boxes") is not None:
            title = f"{question.strip()}  ->  {answers[0]['answer']} ({answers[0]['score']:.2f})"
            drawing = render_attention(result["attention"], image=picture, title=title)
        return {"answers": answers, "picture": drawing}

    def rank_captions(self, captions: Sequence[str], image_id: Any = None, photo: Any = None) -> list[dict[str, Any]]:
        """The captions ranked for a store image or a photo, best first: ``[{"caption", "index", "score"}]``."""
        if not captions:
            raise ValueError("give at least one caption, one per line")
        image, _ = self._image(image_id, photo)
        return self._needs("retrieval").rank_captions(image, list(captions))

    def rank_images(self, caption: str) -> list[dict[str, Any]]:
        """The store images ranked for a caption (the first ``max_ranked_images`` of the store), best first, the
        ``top_k`` kept: ``[{"image_id", "score", "picture"}]``, ``picture`` the image's picture or its preview."""
        if not self.image_ids:
            raise ValueError("ranking images needs a feature store of images")
        candidates = self.image_ids[: self.max_ranked_images]
        ranked = self._needs("retrieval").rank_images(caption, candidates, top_k=self.top_k)
        return [
            {"image_id": entry["image_id"], "score": entry["score"], "picture": self.preview(entry["image_id"])}
            for entry in ranked
        ]

    def ground(
        self, caption: str, phrases: Sequence[str], image_id: Any = None, photo: Any = None
    ) -> list[dict[str, Any]]:
        """The best boxes of each phrase of a caption in a store image or a photo, drawn on the picture.

        Returns:
            One entry per phrase, ``GroundingPredictor.predict``'s with ``"picture"`` added (``None`` when the
            phrase was not grounded or the regions have no boxes).
        """
        if not phrases:
            raise ValueError("give the phrases of the caption to ground, one per line")
        image, picture = self._image(image_id, photo)
        size = None
        if not isinstance(image, Image.Image):
            record = self.feature_store[image]
            size = (record["width"], record["height"]) if record.get("width") else None
        entries = self._needs("grounding").predict(caption, image, list(phrases), top_k=self.top_k)
        for entry in entries:
            drawable = entry["boxes"] and all(box.get("box") is not None for box in entry["boxes"])
            entry["picture"] = render_grounding(caption, entry, image=picture, image_size=size) if drawable else None
        return entries
