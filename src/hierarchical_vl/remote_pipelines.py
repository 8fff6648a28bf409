"""The pipeline code a checkpoint carries, so that its pipelines run where this package is not installed.

[`save_remote_pipelines`] writes into a model directory ``pipeline_hierarchical_vl.py`` (the package's
[`pipeline_hierarchical_vl`] module) and the modules it imports, and records the three pipelines in
``config.json``'s ``custom_pipelines``; then, with only torch and transformers installed::

    vqa = pipeline("hierarchical-vl-vqa", model="path/to/checkpoint", trust_remote_code=True)
    vqa({"question": "what is on the table?", "region_features": features, "region_boxes": boxes})

transformers copies a remote-code module together with the modules it imports relatively, but only modules beside
it (``from .name import ...``). The files written are therefore the package's own modules, byte for byte, except for
two changes made here at save time and checked: relative imports of sub-packages point to the flat copy
(``from .data.image_regions`` becomes ``from .image_regions``), and the copy of ``tasks.py`` holds the text of
``task_specs.json`` (a package resource the checkpoint cannot offer as one). ``model.save_pretrained`` alone writes
the configuration and modeling code; the package's saves (the trainer's final save through
[`save_model_with_checksums`] and [`save_for_hub`]) add these files.
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

from .atomic_files import write_text_atomic
from .pipeline_hierarchical_vl import GroundingPipeline, RetrievalPipeline, VQAPipeline
from .tasks import TASK_SPECS

__all__ = [
    "PIPELINE_MODULE",
    "REMOTE_PIPELINE_FILES",
    "custom_pipelines",
    "remote_pipeline_sources",
    "save_remote_pipelines",
]

PIPELINE_MODULE = "pipeline_hierarchical_vl"
"""The module of the pipeline classes in a checkpoint (``custom_pipelines`` names ``<module>.<class>``)."""

REMOTE_PIPELINE_FILES = {
    "pipeline_hierarchical_vl.py": "pipeline_hierarchical_vl.py",
    "image_regions.py": "data/image_regions.py",
    "tasks.py": "tasks.py",
    "processing_hierarchical_vl.py": "processing_hierarchical_vl.py",
    "configuration_hierarchical_vl.py": "configuration_hierarchical_vl.py",
}
"""File written into the checkpoint -> its source, relative to the package."""

_FLAT_IMPORTS = {"data.image_regions": "image_regions"}
"""Relative imports of sub-packages in the shipped files -> the flat module that replaces them."""

_SPECS_LINE = "_SPECS_TEXT: str | None = None\n"
"""The line of ``tasks.py`` whose copy gets the text of ``task_specs.json``."""

_RELATIVE_IMPORT = re.compile(r"^(\s*from\s+\.)(\S+)(\s+import)", flags=re.MULTILINE)
"""``from .name import`` (the form transformers follows when it copies remote code, ``import .name`` aside)."""

_PIPELINE_CLASSES = (GroundingPipeline, RetrievalPipeline, VQAPipeline)


def _package_file(name: str) -> str:
    return resources.files("hierarchical_vl").joinpath(name).read_text(encoding="utf-8")


def _flattened(source: str, file_name: str) -> str:
    """``source`` with each relative import of a sub-package pointing at its flat copy."""

    def flat(match: re.Match) -> str:
        module = _FLAT_IMPORTS.get(match.group(2), match.group(2))
        return f"{match.group(1)}{module}{match.group(3)}"

    source = _RELATIVE_IMPORT.sub(flat, source)
    for module in _RELATIVE_IMPORT.findall(source):
        if f"{module[1]}.py" not in REMOTE_PIPELINE_FILES:
            raise RuntimeError(
                f"{file_name} imports .{module[1]}, which is not part of the pipeline code a checkpoint carries "
                f"(hierarchical_vl.remote_pipelines.REMOTE_PIPELINE_FILES)"
            )
    if re.search(r"^\s*import\s+\.", source, flags=re.MULTILINE):
        raise RuntimeError(f"{file_name} uses 'import .module', which remote code cannot copy: use 'from .module'")
    return source


def remote_pipeline_sources() -> dict[str, str]:
    """The pipeline code of a checkpoint: file name -> text, generated from the package's modules.

    Raises:
        RuntimeError: If a module imports one that the checkpoint would not carry (a change of the package that
            the list of files has to follow).
    """
    sources = {}
    for file_name, source_name in REMOTE_PIPELINE_FILES.items():
        source = _package_file(source_name)
        if file_name == "tasks.py":
            if source.count(_SPECS_LINE) != 1:
                raise RuntimeError(f"tasks.py no longer holds the line {_SPECS_LINE.strip()!r} to embed the specs in")
            specs = _package_file("task_specs.json")
            source = source.replace(_SPECS_LINE, f"_SPECS_TEXT: str | None = {specs!r}\n")
        sources[file_name] = _flattened(source, file_name)
    return sources


def custom_pipelines() -> dict[str, dict[str, Any]]:
    """transformers' ``custom_pipelines`` entry of a checkpoint: pipeline task -> ``{"impl", "pt", "type"}``.

    ``pt`` is ``AutoModel``, which with remote code loads the class that saved the checkpoint (a task's head or the
    multi-task model); the pipeline checks that it has the task's decoder.
    """
    entries = {}
    for pipeline_class in sorted(_PIPELINE_CLASSES, key=lambda cls: list(TASK_SPECS).index(cls.model_task)):
        spec = TASK_SPECS[pipeline_class.model_task]
        entries[spec.pipeline_id] = {
            "impl": f"{PIPELINE_MODULE}.{pipeline_class.__name__}",
            "pt": ["AutoModel"],
            "type": "multimodal",
        }
    return entries


def save_remote_pipelines(directory: str | os.PathLike) -> list[str]:
    """Write the pipeline code into a saved model directory and record the pipelines in its ``config.json``.

    Every file is written atomically; ``config.json`` keeps all its entries and gets ``custom_pipelines``.

    Args:
        directory: A directory that ``model.save_pretrained`` wrote (it must hold ``config.json``).

    Returns:
        The files written, relative to ``directory``, sorted (``config.json`` included).

    Raises:
        FileNotFoundError: If ``directory`` holds no ``config.json``.
        ValueError: If its ``config.json`` is not a JSON object.
    """
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory} is not a saved model directory (no config.json)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{config_path}: not a JSON configuration ({error})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_path}: not a JSON object")
    for file_name, text in remote_pipeline_sources().items():
        write_text_atomic(directory / file_name, text)
    config["custom_pipelines"] = custom_pipelines()
    # the layout transformers writes (``PretrainedConfig.to_json_string``)
    write_text_atomic(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return sorted([*REMOTE_PIPELINE_FILES, "config.json"])
