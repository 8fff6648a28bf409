"""The share of training time the loop waits for data: synchronous batches against prefetched ones.

The package's trainer (`MultiTaskTrainer`, the real loop) trains the same run several times on a generated corpus
with the adaptive bottom-up layout (10-100 regions x 2048 float16 features per image in a `RegionFeatureStore`),
two tasks switching within each cycle (grounding and VQA, Algorithm 1), evaluation off:

* ``synchronous`` (the reference, ``prefetch_batches=0``): each update collates its batch when it starts;
* ``prefetch`` (``prefetch_batches=1``): the next update's batch (of the schedule's next task) is collated, pinned
  and copied on a background thread while the current update runs;
* ``prefetch+device`` (``--features-on-device``): prefetching, with the whole store on the device and the features
  gathered there (``data.features_on_device``).

On the CPU the default model is the ``tiny`` preset (d=16) reading the full 2048-d features at batch 128: its
update is short, as an accelerator's is, so the data path is a visible share of it; ``--preset paper`` on a GPU
is the real thing. The data wait is the time the loop spends obtaining its batches
(``TrainingResult.data_wait_seconds``); its share is that time over the training time (``train_seconds``). Runs
alternate between the variants (``--rounds``); the medians are printed with the step time of each variant relative
to the synchronous one, measured in the same run.
All variants train the same updates to the same weights (checked).

    python benchmarks/bench_data_wait.py                                   # CPU, tiny model, batch 128
    python benchmarks/bench_data_wait.py --device cuda --preset paper --batch-size 256 --images 2000 \\
        --updates 60 --features-on-device
    python benchmarks/bench_data_wait.py --smoke                           # seconds: tiny sizes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from safetensors.torch import load_file
from transformers.utils import logging as transformers_logging

from hierarchical_vl.data import generate_demo_corpus
from hierarchical_vl.training.arguments import load_training_arguments
from hierarchical_vl.training.run import build_model, prepare_data
from hierarchical_vl.training.trainer import MultiTaskTrainer


def _config(args, root: Path, output_dir: Path, prefetch: int, on_device: bool) -> dict:
    grounding = max(2, args.updates // 4)
    return {
        "output_dir": str(output_dir),
        "seed": 0,
        "model_preset": args.preset,
        "model_overrides": {"region_feature_dim": args.feature_dim},
        "tasks": {
            "grounding": {"iterations": grounding, "lr_step": grounding, "batch_size": args.batch_size},
            "vqa": {"iterations": args.updates - grounding, "lr_step": args.updates, "batch_size": args.batch_size},
        },
        "curriculum": [{"name": "switching", "tasks": ["grounding", "vqa"], "cycle_length": 8, "evaluate": []}],
        "data": {
            "root": str(root),
            "min_answer_frequency": 0,
            "max_regions": 100,
            "features_on_device": on_device,
        },
        "mixed_precision": "bf16" if args.bf16 else "no",
        "prefetch_batches": prefetch,
        "log_with": [],
        "log_every": 10,
        "progress": False,
        "save_every": 0,
        "overwrite_output_dir": True,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--preset", default="tiny", help="model preset (tiny: d=16, the CPU default; paper: d=1024)")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--feature-dim", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--updates", type=int, default=40, help="updates per training run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant, alternating")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads on the CPU")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--features-on-device", action="store_true", help="add the prefetch+device variant")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    args = parser.parse_args(argv)
    transformers_logging.disable_progress_bar()
    if args.smoke:
        args.images, args.feature_dim, args.batch_size, args.updates, args.rounds = 30, 64, 8, 8, 1
        args.preset, args.features_on_device = "tiny", True
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    variants = {"synchronous": (0, False), "prefetch": (1, False)}
    if args.features_on_device:
        variants["prefetch+device"] = (1, True)
    figures: dict[str, dict[str, list[float]]] = {name: {"shares": [], "steps_ms": []} for name in variants}
    weights: dict[str, dict[str, torch.Tensor]] = {}
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory) / "corpus"
        generate_demo_corpus(
            root, num_images=args.images, seed=0, feature_dim=args.feature_dim, min_regions=10, max_regions=100
        )
        prepared = {}
        for name, (prefetch, on_device) in variants.items():
            path = Path(directory) / f"{name}.yaml"
            path.write_text(yaml.safe_dump(_config(args, root, Path(directory) / name, prefetch, on_device)))
            training = load_training_arguments(path)
            if on_device not in prepared:  # the collators differ: features, or store rows to gather on the device
                prepared[on_device] = prepare_data(training)
            variants[name] = (training, prepared[on_device])
        store = prepared[False].store
        print(
            f"corpus: {args.images} images, {store.padding_row} regions "
            f"({int(store.num_regions.min())}-{int(store.num_regions.max())} per image) x {args.feature_dim} float16; "
            f"model preset {args.preset}; batch {args.batch_size}; {args.updates} updates (grounding + VQA "
            f"switching); device {args.device}; torch threads {torch.get_num_threads()}; bf16={args.bf16}"
        )
        for round_index in range(args.rounds):
            for name, (training, data) in variants.items():
                training.output_dir = str(Path(directory) / f"{name}-{round_index}")  # a fresh run, not a resumption
                accelerator = Accelerator(cpu=args.device == "cpu", mixed_precision=training.mixed_precision)
                model = build_model(training, data)
                trainer = MultiTaskTrainer(model, training, data.sources(), accelerator=accelerator)
                result = trainer.train()
                figures[name]["shares"].append(result.data_wait_seconds / result.train_seconds)
                figures[name]["steps_ms"].append(1000 * result.train_seconds / result.updates)
                weights[name] = load_file(str(Path(training.output_dir) / "model.safetensors"))
    reference = weights["synchronous"]
    same = all(all(torch.equal(reference[k], w[k]) for k in reference) for w in weights.values())
    base = statistics.median(figures["synchronous"]["steps_ms"])
    print(f"{'variant':<17} {'data wait':>10} {'step':>10} {'step / synchronous':>19}")
    summary = {}
    for name, values in figures.items():
        share, step = statistics.median(values["shares"]), statistics.median(values["steps_ms"])
        summary[name] = {"data_wait_share": share, "step_ms": step, "step_ratio": step / base, **values}
        print(f"{name:<17} {100 * share:>9.1f}% {step:>7.1f} ms {step / base:>18.2f}x")
    print(f"identical weights across the variants: {same}")
    report = {
        "benchmark": "bench_data_wait",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "identical_weights": same,
        "variants": summary,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if not same:
        sys.exit("the variants trained different weights")
    return report


if __name__ == "__main__":
    main()
