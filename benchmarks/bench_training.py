"""Training throughput per task at the paper's size, from the real data path, against the plain reference layer.

For each task, batches come from the package's collators over a generated corpus (2048-d float16 region
features in a `RegionFeatureStore`), and one update is forward to the task's layer + decoder + loss + backward +
Adam. The package's co-attention layer and the plain per-head reference (see ``bench_coattention.py``) share all
weights and are timed alternately; the time spent building batches (what an accelerator would wait for) is
reported separately.

    python benchmarks/bench_training.py                               # CPU, batch 32, 36 regions
    python benchmarks/bench_training.py --device cuda --batch-size 256 --bf16 --min-regions 10 --regions 100
    python benchmarks/bench_training.py --smoke                       # tiny model, a few seconds

``--regions`` is the most regions per image (the collators pad to it), ``--min-regions`` the fewest (default: as
many as ``--regions``): the corpus draws each image's count between them. ``--json PATH`` writes the figures.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_coattention import ReferenceDenseCoAttentionLayer  # noqa: E402

from hierarchical_vl import HierarchicalVLConfig, HierarchicalVLForMultiTask  # noqa: E402
from hierarchical_vl.atomic_files import write_text_atomic  # noqa: E402
from hierarchical_vl.training.arguments import load_training_arguments  # noqa: E402
from hierarchical_vl.training.run import prepare_data  # noqa: E402

BATCH_KEYS = (
    "input_ids",
    "attention_mask",
    "region_features",
    "region_mask",
    "phrase_spans",
    "phrase_mask",
    "labels",
)


def _timer(model, task, batches, device, bf16):
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3, betas=(0.9, 0.99))
    state = {"step": 0}

    def step() -> tuple[float, float]:
        start = time.perf_counter()
        batch = batches(state["step"])
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k in BATCH_KEYS}
        data_time = time.perf_counter() - start
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(task=task, **batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        state["step"] += 1
        return time.perf_counter() - start, data_time

    return step


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--tasks", default="grounding,retrieval,vqa")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--regions", type=int, default=None, help="most regions per image (default 36; 8 with --smoke)")
    parser.add_argument("--min-regions", type=int, default=None, help="fewest regions per image (default --regions)")
    parser.add_argument("--smoke", action="store_true", help="tiny model, batch 4, one step: a smoke run")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures here as JSON")
    args = parser.parse_args(argv)
    if args.smoke:
        args.preset, args.batch_size, args.steps, args.images = "tiny", 4, 1, 12
    if args.regions is None:
        args.regions = 8 if args.smoke else 36
    min_regions = args.regions if args.min_regions is None else args.min_regions
    if not 1 <= min_regions <= args.regions:
        parser.error("--min-regions must be between 1 and --regions")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    from hierarchical_vl.data import generate_demo_corpus

    with tempfile.TemporaryDirectory() as directory:
        feature_dim = HierarchicalVLConfig.from_preset(args.preset).region_feature_dim
        generate_demo_corpus(
            directory,
            num_images=args.images,
            seed=0,
            feature_dim=feature_dim,
            min_regions=min_regions,
            max_regions=args.regions,
        )
        training = load_training_arguments(
            "demo",
            [
                f"data.root={directory}",
                "data.min_answer_frequency=0",
                "progress=false",
                f"data.max_regions={args.regions}",
            ],
        )
        prepared = prepare_data(training)
        config = HierarchicalVLConfig.from_preset(
            args.preset, vocab_size=len(prepared.tokenizer), id2label=dict(enumerate(prepared.answer_vocab))
        )
        torch.manual_seed(0)
        model = HierarchicalVLForMultiTask(config).to(device).train()
        reference = copy.deepcopy(model)
        layers = reference.hierarchical_vl.encoder.layers
        for index in range(len(layers)):
            layers[index] = ReferenceDenseCoAttentionLayer(layers[index])
        print(
            f"model: preset={args.preset} d={config.hidden_size} layers={config.num_layers} task layers "
            f"{config.task_layers}; batch {args.batch_size}, {min_regions}-{args.regions} regions x {feature_dim} "
            f"(float16 store), device {device}, "
            f"bf16={args.bf16}, torch threads {torch.get_num_threads()}"
        )
        figures = {
            "preset": args.preset,
            "device": str(device),
            "bf16": args.bf16,
            "batch_size": args.batch_size,
            "min_regions": min_regions,
            "max_regions": args.regions,
            "torch_threads": torch.get_num_threads(),
            "tasks": {},
        }
        print(f"{'task':<10} {'rows/batch':>10} {'reference':>12} {'package':>12} {'speed-up':>9} {'data ms':>9}")
        for task in args.tasks.split(","):
            dataset, collator = prepared.train[task], prepared.collators[task]
            rng = np.random.default_rng(0)
            size = len(dataset)

            def batches(step, size=size, collator=collator, rng=rng):
                return collator(rng.choice(size, size=args.batch_size, replace=False))

            ref_step = _timer(reference, task, batches, device, args.bf16)
            pkg_step = _timer(model, task, batches, device, args.bf16)
            ref_times, pkg_times, data_times = [], [], []
            for index in range(args.warmup + args.steps):
                ref_total, _ = ref_step()
                pkg_total, data = pkg_step()
                if index >= args.warmup:
                    ref_times.append(ref_total)
                    pkg_times.append(pkg_total)
                    data_times.append(data)
            rows = len(collator(np.arange(args.batch_size))["labels"])
            ref, pkg = statistics.median(ref_times), statistics.median(pkg_times)
            data = statistics.median(data_times)
            figures["tasks"][task] = {
                "rows_per_batch": rows,
                "reference_examples_per_s": args.batch_size / ref,
                "package_examples_per_s": args.batch_size / pkg,
                "speed_up": ref / pkg,
                "data_ms_per_batch": 1000 * data,
                "data_share": data / pkg,
            }
            print(
                f"{task:<10} {rows:>10} {args.batch_size / ref:>8.1f} /s {args.batch_size / pkg:>8.1f} /s "
                f"{ref / pkg:>8.2f}x {1000 * data:>8.1f}"
            )
        print("rates are examples per second (retrieval: positive pairs; each comes with its negative pairs)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.json, json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
