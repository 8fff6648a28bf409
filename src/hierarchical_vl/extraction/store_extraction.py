"""Extraction of many images into a [`RegionFeatureStore`], resumable and shardable.

Finished images are written in parts: every ``chunk_size`` images become one small store under
``<destination>.parts/`` (each written atomically by the package's store writer, so a crash loses at most the
chunk in progress). A restart reads the parts and skips the images they hold. Several processes (``accelerate
launch``, or ``num_shards``/``shard_index``) each take every ``num_shards``-th image and write their own parts; the
process that finds every image done merges the parts, in the order of the image list, into the destination store
(float16, with the detector configuration in ``store.json``) and removes them. Optionally the merged records are
also written as a bottom-up-attention TSV.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .extractor import RegionFeatureExtractor
from .image_sources import ImageSource

__all__ = ["ExtractionReport", "extract_to_store", "shard_from_environment"]

logger = logging.getLogger(__name__)
_PART_PREFIX = "part-"


@dataclass
class ExtractionReport:
    """What [`extract_to_store`] did.

    Attributes:
        destination: The store (written only when ``merged``).
        extracted: Images extracted by this call.
        resumed: Images found already finished in the parts.
        skipped: ``(image_id, problem)`` of images left out (``skip_bad``).
        merged: Whether this call wrote the destination store.
        pending: Images still missing (other shards not finished yet).
        tsv: The TSV written, if any.
    """

    destination: Path
    extracted: int = 0
    resumed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    merged: bool = False
    pending: int = 0
    tsv: Path | None = None

    def summary(self) -> str:
        lines = [f"extracted {self.extracted} images, {self.resumed} already done"]
        lines += [f"  skipped image {image_id!r}: {problem}" for image_id, problem in self.skipped]
        if self.merged:
            lines.append(f"wrote the store {self.destination}")
        else:
            lines.append(f"{self.pending} images of other shards pending; the last shard to finish writes the store")
        if self.tsv is not None:
            lines.append(f"wrote the TSV {self.tsv}")
        return "\n".join(lines)


def shard_from_environment() -> tuple[int, int]:
    """``(num_shards, shard_index)`` of this process under ``accelerate launch``/``torchrun`` (``WORLD_SIZE``,
    ``RANK``), ``(1, 0)`` otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    return max(world, 1), rank


def _detector_fingerprint(extractor: RegionFeatureExtractor, detector_source: str, given_boxes: bool) -> str:
    payload = json.dumps({"config": extractor.config.to_dict(), "given_boxes": given_boxes}, sort_keys=True)
    digest = hashlib.sha256(payload.encode())
    for name, tensor in sorted(extractor.detector.state_dict().items()):  # a cheap weights signature
        flat = tensor.detach().float().flatten()
        digest.update(f"{name}:{flat[:4].tolist()}:{float(flat.sum()) if flat.numel() else 0.0}".encode())
    del detector_source
    return digest.hexdigest()[:16]


def _parts_dir(destination: Path) -> Path:
    return destination.with_name(destination.name + ".parts")


def _finished_parts(parts: Path, fingerprint: str) -> dict[str, Path]:
    """Image id -> part store holding it; refuses parts made by another detector or rule."""
    from ..data.feature_store import RegionFeatureStore

    done: dict[str, Path] = {}
    if not parts.is_dir():
        return done
    for part in sorted(p for p in parts.iterdir() if p.is_dir() and p.name.startswith(_PART_PREFIX)):
        store = RegionFeatureStore(part)
        made_by = store.metadata.get("extractor_fingerprint")
        if made_by != fingerprint:
            raise ValueError(
                f"{part} was extracted with another detector, configuration or mode ({made_by} != {fingerprint}); "
                f"remove {parts} to start over, or resume with the same --detector and options"
            )
        for image_id in store.image_ids.tolist():
            done[image_id] = part
    return done


def _write_part(
    parts: Path, shard: int, results: list[tuple[str, Any]], fingerprint: str, metadata: dict[str, Any]
) -> None:
    from ..data.feature_store import RegionFeatureStoreWriter

    if not results:
        return
    parts.mkdir(parents=True, exist_ok=True)
    existing = [p.name for p in parts.iterdir() if p.name.startswith(f"{_PART_PREFIX}{shard:05d}-")]
    part = parts / f"{_PART_PREFIX}{shard:05d}-{len(existing):06d}"
    with RegionFeatureStoreWriter(part, metadata={**metadata, "extractor_fingerprint": fingerprint}) as writer:
        for image_id, regions in results:
            writer.add(image_id, regions.boxes, regions.features, regions.width, regions.height)


def _merge(destination: Path, images: Sequence[ImageSource], done: dict[str, Path], metadata, overwrite, tsv):
    from ..data.feature_readers import RegionFeatureRecord
    from ..data.feature_store import RegionFeatureStore, RegionFeatureStoreWriter
    from ..data.feature_writers import write_bottom_up_tsv

    stores: dict[Path, RegionFeatureStore] = {}

    def records():
        for source in images:
            if source.image_id not in done:
                continue
            part = done[source.image_id]
            store = stores.setdefault(part, RegionFeatureStore(part))
            item = store[source.image_id]
            yield RegionFeatureRecord(
                source.image_id,
                float(item["width"]),
                float(item["height"]),
                np.asarray(item["boxes"], dtype=np.float32),
                np.asarray(item["features"], dtype=np.float32),
            )

    with RegionFeatureStoreWriter(destination, overwrite=overwrite, metadata=metadata) as writer:
        for record in records():
            writer.add_record(record)
    if tsv is not None:  # from the merged store: exactly what the store holds (float16 values)
        write_bottom_up_tsv(tsv, records())
    return destination


