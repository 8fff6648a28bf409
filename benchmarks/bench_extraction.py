"""Images per second of the region-feature extractor at full size (ResNet-101 C4, 600 x 800 input, 300 RoIs,
random weights: the speed does not depend on the values).

    python benchmarks/bench_extraction.py                       # CPU, float32
    python benchmarks/bench_extraction.py --device cuda --dtype bfloat16 --images 32 --batch-size 8

Prints one line with the figure, the settings and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from hierarchical_vl.extraction import RegionFeatureExtractor


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="vg-adaptive", help="detector preset (default: the full-size model)")
    parser.add_argument("--images", type=int, default=2, help="images timed (default 2)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = None if args.dtype == "float32" else getattr(torch, args.dtype)
    extractor = RegionFeatureExtractor.from_preset(
        args.preset, device=args.device, autocast_dtype=dtype, batch_same_size=args.device != "cpu"
    )
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8) for _ in range(args.images)]
    extractor(images[:1])  # warm-up
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    boxes = 0
    for i in range(0, len(images), args.batch_size):
        boxes += sum(r.num_boxes for r in extractor(images[i : i + args.batch_size]))
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    machine = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(
        f"{len(images) / seconds:.3f} images/s ({seconds / len(images):.2f} s/image; {boxes / len(images):.0f} boxes "
        f"per image) preset {args.preset}, {args.width}x{args.height} input, batch {args.batch_size}, "
        f"{args.device} {args.dtype}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, {machine}, "
        f"torch {torch.__version__}"
    )


if __name__ == "__main__":
    main()
