"""Region features as a Parquet ``datasets`` dataset: export a store, load it (local or from the Hub), import it back.

An export is a directory laid out as a Hub dataset repository::

    OUT/
      data/train-00000-of-00003.parquet ...   one row per image
      region_features.json                     counts, feature width, the store's provenance, each shard's SHA-256
      README.md                                the dataset card (written by `publish_feature_dataset`)

Each row holds ``image_id`` (string), ``width`` and ``height`` (int32 pixels), ``boxes`` (K, 4) float32 x1 y1 x2 y2
pixels and ``features`` (K, F) float16, K varying per image (see [`region_feature_features`]). The ``datasets``
features are embedded in the Parquet schema metadata (key ``huggingface``, as ``datasets`` writes it), so
``datasets.load_dataset("parquet", data_files=..., streaming=True)`` yields them typed. Parquet holds the float16
values as they are in the store, so an export imported back gives a bitwise-equal store.

``datasets`` and ``huggingface_hub`` are imported inside the functions; ``pyarrow`` comes with ``datasets``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic_files import atomic_path, file_sha256
from .feature_readers import RegionFeatureError
from .feature_store import RegionFeatureStore, RegionFeatureStoreWriter
from .generator_datasets import _import_datasets

__all__ = [
    "FEATURE_DATASET_FORMAT",
    "ParquetExport",
    "export_store_to_parquet",
    "import_parquet_to_store",
    "load_region_features",
    "parquet_shard_files",
    "region_feature_features",
]

FEATURE_DATASET_FORMAT = "hierarchical-vl-region-features"
"""The ``format`` recorded in an export's ``region_features.json``."""

_MANIFEST = "region_features.json"
_DATA_DIR = "data"
_ROW_GROUP_IMAGES = 64  # images per Parquet row group: the unit a streaming reader decodes at once
_COLUMNS = ("image_id", "width", "height", "boxes", "features")
# Plain encoding: dictionary pages for random floats (the default) make reading about 5x slower and save nothing;
# statistics only where they mean something.
_WRITE_OPTIONS = {"use_dictionary": ["image_id"], "write_statistics": ["image_id", "width", "height"]}
_HUB_PREFIX = "hf://datasets/"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SPLIT_NAME = re.compile(r"^\w+$")


def region_feature_features(feature_dim: int) -> Any:
    """The ``datasets.Features`` of an exported row.

    Args:
        feature_dim: The region feature width F.

    Returns:
        ``Features`` with ``image_id`` string, ``width``/``height`` int32, ``boxes`` ``List(List(float32, 4))``
        and ``features`` ``List(List(float16, F))``: a variable number of rows of fixed width, the Parquet layout
        itself (``Array2D`` with a ``None`` first dimension reads back from Parquet as this same nested list).
    """
    datasets = _import_datasets()
    return datasets.Features(
        {
            "image_id": datasets.Value("string"),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            "boxes": datasets.List(datasets.List(datasets.Value("float32"), length=4)),
            "features": datasets.List(datasets.List(datasets.Value("float16"), length=int(feature_dim))),
        }
    )


def _arrow_schema(feature_dim: int, provenance: Mapping[str, Any]) -> Any:

    features = region_feature_features(feature_dim)
    metadata = {
        "huggingface": json.dumps({"info": {"features": features.to_dict()}}),
        FEATURE_DATASET_FORMAT: json.dumps(dict(provenance), default=str),
    }
    return features.arrow_schema.with_metadata(metadata)


@dataclass
class ParquetExport:
    """What [`export_store_to_parquet`] wrote.

    Attributes:
        path: The export directory.
        files: The shards, relative to ``path`` (``data/train-00000-of-00002.parquet``, ...).
        num_images: Rows written.
        num_regions: Regions written.
        feature_dim: Feature width.
        checksums: SHA-256 of each shard, by relative path.
        manifest: The content of ``region_features.json``.
    """

    path: Path
    files: list[str]
    num_images: int
    num_regions: int
    feature_dim: int
    checksums: dict[str, str] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"wrote {self.num_images} images, {self.num_regions} regions of width {self.feature_dim} in "
            f"{len(self.files)} Parquet shards to {self.path}"
        )


