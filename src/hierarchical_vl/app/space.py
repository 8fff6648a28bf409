"""A folder ready to become a Hugging Face Space that serves the demo app (``hvl space``).

The folder holds ``app.py`` (which builds the app with [`DemoSession.from_pretrained`] and serves it),
``requirements.txt`` and a ``README.md`` whose YAML front matter is the Space's configuration (``sdk: gradio``,
``sdk_version``, ``app_file: app.py``, and ``models:`` linking the model repository). A model given as a local
checkpoint folder, the feature store, the pictures and a local detector folder are copied in (``model/``,
``features/``, ``images/``, ``detector/``) so that the Space needs nothing else; a model or detector given as a
Hub id is loaded from the Hub when the Space starts. The folder is built beside its destination and moved into
place in one rename.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import yaml

from ..atomic_files import atomic_path
from ..data.demo_images import DEMO_IMAGE_FOLDER
from ..extraction.image_sources import IMAGE_SUFFIXES
from .demo_app import DEFAULT_TITLE
from .demo_session import default_image_root

__all__ = ["SPACE_FILES", "SPACE_GRADIO_VERSION", "render_space_app", "render_space_readme", "write_space"]

logger = logging.getLogger(__name__)

SPACE_GRADIO_VERSION = "6.31.0"
"""The Gradio version a Space asks for when Gradio is not installed here (otherwise the installed one)."""

SPACE_FILES = ("app.py", "requirements.txt", "README.md")
"""The files every Space folder holds."""

_MODEL_FOLDER = "model"
_FEATURES_FOLDER = "features"
_DETECTOR_FOLDER = "detector"


def _gradio_version() -> str:
    try:
        return importlib.metadata.version("gradio")
    except importlib.metadata.PackageNotFoundError:
        return SPACE_GRADIO_VERSION


def _check_repo_id(repo_id: str, what: str) -> str:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"the {what} {repo_id!r} is neither a local folder nor a Hub repository id: {error}") from None
    return repo_id


def _location(folder: str | None) -> str:
    """Python source of a path inside the Space folder (``None`` when not given)."""
    return "None" if folder is None else f"os.path.join(HERE, {folder!r})"


def render_space_app(
    model: str,
    *,
    model_is_folder: bool,
    features: bool,
    images: bool,
    detector: str | None,
    detector_is_folder: bool = False,
    title: str = DEFAULT_TITLE,
) -> str:
    """The Space's ``app.py``.

    Args:
        model: The Hub id of the model, or the folder name of its copy in the Space.
        model_is_folder: ``model`` is a folder of the Space.
        features: The Space holds a ``features/`` store.
        images: The Space holds an ``images/`` folder.
        detector: The Hub id or folder name of the region-feature extractor, or ``None``.
        detector_is_folder: ``detector`` is a folder of the Space.
        title: The page's title.
    """
    checkpoint = _location(model) if model_is_folder else repr(model)
    extractor = _location(detector) if detector_is_folder or detector is None else repr(detector)
    return f'''"""The hierarchical-vl demo app: VQA, retrieval and grounding (a Gradio Space; ``python app.py``)."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from hierarchical_vl.app import DemoSession, build_demo_app  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

session = DemoSession.from_pretrained(
    {checkpoint},
    features={_location(_FEATURES_FOLDER) if features else "None"},
    images={_location(DEMO_IMAGE_FOLDER) if images else "None"},
    detector={extractor},
)
app = build_demo_app(session, title={title!r})
demo = app.blocks

if __name__ == "__main__":
    app.launch()
