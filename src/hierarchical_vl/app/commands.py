"""``hvl serve`` (the demo app) and ``hvl space`` (a Space-ready folder for it)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .demo_app import DEFAULT_TITLE

__all__ = ["add_commands"]


def _serve(args: argparse.Namespace) -> int:
    from .demo_app import build_demo_app, import_gradio
    from .demo_session import DemoSession

    try:
        import_gradio()
        session = DemoSession.from_pretrained(
            args.checkpoint,
            args.features,
            images=args.images,
            detector=args.detector,
            device=args.device,
            top_k=args.top_k,
            max_ranked_images=args.max_ranked_images,
        )
    except (ImportError, FileNotFoundError, ValueError) as error:
        print(f"hvl serve: error: {error}", file=sys.stderr)
        return 1
    app = build_demo_app(session, title=args.title)
    app.launch(host=args.host, port=args.port)
    return 0


def _space(args: argparse.Namespace) -> int:
    from .space import write_space

    try:
        folder = write_space(
            args.directory,
            args.model,
            features=args.features,
            images=args.images,
            detector=args.detector,
            title=args.title,
            requirements=args.requirement,
            sdk_version=args.sdk_version,
            overwrite=args.overwrite,
        )
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"hvl space: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote the Space folder {folder} (app.py, requirements.txt, README.md); upload it to a Gradio Space")
    return 0


def add_commands(subparsers: Any) -> None:
    """Adds ``serve`` and ``space`` to the ``hvl`` command line."""
    serve = subparsers.add_parser(
        "serve",
        help="serve the demo app (VQA, retrieval and grounding in a web page; needs hierarchical-vl[app])",
        description="Start the Gradio demo app of a checkpoint: pick an image of the feature store (or upload a "
        "photo when a region-feature extractor is configured) and get the top answers with the VQA decoder's "
        "attention drawn on the picture, captions or images ranked, and the boxes of a caption's phrases.",
    )
    serve.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint folder or Hub repository id")
    serve.add_argument(
        "--features",
        default=None,
        help="region-feature store (or feature files, converted into a store beside them once) to pick images from",
    )
    serve.add_argument(
        "--detector",
        default=None,
        help="region-feature extractor folder or Hub id, to accept photos (default: CHECKPOINT/detector if any)",
    )
    serve.add_argument(
        "--images",
        default=None,
        help="pictures of the store's images, <image_id>.png (default: an images/ folder beside the store or one "
        "level up, as in a demo corpus)",
    )
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 7860)")
    serve.add_argument("--device", default=None, help="device of the model and the extractor (default cpu)")
    serve.add_argument("--top-k", type=int, default=5, help="answers, boxes per phrase and images shown (default 5)")
    serve.add_argument(
        "--max-ranked-images",
        type=int,
        default=500,
        help="store images a caption is matched against, the first ones (default 500)",
    )
    serve.add_argument("--title", default=DEFAULT_TITLE, help="title of the page")
    serve.set_defaults(func=_serve)

    space = subparsers.add_parser(
        "space",
        help="write a folder ready to be a Hugging Face Space serving the demo app",
        description="Write app.py, requirements.txt and README.md (the Space's YAML configuration: sdk gradio, "
        "sdk_version, app_file, models linking the model) into DIR. A local checkpoint, the feature store, its "
        "pictures and a local detector are copied in.",
    )
    space.add_argument("directory", metavar="DIR", help="folder to write")
    space.add_argument("--model", required=True, help="Hub repository id of the model, or a local checkpoint folder")
    space.add_argument("--features", default=None, help="region-feature store (or feature files) to pick images from")
    space.add_argument("--images", default=None, help="pictures of the store's images (default: found beside it)")
    space.add_argument("--detector", default=None, help="region-feature extractor folder or Hub id, for photos")
    space.add_argument("--title", default=DEFAULT_TITLE, help="title of the Space")
    space.add_argument(
        "--requirement",
        action="append",
        default=None,
        help="a line of requirements.txt (repeat; default: hierarchical-vl[app] at this version)",
    )
    space.add_argument("--sdk-version", default=None, help="Gradio version of the Space (default: the installed one)")
    space.add_argument("--overwrite", action="store_true", help="replace an existing DIR")
    space.set_defaults(func=_space)
