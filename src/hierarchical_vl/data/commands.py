"""``hvl features convert``, ``verify``, ``export-parquet``, ``import-parquet``, ``publish`` and ``hvl data demo``
(``hvl features extract``, ``compare`` and ``convert-detector`` live in ``hierarchical_vl.extraction.commands``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .feature_readers import FEATURE_FORMATS, RegionFeatureError

__all__ = ["add_commands"]

VERIFY_OK = 0
VERIFY_FAILED = 1
VERIFY_UNKNOWN = 3


def _convert(args: argparse.Namespace) -> int:
    from .feature_store import DiskFullError, convert_region_features

    try:
        report = convert_region_features(
            args.sources,
            args.destination,
            format=args.format,
            feature_dim=args.feature_dim,
            skip_bad=args.skip_bad,
            numeric_ids=args.numeric_ids,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except (RegionFeatureError, FileExistsError, FileNotFoundError, ValueError, DiskFullError) as error:
        print(f"hvl features convert: error: {error}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .feature_store import RegionFeatureStore

    try:
        store = RegionFeatureStore(args.store)  # checks the index and the files' lengths
        problems = store.verify()  # reads every byte
    except (RegionFeatureError, FileNotFoundError, ValueError, OSError) as error:
        print(f"hvl features verify: error: {error}", file=sys.stderr)
        return VERIFY_FAILED
    if problems is None:
        print(
            f"{store.path}: checksums unknown (the store was written by an older version and records none); its "
            "index and file lengths are consistent. Convert it again to record checksums."
        )
        return VERIFY_UNKNOWN
    if problems:
        for problem in problems:
            print(f"hvl features verify: error: {problem}", file=sys.stderr)
        return VERIFY_FAILED
    print(f"{store.path}: OK ({len(store)} images, {store.padding_row} regions; every checksum matches)")
    return VERIFY_OK


def _export_parquet(args: argparse.Namespace) -> int:
    from .parquet_features import export_store_to_parquet

    try:
        export = export_store_to_parquet(
            args.store,
            args.destination,
            rows_per_shard=args.rows_per_shard,
            split=args.split,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except (RegionFeatureError, FileExistsError, FileNotFoundError, ValueError, OSError) as error:
        print(f"hvl features export-parquet: error: {error}", file=sys.stderr)
        return 1
    print(export.summary())
    return 0


def _import_parquet(args: argparse.Namespace) -> int:
    from .parquet_features import import_parquet_to_store

    try:
        store = import_parquet_to_store(
            args.source[0] if len(args.source) == 1 else args.source,  # one directory, file or Hub id, or files
            args.destination,
            split=args.split,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            revision=args.revision,
            token=args.token,
        )
    except (
        RegionFeatureError,
        FileExistsError,
        FileNotFoundError,
        ValueError,
        OSError,
    ) as error:  # Hub HTTP errors too
        print(f"hvl features import-parquet: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {len(store)} images, {store.padding_row} regions of width {store.feature_dim} to {store.path}")
    return 0


def _publish(args: argparse.Namespace) -> int:
    from .feature_dataset_hub import publish_feature_dataset

    try:
        info = publish_feature_dataset(
            args.store,
            args.repo_id,
            export_dir=args.export_dir,
            rows_per_shard=args.rows_per_shard,
            private=args.private or None,
            token=args.token,
            progress=not args.no_progress,
        )
    except (
        RegionFeatureError,
        FileExistsError,
        FileNotFoundError,
        ValueError,
        OSError,
    ) as error:  # Hub HTTP errors too
        print(f"hvl features publish: error: {error}", file=sys.stderr)
        return 1
    print(f"published {args.store} as the dataset {args.repo_id}: {getattr(info, 'commit_url', info)}")
    return 0


def _add_parquet_commands(feature_commands: Any) -> None:
    """``export-parquet``, ``import-parquet`` and ``publish``."""
    export = feature_commands.add_parser(
        "export-parquet",
        help="write a store as Parquet shards (a datasets dataset, Hub layout)",
        description="Write a region-feature store as Parquet shards OUT/data/<split>-*.parquet with explicit "
        "datasets features (image_id, width, height, boxes (K, 4) float32, features (K, F) float16), loadable "
        "with datasets.load_dataset('parquet', ..., streaming=True) or hierarchical_vl.data.load_region_features.",
    )
    export.add_argument("store", metavar="STORE", help="store directory")
    export.add_argument("destination", metavar="OUT", help="export directory to write")
    export.add_argument("--rows-per-shard", type=int, default=5000, help="images per Parquet file (default 5000)")
    export.add_argument("--split", default="train", help="split name of the shards (default train)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing export")
    export.add_argument("--no-progress", action="store_true", help="no progress bar")
    export.set_defaults(func=_export_parquet)

    back = feature_commands.add_parser(
        "import-parquet",
        help="write Parquet region features (local or a Hub dataset) into a store",
        description="Read an export directory, Parquet files or a Hub dataset (ORG/NAME or hf://datasets/ORG/NAME, "
        "downloaded into the Hub cache) into a float16 memory-mapped store; bad files and rows are named.",
    )
    back.add_argument("source", nargs="+", metavar="SRC", help="export directory, Parquet file(s) or Hub dataset id")
    back.add_argument("destination", metavar="STORE", help="store directory to write")
    back.add_argument("--split", default="train", help="split to import (default train)")
    back.add_argument("--revision", default=None, help="Hub revision")
    back.add_argument("--token", default=None, help="Hub token (the logged-in one by default)")
    back.add_argument("--overwrite", action="store_true", help="replace an existing store")
    back.add_argument("--no-progress", action="store_true", help="no progress bar")
    back.set_defaults(func=_import_parquet)

    publish = feature_commands.add_parser(
        "publish",
        help="publish a store as a Hub dataset with a generated dataset card",
        description="Export a store to Parquet, write a dataset card (source files or extractor, counts, "
        "checksums of the shards) and upload both as a Hub dataset repository in one commit.",
    )
    publish.add_argument("store", metavar="STORE", help="store directory")
    publish.add_argument("repo_id", metavar="REPO_ID", help="dataset repository, user/name or organisation/name")
    publish.add_argument("--private", action="store_true", help="create the repository as private")
    publish.add_argument("--token", default=None, help="Hub token (the logged-in one by default)")
    publish.add_argument("--export-dir", default=None, help="keep the export here (default: a temporary directory)")
    publish.add_argument("--rows-per-shard", type=int, default=5000, help="images per Parquet file (default 5000)")
    publish.add_argument("--no-progress", action="store_true", help="no progress bar")
    publish.set_defaults(func=_publish)


def _demo(args: argparse.Namespace) -> int:
    from .demo_corpus import generate_demo_corpus

    paths = generate_demo_corpus(
        args.out_dir,
        num_images=args.images,
        seed=args.seed,
        feature_dim=args.feature_dim,
        min_regions=args.min_regions,
        max_regions=args.max_regions,
        questions_per_image=args.questions_per_image,
        feature_formats=tuple(args.feature_formats),
        write_images=not args.no_images,
    )
    print(f"wrote the demo corpus ({args.images} images, seed {args.seed}) to {paths.root}")
    print(f"  region features: {paths.features_tsv}")
    for name, path in paths.extra_features.items():
        print(f"  region features ({name}): {path}")
    print(f"  VQA 2.0: {paths.vqa_questions['train2014'].parent}")
    print(f"  Karpathy captions: {paths.karpathy_captions}")
    print(f"  Flickr30k Entities: {paths.entities_root}")
    if paths.images is not None:
        print(f"  scene pictures: {paths.images}")
    print(f"  manifest: {paths.manifest}")
    return 0


def add_commands(subparsers: Any) -> None:
    """Adds ``features`` (``convert``) and ``data`` (``demo``) to the ``hvl`` command line."""
    features = subparsers.add_parser("features", help="region-feature stores")
    feature_commands = features.add_subparsers(dest="features_command", required=True, metavar="COMMAND")
    convert = feature_commands.add_parser(
        "convert",
        help=f"convert region features ({', '.join(FEATURE_FORMATS)}) into a fast store",
        description="Convert one or more region-feature files into a float16 memory-mapped store. Bad records "
        "stop the conversion with the file, line or key and the problem, unless --skip-bad, which "
        "skips and lists them.",
    )
    convert.add_argument("sources", nargs="+", metavar="SRC", help="feature file(s) or directory, read in order")
    convert.add_argument("destination", metavar="DST", help="store directory to write")
    convert.add_argument("--format", default="auto", choices=("auto", *FEATURE_FORMATS))
    convert.add_argument("--skip-bad", action="store_true", help="skip bad records and list them")
    convert.add_argument("--feature-dim", type=int, default=None, help="expected feature width")
    convert.add_argument(
        "--numeric-ids",
        action="store_true",
        help="reduce ids to their trailing number (COCO_val2014_000000000042 -> 42)",
    )
    convert.add_argument("--overwrite", action="store_true", help="replace an existing store")
    convert.add_argument("--no-progress", action="store_true", help="no progress bar")
    convert.set_defaults(func=_convert)

    verify = feature_commands.add_parser(
        "verify",
        help="check a store's files against the checksums recorded when it was converted",
        description="Check a region-feature store: its index and file lengths, then the SHA-256 of every data file "
        "against the one recorded in store.json at conversion. Exit status: "
        f"{VERIFY_OK} every checksum matches; {VERIFY_FAILED} a file differs, is missing or the store is damaged "
        f"(each such file is named); {VERIFY_UNKNOWN} the store records no checksums (written by an older version): "
        "only its index and lengths were checked.",
    )
    verify.add_argument("store", metavar="STORE", help="store directory to check")
    verify.set_defaults(func=_verify)

    _add_parquet_commands(feature_commands)  # export-parquet, import-parquet, publish

    from ..extraction.commands import add_extraction_commands

    add_extraction_commands(feature_commands)  # extract, compare, convert-detector

    data = subparsers.add_parser("data", help="datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    demo = data_commands.add_parser(
        "demo",
        help="write the synthetic demo corpus in the real file formats",
        description="Write a small, learnable corpus: bottom-up TSV region features, VQA 2.0 question and "
        "annotation files, a Karpathy caption file, Flickr30k Entities and a picture of every scene, deterministic "
        "by seed.",
    )
    demo.add_argument("out_dir", metavar="OUT_DIR", help="directory to write the corpus into")
    demo.add_argument("--images", type=int, default=300, help="images in the corpus (default 300, at least 10)")
    demo.add_argument("--seed", type=int, default=0, help="seed of all content (default 0)")
    demo.add_argument("--feature-dim", type=int, default=2048, help="region feature width (default 2048)")
    demo.add_argument("--min-regions", type=int, default=10, help="fewest regions per image (default 10)")
    demo.add_argument("--max-regions", type=int, default=36, help="most regions per image (default 36)")
    demo.add_argument("--questions-per-image", type=int, default=8, help="VQA questions per image (default 8)")
    demo.add_argument(
        "--feature-formats",
        nargs="+",
        default=["tsv"],
        choices=FEATURE_FORMATS,
        help="region-feature formats to write (the TSV always)",
    )
    demo.add_argument(
        "--no-images",
        action="store_true",
        help="do not write the scene pictures images/<image_id>.png (the other files are the same either way)",
    )
    demo.set_defaults(func=_demo)