'''


def render_space_readme(
    title: str, model_id: str | None, requirements: Sequence[str], sdk_version: str | None = None
) -> str:
    """The Space's ``README.md``: its configuration as YAML front matter, then a short description.

    Args:
        title: The Space's title.
        model_id: The Hub id of the model, linked in ``models:`` (none for a model copied into the Space).
        requirements: The packages of ``requirements.txt``, listed in the text.
        sdk_version: The Gradio version (default: the installed one, else [`SPACE_GRADIO_VERSION`]).
    """
    metadata = {
        "title": title,
        "emoji": "\U0001f9e9",
        "colorFrom": "blue",
        "colorTo": "indigo",
        "sdk": "gradio",
        "sdk_version": sdk_version or _gradio_version(),
        "app_file": "app.py",
        "pinned": False,
        "license": "apache-2.0",
        **({"models": [model_id]} if model_id else {}),
        "tags": ["hierarchical-vl", "visual-question-answering", "image-text-retrieval", "visual-grounding"],
    }
    front = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    source = f"[{model_id}](https://huggingface.co/{model_id})" if model_id else "the checkpoint in `model/`"
    return (
        f"---\n{front}---\n\n# {title}\n\n"
        f"The demo app of {source}, a multi-task hierarchical vision-language model (Nguyen & Okatani, "
        '"Multi-task Learning of Hierarchical Vision-Language Representation", CVPR 2019): answer questions about '
        "an image with the decoder's attention drawn on the picture, rank captions for an image and images for a "
        "caption, and draw the boxes of a caption's phrases.\n\n"
        "Run it locally with `pip install -r requirements.txt && python app.py`. Requirements: "
        + ", ".join(f"`{line}`" for line in requirements)
        + ".\n"
    )


def _copy_pictures(source: Path, destination: Path) -> int:
    destination.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in sorted(source.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            shutil.copyfile(path, destination / path.name)
            count += 1
    return count


def write_space(
    directory: str | os.PathLike,
    model: str | os.PathLike,
    *,
    features: str | os.PathLike | None = None,
    images: str | os.PathLike | None = None,
    detector: str | os.PathLike | None = None,
    title: str = DEFAULT_TITLE,
    requirements: Sequence[str] | None = None,
    sdk_version: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Writes a Space folder that serves the demo app of ``model``.

    Args:
        directory: The folder to write (refused when it exists, unless ``overwrite``).
        model: A Hub repository id (linked in the README's ``models:``) or a local checkpoint folder (copied into
            ``model/``, without its ``checkpoints/`` training states).
        features: Region features to pick images from: a store, or feature files (converted into a store beside
            them first); the store is copied into ``features/``.
        images: The pictures of those images (default: the ``images/`` folder found beside ``features``), copied
            into ``images/``.
        detector: A region-feature extractor (a local folder, copied into ``detector/``, or a Hub id), so that
            the Space accepts photos.
        title: The Space's title.
        requirements: The lines of ``requirements.txt`` (default: this package with its ``app`` extra, at this
            version).
        sdk_version: The Gradio version of the Space (default: the installed one).
        overwrite: Replace an existing ``directory``.

    Returns:
        The folder written.

    Raises:
        FileExistsError: If ``directory`` exists and ``overwrite`` is not set.
        FileNotFoundError: If a given folder does not exist.
        ValueError: If ``model`` or ``detector`` is neither a folder nor a valid Hub id, or the Space would have
            no images (no features and no detector).
    """
    from .. import __version__

    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} exists; choose another folder or pass --overwrite")
    if features is None and detector is None:
        raise ValueError("the Space needs images: give --features (a store to pick from) or --detector (for photos)")
    model_is_folder = Path(model).is_dir()
    model_id = None if model_is_folder else _check_repo_id(str(model), "model")
    if model_is_folder and not (Path(model) / "config.json").is_file():
        raise FileNotFoundError(f"{model} is not a checkpoint folder (no config.json)")
    detector_is_folder = detector is not None and Path(detector).is_dir()
    if detector is not None and not detector_is_folder:
        _check_repo_id(str(detector), "detector")
    picture_root = Path(images) if images is not None else default_image_root(features)
    if images is not None and not picture_root.is_dir():
        raise FileNotFoundError(f"the picture folder {images} does not exist")
    store_path = None
    if features is not None:
        from ..evaluation.evaluation_data import open_region_store

        store_path = open_region_store(features, progress=False).path
    requirements = list(requirements or [f"hierarchical-vl[app]=={__version__}"])

    with atomic_path(directory, directory=True, overwrite=overwrite) as staging:
        if model_is_folder:
            shutil.copytree(model, staging / _MODEL_FOLDER, ignore=shutil.ignore_patterns("checkpoints", ".*"))
        if store_path is not None:
            shutil.copytree(store_path, staging / _FEATURES_FOLDER, ignore=shutil.ignore_patterns(".*"))
        if picture_root is not None:
            count = _copy_pictures(picture_root, staging / DEMO_IMAGE_FOLDER)
            logger.info("copied %d pictures from %s", count, picture_root)
        if detector_is_folder:
            shutil.copytree(detector, staging / _DETECTOR_FOLDER, ignore=shutil.ignore_patterns(".*"))
        app = render_space_app(
            _MODEL_FOLDER if model_is_folder else str(model),
            model_is_folder=model_is_folder,
            features=store_path is not None,
            images=picture_root is not None,
            detector=_DETECTOR_FOLDER if detector_is_folder else (None if detector is None else str(detector)),
            detector_is_folder=detector_is_folder,
            title=title,
        )
        (staging / "app.py").write_text(app, encoding="utf-8")
        (staging / "requirements.txt").write_text("\n".join(requirements) + "\n", encoding="utf-8")
        readme = render_space_readme(title, model_id, requirements, sdk_version)
        (staging / "README.md").write_text(readme, encoding="utf-8")
    return directory