def _nested(values: np.ndarray, counts: np.ndarray, width: int) -> Any:
    """(R, width) values and per-row counts (N,) -> an Arrow ``list<fixed_size_list<value>[width]>`` of N rows."""
    import pyarrow as pa

    inner = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(values).reshape(-1)), width)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)  # (N + 1,)
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), inner)


def _integral_sizes(store: RegionFeatureStore) -> np.ndarray:
    """(N, 2) int32 image widths and heights of a store, refusing sizes that are not whole pixels."""
    sizes = np.asarray(store.sizes)
    rounded = np.rint(sizes)
    bad = np.flatnonzero((rounded != sizes).any(axis=1) | (rounded < 0).any(axis=1) | (rounded >= 2**31).any(axis=1))
    if bad.size:
        i = int(bad[0])
        raise RegionFeatureError(
            store.path, f"image {store.image_ids[i]!r}", f"size {sizes[i].tolist()} is not a whole number of pixels"
        )
    return rounded.astype(np.int32)


def _store_provenance(store: RegionFeatureStore) -> dict[str, Any]:
    """Where a store's features came from: its source files or its extractor, and its checksums."""
    metadata = store.metadata
    provenance: dict[str, Any] = {"store_checksums": store.checksums or {}}
    if metadata.get("sources"):
        provenance["sources"] = [str(s) for s in metadata["sources"]]
    if metadata.get("extractor"):
        provenance["extractor"] = metadata["extractor"]
    return provenance


