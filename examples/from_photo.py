"""From a photo to answers: region features extracted on the fly, then a VQA answer, ranked captions and grounded
boxes, with the attention and the boxes drawn on the photo itself.

With trained weights::

    python examples/from_photo.py --checkpoint path/to/multitask --detector unc-nlp/frcnn-vg-finetuned \\
        --image photo.jpg --question "what is the man holding?" \\
        --captions "a man holds an umbrella" "a dog on a beach" --phrase "a man" --output-dir out

``--detector`` is a detector folder (``hvl features convert-detector`` output) or the Hub id of the community port;
when the checkpoint folder holds a ``detector/`` sub-folder it is used without ``--detector``. The checkpoint's
``region_feature_dim`` must be the detector's feature width (2048 for the bottom-up-attention model).

``--demo`` runs the whole path offline on a generated photo with tiny random weights (the answers are then
meaningless; it shows the calls and the outputs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

import hierarchical_vl  # noqa: F401  (registers the model classes and pipelines)
from hierarchical_vl import (
    HierarchicalVLConfig,
    HierarchicalVLForMultiTask,
    HierarchicalVLProcessor,
    HierarchicalVLTokenizer,
    RegionFeatureExtractor,
)
from hierarchical_vl.pipelines import GroundingPredictor, RetrievalPredictor, VQAPredictor
from hierarchical_vl.visualization import render_attention, render_grounding, save_png

_DEMO_TEXTS = ["what is on the red box ?", "a red box on a blue floor", "a green ball in the sky", "a red box"]


def _demo_checkpoint(folder: Path) -> tuple[Path, Path]:
    """A tiny multi-task checkpoint with a tiny detector beside it, and a generated photo."""
    extractor = RegionFeatureExtractor.from_preset("tiny", seed=0)
    tokenizer = HierarchicalVLTokenizer.from_texts(_DEMO_TEXTS)
    config = HierarchicalVLConfig.from_preset(
        "tiny",
        vocab_size=len(tokenizer),
        id2label=dict(enumerate(["red", "blue", "box", "ball", "yes", "no"])),
        region_feature_dim=extractor.config.feature_dim,
    )
    torch.manual_seed(0)
    checkpoint = folder / "checkpoint"
    HierarchicalVLForMultiTask(config).eval().save_pretrained(checkpoint)
    HierarchicalVLProcessor(tokenizer, max_regions=extractor.config.max_boxes, max_words=14).save_pretrained(checkpoint)
    extractor.save_pretrained(checkpoint / "detector")
    photo = Image.new("RGB", (160, 120), (40, 60, 200))
    ImageDraw.Draw(photo).rectangle([50, 40, 110, 90], fill=(220, 30, 30))
    photo.save(folder / "photo.png")
    return checkpoint, folder / "photo.png"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="multi-task checkpoint folder or Hub id")
    parser.add_argument("--detector", default=None, help="detector folder or Hub id (default: checkpoint/detector)")
    parser.add_argument("--image", help="the photo")
    parser.add_argument("--question", default=_DEMO_TEXTS[0])
    parser.add_argument("--captions", nargs="+", default=_DEMO_TEXTS[1:3])
    parser.add_argument("--phrase", default=_DEMO_TEXTS[3], help="a phrase of the first caption to ground")
    parser.add_argument("--output-dir", default="from_photo_output")
    parser.add_argument("--demo", action="store_true", help="tiny random weights and a generated photo, offline")
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.demo:
        checkpoint, photo = _demo_checkpoint(out)
    elif args.checkpoint and args.image:
        checkpoint, photo = args.checkpoint, Path(args.image)
    else:
        parser.error("give --checkpoint and --image, or --demo")
    detector = RegionFeatureExtractor.from_pretrained(args.detector) if args.detector else None

    vqa = VQAPredictor.from_pretrained(checkpoint, feature_extractor=detector)
    answer = vqa.predict(args.question, str(photo), top_k=3, return_attention=True)
    save_png(render_attention(answer["attention"], image=str(photo), title=args.question), out / "vqa_attention.png")
    ranked = RetrievalPredictor.from_pretrained(checkpoint, feature_extractor=detector).rank_captions(
        str(photo), args.captions
    )
    caption = args.captions[0]
    grounded = GroundingPredictor.from_pretrained(checkpoint, feature_extractor=detector).predict(
        caption, str(photo), [args.phrase], top_k=3
    )
    save_png(render_grounding(caption, grounded[0], image=str(photo)), out / "grounding.png")
    result = {"question": args.question, "answers": answer["answers"], "ranked_captions": ranked, "grounded": grounded}
    print(json.dumps(result, indent=2, default=lambda v: np.asarray(v).tolist()))
    print(f"drawings in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
