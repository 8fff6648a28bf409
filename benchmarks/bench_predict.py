"""Latency and throughput of VQA prediction with the paper-size model, through the prediction helper.

The model is the paper's VQA head (d=1024, five co-attention layers, 3129 answers), randomly initialised, in eval
mode without autograd. Measured, in one run:

* the helper's latency for one prediction (``VQAPredictor.predict``: a 10-word question and 36 regions x 2048 in,
  top-5 answers out): median over ``--repeats`` calls after ``--warmup`` calls;
* the bare model forward on the same, already prepared, inputs (median likewise); the ratio of the two is the
  helper's overhead (tokenising, padding, sigmoid and top-k, moving to Python types);
* the throughput of batched predictions (``VQAPredictor.predict_batch``, ``--batch-size`` questions per forward
  pass), in predictions per second (median over ``--batch-repeats`` batches after one warm-up batch).

    python benchmarks/bench_predict.py                 # paper-size model, about a minute on a 2-core CPU
    python benchmarks/bench_predict.py --quick         # tiny model, a few repeats: a smoke run (or --smoke)
    python benchmarks/bench_predict.py --device cuda --batch-size 256 --json predict.json

``--json`` alone prints the figures as JSON only; ``--json PATH`` writes them there (and prints the report).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from hierarchical_vl import (
    HierarchicalVLConfig,
    HierarchicalVLForVisualQuestionAnswering,
    HierarchicalVLProcessor,
    HierarchicalVLTokenizer,
)
from hierarchical_vl.atomic_files import write_text_atomic
from hierarchical_vl.pipelines import ImageRegions, VQAPredictor

QUESTION = "what colour is the umbrella that the woman is holding"  # 10 words
_WORDS = (
    "what is the colour of umbrella that woman holding how many people are there in picture a man on horse beach "
    "dog cat table red blue green sitting standing left right behind front"
).split()


def _median_seconds(function, warmup: int, repeats: int, synchronize) -> float:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        function()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build_predictor(preset: str, device: str, seed: int = 0) -> tuple[VQAPredictor, int]:
    """The VQA predictor of a randomly initialised model of ``preset``, and its region feature width."""
    torch.manual_seed(seed)
    tokenizer = HierarchicalVLTokenizer.from_texts([" ".join(_WORDS)])
    config = HierarchicalVLConfig.from_preset(preset)
    model = HierarchicalVLForVisualQuestionAnswering(config).to(device).eval()
    processor = HierarchicalVLProcessor(tokenizer, max_regions=config.max_regions, max_words=config.max_question_words)
    return VQAPredictor(model, processor), config.region_feature_dim


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default=None, help="model preset (paper; tiny with --quick)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (torch's default otherwise)")
    parser.add_argument("--regions", type=int, default=36)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batch-repeats", type=int, default=5)
    parser.add_argument("--quick", "--smoke", action="store_true", help="tiny model and few repeats (smoke run)")
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="write the figures as JSON to PATH; without PATH, print them as JSON only",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.preset = args.preset or "tiny"
        args.warmup, args.repeats, args.batch_size, args.batch_repeats = 1, 3, 8, 2
    preset = args.preset or "paper"
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    predictor, feature_dim = build_predictor(preset, args.device)
    model = predictor.model
    rng = np.random.default_rng(0)
    width, height = 640, 480
    corners = np.sort(rng.uniform(0, 1, (args.regions, 2, 2)), axis=1) * np.array([width, height])
    image = ImageRegions(
        rng.standard_normal((args.regions, feature_dim)).astype(np.float32),  # (T, F)
        corners.reshape(args.regions, 4)[:, [0, 2, 1, 3]].astype(np.float32),  # (T, 4) x1 y1 x2 y2
        width,
        height,
    )
    device = torch.device(args.device)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def helper():
        return predictor.predict(QUESTION, image, top_k=5)

    prepared = predictor.pipeline.preprocess({"question": QUESTION, "image": image})  # what the helper feeds the model
    inputs = {key: value.to(device) for key, value in prepared.items() if key != "example"}

    def bare():
        with torch.inference_mode():
            return model(**inputs).logits

    helper_s = _median_seconds(helper, args.warmup, args.repeats, synchronize)
    bare_s = _median_seconds(bare, args.warmup, args.repeats, synchronize)
    questions, images = [QUESTION] * args.batch_size, [image] * args.batch_size

    def batch():
        return predictor.predict_batch(questions, images, top_k=5, batch_size=args.batch_size)

    batch_s = _median_seconds(batch, 1, args.batch_repeats, synchronize)
    figures = {
        "preset": preset,
        "parameters": sum(p.numel() for p in model.parameters()),
        "answers": model.config.num_answers,
        "regions": args.regions,
        "question_words": len(QUESTION.split()),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "single_latency_ms": 1000 * helper_s,
        "bare_forward_ms": 1000 * bare_s,
        "helper_overhead_ratio": helper_s / bare_s,
        "batch_size": args.batch_size,
        "batch_latency_ms": 1000 * batch_s,
        "throughput_per_s": args.batch_size / batch_s,
    }
    if args.json == "-":
        print(json.dumps(figures))
        return figures
    if args.json is not None:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.json, json.dumps(figures, indent=2))
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}, {figures['torch_threads']} threads, device {device}"
    )
    print(
        f"model: {preset} VQA head, {figures['parameters']:,} parameters, {figures['answers']} answers; "
        f"{args.regions} regions x {feature_dim}, {figures['question_words']}-word question"
    )
    print(
        f"single prediction (helper): median {figures['single_latency_ms']:.2f} ms over {args.repeats} "
        f"(after {args.warmup} warm-up)"
    )
    print(
        f"bare model forward:         median {figures['bare_forward_ms']:.2f} ms; helper / bare = "
        f"{figures['helper_overhead_ratio']:.3f}"
    )
    print(
        f"batched predictions:        batch {args.batch_size}: {figures['batch_latency_ms']:.1f} ms per batch, "
        f"{figures['throughput_per_s']:.1f} predictions/s"
    )
    return figures


if __name__ == "__main__":
    main()