def export_store_to_parquet(
    store: RegionFeatureStore | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    rows_per_shard: int = 5000,
    split: str = "train",
    overwrite: bool = False,
    progress: bool = True,
) -> ParquetExport:
    """Writes a region-feature store as Parquet shards with explicit ``datasets`` features.

    The directory is written under a temporary name and renamed into place when complete.

    Args:
        store: The store (or its directory).
        out_dir: Export directory to write (a Hub dataset layout, see the module docstring).
        rows_per_shard: Images per Parquet file.
        split: Split name of the shards (``data/<split>-*.parquet``).
        overwrite: Replace an existing export at ``out_dir`` (only an export: any other directory is refused).
        progress: Show a progress bar.

    Returns:
        A [`ParquetExport`].
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    if not isinstance(store, RegionFeatureStore):
        store = RegionFeatureStore(store)
    if rows_per_shard < 1:
        raise ValueError(f"rows_per_shard must be positive, got {rows_per_shard}")
    if not _SPLIT_NAME.match(split):
        raise ValueError(f"split {split!r} must be letters, digits or underscores")
    out_dir = Path(out_dir)
    if out_dir.exists() and not (overwrite and (out_dir / _MANIFEST).is_file()):
        raise FileExistsError(
            f"{out_dir} exists; pass overwrite=True (--overwrite) to replace an export"
            if not overwrite
            else f"{out_dir} exists and is not a Parquet export (no {_MANIFEST}); nothing was deleted"
        )
    sizes = _integral_sizes(store)
    provenance = _store_provenance(store)
    schema = _arrow_schema(store.feature_dim, provenance)
    num_images = len(store)
    num_shards = max(1, -(-num_images // rows_per_shard))
    files, checksums = [], {}
    with atomic_path(out_dir, directory=True, overwrite=overwrite) as tmp:
        (tmp / _DATA_DIR).mkdir()
        with tqdm(total=num_images, desc="exporting", unit="image", disable=not progress, dynamic_ncols=True) as bar:
            for shard in range(num_shards):
                name = f"{_DATA_DIR}/{split}-{shard:05d}-of-{num_shards:05d}.parquet"
                with pq.ParquetWriter(tmp / name, schema, **_WRITE_OPTIONS) as writer:
                    first_image = shard * rows_per_shard
                    for start in range(first_image, min(first_image + rows_per_shard, num_images), _ROW_GROUP_IMAGES):
                        end = min(start + _ROW_GROUP_IMAGES, first_image + rows_per_shard, num_images)
                        row_start, row_end = int(store.offsets[start]), int(store.offsets[end])
                        counts = store.num_regions[start:end]  # (n,)
                        columns = [
                            pa.array(store.image_ids[start:end].tolist(), type=pa.string()),
                            pa.array(sizes[start:end, 0], type=pa.int32()),
                            pa.array(sizes[start:end, 1], type=pa.int32()),
                            _nested(np.asarray(store.boxes[row_start:row_end], dtype=np.float32), counts, 4),
                            _nested(np.asarray(store.features[row_start:row_end]), counts, store.feature_dim),
                        ]
                        writer.write_table(pa.Table.from_arrays(columns, schema=schema))
                        bar.update(end - start)
                files.append(name)
                checksums[name] = file_sha256(tmp / name)
        manifest = {
            "format": FEATURE_DATASET_FORMAT,
            "version": 1,
            "split": split,
            "num_images": num_images,
            "num_regions": int(store.padding_row),
            "feature_dim": store.feature_dim,
            "min_regions": int(store.num_regions.min()) if num_images else 0,
            "max_regions": store.max_regions,
            **provenance,
            "files": {name: {"sha256": checksums[name]} for name in files},
        }
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    return ParquetExport(out_dir, files, num_images, int(store.padding_row), store.feature_dim, checksums, manifest)


# ---------------------------------------------------------------------------------------------------------------
# Finding and checking the shards
# ---------------------------------------------------------------------------------------------------------------
def _hub_repo_id(source: str) -> tuple[str, str | None] | None:
    """The dataset repository and revision of ``hf://datasets/ORG/NAME[@REVISION]`` or ``ORG/NAME`` (when no such
    local path exists), else ``None``."""
    if source.startswith(_HUB_PREFIX):
        repo, _, revision = source[len(_HUB_PREFIX) :].strip("/").partition("@")
        if not _REPO_ID.match(repo):
            raise ValueError(f"{source!r} is not hf://datasets/ORG/NAME[@REVISION]")
        return repo, revision or None
    if _REPO_ID.match(source) and not Path(source).exists():
        return source, None
    return None


@dataclass
class _Shards:
    """The shards of a source: local paths, or ``hf://`` URLs read in place through ``filesystem``."""

    files: list[Any]
    filesystem: Any = None  # huggingface_hub.HfFileSystem for remote shards
    storage_options: dict[str, Any] | None = None  # the same for ``datasets``

    def open(self, file: Any) -> Any:
        """A ``pyarrow.parquet.ParquetFile`` of one shard (remote: byte ranges are fetched as they are read)."""
        import pyarrow.parquet as pq

        return pq.ParquetFile(file if self.filesystem is None else self.filesystem.open(file, "rb"))


def _hub_shards(
    repo_id: str,
    split: str,
    *,
    download: bool,
    revision: str | None,
    token: str | bool | None,
    endpoint: str | None,
    cache_dir: Any,
) -> _Shards:
    """A Hub dataset's shards of ``split`` (``data/<split>-*.parquet``): downloaded into the Hub cache, or their
    ``hf://`` URLs (``download=False``) to stream them without a local copy."""
    from huggingface_hub import HfApi, HfFileSystem, hf_hub_download

    api = HfApi(endpoint=endpoint, token=token)
    names = api.list_repo_files(repo_id, repo_type="dataset", revision=revision)
    pattern = re.compile(rf"^{_DATA_DIR}/{re.escape(split)}-\d+-of-\d+\.parquet$")
    shards = sorted(name for name in names if pattern.match(name))
    if not shards:
        raise FileNotFoundError(f"the Hub dataset {repo_id!r} has no {_DATA_DIR}/{split}-*.parquet files")
    if not download:
        at = f"@{revision}" if revision else ""
        options = {"endpoint": endpoint, "token": token}
        options = {key: value for key, value in options.items() if value is not None}
        return _Shards(
            [f"{_HUB_PREFIX}{repo_id}{at}/{name}" for name in shards], HfFileSystem(**options), {"hf": options}
        )
    files = [
        Path(
            hf_hub_download(
                repo_id,
                name,
                repo_type="dataset",
                revision=revision,
                token=token,
                endpoint=endpoint,
                cache_dir=None if cache_dir is None else str(cache_dir),
            )
        )
        for name in shards
    ]
    return _Shards(files)


