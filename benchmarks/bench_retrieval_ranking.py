"""Exact image-caption pair scoring at the paper's size: `RetrievalScorer` against a plain reference.

The paper's retrieval model: d=1024, the retrieval decoder at layer 3, 36 regions per image, 14-word captions.

- reference: ``model(...)`` on batches of (image, caption) pairs in fp32, everything recomputed for every pair
  (language encoder, image encoder, layers 1-3, decoder) -- how a co-attention model is usually evaluated;
- fast: `RetrievalScorer.score_matrix`, per-modality work done once per caption and per image, the first layer
  factorised, pairs in large gathered batches (bf16 autocast with ``--dtype bf16``).

Both run in the same process on the same weights and inputs, in alternating rounds (the best round of each counts:
on a shared machine, the fastest round is the one least disturbed by other work), and
the script checks that they produce the same scores before reporting. Rates are pairs per second, end to end
(the fast path's per-modality encodings included). The projected wall times for COCO use the pair rate of the
fast path plus its per-item encoding time:

- COCO 1K: 5 folds x 1000 images x 5000 captions = 25M pairs (the usual "1K test" convention, each fold scored on
  its own; 30000 items to encode);
- COCO 5K: 5000 images x 25000 captions = 125M pairs (30000 items to encode).

    python benchmarks/bench_retrieval_ranking.py                      # CPU, 8 images x 40 captions, fp32
    python benchmarks/bench_retrieval_ranking.py --dtype bf16         # CPU bf16 autocast for the fast path
    python benchmarks/bench_retrieval_ranking.py --device cuda --dtype bf16 --images 64 --captions 1000 \\
        --batch-size 4096 --reference-images 4
    python benchmarks/bench_retrieval_ranking.py --quick              # a few seconds, tiny model (smoke test)

``--smoke`` is ``--quick``. Add ``--record benchmarks/RESULTS.md`` to append the figures, the command, the machine
and the date, ``--json PATH`` to write them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hierarchical_vl import HierarchicalVLConfig, HierarchicalVLForImageTextRetrieval
from hierarchical_vl.atomic_files import write_text_atomic
from hierarchical_vl.evaluation import RetrievalScorer

COCO_1K_PAIRS = 5 * 1000 * 5000
COCO_5K_PAIRS = 5000 * 25000
COCO_ITEMS = 5000 + 25000  # images + captions to encode, for either protocol


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--captions", type=int, default=40)
    parser.add_argument("--regions", type=int, default=36)
    parser.add_argument("--words", type=int, default=14)
    parser.add_argument("--batch-size", type=int, default=160, help="pairs per forward pass (both variants)")
    parser.add_argument(
        "--reference-images",
        type=int,
        default=None,
        help="score only this many images' rows with the reference",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="precision of the fast path")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--quick", "--smoke", action="store_true", help="tiny model, few pairs, one round")
    parser.add_argument("--record", type=Path, default=None, help="append the results to this Markdown file")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures here as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.preset, args.images, args.captions, args.rounds, args.batch_size = "tiny", 3, 5, 1, 8
    return args


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reference_scores(model, text, images, image_rows: int, batch_size: int, device: torch.device) -> np.ndarray:
    """The plain way: every pair through ``model(...)``, fp32, nothing shared between pairs."""
    n_captions = text["input_ids"].shape[0]
    image_index = torch.arange(image_rows).repeat_interleave(n_captions)  # (P,)
    caption_index = torch.arange(n_captions).repeat(image_rows)
    logits = []
    with torch.inference_mode():
        for start in range(0, image_index.numel(), batch_size):
            i = image_index[start : start + batch_size]
            c = caption_index[start : start + batch_size]
            output = model(
                input_ids=text["input_ids"][c].to(device),
                attention_mask=text["attention_mask"][c].to(device),
                region_features=images["region_features"][i].to(device),
                region_mask=images["region_mask"][i].to(device),
            )
            logits.append(output.logits.float())
    _synchronize(device)
    return torch.cat(logits).cpu().numpy().reshape(image_rows, n_captions)


def _machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"{os.cpu_count()}-core CPU ({cpu}), torch {torch.__version__}, {torch.get_num_threads()} threads"
    if device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)}"
    if hasattr(os, "getloadavg"):
        text += f", load average at start {os.getloadavg()[0]:.1f}"
    return text


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    machine = _machine(device)
    torch.manual_seed(0)
    config = HierarchicalVLConfig.from_preset(args.preset)
    model = HierarchicalVLForImageTextRetrieval(config).to(device).eval()
    n_img, n_cap, n_words, n_regions = args.images, args.captions, args.words, args.regions
    ref_rows = min(n_img, args.reference_images or n_img)
    text = {
        "input_ids": torch.randint(2, config.vocab_size, (n_cap, n_words)),
        "attention_mask": torch.ones(n_cap, n_words, dtype=torch.long),
    }
    images = {
        "region_features": torch.randn(n_img, n_regions, config.region_feature_dim).relu(),
        "region_mask": torch.ones(n_img, n_regions, dtype=torch.long),
    }
    dtype = torch.bfloat16 if args.dtype == "bf16" else None
    scorer = RetrievalScorer(
        model,
        batch_size=args.batch_size,
        dtype=dtype,
        device=device,
        images_per_block=n_img,
        captions_per_block=n_cap,
    )
    layer = config.layer_for("retrieval")
    print(
        f"preset {args.preset} (d={config.hidden_size}, retrieval at layer {layer}), {n_regions} regions, "
        f"{n_words} words; {n_img} images x {n_cap} captions = {n_img * n_cap} pairs "
        f"(reference: {ref_rows * n_cap}); batch {args.batch_size}; {device} fast={args.dtype}\n{machine}"
    )

    # Warm-up (allocator, kernels) on a few pairs of each.
    warm = {key: value[:2] for key, value in text.items()}, {key: value[:1] for key, value in images.items()}
    _reference_scores(model, warm[0], warm[1], 1, args.batch_size, device)
    scorer.score_matrix(*warm, progress=False)

    reference_rates, fast_rates, pair_rates, encode_per_item = [], [], [], []
    reference = fast = None
    for _ in range(args.rounds):
        start = time.perf_counter()
        reference = _reference_scores(model, text, images, ref_rows, args.batch_size, device)
        reference_rates.append(ref_rows * n_cap / (time.perf_counter() - start))
        start = time.perf_counter()
        fast = scorer.score_matrix(text, images, progress=False)
        _synchronize(device)
        fast_rates.append(n_img * n_cap / (time.perf_counter() - start))
        pair_rates.append(scorer.last_stats.pairs_per_second)
        encode_per_item.append(scorer.last_stats.encode_seconds / (n_img + n_cap))
    max_diff = float(np.abs(fast[:ref_rows] - reference).max())
    tolerance = 1e-4 if dtype is None else 0.25
    same_ranking = bool(np.array_equal(np.argsort(-fast[:ref_rows], axis=1), np.argsort(-reference, axis=1)))
    top1 = float(np.mean(fast[:ref_rows].argmax(axis=1) == reference.argmax(axis=1)))  # per image
    spread = float(reference.std())

    reference_rate = max(reference_rates)
    fast_rate, pair_rate = max(fast_rates), max(pair_rates)
    per_item = min(encode_per_item)
    projections = {
        "COCO 1K (25M pairs)": (
            COCO_1K_PAIRS / reference_rate,
            COCO_1K_PAIRS / pair_rate + COCO_ITEMS * per_item,
        ),
        "COCO 5K (125M pairs)": (
            COCO_5K_PAIRS / reference_rate,
            COCO_5K_PAIRS / pair_rate + COCO_ITEMS * per_item,
        ),
    }
    lines = [
        f"reference (model(...) per pair, fp32): {reference_rate:10.1f} pairs/s   "
        f"rounds {[round(r, 1) for r in reference_rates]}",
        f"RetrievalScorer ({args.dtype}), end to end: {fast_rate:10.1f} pairs/s   "
        f"rounds {[round(r, 1) for r in fast_rates]}",
        f"RetrievalScorer pair blocks only:       {pair_rate:10.1f} pairs/s   "
        f"(+ {1000 * per_item:.2f} ms per item encoded)",
        f"speed-up end to end: {fast_rate / reference_rate:.1f}x   max |fast - reference| = {max_diff:.2e}, "
        f"same ranking: {same_ranking} (same top-1 caption for {100 * top1:.0f}% of images; "
        f"reference logits std {spread:.3f})",
    ]
    lines += [
        f"projected {name}: reference {_hours(ref)}, RetrievalScorer {_hours(ours)}"
        for name, (ref, ours) in projections.items()
    ]
    print("\n".join(lines))
    if args.json is not None:
        figures = {
            "machine": machine,
            "device": str(device),
            "preset": args.preset,
            "dtype": args.dtype,
            "images": n_img,
            "captions": n_cap,
            "regions": n_regions,
            "words": n_words,
            "batch_size": args.batch_size,
            "reference_pairs_per_s": reference_rate,
            "end_to_end_pairs_per_s": fast_rate,
            "pair_blocks_pairs_per_s": pair_rate,
            "encode_ms_per_item": 1000 * per_item,
            "speed_up": fast_rate / reference_rate,
            "max_abs_difference": max_diff,
            "same_ranking": same_ranking,
            "projected_coco_1k_hours": {
                "reference": projections["COCO 1K (25M pairs)"][0] / 3600,
                "scorer": projections["COCO 1K (25M pairs)"][1] / 3600,
            },
            "projected_coco_5k_hours": {
                "reference": projections["COCO 5K (125M pairs)"][0] / 3600,
                "scorer": projections["COCO 5K (125M pairs)"][1] / 3600,
            },
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.json, json.dumps(figures, indent=2))
    if args.record is not None:
        command = "python " + " ".join(
            shlex.quote(part)
            for part in ["benchmarks/bench_retrieval_ranking.py", *(sys.argv[1:] if argv is None else argv)]
        )
        _record(
            args.record,
            command,
            machine,
            args,
            config,
            ref_rows,
            reference_rate,
            fast_rate,
            pair_rate,
            per_item,
            max_diff,
            same_ranking,
            top1,
            spread,
            projections,
        )
    if max_diff > tolerance:
        print(f"error: the fast scores differ from the reference by {max_diff:.2e} (tolerance {tolerance})")
        return 1
    return 0


def _record(
    path,
    command,
    machine,
    args,
    config,
    ref_rows,
    reference_rate,
    fast_rate,
    pair_rate,
    per_item,
    max_diff,
    same_ranking,
    top1,
    spread,
    projections,
) -> None:
    date = time.strftime("%a %b %d %H:%M:%S %Z %Y")
    rows = [
        f"\n## Exact retrieval ranking: pair scoring at the paper's size ({args.device}, fast path {args.dtype})\n",
        f"- date: {date}",
        f"- command: `{command}`",
        f"- machine: {machine}",
        f"- setting: preset `{args.preset}` (d={config.hidden_size}, retrieval decoder at layer "
        f"{config.layer_for('retrieval')}), {args.regions} regions, {args.words} words, {args.images} images x "
        f"{args.captions} captions (reference on {ref_rows * args.captions} pairs), batch {args.batch_size} pairs, "
        f"best of {args.rounds} alternating rounds",
        "",
        "| variant | pairs/s |",
        "|---|---:|",
        f"| reference: `model(...)` per pair batch, fp32, all recomputed | {reference_rate:.1f} |",
        f"| `RetrievalScorer` {args.dtype}, end to end | {fast_rate:.1f} |",
        f"| `RetrievalScorer` {args.dtype}, pair blocks only ({1000 * per_item:.2f} ms per item encoded) "
        f"| {pair_rate:.1f} |",
        "",
        f"Speed-up end to end: **{fast_rate / reference_rate:.1f}x**; max |fast - reference| = {max_diff:.1e}, "
        f"same ranking: {same_ranking} (same top-1 caption for {100 * top1:.0f}% of images; the reference logits "
        f"have std {spread:.3f}).",
        "",
        "| projected wall time at these rates | reference | `RetrievalScorer` |",
        "|---|---:|---:|",
    ]
    rows += [f"| {name} | {_hours(ref)} | {_hours(ours)} |" for name, (ref, ours) in projections.items()]
    rows.append(
        "\nCOCO 1K counts 5 folds x 1000 images x 5000 captions, each fold scored on its own; 5K is the full "
        "5000 x 25000 matrix. `RetrievalScorer` projections add the per-item encoding of 30000 images + captions.\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\n".join(rows))
    print(f"appended to {path}")


if __name__ == "__main__":
    sys.exit(main())
