"""Predict with a hierarchical-vl checkpoint: answer a question, rank captions or images, ground phrases.

The checkpoint is a folder (or Hub id) saved from a task head or from the multi-task model, with its processor.
Images are given by their region features, read from ``--features``:

* a ``.npz`` file holding one image (``features`` (T, F), optional ``boxes`` (T, 4) in pixels, ``width``,
  ``height``, ``image_id``);
* a region-feature store folder (``hierarchical_vl.data.RegionFeatureStore``);
* any region-feature file the data package reads (bottom-up-attention TSV, HDF5, LMDB, ...).

Examples::

    python examples/predict.py vqa --checkpoint ckpt --features store --image-id 42 --question "what is on the table?"
    python examples/predict.py retrieval --checkpoint ckpt --features store --image-id 42 --captions "a dog" "a cat"
    python examples/predict.py retrieval --checkpoint ckpt --features store --caption "a dog" --image-ids 1 2 3
    python examples/predict.py grounding --checkpoint ckpt --features image.npz \\
        --caption "a man rides a horse" --phrases "a man" "a horse"

Results are printed as JSON (and written to ``--output``), with the words of each question or caption that the
vocabulary does not know (``unknown_words``). ``--visualize-dir`` draws what the model attended to
(VQA, retrieval) or the grounded boxes (grounding) as PNGs, on ``--image`` when given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from transformers import pipeline

import hierarchical_vl  # noqa: F401  (registers the model classes)
from hierarchical_vl.pipelines import PIPELINE_TASKS, register_pipelines, resolve_image
from hierarchical_vl.visualization import render_attention, render_grounding, save_png


def _npz_store(path: Path) -> tuple[dict[str, dict[str, Any]], str]:
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    if "features" not in arrays:
        raise SystemExit(f"{path} holds no 'features' array")
    image_id = str(arrays["image_id"]) if "image_id" in arrays else path.stem
    record = {"image_id": image_id, "features": arrays["features"], "boxes": arrays.get("boxes")}
    for key in ("width", "height"):
        record[key] = float(arrays[key]) if key in arrays else None
    return {image_id: record}, image_id


def open_features(path: str, image_ids: list[str]) -> tuple[Any, list[str]]:
    """A feature store holding ``image_ids`` (all of a single-image ``.npz``), and the ids to use."""
    source = Path(path)
    if source.suffix == ".npz":
        store, image_id = _npz_store(source)
        return store, image_ids or [image_id]
    if (source / "store.json").is_file():
        from hierarchical_vl.data import RegionFeatureStore

        return RegionFeatureStore(source), image_ids
    from hierarchical_vl.data import open_region_feature_reader

    wanted, store = set(image_ids), {}
    for record in open_region_feature_reader(source):
        if record.image_id in wanted:
            store[record.image_id] = {
                "image_id": record.image_id,
                "features": record.features,
                "boxes": record.boxes,
                "width": record.width,
                "height": record.height,
            }
            if len(store) == len(wanted):
                break
    return store, image_ids


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    tasks = parser.add_subparsers(dest="task", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--checkpoint", required=True, help="checkpoint folder or Hub id")
    common.add_argument("--features", required=True, help=".npz of one image, a feature store or a feature file")
    common.add_argument("--image-id", help="image to use (not needed with a one-image .npz)")
    common.add_argument("--top-k", type=int, default=None, help="answers / results / boxes per phrase to keep")
    common.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    common.add_argument("--output", type=Path, help="also write the results as JSON here")
    common.add_argument("--visualize-dir", type=Path, help="write PNGs of the attention / grounded boxes here")
    common.add_argument("--image", type=Path, help="the image file to draw on (a blank canvas otherwise)")

    vqa = tasks.add_parser("vqa", parents=[common], help="answer a question about an image")
    vqa.add_argument("--question", required=True)

    retrieval = tasks.add_parser(
        "retrieval", parents=[common], help="rank captions for an image or images for a caption"
    )
    retrieval.add_argument("--captions", nargs="+", help="captions to rank for --image-id")
    retrieval.add_argument("--caption", help="caption to rank --image-ids for")
    retrieval.add_argument("--image-ids", nargs="+", default=[], help="images to rank for --caption")
    retrieval.add_argument("--batch-size", type=int, default=256, help="(image, caption) pairs per forward pass")

    grounding = tasks.add_parser("grounding", parents=[common], help="find the regions of a caption's phrases")
    grounding.add_argument("--caption", required=True)
    grounding.add_argument("--phrases", nargs="+", required=True, help="phrases of the caption, as they appear in it")
    return parser


def _visualize(task: str, pipe: Any, args: argparse.Namespace, image_id: str, result: Any) -> list[str]:
    args.visualize_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if task == "vqa":
        answer = result["answers"][0]
        title = f"Q: {args.question}  A: {answer['answer']} ({answer['score']:.2f})"
        picture = render_attention(result["attention"], image=args.image, title=title)
        written.append(save_png(picture, args.visualize_dir / "vqa_attention.png"))
    elif task == "retrieval" and args.captions:
        best = result[0]["caption"]
        explained = pipe({"image_id": image_id, "caption": best}, return_attention=True)
        title = f"{best} ({explained['score']:.2f})"
        picture = render_attention(explained["attention"], image=args.image, title=title)
        written.append(save_png(picture, args.visualize_dir / "retrieval_attention.png"))
    elif task == "grounding":
        record = resolve_image(image_id, pipe.feature_store)
        for index, phrase in enumerate(result):
            picture = render_grounding(args.caption, phrase, image=args.image, image_size=record.size)
            written.append(save_png(picture, args.visualize_dir / f"grounding_phrase{index}.png"))
    return [str(path) for path in written]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    wanted = [args.image_id] if args.image_id else []
    if args.task == "retrieval" and args.caption:
        wanted = list(args.image_ids)
    store, image_ids = open_features(args.features, wanted)
    if not image_ids:
        raise SystemExit("give --image-id (or --image-ids) to say which image of the feature source to use")

    register_pipelines()
    pipe = pipeline(PIPELINE_TASKS[args.task], model=args.checkpoint, feature_store=store, device=args.device)
    options = {} if args.top_k is None else {"top_k": args.top_k}
    if args.task == "vqa":
        result = pipe({"question": args.question, "image_id": image_ids[0]}, return_attention=True, **options)
        printed = result["answers"]
    elif args.task == "retrieval":
        if args.captions:
            query = {"image_id": image_ids[0], "captions": args.captions}
        elif args.caption:
            query = {"caption": args.caption, "image_ids": image_ids}
        else:
            raise SystemExit("give --captions (ranked for --image-id) or --caption (ranks --image-ids)")
        result = printed = pipe(query, batch_size=args.batch_size, **options)
    else:
        query = {"caption": args.caption, "phrases": args.phrases, "image_id": image_ids[0]}
        result = printed = pipe(query, **options)

    report: dict[str, Any] = {"task": args.task, "image_ids": image_ids, "results": printed}
    texts = [args.question] if args.task == "vqa" else (getattr(args, "captions", None) or [args.caption])
    report["unknown_words"] = {text: pipe.processor.unknown_words(text) for text in texts}  # each read as <unk>
    if args.visualize_dir is not None:
        report["pictures"] = _visualize(args.task, pipe, args, image_ids[0], result)
    text = json.dumps(report, indent=2)
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
