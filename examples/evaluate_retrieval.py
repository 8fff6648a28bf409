"""Image-caption retrieval with the co-attention model: the exact score matrix, fast, and a two-stage variant.

Scores every (image, caption) pair of a split with `RetrievalScorer` (per-caption and per-image work done once,
pairs in large batches, resumable with --cache-dir), reports Recall@K in both directions, and with --shortlist K
re-ranks only each query's top-K candidates of a cheap first stage and reports how often that agrees with the exact
ranking.

    # a checkpoint on a corpus laid out like the demo corpus (features/, captions/, ...)
    python examples/evaluate_retrieval.py --checkpoint outputs/multitask --data-dir demo_corpus --split test \
        --shortlist 20 --cache-dir scores/

    # self-contained: write a small demo corpus and score it with a freshly initialised model
    python examples/evaluate_retrieval.py --demo demo_retrieval --shortlist 5 --first-stage first-layer

On a GPU add ``--device cuda --dtype bf16 --batch-size 4096``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from hierarchical_vl import (
    HierarchicalVLConfig,
    HierarchicalVLForImageTextRetrieval,
    HierarchicalVLProcessor,
    HierarchicalVLTokenizer,
)
from hierarchical_vl.data import generate_demo_corpus, iter_json_array
from hierarchical_vl.data.collators import region_tensors, text_tensors
from hierarchical_vl.evaluation import (
    FIRST_STAGES,
    CorpusLayout,
    RetrievalScorer,
    format_results_table,
    load_evaluation_data,
    shortlist_agreement,
)
from hierarchical_vl.loading import load_checkpoint, load_processor
from hierarchical_vl.metrics import retrieval_recall


def _demo_checkpoint(directory: Path, num_images: int) -> tuple[Path, Path]:
    """A demo corpus and a fresh ``tiny`` retrieval model whose vocabulary is the corpus's words."""
    config = HierarchicalVLConfig.from_preset("tiny")
    paths = generate_demo_corpus(
        directory / "corpus",
        num_images=num_images,
        seed=0,
        feature_dim=config.region_feature_dim,
        min_regions=10,
        max_regions=36,
    )
    captions = [s["raw"] for image in iter_json_array(paths.karpathy_captions, "images") for s in image["sentences"]]
    tokenizer = HierarchicalVLTokenizer.from_texts(captions)
    torch.manual_seed(0)
    model = HierarchicalVLForImageTextRetrieval(HierarchicalVLConfig.from_preset("tiny", vocab_size=len(tokenizer)))
    checkpoint = directory / "checkpoint"
    model.save_pretrained(checkpoint)
    HierarchicalVLProcessor(tokenizer).save_pretrained(checkpoint)
    return checkpoint, paths.root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="save_pretrained directory (retrieval head or multi-task)")
    parser.add_argument("--data-dir", type=Path, help="corpus directory (features/, captions/)")
    parser.add_argument("--demo", type=Path, default=None, help="write a demo corpus and a fresh model here instead")
    parser.add_argument("--demo-images", type=int, default=60)
    parser.add_argument("--split", default="test")
    parser.add_argument("--shortlist", type=int, default=None, metavar="K")
    parser.add_argument(
        "--first-stage",
        choices=FIRST_STAGES,
        default="dual-encoder",
        help="cheap scores of the shortlist (first-layer: slower, closer to the exact ranking)",
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="resumable score blocks")
    parser.add_argument("--batch-size", type=int, default=512, help="pairs per forward pass")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--output", type=Path, default=None, help="write the metrics as JSON")
    args = parser.parse_args(argv)
    if args.demo is not None:
        args.checkpoint, args.data_dir = _demo_checkpoint(args.demo, args.demo_images)
    if args.checkpoint is None or args.data_dir is None:
        parser.error("give --checkpoint and --data-dir, or --demo DIR")

    model = load_checkpoint(args.checkpoint)
    tokenizer = load_processor(args.checkpoint, model.config).tokenizer
    data = load_evaluation_data(
        CorpusLayout(root=args.data_dir),
        ["retrieval"],
        args.split,
        tokenizer,
        config=model.config,
        progress=False,
    )
    captions = data.retrieval
    text = text_tensors(captions, np.arange(len(captions)))  # input_ids, attention_mask (C, N)
    images, _ = region_tensors(captions.store, captions.images_store_index, model.config.max_regions)  # (I, T, F)

    scorer = RetrievalScorer(
        model,
        batch_size=args.batch_size,
        device=args.device,
        dtype=torch.bfloat16 if args.dtype == "bf16" else None,
    )
    exact = scorer.score_matrix(text, images, cache_dir=args.cache_dir)  # (I, C)
    stats = scorer.last_stats
    print(
        f"exact: {stats.num_images} x {stats.num_captions} pairs, {stats.pairs_scored} scored now "
        f"({stats.blocks_loaded} blocks from the cache), {stats.pairs_per_second:,.0f} pairs/s"
    )
    metrics = {"retrieval/num_images": stats.num_images, "retrieval/num_captions": stats.num_captions}
    metrics.update({f"retrieval/{k}": v for k, v in retrieval_recall(exact, captions.caption_image).items()})

    if args.shortlist is not None:
        start = time.perf_counter()
        two_stage = scorer.score_matrix(text, images, shortlist=args.shortlist, first_stage=args.first_stage)
        print(
            f"two-stage ({args.first_stage}, K={args.shortlist}): {scorer.last_stats.pairs_scored} pairs scored "
            "exactly in "
            f"{time.perf_counter() - start:.1f}s"
        )
        metrics["retrieval/shortlist_k"] = args.shortlist
        metrics.update({f"retrieval/exact/{k}": v for k, v in retrieval_recall(exact, captions.caption_image).items()})
        metrics.update({f"retrieval/{k}": v for k, v in retrieval_recall(two_stage, captions.caption_image).items()})
        metrics.update(
            {f"retrieval/shortlist/{k}": round(100 * v, 2) for k, v in shortlist_agreement(two_stage, exact).items()}
        )
    print(format_results_table(metrics, data.splits))
    if args.output is not None:
        args.output.write_text(json.dumps(metrics, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