def _resolve_shards(
    source: Any, split: str, *, download: bool = True, revision=None, token=None, endpoint=None, cache_dir=None
) -> _Shards:
    """See [`parquet_shard_files`]; with ``download=False`` a Hub dataset's shards stay remote."""
    if not _SPLIT_NAME.match(split):
        raise ValueError(f"split {split!r} must be letters, digits or underscores")
    if isinstance(source, (list, tuple)):
        return _Shards([Path(item) for item in source])
    text = os.fspath(source)
    hub = _hub_repo_id(text)
    if hub is not None:
        repo_id, named_revision = hub
        if revision is not None and named_revision is not None and revision != named_revision:
            raise ValueError(f"{text!r} names revision {named_revision!r}, but revision={revision!r} was given")
        return _hub_shards(
            repo_id,
            split,
            download=download,
            revision=revision or named_revision,
            token=token,
            endpoint=endpoint,
            cache_dir=cache_dir,
        )
    path = Path(text)
    if path.is_file():
        return _Shards([path])
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or directory (nor a Hub dataset id ORG/NAME)")
    shards = sorted((path / _DATA_DIR).glob(f"{split}-*.parquet")) or sorted(path.glob("*.parquet"))
    if not shards:
        raise FileNotFoundError(f"{path}: no {_DATA_DIR}/{split}-*.parquet or *.parquet files")
    return _Shards(shards)


