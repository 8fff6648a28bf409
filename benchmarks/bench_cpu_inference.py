"""CPU inference fast path: one VQA prediction at the paper's size in fp32, bf16 and int8, eager and compiled.

The model is the paper's VQA head (preset ``paper``: d=1024, five co-attention layers, 3129 answers), randomly
initialised (latency does not depend on the weights). Measured in one run, for each variant of
`optimize_for_inference` that works on this machine:

* the latency of one bare forward pass at the paper's size (B=1, 36 regions x 2048, a 14-word question): median
  over ``--repeats`` calls after ``--warmup``; the variants are measured in ``--rounds`` interleaved rounds and the
  median of the rounds' medians is reported, so that a load change on a shared machine hits every variant alike;
* the throughput of batch-``--batch-size`` forward passes (predictions per second, median over ``--batch-repeats``);
* the ratio of each to the fp32 eager reference measured in the same run, and the largest logit difference from it.

    python benchmarks/bench_cpu_inference.py                  # paper size, 2 threads, about 2 minutes on 2 cores
    python benchmarks/bench_cpu_inference.py --smoke          # tiny model, a few repeats
    python benchmarks/bench_cpu_inference.py --no-compile --json cpu_inference.json

``--json PATH`` writes the figures there (``-`` prints them as JSON only).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import _median_seconds  # noqa: E402

from hierarchical_vl import (  # noqa: E402
    HierarchicalVLConfig,
    HierarchicalVLForVisualQuestionAnswering,
    optimize_for_inference,
)
from hierarchical_vl.atomic_files import write_text_atomic  # noqa: E402

VARIANTS = (("fp32", False), ("bf16", False), ("int8", False), ("fp32", True), ("bf16", True), ("int8", True))


def _name(precision: str, compiled: bool) -> str:
    return f"{precision}{'+compile' if compiled else ''}"


def _inputs(config: HierarchicalVLConfig, batch_size: int, regions: int, words: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        "input_ids": torch.randint(1, config.vocab_size, (batch_size, words), generator=generator),  # (B, N)
        "region_features": torch.randn(batch_size, regions, config.region_feature_dim, generator=generator),  # (B,T,F)
    }


def _forward(model: torch.nn.Module, inputs: dict[str, torch.Tensor]):
    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model(**inputs).logits  # (B, A) float32

    return run


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default=None, help="model preset (paper; tiny with --smoke)")
    parser.add_argument("--device", default="cpu", choices=["cpu"], help="the fast path is for the CPU")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--regions", type=int, default=36)
    parser.add_argument("--words", type=int, default=14)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batch-repeats", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    parser.add_argument("--smoke", "--quick", action="store_true", help="tiny model and few repeats (smoke run)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the figures as JSON ('-': print only)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.preset = args.preset or "tiny"
        args.warmup, args.repeats, args.rounds, args.batch_size, args.batch_repeats = 1, 2, 1, 4, 1
    preset = args.preset or "paper"
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = HierarchicalVLConfig.from_preset(preset)
    reference = HierarchicalVLForVisualQuestionAnswering(config).eval()
    single = _inputs(config, 1, args.regions, args.words)
    batch = _inputs(config, args.batch_size, args.regions, args.words)
    with torch.inference_mode():
        expected = reference(**single).logits  # (1, A)

    models, failures = {}, {}
    for precision, compiled in VARIANTS:
        if compiled and args.no_compile:
            continue
        name = _name(precision, compiled)
        try:
            # fp32 + compile compiles a copy, so the eager reference stays eager
            source = HierarchicalVLForVisualQuestionAnswering(config).eval() if name == "fp32+compile" else reference
            if source is not reference:
                source.load_state_dict(reference.state_dict())
            model = optimize_for_inference(source, precision, compile=compiled)
            _forward(model, single)()  # compiles (when asked) and checks that the variant runs
            models[name] = model
        except Exception as error:  # a variant this machine cannot run is reported, not fatal
            failures[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"

    def no_sync() -> None:
        return None

    rounds: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            rounds[name].append(_median_seconds(_forward(model, single), args.warmup, args.repeats, no_sync))
    figures = {
        "preset": preset,
        "regions": args.regions,
        "question_words": args.words,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "quantized_engine": torch.backends.quantized.engine,
        "batch_size": args.batch_size,
        "failed": failures,
        "variants": {},
    }
    for name, model in models.items():
        latency = statistics.median(rounds[name])
        batch_s = _median_seconds(_forward(model, batch), 1, args.batch_repeats, no_sync)
        with torch.inference_mode():
            logits = model(**single).logits.float()
        figures["variants"][name] = {
            "latency_ms": 1000 * latency,
            "throughput_per_s": args.batch_size / batch_s,
            "max_logit_difference": float((logits - expected).abs().max()),
            "same_top1": bool(logits.argmax(-1).eq(expected.argmax(-1)).all()),
        }
    base = figures["variants"]["fp32"]
    for values in figures["variants"].values():
        values["speedup"] = base["latency_ms"] / values["latency_ms"]
        values["throughput_ratio"] = values["throughput_per_s"] / base["throughput_per_s"]
    if args.json == "-":
        print(json.dumps(figures))
        return figures
    if args.json is not None:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.json, json.dumps(figures, indent=2))
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{figures['torch_threads']} threads, quantized engine {figures['quantized_engine']}"
    )
    print(f"model: {preset} VQA head; B=1, {args.regions} regions, {args.words} words; batch {args.batch_size}")
    print(f"{'variant':<14} {'latency ms':>10} {'speed-up':>9} {'batch/s':>9} {'ratio':>6} {'max |dlogit|':>12} top-1")
    for name, values in figures["variants"].items():
        print(
            f"{name:<14} {values['latency_ms']:>10.2f} {values['speedup']:>8.2f}x {values['throughput_per_s']:>9.1f} "
            f"{values['throughput_ratio']:>5.2f}x {values['max_logit_difference']:>12.2e} "
            f"{'same' if values['same_top1'] else 'differs'}"
        )
    for name, reason in failures.items():
        print(f"{name:<14} not available: {reason}")
    return figures


if __name__ == "__main__":
    main()
