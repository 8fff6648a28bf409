"""What hard-negative mining costs per retrieval update, against the update with random in-batch negatives.

One run measures, on the same randomly initialised retrieval head and the same batch of B distinct images with one
caption each (36 regions x 2048, 12 words):

* the reference: one update (forward + backward) on the positives and k random in-batch negatives per positive in
  each direction, as `RetrievalCollator` builds them by default ((1 + 2k) B rows);
* hard mining: scoring the U x B in-batch pairs without gradient (`mine_hard_negatives`), then the same update on
  the positives and the k hardest negatives in each direction.

The printed ratio is (mining + update) / reference update; mining grows with B^2, the update with (1 + 2k) B.

    python benchmarks/bench_negative_mining.py                   # demo model, B = 16 and 32, one thread
    python benchmarks/bench_negative_mining.py --preset paper --batch-sizes 128 --device cuda
    python benchmarks/bench_negative_mining.py --quick           # tiny model, a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import torch

from hierarchical_vl import HierarchicalVLConfig, HierarchicalVLForImageTextRetrieval
from hierarchical_vl.training.negative_mining import mine_hard_negatives

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import _median_seconds  # noqa: E402


def _positives(config: HierarchicalVLConfig, size: int, regions: int, words: int, device: str) -> dict:
    """B matching (image, caption) pairs of distinct images, with the image position the hard mode needs."""
    return {
        "input_ids": torch.randint(2, config.vocab_size, (size, words), device=device),
        "attention_mask": torch.ones(size, words, dtype=torch.long, device=device),
        "region_features": torch.randn(size, regions, config.region_feature_dim, device=device),
        "region_mask": torch.ones(size, regions, dtype=torch.long, device=device),
        "region_boxes": torch.rand(size, regions, 4, device=device),
        "labels": torch.ones(size, device=device),
        "image_positions": torch.arange(size, device=device),
    }


def _random_negatives(batch: dict, k: int) -> dict:
    """Positives plus k shifted captions per image and k shifted images per caption (the collator's default)."""
    size = len(batch["labels"])
    text = ("input_ids", "attention_mask")
    image = ("region_features", "region_mask", "region_boxes")
    parts = {name: [batch[name]] for name in (*text, *image)}
    for shift in range(1, k + 1):
        order = torch.roll(torch.arange(size), shift)
        for name in text:  # other captions for each image
            parts[name].append(batch[name][order])
        for name in image:
            parts[name].append(batch[name])
        for name in text:  # other images for each caption
            parts[name].append(batch[name])
        for name in image:
            parts[name].append(batch[name][order])
    out = {name: torch.cat(values) for name, values in parts.items()}
    labels = torch.zeros(size * (1 + 2 * k), device=batch["labels"].device)
    labels[:size] = 1
    out["labels"] = labels
    return out


def _median_ms(function, repeats: int, synchronize) -> float:
    """Median milliseconds of ``function`` after one warm-up call (`bench_predict`'s timing)."""
    return 1000 * _median_seconds(function, 1, repeats, synchronize)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="demo", help="model preset (default: demo)")
    parser.add_argument("--batch-sizes", default="16,32", help="B values, e.g. 16,32")
    parser.add_argument("--negatives", type=int, default=1, help="k negatives per positive in each direction")
    parser.add_argument("--regions", type=int, default=36)
    parser.add_argument("--words", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="tiny model, B = 8, 2 repeats")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    preset, sizes, repeats = args.preset, [int(b) for b in args.batch_sizes.split(",")], args.repeats
    if args.quick:
        preset, sizes, repeats = "tiny", [8], 2
    config = HierarchicalVLConfig.from_preset(preset)
    model = HierarchicalVLForImageTextRetrieval(config).to(args.device).train()
    synchronize = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def update(batch: dict) -> None:
        model.zero_grad(set_to_none=True)
        model(**batch).loss.backward()

    print(
        f"preset {preset}, k={args.negatives}, {args.regions} regions, {args.words} words, device {args.device}, "
        f"{args.threads} thread(s), torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )
    for size in sizes:
        positives = _positives(config, size, args.regions, args.words, args.device)
        reference = _random_negatives(positives, args.negatives)
        mined = mine_hard_negatives(model, positives, args.negatives)
        random_ms = _median_ms(lambda batch=reference: update(batch), repeats, synchronize)
        mining_ms = _median_ms(
            lambda batch=positives: mine_hard_negatives(model, batch, args.negatives), repeats, synchronize
        )
        hard_ms = _median_ms(lambda batch=mined: update(batch), repeats, synchronize)
        print(
            f"B={size}: random negatives update {random_ms:.1f} ms ({len(reference['labels'])} rows); hard: mining "
            f"{mining_ms:.1f} ms + update {hard_ms:.1f} ms ({len(mined['labels'])} rows); "
            f"ratio hard/random {(mining_ms + hard_ms) / random_ms:.2f}x"
        )


if __name__ == "__main__":
    main()
