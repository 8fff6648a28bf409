"""Padding with the adaptive 10-100-box features: length-grouped batches against random ones.

On a generated corpus whose images have 10-100 regions (uniform, as the demo generator draws them; 2048-d float16
features in a `RegionFeatureStore`), the VQA training examples are batched two ways over the same epoch:

* ``random`` (the reference): `CyclingBatches`, the default seeded random order;
* ``grouped``: `LengthGroupedBatches` (``data.group_by_length``), megabatches of 50 batches sorted by region and
  word count, the batches then shuffled.

For each order the benchmark reports, over the epoch's batches as the package's collator builds them, the padded
region slots (B x T summed over the batches) per real region, the padded word slots per real word, the FLOPs of a
training step (forward + backward, counted with ``torch.utils.flop_counter.FlopCounterMode`` on the model) per
example, and the measured step time (forward + backward + Adam) per example, the two orders' steps alternating on
two copies of the same model. Ratios are grouped / random, measured in the same run.

    python benchmarks/bench_padding.py                        # CPU, demo model, batch 64, one thread
    python benchmarks/bench_padding.py --device cuda --preset paper --batch-size 256 --images 4000
    python benchmarks/bench_padding.py --smoke                # seconds: tiny sizes
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from hierarchical_vl import HierarchicalVLConfig, HierarchicalVLForMultiTask
from hierarchical_vl.data import generate_demo_corpus
from hierarchical_vl.training.arguments import load_training_arguments
from hierarchical_vl.training.batching import CyclingBatches, LengthGroupedBatches
from hierarchical_vl.training.run import prepare_data


def _step(model, optimizer, batch):
    """Forward + backward (+ Adam when ``optimizer`` is given) of one VQA batch."""
    loss = model(task="vqa", **batch).loss
    loss.backward()
    if optimizer is not None:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return loss


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--feature-dim", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--timed-batches", type=int, default=24, help="batches of each order timed (and counted)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads on the CPU")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    args = parser.parse_args(argv)
    if args.smoke:
        args.images, args.feature_dim, args.batch_size, args.timed_batches, args.preset = 60, 32, 16, 3, "tiny"
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as directory:
        generate_demo_corpus(
            directory, num_images=args.images, seed=0, feature_dim=args.feature_dim, min_regions=10, max_regions=100
        )
        training = load_training_arguments(
            "demo",
            [
                f"data.root={directory}",
                "data.min_answer_frequency=0",
                "data.max_regions=100",
                "progress=false",
                "curriculum=[{name: vqa, tasks: [vqa], evaluate: []}]",
            ],
        )
        prepared = prepare_data(training)
        source = prepared.sources()["vqa"]
        orders = {
            "random": CyclingBatches(source, args.batch_size, seed=0),
            "grouped": LengthGroupedBatches(source, args.batch_size, seed=0),
        }
        epoch = orders["random"].batches_per_epoch
        figures: dict[str, dict] = {}
        for name, batches in orders.items():
            region_slots = word_slots = regions = words = 0
            for number in range(epoch):
                sizes = source.sizes[batches.indices(number)]  # (B, 2) regions and words
                region_slots += len(sizes) * int(sizes[:, 0].max())
                word_slots += len(sizes) * int(sizes[:, 1].max())
                regions, words = regions + int(sizes[:, 0].sum()), words + int(sizes[:, 1].sum())
            figures[name] = {
                "region_slots_per_region": region_slots / regions,
                "word_slots_per_word": word_slots / words,
            }
        config = HierarchicalVLConfig.from_preset(
            args.preset,
            vocab_size=len(prepared.tokenizer),
            id2label=dict(enumerate(prepared.answer_vocab)),
            region_feature_dim=args.feature_dim,
        )
        torch.manual_seed(0)
        models = {"random": HierarchicalVLForMultiTask(config).to(device).train()}
        models["grouped"] = copy.deepcopy(models["random"])
        optimizers = {
            name: torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99)) for name, model in models.items()
        }
        count = min(args.timed_batches, epoch)
        batches = {
            name: [
                {k: v.to(device) for k, v in orders[name].batch(number).items() if k != "metadata"}
                for number in range(count)
            ]
            for name in orders
        }
        for name in orders:  # FLOPs of forward + backward, and one untimed warm-up step each
            flops = 0
            for batch in batches[name]:
                counter = FlopCounterMode(display=False)
                with counter:
                    _step(models[name], None, batch)
                models[name].zero_grad(set_to_none=True)
                flops += counter.get_total_flops()
            figures[name]["gflops_per_example"] = flops / (count * args.batch_size) / 1e9
            _step(models[name], optimizers[name], batches[name][0])
        times: dict[str, list[float]] = {name: [] for name in orders}
        for index in range(count):  # alternating: the machine's load hits both orders alike
            for name in orders:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                _step(models[name], optimizers[name], batches[name][index])
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - start)
        for name in orders:
            figures[name]["step_ms_per_example"] = 1000 * sum(times[name]) / (count * args.batch_size)
            figures[name]["median_step_ms"] = 1000 * statistics.median(times[name])
        store = prepared.store
        print(
            f"corpus: {args.images} images, {int(store.num_regions.min())}-{int(store.num_regions.max())} regions "
            f"(mean {store.num_regions.mean():.1f}) x {args.feature_dim}; {source.num_examples} VQA questions, "
            f"{epoch} batches of {args.batch_size} per epoch; model preset {args.preset}; device {device}; "
            f"torch threads {torch.get_num_threads()}; {count} batches of each order timed and counted"
        )
        keys = ["region_slots_per_region", "word_slots_per_word", "gflops_per_example", "step_ms_per_example"]
        print(f"{'':<26}" + "".join(f"{name:>12}" for name in orders) + f"{'grouped/random':>16}")
        ratios = {}
        for key in keys:
            ratios[key] = figures["grouped"][key] / figures["random"][key]
            print(f"{key:<26}" + "".join(f"{figures[n][key]:>12.3f}" for n in orders) + f"{ratios[key]:>15.2f}x")
    report = {
        "benchmark": "bench_padding",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "orders": figures,
        "ratios_grouped_over_random": ratios,
        "region_counts": np.bincount(prepared.store.num_regions, minlength=101)[10:].tolist(),
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
