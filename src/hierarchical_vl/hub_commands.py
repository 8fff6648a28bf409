"""``hvl card``: the model card of a checkpoint, from its own records, printed or written."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_commands"]


def _card(args: argparse.Namespace) -> int:
    from .atomic_files import write_text_atomic
    from .hub import render_checkpoint_card

    try:
        if not (args.checkpoint / "config.json").is_file():
            raise FileNotFoundError(f"{args.checkpoint} is not a saved model directory (no config.json)")
        card = render_checkpoint_card(args.checkpoint, args.results, repo_id=args.repo_id)
    except (FileNotFoundError, ValueError) as error:
        print(f"hvl card: error: {error}", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(card)
    else:
        write_text_atomic(args.output, card)
        print(f"wrote {args.output}")
    return 0


def add_commands(subparsers: Any) -> None:
    """Register ``hvl card`` on the top-level sub-parsers of the ``hvl`` command."""
    parser = subparsers.add_parser(
        "card",
        help="preview (or write) the model card of a checkpoint from its own records",
        description=(
            "The model card (README.md) of a checkpoint, as push_to_hub would write it: datasets, splits, protocol "
            "and curriculum from its training_args.yaml, the trainer's evaluations, and the results of any "
            "hvl evaluate --output files, with model-index metadata."
        ),
    )
    parser.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="save_pretrained directory")
    parser.add_argument(
        "--results",
        type=Path,
        nargs="+",
        default=[],
        metavar="FILE",
        help="hvl evaluate --output JSON files of the checkpoint, added to the evaluation table",
    )
    parser.add_argument("--output", type=Path, default=None, help="write the card here (default: print it)")
    parser.add_argument("--repo-id", default=None, help="Hub repository id named in the card's usage example")
    parser.set_defaults(func=_card)