def parquet_shard_files(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    split: str = "train",
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> list[Path]:
    """The local Parquet shards of a source, downloaded first when it is a Hub dataset.

    Args:
        source: An export directory (its ``data/<split>-*.parquet``), a directory of ``.parquet`` files, one file or
            several, or a Hub dataset (``ORG/NAME`` or ``hf://datasets/ORG/NAME``).
        split: The split whose shards are wanted.
        revision: Hub revision.
        token: Hub token.
        endpoint: Hub address.
        cache_dir: Hub cache directory.

    Returns:
        The shard files, in order.
    """
    return _resolve_shards(source, split, revision=revision, token=token, endpoint=endpoint, cache_dir=cache_dir).files


def _check_shard(shards: _Shards, path: Any) -> int:
    """Checks a shard's schema and returns its feature width; a bad file raises an error naming it."""
    import pyarrow as pa

    try:
        schema = shards.open(path).schema_arrow
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such Parquet shard") from None
    except (OSError, pa.ArrowException) as error:
        raise RegionFeatureError(path, "file", f"not a readable Parquet file ({error})") from None
    missing = [name for name in _COLUMNS if name not in schema.names]
    if missing:
        raise RegionFeatureError(path, "schema", f"missing columns {missing}; found {schema.names}")
    features = schema.field("features").type
    inner = getattr(features, "value_type", None)
    if not pa.types.is_list(features) or not pa.types.is_fixed_size_list(inner):
        raise RegionFeatureError(path, "column 'features'", f"type {features}, expected list<fixed_size_list<...>[F]>")
    boxes = schema.field("boxes").type
    if not pa.types.is_list(boxes) or getattr(boxes.value_type, "list_size", None) != 4:
        raise RegionFeatureError(path, "column 'boxes'", f"type {boxes}, expected list<fixed_size_list<float>[4]>")
    return int(inner.list_size)


def _checked_shards(shards: _Shards) -> int:
    """Checks every shard and returns their common feature width."""
    widths = {path: _check_shard(shards, path) for path in shards.files}
    files = shards.files
    if len(set(widths.values())) > 1:
        other = next(p for p in files if widths[p] != widths[files[0]])
        raise RegionFeatureError(
            other, "column 'features'", f"width {widths[other]}, but {files[0]} has {widths[files[0]]}"
        )
    return widths[files[0]]


def load_region_features(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    split: str = "train",
    *,
    streaming: bool = True,
    columns: Sequence[str] | None = None,
    download: bool = True,
    revision: str | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Any:
    """Region features of an export as a ``datasets`` dataset, typed by [`region_feature_features`].

    Args:
        source: See [`parquet_shard_files`]: an export directory, Parquet files or a Hub dataset id.
        split: The split to load.
        streaming: Return an ``IterableDataset`` (read shard by shard, row group by row group) instead of a
            map-style ``Dataset``.
        columns: Load only these columns (e.g. ``["image_id", "boxes"]``: Parquet reads only their bytes).
        download: For a Hub dataset, download the shards into the Hub cache first; ``False`` streams them over
            HTTP (``hf://`` URLs, byte ranges as they are read) without a local copy (needs ``streaming``).
        revision: Hub revision.
        token: Hub token.
        endpoint: Hub address.
        cache_dir: Cache directory of the Hub download (and of the map-style dataset).

    Returns:
        A ``datasets.IterableDataset`` (``streaming``) or ``datasets.Dataset``.

    Raises:
        RegionFeatureError: A shard is not Parquet or lacks the columns, naming the file.
    """
    _import_datasets()  # the error that says what needs it, before any download
    if not download and not streaming:
        raise ValueError("download=False streams the shards: it needs streaming=True")
    shards = _resolve_shards(
        source, split, download=download, revision=revision, token=token, endpoint=endpoint, cache_dir=cache_dir
    )
    return _load_shards(shards, split, streaming=streaming, columns=columns, cache_dir=cache_dir, token=token)


def _load_shards(
    shards: _Shards, split: str, *, streaming: bool, columns: Sequence[str] | None, cache_dir: Any, token: Any
) -> Any:
    """The ``datasets`` dataset of resolved shards (see [`load_region_features`])."""
    datasets = _import_datasets()
    features = region_feature_features(_checked_shards(shards))
    options: dict[str, Any] = {}
    if shards.storage_options is not None:
        options.update(storage_options=shards.storage_options, token=token)
    if columns is not None:
        unknown = [c for c in columns if c not in features]
        if unknown:
            raise ValueError(f"unknown columns {unknown}; the rows have {list(features)}")
        features = datasets.Features({name: features[name] for name in columns})
        options["columns"] = list(columns)
    if not streaming and cache_dir is not None:
        options["cache_dir"] = str(cache_dir)
    return datasets.load_dataset(
        "parquet",
        data_files={split: [str(f) for f in shards.files]},
        split=split,
        streaming=streaming,
        features=features,
        **options,
    )


# ---------------------------------------------------------------------------------------------------------------
# Importing into a store
# ---------------------------------------------------------------------------------------------------------------
def _batch_images(table: Any, path: Any, first_row: int) -> Iterator[tuple[str, int, int, np.ndarray, Any]]:
    """(image id, width, height, boxes (K, 4) float32, features (K, F) float16) of each row of an Arrow batch, as
    views of the batch's buffers (features ``None`` when the batch has no ``features`` column); a row with no
    regions, a null or mismatched counts raise an error naming the file and row."""
    import pyarrow as pa

    if isinstance(table, pa.Table):  # record batch by record batch: combining chunks would copy the features
        for batch in table.to_batches():
            yield from _batch_images(batch, path, first_row)
            first_row += batch.num_rows
        return
    names = table.schema.names
    column = {name: table.column(names.index(name)) for name in _COLUMNS if name in names}
    for name, values in column.items():
        if values.null_count:
            row = first_row + int(np.flatnonzero(~np.asarray(values.is_valid()))[0])
            raise RegionFeatureError(path, f"row {row}", f"column {name!r} is null")
    boxes = column["boxes"]
    offsets = boxes.offsets.to_numpy()  # (n + 1,) region offsets of the rows
    base = offsets[0]
    flat_boxes = boxes.flatten().flatten().to_numpy(zero_copy_only=False).reshape(-1, 4)  # (R', 4)
    flat_features = None
    features = column.get("features")
    if features is not None:
        width = features.type.value_type.list_size
        feature_offsets = features.offsets.to_numpy()
        if not np.array_equal(offsets - base, feature_offsets - feature_offsets[0]):
            row = first_row + int(np.flatnonzero(offsets - base != feature_offsets - feature_offsets[0])[0])
            raise RegionFeatureError(path, f"row {row}", "boxes and features have different region counts")
        flat_features = features.flatten().flatten().to_numpy(zero_copy_only=False).reshape(-1, width)  # (R', F)
    ids = column["image_id"].to_pylist()
    widths, heights = column["width"].to_numpy(), column["height"].to_numpy()
    for i, image_id in enumerate(ids):
        start, end = offsets[i] - base, offsets[i + 1] - base
        if end == start:
            raise RegionFeatureError(path, f"row {first_row + i} (image {image_id!r})", "no regions")
        regions = None if flat_features is None else flat_features[start:end]
        yield image_id, int(widths[i]), int(heights[i]), flat_boxes[start:end], regions


def _iter_shard_images(
    shards: _Shards, batch_rows: int = _ROW_GROUP_IMAGES, columns: Sequence[str] = _COLUMNS
) -> Iterator[tuple[str, int, int, np.ndarray, Any]]:
    """Every image of the shards in order, as [`_batch_images`] gives them (read with pyarrow, batch by batch, only
    the given columns: of a remote shard only their byte ranges are fetched)."""
    import pyarrow as pa

    for path in shards.files:
        row = 0
        try:
            parquet = shards.open(path)
            for batch in parquet.iter_batches(batch_size=batch_rows, columns=list(columns)):
                yield from _batch_images(batch, path, row)
                row += batch.num_rows
        except (OSError, pa.ArrowException) as error:
            raise RegionFeatureError(path, f"row {row}", f"unreadable Parquet data ({error})") from None


def import_parquet_to_store(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    store_dir: str | os.PathLike,
    *,
    split: str = "train",
    overwrite: bool = False,
    progress: bool = True,
    revision: str | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> RegionFeatureStore:
    """Writes an export (local or a Hub dataset) back into a [`RegionFeatureStore`] through its writer.

    Args:
        source: See [`parquet_shard_files`].
        store_dir: The store directory to write (atomically).
        split: The split to import.
        overwrite: Replace an existing store.
        progress: Show a progress bar.
        revision: Hub revision.
        token: Hub token.
        endpoint: Hub address.
        cache_dir: Hub cache directory.

    Returns:
        The new store.

    Raises:
        RegionFeatureError: A bad shard or row, naming the file, the row and the problem.
    """
    from tqdm.auto import tqdm

    shards = _resolve_shards(source, split, revision=revision, token=token, endpoint=endpoint, cache_dir=cache_dir)
    feature_dim = _checked_shards(shards)
    files = shards.files
    total = sum(shards.open(path).metadata.num_rows for path in files)
    metadata: dict[str, Any] = {"sources": [str(f) for f in files]}
    provenance = shards.open(files[0]).schema_arrow.metadata or {}
    if FEATURE_DATASET_FORMAT.encode() in provenance:
        metadata["exported_from"] = json.loads(provenance[FEATURE_DATASET_FORMAT.encode()])
    with RegionFeatureStoreWriter(store_dir, feature_dim=feature_dim, overwrite=overwrite, metadata=metadata) as writer:
        with tqdm(total=total, desc="importing", unit="image", disable=not progress, dynamic_ncols=True) as bar:
            for path in files:
                for row, (image_id, width, height, boxes, features) in enumerate(_iter_shard_images(_Shards([path]))):
                    try:
                        writer.add(image_id, boxes, features, width, height)
                    except ValueError as error:
                        raise RegionFeatureError(path, f"row {row} (image {image_id!r})", str(error)) from None
                    bar.update(1)
    return RegionFeatureStore(store_dir)
