"""Two-stage ranking against exact ranking: agreement at shortlist lengths K = 10, 20, 50, on a trained model.

The reference is the exact images x captions score matrix of `RetrievalScorer.score_matrix`, computed in the same
run on the same model and split. For each first stage (``dual-encoder``, ``first-layer``) its cheap scores are
computed once, then for each K the two-stage matrix: exact scores for each image's top-K captions and each caption's
top-K images, ``-inf`` elsewhere (`score_matrix(shortlist=K, shortlist_scores=...)`). Reported per (stage, K), from
`shortlist_agreement` and `retrieval_recall`: the share of images (i2t) and captions (t2i) whose best candidate is the
exact best, the share of each query's exact top 10 that was scored exactly, the share of pairs scored exactly, R@1
of both directions, and the times of the first stage and the second against the exact matrix.

    python benchmarks/bench_shortlist_agreement.py                    # demo_output/multitask on demo_output/corpus
    python benchmarks/bench_shortlist_agreement.py --model M --data-dir D --split test --json agreement.json
    python benchmarks/bench_shortlist_agreement.py --smoke            # tiny random model, random inputs: seconds

The demo model comes from ``hvl demo`` (``demo_output/multitask``, trained on ``demo_output/corpus``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hierarchical_vl import HierarchicalVLConfig, HierarchicalVLForImageTextRetrieval
from hierarchical_vl.atomic_files import write_text_atomic
from hierarchical_vl.evaluation import (
    FIRST_STAGES,
    CorpusLayout,
    RetrievalScorer,
    load_evaluation_data,
    retrieval_inputs,
    shortlist_agreement,
)
from hierarchical_vl.metrics import retrieval_recall


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("demo_output/multitask"), help="save_pretrained directory")
    parser.add_argument("--data-dir", type=Path, default=Path("demo_output/corpus"), help="corpus directory")
    parser.add_argument("--split", default="test", help="the retrieval split ranked (default test)")
    parser.add_argument("--features-store", default=None, help="where converted features go (a read-only corpus)")
    parser.add_argument("--ks", default="10,20,50", help="shortlist lengths, comma-separated")
    parser.add_argument("--first-stages", default=",".join(FIRST_STAGES), help="first stages, comma-separated")
    parser.add_argument("--batch-size", type=int, default=512, help="pairs per forward pass")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--smoke", action="store_true", help="tiny random model on random inputs (seconds)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures here as JSON")
    return parser.parse_args(argv)


def _smoke_inputs() -> tuple[torch.nn.Module, dict, dict, np.ndarray, str]:
    """A tiny random retrieval model and random inputs: 12 images, 5 captions each."""
    torch.manual_seed(0)
    config = HierarchicalVLConfig.from_preset("tiny")
    model = HierarchicalVLForImageTextRetrieval(config)
    n_images, n_captions = 12, 60
    lengths = torch.randint(3, 9, (n_captions,))
    mask = (torch.arange(8) < lengths[:, None]).long()
    text = {"input_ids": torch.randint(2, config.vocab_size, (n_captions, 8)) * mask, "attention_mask": mask}
    regions = torch.randint(2, 7, (n_images,))
    images = {
        "region_features": torch.randn(n_images, 6, config.region_feature_dim).relu(),
        "region_mask": (torch.arange(6) < regions[:, None]).long(),
    }
    return model, text, images, np.repeat(np.arange(n_images), 5), "tiny random model, random inputs"


def _corpus_inputs(args: argparse.Namespace) -> tuple[torch.nn.Module, dict, dict, np.ndarray, str]:
    from hierarchical_vl.loading import load_checkpoint, load_processor

    model = load_checkpoint(args.model, task="retrieval")
    tokenizer = load_processor(args.model, model.config).tokenizer
    layout = CorpusLayout(root=args.data_dir, features="features/region_features.tsv")
    data = load_evaluation_data(
        layout, ["retrieval"], args.split, tokenizer, config=model.config, store_path=args.features_store
    )
    text, images, caption_image = retrieval_inputs(data.retrieval, model.config.max_regions)
    return model, text, images, caption_image, f"{args.model} on {args.data_dir} ({args.split} split)"


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.ks = "2,4"
    model, text, images, caption_image, source = _smoke_inputs() if args.smoke else _corpus_inputs(args)
    scorer = RetrievalScorer(model.eval(), batch_size=args.batch_size, device=args.device)
    ks = [int(k) for k in args.ks.split(",") if k]
    stages = [stage for stage in args.first_stages.split(",") if stage]

    warm = {key: value[:2] for key, value in text.items()}, {key: value[:1] for key, value in images.items()}
    scorer.score_matrix(*warm, progress=False)  # allocator and kernels, before anything is timed
    start = time.perf_counter()
    exact = scorer.score_matrix(text, images, progress=False)
    exact_seconds = time.perf_counter() - start
    n_images, n_captions = exact.shape
    exact_recall = retrieval_recall(exact, caption_image)
    print(
        f"{source}: {n_images} images x {n_captions} captions; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {args.device}"
    )
    print(
        f"exact ranking (reference): {exact_seconds:.2f} s, i2t R@1 {exact_recall['i2t_r1']:.2f}, "
        f"t2i R@1 {exact_recall['t2i_r1']:.2f}"
    )
    header = (
        f"{'first stage':<13} {'K':>3} {'i2t top-1':>9} {'t2i top-1':>9} {'i2t top-10':>10} {'t2i top-10':>10} "
        f"{'pairs':>6} {'i2t R@1':>7} {'t2i R@1':>7} {'stage 1 s':>9} {'stage 2 s':>9}"
    )
    print(header)
    rows = []
    for stage in stages:
        start = time.perf_counter()
        cheap = scorer.first_stage_scores(text, images, stage)
        first_seconds = time.perf_counter() - start
        for k in ks:
            start = time.perf_counter()
            two_stage = scorer.score_matrix(text, images, progress=False, shortlist=k, shortlist_scores=cheap)
            second_seconds = time.perf_counter() - start
            agreement = {name: 100.0 * value for name, value in shortlist_agreement(two_stage, exact, top=10).items()}
            recall = retrieval_recall(two_stage, caption_image)
            rows.append(
                {
                    "first_stage": stage,
                    "k": k,
                    **agreement,
                    "i2t_r1": recall["i2t_r1"],
                    "t2i_r1": recall["t2i_r1"],
                    "first_stage_seconds": first_seconds,
                    "second_stage_seconds": second_seconds,
                }
            )
            print(
                f"{stage:<13} {k:>3} {agreement['i2t_top1']:>9.2f} {agreement['t2i_top1']:>9.2f} "
                f"{agreement['i2t_top10_coverage']:>10.2f} {agreement['t2i_top10_coverage']:>10.2f} "
                f"{agreement['pairs_scored']:>6.1f} {recall['i2t_r1']:>7.2f} {recall['t2i_r1']:>7.2f} "
                f"{first_seconds:>9.2f} {second_seconds:>9.2f}"
            )
    print("agreement columns in percent; top-10 = share of each query's exact top 10 scored exactly")
    figures = {
        "source": source,
        "num_images": n_images,
        "num_captions": n_captions,
        "torch_threads": torch.get_num_threads(),
        "device": args.device,
        "exact_seconds": exact_seconds,
        "exact_i2t_r1": exact_recall["i2t_r1"],
        "exact_t2i_r1": exact_recall["t2i_r1"],
        "rows": rows,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.json, json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
