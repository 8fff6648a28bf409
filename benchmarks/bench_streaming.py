"""Collated VQA batches per second from streaming Parquet, against the memory-mapped store and against per-example
reads through ``datasets``, in the same run.

All three paths serve the same questions (pre-tokenised ids and soft labels, ``regions`` x ``feature_dim`` float16
regions per image) in random order and produce the same batch (``input_ids``, ``attention_mask``,
``region_features``, ``region_mask``, ``region_boxes``, ``labels``):

* streaming: the store exported to Parquet (``export_store_to_parquet``), read as a ``datasets`` streaming dataset
  through ``StreamingRegionFeatures`` (shuffle buffer, windows of images) and collated by ``VQACollator`` through
  ``StreamingBatches``; the time includes reading and decoding the Parquet shards (page cache warm);
* store: ``EncodedVQADataset`` + ``VQACollator`` over the memory-mapped ``RegionFeatureStore`` (bench_data's fast
  path, ``num_workers=0``);
* reference: bench_data's per-example ``datasets`` path (``questions[i]``, then ``regions[row]``, padded and stacked).

    python benchmarks/bench_streaming.py                       # 3000 images, 15000 questions, batch 256
    python benchmarks/bench_streaming.py --smoke --json streaming.json
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_data  # noqa: E402  (the per-example reference and the store path, not a copy)

from hierarchical_vl import HierarchicalVLTokenizer  # noqa: E402
from hierarchical_vl.data import (  # noqa: E402
    EncodedVQADataset,
    StreamingBatches,
    StreamingRegionFeatures,
    VQACollator,
    export_store_to_parquet,
)


def time_streaming(export_dir: Path, questions, tokenizer, args) -> dict:
    """Examples per second of whole epochs of the streaming path (after one warm-up epoch)."""
    stream = StreamingRegionFeatures(
        export_dir, buffer_size=args.buffer_size, seed=args.seed, window_images=args.window_images
    )
    t0 = time.perf_counter()
    encoded = EncodedVQADataset(questions, stream.catalogue(), tokenizer, max_words=14)
    setup = time.perf_counter() - t0
    batches = StreamingBatches(encoded, stream, functools.partial(VQACollator, max_regions=100), args.batch_size)
    shape = None
    rates, examples, start = [], 0, time.perf_counter()
    epochs = 0
    while epochs < 2 or time.perf_counter() - start < args.seconds:
        epoch_start, epoch_examples = time.perf_counter(), 0
        for batch in batches:
            epoch_examples += batch["input_ids"].shape[0]
            shape = shape or tuple(batch["region_features"].shape)
        if epochs:  # the first epoch warms the page cache and the reader
            rates.append(epoch_examples / (time.perf_counter() - epoch_start))
            examples += epoch_examples
        else:
            start = time.perf_counter()
        epochs += 1
    elapsed = time.perf_counter() - start
    return {
        "examples_per_s": examples / elapsed,
        "epochs": len(rates),
        "epoch_rates": rates,
        "shape": shape,
        "catalogue_and_encoding_s": setup,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--questions-per-image", type=int, default=5)
    parser.add_argument("--regions", type=int, default=36)
    parser.add_argument("--feature-dim", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--buffer-size", type=int, default=1000, help="images in the shuffle buffer")
    parser.add_argument("--window-images", type=int, default=512, help="images per window")
    parser.add_argument("--rows-per-shard", type=int, default=500, help="images per Parquet file")
    parser.add_argument("--seconds", type=float, default=6.0, help="minimum timed seconds per fast path")
    parser.add_argument("--reference-examples", type=int, default=2048)
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the store and Parquet files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="seconds-long sizes (the test suite runs this)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    if args.smoke:
        args.images, args.feature_dim, args.batch_size = 120, 64, 32
        args.buffer_size, args.window_images, args.rows_per_shard = 50, 40, 50
        args.seconds, args.reference_examples = 0.2, 128

    import datasets

    datasets.disable_progress_bars()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(dir=args.workdir) as name:
        workdir = Path(name)
        print(
            f"machine: {bench_data._cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__}, datasets "
            f"{datasets.__version__}; load average {os.getloadavg()[0]:.2f}"
        )
        store, rows, vocab = bench_data.build_corpus(
            workdir, args.images, args.questions_per_image, args.regions, args.feature_dim, args.seed
        )
        export = export_store_to_parquet(store, workdir / "parquet", rows_per_shard=args.rows_per_shard, progress=False)
        parquet_bytes = sum((export.path / f).stat().st_size for f in export.files)
        print(f"store: {store}; Parquet: {len(export.files)} shards, {parquet_bytes / 2**20:.0f} MiB")
        questions = bench_data.question_dataset(rows, vocab)
        tokenizer = HierarchicalVLTokenizer.from_texts(questions["question"])
        encoded = EncodedVQADataset(questions, store, tokenizer, max_words=14)

        streaming = time_streaming(export.path, questions, tokenizer, args)
        print(
            f"streaming Parquet: {streaming['examples_per_s']:,.0f} examples/s (batches {streaming['shape']}; "
            f"epochs {', '.join(f'{x:,.0f}' for x in streaming['epoch_rates'])}; catalogue + encoding "
            f"{streaming['catalogue_and_encoding_s']:.2f}s once)"
        )
        fast = bench_data.time_fast(encoded, args.batch_size, 0, args.seconds, args.seed)
        print(f"memory-mapped store: {fast['examples_per_s']:,.0f} examples/s")

        reference_questions, regions = bench_data.build_reference(
            questions, encoded, store, workdir, args.regions, args.feature_dim
        )
        order = np.random.default_rng(args.seed).permutation(len(encoded))[: args.reference_examples]
        bench_data.time_reference(reference_questions, regions, order[: args.batch_size], args.batch_size, len(vocab))
        reference = bench_data.time_reference(reference_questions, regions, order, args.batch_size, len(vocab))
        print(f"datasets per-example reference: {reference['examples_per_s']:,.0f} examples/s")

        figures = {
            "streaming_examples_per_s": streaming["examples_per_s"],
            "store_examples_per_s": fast["examples_per_s"],
            "reference_examples_per_s": reference["examples_per_s"],
            "ratio_streaming_over_reference": streaming["examples_per_s"] / reference["examples_per_s"],
            "ratio_streaming_over_store": streaming["examples_per_s"] / fast["examples_per_s"],
            "ratio_store_over_reference": fast["examples_per_s"] / reference["examples_per_s"],
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        }
        print(f"ratio streaming / per-example reference: {figures['ratio_streaming_over_reference']:.1f}x (target 5x)")
        print(f"ratio streaming / memory-mapped store: {figures['ratio_streaming_over_store']:.2f}x")
        print(f"ratio store / per-example reference: {figures['ratio_store_over_reference']:.1f}x")
        print(f"load average now {os.getloadavg()[0]:.2f}")
    if args.json is not None:
        from hierarchical_vl.atomic_files import write_json_atomic

        write_json_atomic(args.json, figures)
    return figures


if __name__ == "__main__":
    main()
