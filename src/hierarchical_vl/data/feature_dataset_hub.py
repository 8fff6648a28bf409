"""Publishing a region-feature store as a Hub dataset: a Parquet export plus a generated dataset card.

The card's YAML header declares the ``default`` configuration (``data_files`` of each split) and the
``dataset_info`` features, so the Hub's viewer and ``datasets.load_dataset(repo_id)`` read the shards typed; its
text states where the features came from (the source files or the extractor recorded in the store), the image and
region counts and the SHA-256 of every shard. Only ``HfApi.create_repo`` and ``HfApi.create_commit`` are called,
with exactly the export's files.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from ..atomic_files import write_text_atomic
from .feature_store import RegionFeatureStore
from .parquet_features import ParquetExport, export_store_to_parquet, region_feature_features

__all__ = ["publish_feature_dataset", "render_feature_dataset_card"]

logger = logging.getLogger(__name__)

_CARD = "README.md"


def _provenance_lines(manifest: dict[str, Any]) -> list[str]:
    lines = []
    extractor = manifest.get("extractor")
    if extractor:
        config = extractor.get("config", {}) if isinstance(extractor, dict) else {}
        detail = ", ".join(
            f"{key} {config[key]}" for key in ("conf_threshold", "min_boxes", "max_boxes") if key in config
        )
        lines.append(
            f"Extracted with the bottom-up-attention detector `{extractor.get('detector', 'unknown')}` "
            f"({extractor.get('mode', 'detected boxes')}{'; ' + detail if detail else ''})."
        )
    sources = manifest.get("sources") or []
    if sources:
        lines.append("Converted from these source files:")
        lines += [f"- `{Path(str(source)).name}`" for source in sources]
    if not lines:
        lines.append("The store records neither its source files nor an extractor.")
    return lines


def render_feature_dataset_card(export: ParquetExport, repo_id: str | None = None, *, description: str = "") -> str:
    """The dataset card (``README.md``) of an export.

    Args:
        export: What [`export_store_to_parquet`] wrote.
        repo_id: The Hub dataset it is published as (for the usage lines).
        description: A paragraph placed under the title.

    Returns:
        The card: YAML metadata (``configs`` with ``data_files``, ``dataset_info`` features and split sizes) and
        the provenance, counts and shard checksums.
    """
    manifest = export.manifest
    split = manifest.get("split", "train")
    features = region_feature_features(export.feature_dim)
    shard_bytes = sum((export.path / name).stat().st_size for name in export.files)
    metadata = {
        "tags": ["region-features", "bottom-up-attention", "hierarchical-vl"],
        "configs": [{"config_name": "default", "data_files": [{"split": split, "path": f"data/{split}-*.parquet"}]}],
        "dataset_info": {
            "features": features._to_yaml_list(),
            "splits": [{"name": split, "num_bytes": shard_bytes, "num_examples": export.num_images}],
        },
    }
    name = repo_id or export.path.name
    lines = [
        "---",
        yaml.safe_dump(metadata, sort_keys=False).rstrip(),
        "---",
        "",
        f"# Region features: {name}",
        "",
    ]
    if description:
        lines += [description.strip(), ""]
    lines += [
        f"{export.num_images:,} images, {export.num_regions:,} regions "
        f"({manifest.get('min_regions')}-{manifest.get('max_regions')} per image) of width {export.feature_dim}, "
        f"float16, in {len(export.files)} Parquet shards (split `{split}`).",
        "",
        "Each row is one image: `image_id` (string), `width` and `height` (int32 pixels), `boxes` (K, 4) float32 "
        "x1 y1 x2 y2 in pixels, `features` (K, F) float16.",
        "",
        "## Provenance",
        "",
        *_provenance_lines(manifest),
        "",
        "## Usage",
        "",
        "```python",
        "from datasets import load_dataset",
        f'regions = load_dataset("{name}", split="{split}", streaming=True)',
        "",
        "from hierarchical_vl.data import load_region_features, StreamingRegionFeatures",
        f'regions = load_region_features("{name}")                  # typed IterableDataset',
        f'stream = StreamingRegionFeatures("{name}", buffer_size=1000, seed=0)   # windows for the collators',
        "```",
        "",
        "```bash",
        f"hvl features import-parquet {name} region_features.store   # back into a memory-mapped store",
        "```",
        "",
        "## Checksums",
        "",
        "| file | SHA-256 |",
        "|---|---|",
        *[f"| `{file}` | `{export.checksums[file]}` |" for file in export.files],
    ]
    store_checksums = manifest.get("store_checksums") or {}
    if store_checksums:
        lines += ["", "The exported store's files:", "", "| file | SHA-256 |", "|---|---|"]
        lines += [f"| `{file}` | `{digest}` |" for file, digest in sorted(store_checksums.items())]
    return "\n".join(lines) + "\n"


def publish_feature_dataset(
    store: RegionFeatureStore | str | os.PathLike,
    repo_id: str,
    *,
    export_dir: str | os.PathLike | None = None,
    rows_per_shard: int = 5000,
    description: str = "",
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
    progress: bool = True,
) -> Any:
    """Exports a store to Parquet with a dataset card and uploads it as a Hub dataset in one commit.

    Args:
        store: The store (or its directory).
        repo_id: ``"user/name"`` or ``"organisation/name"``; a dataset repository, created when missing.
        export_dir: Where to write the export (kept; an earlier export there is replaced, any other directory
            refused); a temporary directory, removed afterwards, when ``None``.
        rows_per_shard: Images per Parquet file.
        description: A paragraph for the card.
        private: Visibility of a newly created repository (the Hub's default when ``None``).
        token: Hub token (the logged-in one by default).
        revision: Branch to commit to.
        commit_message: Message of the commit.
        endpoint: Hub address.
        progress: Show the export's progress bar.

    Returns:
        huggingface_hub's ``CommitInfo``.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    temporary = export_dir is None
    parent = Path(tempfile.mkdtemp(prefix="hierarchical-vl-features-")) if temporary else None
    directory = parent / "export" if temporary else Path(export_dir)
    try:
        export = export_store_to_parquet(  # replaces only an earlier export in export_dir
            store, directory, rows_per_shard=rows_per_shard, overwrite=not temporary, progress=progress
        )
        write_text_atomic(directory / _CARD, render_feature_dataset_card(export, repo_id, description=description))
        files = [_CARD, "region_features.json", *export.files]
        api = HfApi(endpoint=endpoint, token=token)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="dataset")
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(directory / name)) for name in files]
        logger.info("uploading %d files of %s to the dataset %s", len(operations), directory, repo_id)
        return api.create_commit(
            repo_id,
            operations=operations,
            commit_message=commit_message
            or f"Upload region features ({export.num_images} images, {json.dumps(export.feature_dim)}-d)",
            revision=revision,
            repo_type="dataset",
        )
    finally:
        if temporary:
            shutil.rmtree(parent, ignore_errors=True)
