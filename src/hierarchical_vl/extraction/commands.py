"""``hvl features extract``, ``hvl features compare`` and ``hvl features convert-detector``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_extraction_commands"]

_DTYPES = {"float32": None, "bfloat16": "bfloat16", "float16": "float16"}


def _load_extractor(args: argparse.Namespace):
    import torch

    from .extractor import RegionFeatureExtractor

    overrides = {
        name: getattr(args, name)
        for name in ("conf_threshold", "min_boxes", "max_boxes")
        if getattr(args, name, None) is not None
    }
    dtype = getattr(torch, _DTYPES[args.dtype]) if _DTYPES[args.dtype] else None
    if args.detector.startswith("preset:"):  # random weights of a preset: tests, benchmarks and the demo
        extractor = RegionFeatureExtractor.from_preset(args.detector[len("preset:") :], device=args.device)
        extractor.config = extractor.config.with_selection(num_boxes=args.num_boxes, **overrides)
        extractor.autocast_dtype = dtype
        return extractor
    return RegionFeatureExtractor.from_pretrained(
        args.detector, num_boxes=args.num_boxes, config_overrides=overrides, device=args.device, autocast_dtype=dtype
    )


def _extract(args: argparse.Namespace) -> int:
    from ..data.feature_readers import RegionFeatureError
    from ..data.feature_store import DiskFullError
    from .image_sources import collect_images, read_given_boxes
    from .store_extraction import extract_to_store, shard_from_environment

    num_shards, shard_index = shard_from_environment()
    if args.num_shards is not None:
        num_shards, shard_index = args.num_shards, args.shard_index
    try:
        images = collect_images(args.images, image_root=args.image_root)
        if not images:
            raise ValueError(f"no images found in {', '.join(args.images)}")
        boxes = read_given_boxes(args.boxes) if args.boxes else None
        extractor = _load_extractor(args)
        report = extract_to_store(
            extractor,
            images,
            args.destination,
            given_boxes=boxes,
            batch_size=args.batch_size,
            chunk_size=args.chunk_size,
            num_shards=num_shards,
            shard_index=shard_index,
            overwrite=args.overwrite,
            skip_bad=args.skip_bad,
            tsv=args.tsv,
            detector_source=args.detector,
            progress=not args.no_progress,
        )
    except (RegionFeatureError, FileExistsError, FileNotFoundError, ValueError, DiskFullError) as error:
        print(f"hvl features extract: error: {error}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


def _compare(args: argparse.Namespace) -> int:
    from ..atomic_files import write_json_atomic
    from ..data.feature_readers import RegionFeatureError
    from .compare import compare_region_stores

    try:
        comparison = compare_region_stores(args.store_a, args.store_b, iou_threshold=args.iou)
    except (RegionFeatureError, FileNotFoundError, ValueError) as error:
        print(f"hvl features compare: error: {error}", file=sys.stderr)
        return 1
    print(comparison.summary())
    if args.json:
        write_json_atomic(args.json, comparison.to_dict())
    if comparison.images_compared == 0:
        print("hvl features compare: error: the stores have no image in common", file=sys.stderr)
        return 1
    return 0


def _convert_detector(args: argparse.Namespace) -> int:
    from .extractor import RegionFeatureExtractor

    try:
        extractor = RegionFeatureExtractor.from_pretrained(args.source)
        directory = extractor.save_pretrained(args.destination)
    except (FileNotFoundError, ValueError) as error:
        print(f"hvl features convert-detector: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {directory} (config.json + model.safetensors)")
    return 0


def add_extraction_commands(feature_commands: Any) -> None:
    """Adds ``extract``, ``compare`` and ``convert-detector`` to the ``hvl features`` sub-commands."""
    extract = feature_commands.add_parser(
        "extract",
        help="extract bottom-up-attention region features from images into a store",
        description="Run the bottom-up-attention detector on images and write a float16 region-feature store. "
        "Finished images are kept in DST.parts/ as the work goes on; running the same command again resumes. "
        "Under accelerate launch (or with --num-shards/--shard-index) each process takes its share and the last "
        "to finish writes the store.",
    )
    extract.add_argument(
        "images",
        nargs="+",
        metavar="IMAGES",
        help="image files, directories, list files (.txt, one path per line) or COCO/Karpathy annotation files",
    )
    extract.add_argument("destination", metavar="DST", help="store directory to write")
    extract.add_argument(
        "--detector",
        required=True,
        help="detector directory or Hub id (e.g. unc-nlp/frcnn-vg-finetuned), or preset:NAME for random weights",
    )
    extract.add_argument("--image-root", default=None, help="folder of the file names in annotation files")
    extract.add_argument(
        "--boxes",
        default=None,
        help="given boxes: JSON {image_id: [[x1,y1,x2,y2],...]} or a "
        "Flickr30k Entities Annotations/ folder; features are pooled for exactly these boxes",
    )
    extract.add_argument("--num-boxes", type=int, default=None, help="a fixed number of boxes (e.g. 36: conf 0.4)")
    extract.add_argument("--conf-threshold", type=float, default=None, help="selection threshold (default 0.2)")
    extract.add_argument("--min-boxes", type=int, default=None, help="fewest boxes per image (default 10)")
    extract.add_argument("--max-boxes", type=int, default=None, help="most boxes per image (default 100)")
    extract.add_argument("--batch-size", type=int, default=4, help="images per detector call (default 4)")
    extract.add_argument("--chunk-size", type=int, default=64, help="images per resumable part (default 64)")
    extract.add_argument("--device", default=None, help="torch device (default cpu)")
    extract.add_argument("--dtype", default="float32", choices=tuple(_DTYPES), help="autocast dtype on accelerators")
    extract.add_argument("--num-shards", type=int, default=None, help="processes sharing the images")
    extract.add_argument("--shard-index", type=int, default=0, help="this process's share (with --num-shards)")
    extract.add_argument("--tsv", default=None, help="also write the bottom-up-attention TSV here")
    extract.add_argument("--skip-bad", action="store_true", help="skip unreadable images and list them")
    extract.add_argument("--overwrite", action="store_true", help="replace an existing store")
    extract.add_argument("--no-progress", action="store_true", help="no progress bar")
    extract.set_defaults(func=_extract)

    compare = feature_commands.add_parser(
        "compare",
        help="compare two region-feature stores: box agreement and feature cosine similarity",
        description="Match the boxes of each image in both stores by IoU (one to one, greedy) and report how many "
        "match and the cosine similarity of the matched features. Use it to check extracted features against an "
        "official release (convert the release with hvl features convert first).",
    )
    compare.add_argument("store_a", metavar="STORE_A")
    compare.add_argument("store_b", metavar="STORE_B")
    compare.add_argument("--iou", type=float, default=0.5, help="IoU at which boxes match (default 0.5)")
    compare.add_argument("--json", default=None, help="also write the figures as JSON here")
    compare.set_defaults(func=_compare)

    convert = feature_commands.add_parser(
        "convert-detector",
        help="convert the community detector weights (config.yaml + pytorch_model.bin) to this package's format",
        description="Read a detector (the port's config.yaml + pytorch_model.bin, a directory or a Hub id) and "
        "write config.json + model.safetensors.",
    )
    convert.add_argument("source", metavar="SRC")
    convert.add_argument("destination", metavar="DST")
    convert.set_defaults(func=_convert_detector)
