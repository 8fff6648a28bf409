"""``hvl train`` and ``hvl search-layers``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..atomic_files import DiskFullError, write_text_atomic
from ..tasks import TASK_SPECS

__all__ = ["INTERRUPTED_EXIT_CODE", "add_commands", "interrupted_message", "parse_layers"]

INTERRUPTED_EXIT_CODE = 130
"""Exit status of ``hvl train`` stopped by Ctrl-C (128 + SIGINT, as shells report it)."""


def parse_layers(text: str) -> list[int]:
    """Parses a layer list: ``"1-5"`` -> ``[1, 2, 3, 4, 5]``; ``"2,3,5"`` -> ``[2, 3, 5]``.

    Raises:
        argparse.ArgumentTypeError: If the list is empty or names a layer below 1.
    """
    layers: list[int] = []
    for part in text.split(","):
        if "-" in part:
            start, end = (int(x) for x in part.split("-", 1))
            layers.extend(range(start, end + 1))
        elif part.strip():
            layers.append(int(part))
    if not layers or min(layers) < 1:
        raise argparse.ArgumentTypeError(f"invalid layer list {text!r}: use e.g. 1-5 or 2,3,5")
    return sorted(set(layers))


def interrupted_message(output_dir: str | Path) -> str:
    """The one line ``hvl train`` prints when stopped by Ctrl-C: where the last checkpoint is, or that none exists.

    Only finished (published) checkpoints are considered; they are listed, not verified, so that the message is
    immediate even for large checkpoints (a resumed run verifies them and falls back to an older good one).

    Args:
        output_dir: The run's output directory (checkpoints are in its ``checkpoints`` folder, as the trainer writes).
    """
    from .checkpointing import CheckpointManager

    directory = Path(output_dir) / "checkpoints"
    try:
        finished = CheckpointManager(directory).checkpoints()
    except OSError:
        finished = []
    if not finished:
        return f"hvl train: interrupted before the first checkpoint was written (none in {directory})"
    return (
        f"hvl train: interrupted; the last checkpoint is {finished[-1]}; run the same command again to resume from it"
    )


def _train(args: argparse.Namespace) -> int:
    from .arguments import load_training_arguments
    from .run import train_from_arguments

    training_args = load_training_arguments(args.config, args.overrides)
    if args.output_dir:
        training_args.output_dir = args.output_dir
    if args.overwrite_output:
        training_args.overwrite_output_dir = True
    try:
        result = train_from_arguments(training_args)
    except KeyboardInterrupt:
        print(interrupted_message(training_args.output_dir), file=sys.stderr, flush=True)
        return INTERRUPTED_EXIT_CODE
    except DiskFullError as error:
        print(f"hvl train: {error}", file=sys.stderr, flush=True)
        return 1
    print(f"trained {result.updates} updates in {result.train_seconds:.1f}s; model saved to {training_args.output_dir}")
    for record in result.evaluations[-3:]:
        print(json.dumps(record))
    return 0


def _search_layers(args: argparse.Namespace) -> int:
    from .arguments import load_training_arguments
    from .layer_search import search_layers

    training_args = load_training_arguments(args.config, args.overrides)
    table = search_layers(training_args, args.task, args.layers, iterations=args.iterations, output_dir=args.output_dir)
    print(table.render())
    if args.output_json:
        write_text_atomic(args.output_json, json.dumps(table.to_dict(), indent=2))
    return 0


def add_commands(subparsers: Any) -> None:
    """Registers ``hvl train`` and ``hvl search-layers`` on the top-level sub-parsers of the ``hvl`` command."""
    train = subparsers.add_parser(
        "train",
        help="train with the curriculum and task switching of the paper",
        description="Train from a preset (demo, paper_run1, paper_run2, single_vqa, ...) or a YAML file; "
        "override any field with KEY=VALUE (e.g. tasks.vqa.batch_size=128 data.root=/data).",
    )
    train.add_argument("config", help="training preset name or YAML file")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, values in YAML syntax")
    train.add_argument("--output-dir", default=None)
    train.add_argument(
        "--overwrite-output",
        action="store_true",
        help="start afresh in an --output-dir that holds a run of another configuration (removes its checkpoints); "
        "without it such a run is refused rather than resumed",
    )
    train.set_defaults(func=_train)

    search = subparsers.add_parser(
        "search-layers",
        help="train one task alone with its decoder at each candidate layer and compare (paper Sec. 4.2)",
    )
    search.add_argument("--task", required=True, choices=list(TASK_SPECS))
    search.add_argument("--layers", type=parse_layers, default=parse_layers("1-5"), help="e.g. 1-5 or 2,3,5")
    search.add_argument("--config", default="demo", help="training preset or YAML file for data and optimiser")
    search.add_argument("--iterations", type=int, default=None, help="updates per candidate (default: the task's)")
    search.add_argument("--output-dir", default="outputs/layer_search")
    search.add_argument("--output-json", default=None)
    search.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    search.set_defaults(func=_search_layers)