def extract_to_store(
    extractor: RegionFeatureExtractor,
    images: Sequence[ImageSource],
    destination: str | os.PathLike,
    *,
    given_boxes: dict[str, np.ndarray] | None = None,
    batch_size: int = 4,
    chunk_size: int = 64,
    num_shards: int = 1,
    shard_index: int = 0,
    overwrite: bool = False,
    skip_bad: bool = False,
    tsv: str | os.PathLike | None = None,
    detector_source: str = "",
    progress: bool = True,
    on_chunk: Callable[[int], None] | None = None,
) -> ExtractionReport:
    """Extracts the regions of ``images`` into a store at ``destination`` (see the module for resume and shards).

    Args:
        extractor: The detector.
        images: The images, in the order of the store.
        destination: The store directory.
        given_boxes: Given-boxes mode: image id -> (K, 4) boxes in original pixels; every image needs boxes.
        batch_size: Images per detector call.
        chunk_size: Images per part (the work a crash can lose).
        num_shards: Processes sharing the work.
        shard_index: This process's share (images ``shard_index::num_shards``).
        overwrite: Replace an existing destination store.
        skip_bad: Leave out unreadable images (and images with no region) and list them, instead of stopping.
        tsv: Also write the bottom-up TSV here when merging.
        detector_source: Where the detector came from (recorded in ``store.json``).
        progress: Show a progress bar.
        on_chunk: Called with the number of images in each part after it is written (tests use it).

    Raises:
        FileExistsError: The destination exists and ``overwrite`` is false.
        ValueError: An image is unreadable or has no given boxes (the image is named), or the parts on disk were
            made with another detector.
    """
    from tqdm.auto import tqdm

    destination = Path(destination)
    if destination.exists() and not overwrite:
        raise FileExistsError(f"{destination} exists; pass --overwrite to replace it")
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard index {shard_index} is not in [0, {num_shards})")
    if given_boxes is not None:
        missing = [s.image_id for s in images if s.image_id not in given_boxes]
        if missing:
            raise ValueError(f"no given boxes for {len(missing)} images, e.g. {missing[:3]}")
    fingerprint = _detector_fingerprint(extractor, detector_source, given_boxes is not None)
    metadata = {
        "extractor": {
            "detector": detector_source,
            "config": extractor.config.to_dict(),
            "mode": "given boxes" if given_boxes is not None else "detected boxes",
        },
    }
    parts = _parts_dir(destination)
    done = _finished_parts(parts, fingerprint)
    report = ExtractionReport(destination)
    mine = [s for i, s in enumerate(images) if i % num_shards == shard_index]
    todo = [s for s in mine if s.image_id not in done]
    report.resumed = len(mine) - len(todo)
    pending: list[tuple[str, Any]] = []
    with tqdm(total=len(todo), desc="extracting", unit="image", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            results = _extract_batch(extractor, batch, given_boxes, skip_bad, report)
            pending.extend(results)
            report.extracted += len(results)
            bar.update(len(batch))
            if len(pending) >= chunk_size:
                _write_part(parts, shard_index, pending, fingerprint, metadata)
                if on_chunk is not None:
                    on_chunk(len(pending))
                pending = []
        _write_part(parts, shard_index, pending, fingerprint, metadata)
    done = _finished_parts(parts, fingerprint)
    skipped_ids = {image_id for image_id, _ in report.skipped}
    report.pending = sum(1 for s in images if s.image_id not in done and s.image_id not in skipped_ids)
    if report.pending and num_shards > 1:
        return report
    if not done:
        raise ValueError("no image gave any region; nothing to write")
    from ..data.feature_store import StoreBusyError

    metadata["skipped"] = [f"image {image_id!r}: {problem}" for image_id, problem in report.skipped]
    try:
        _merge(destination, images, done, metadata, overwrite, None if tsv is None else Path(tsv))
    except StoreBusyError:  # another shard finished at the same time and is merging
        logger.info("another process is writing %s", destination)
        return report
    shutil.rmtree(parts, ignore_errors=True)
    report.merged = True
    report.tsv = None if tsv is None else Path(tsv)
    return report


def _extract_batch(extractor, batch, given_boxes, skip_bad, report) -> list[tuple[str, Any]]:
    """Regions of a batch; with ``skip_bad`` a failing batch is retried image by image to name the bad ones."""
    boxes = None if given_boxes is None else [given_boxes[s.image_id] for s in batch]
    try:
        regions = extractor([s.path for s in batch], boxes=boxes)
    except (ValueError, FileNotFoundError) as error:
        if len(batch) > 1:
            out = []
            for source in batch:
                out.extend(_extract_batch(extractor, [source], given_boxes, skip_bad, report))
            return out
        if not skip_bad:
            raise ValueError(f"image {batch[0].image_id!r} ({batch[0].path}): {error}") from None
        report.skipped.append((batch[0].image_id, str(error)))
        return []
    out = []
    for source, region in zip(batch, regions):
        if region.num_boxes == 0:
            problem = "the detector found no region"
            if not skip_bad:
                raise ValueError(f"image {source.image_id!r} ({source.path}): {problem}")
            report.skipped.append((source.image_id, problem))
            continue
        out.append((source.image_id, region))
    return out
