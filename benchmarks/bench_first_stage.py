"""The first stages of two-stage ranking against exact pair scoring, at the paper's size, in one run.

`RetrievalScorer.first_stage_scores` gives a cheap score for every (image, caption) pair: ``dual-encoder`` (the
retrieval decoder on the features before co-attention, one matrix product) or ``first-layer`` (the first
co-attention layer per pair, pooled with the decoder's summary weights). The reference is the exact score matrix of
the same scorer (`score_matrix`), measured in the same process on the same weights and inputs, in alternating rounds.

    python benchmarks/bench_first_stage.py                  # paper size, 16 images x 80 captions
    python benchmarks/bench_first_stage.py --quick          # tiny model: the smoke run
"""

from __future__ import annotations

import argparse
import time

import torch

from hierarchical_vl import HierarchicalVLConfig, HierarchicalVLForImageTextRetrieval
from hierarchical_vl.evaluation import RetrievalScorer


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--captions", type=int, default=80)
    parser.add_argument("--regions", type=int, default=36)
    parser.add_argument("--words", type=int, default=14)
    parser.add_argument("--batch-size", type=int, default=160, help="pairs per forward pass")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="tiny model, few pairs, one round")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.quick:
        args.preset, args.images, args.captions, args.rounds = "tiny", 3, 6, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = HierarchicalVLConfig.from_preset(args.preset)
    model = HierarchicalVLForImageTextRetrieval(config).eval()
    text = {
        "input_ids": torch.randint(2, config.vocab_size, (args.captions, args.words)),
        "attention_mask": torch.ones(args.captions, args.words, dtype=torch.long),
    }
    images = {
        "region_features": torch.randn(args.images, args.regions, config.region_feature_dim).relu(),
        "region_mask": torch.ones(args.images, args.regions, dtype=torch.long),
    }
    scorer = RetrievalScorer(
        model, batch_size=args.batch_size, images_per_block=args.images, captions_per_block=args.captions
    )
    variants = {
        "exact (reference)": lambda: scorer.score_matrix(text, images, progress=False),
        "first stage: dual-encoder": lambda: scorer.first_stage_scores(text, images, "dual-encoder"),
        "first stage: first-layer": lambda: scorer.first_stage_scores(text, images, "first-layer"),
    }
    for run in variants.values():  # warm-up
        run()
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(args.rounds):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    pairs = args.images * args.captions
    print(
        f"preset {args.preset} (d={config.hidden_size}), {args.regions} regions, {args.words} words, "
        f"{args.images} x {args.captions} = {pairs} pairs, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    reference = best["exact (reference)"]
    for name, seconds in best.items():
        print(f"{name:<28} {pairs / seconds:>10,.0f} pairs/s   {reference / seconds:6.1f}x the exact rate")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
