"""Images per second of the region-feature extractor at full size (ResNet-101 C4, 600 x 800 input, 300 RoIs,
random weights: the speed does not depend on the values).

    python benchmarks/bench_extraction.py                       # CPU, float32
    python benchmarks/bench_extraction.py --device cuda --dtype bfloat16 --images 32 --batch-size 8

Prints the figure with the settings and the machine, and a reference measured in the same run: the network's
convolutions alone on the same inputs (the backbone on the resized image, then res5 over ``rpn_post_nms_top_n``
pooled RoIs of 14x14), through the same modules. Their ratio is what proposals, NMS, RoI pooling, selection and the
per-image bookkeeping add to the irreducible convolution work (1.00x would be no overhead).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from hierarchical_vl.extraction import RegionFeatureExtractor
from hierarchical_vl.extraction.image_processing import resized_geometry


def _convolutions_alone(extractor: RegionFeatureExtractor, height: int, width: int, images: int) -> float:
    """Seconds per image of the backbone on a resized input and res5 over the RoIs, without the detector's logic."""
    config = extractor.config
    geometry = resized_geometry(height, width, config.min_size, config.max_size)
    device = extractor.device
    x = torch.randn(1, 3, geometry.resized_height, geometry.resized_width, device=device)
    rois = config.rpn_post_nms_top_n
    heads = extractor.detector.roi_heads
    size = config.pooler_resolution
    with torch.inference_mode(), extractor._autocast():
        res4 = extractor.detector.backbone(x)
        grid = torch.randn(min(rois, extractor.roi_chunk), res4.shape[1], size, size, device=device)
        start = time.perf_counter()
        for _ in range(images):
            extractor.detector.backbone(x)
            for first in range(0, rois, extractor.roi_chunk):
                heads.res5(grid[: min(extractor.roi_chunk, rois - first)]).mean(dim=(2, 3))
        if device.type == "cuda":
            torch.cuda.synchronize()
    return (time.perf_counter() - start) / images


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
    reference = _convolutions_alone(extractor, args.height, args.width, len(images))
    machine = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(
        f"{len(images) / seconds:.3f} images/s ({seconds / len(images):.2f} s/image; {boxes / len(images):.0f} boxes "
        f"per image) preset {args.preset}, {args.width}x{args.height} input, batch {args.batch_size}, "
        f"{args.device} {args.dtype}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, {machine}, "
        f"torch {torch.__version__}"
    )
    print(
        f"reference, same run: the convolutions alone (backbone + res5 over {extractor.config.rpn_post_nms_top_n} "
        f"RoIs) {reference:.2f} s/image; extraction / reference = {seconds / len(images) / reference:.2f}x"
    )


if __name__ == "__main__":
    main()
