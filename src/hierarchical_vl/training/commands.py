"""``hvl train`` and ``hvl search`` (``hvl search-layers``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..atomic_files import DiskFullError, write_text_atomic
from ..tasks import TASK_SPECS

__all__ = ["INTERRUPTED_EXIT_CODE", "add_commands", "interrupted_message", "parse_int_list", "parse_layers"]

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


def parse_int_list(text: str) -> list[int]:
    """Parses a list of positive integers: ``"200,400"`` -> ``[200, 400]``; ranges as in `parse_layers`.

    Raises:
        argparse.ArgumentTypeError: If the list is empty or holds a value below 1.
    """
    try:
        return parse_layers(text)
    except (argparse.ArgumentTypeError, ValueError):
        raise argparse.ArgumentTypeError(f"invalid list {text!r}: use e.g. 200,400 or 1-3") from None


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

    training_args = load_training_arguments(args.config, args.overrides, fragments=args.fragment)
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


def _search(args: argparse.Namespace) -> int:
    try:
        table = _run_search(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"hvl {args.command}: error: {error}", file=sys.stderr, flush=True)
        return 2
    print(table.render())
    print(f"chosen values written to {Path(args.output_dir) / f'best_{args.task}.yaml'} (hvl train ... --fragment)")
    if args.output_json:
        write_text_atomic(args.output_json, json.dumps(table.to_dict(), indent=2))
    return 0


def _run_search(args: argparse.Namespace) -> Any:
    from .arguments import TrainingArguments, load_training_data
    from .layer_search import SearchGrid, load_search_grid, search_grid

    data = load_training_data(args.config, args.overrides)
    grid = SearchGrid.from_dict(data.pop("search", None) or {}, source=f"{args.config}: search")
    try:
        training_args = TrainingArguments(**data)
    except TypeError as error:
        raise ValueError(f"{args.config}: {error}") from None
    if args.grid:
        grid = grid.updated(**{k: v for k, v in vars(load_search_grid(args.grid)).items() if v not in ([], None)})
    grid = grid.updated(
        layers=args.layers,
        iterations=args.iterations,
        lr_step=args.lr_step,
        batch_size=args.batch_size,
        metric=args.metric,
        split=args.split,
    )
    if not grid.layers and args.default_layers:
        grid = grid.updated(layers=parse_layers(args.default_layers))
    return search_grid(training_args, args.task, grid, output_dir=args.output_dir, overwrite=args.overwrite_output)


def _add_search_parser(subparsers: Any, name: str, default_layers: str | None, help_text: str) -> None:
    search = subparsers.add_parser(name, help=help_text, description=help_text)
    search.add_argument("--task", required=True, choices=list(TASK_SPECS))
    layers_default = f"default: {default_layers}" if default_layers else "default: the configuration's layer"
    search.add_argument("--layers", type=parse_layers, default=None, help=f"e.g. 1-5 or 2,3,5 ({layers_default})")
    search.add_argument("--iterations", type=parse_int_list, default=None, help="#iter values, e.g. 200,400")
    search.add_argument("--lr-step", type=parse_int_list, default=None, help="#step values, e.g. 100,200")
    search.add_argument("--batch-size", type=parse_int_list, default=None, help="batch sizes, e.g. 16,32")
    search.add_argument("--metric", default=None, help="metric maximised (default: the task's main metric)")
    search.add_argument("--split", default=None, help="validation split evaluated (default: val; test is refused)")
    search.add_argument("--grid", default=None, help="YAML file with a search section (layers, iterations, ...)")
    search.add_argument("--config", default="demo", help="training preset or YAML file (data, optimiser, search)")
    search.add_argument("--output-dir", default="outputs/layer_search")
    search.add_argument("--output-json", default=None, help="also write the results JSON here")
    search.add_argument(
        "--overwrite-output",
        action="store_true",
        help="train every point again in an --output-dir holding a search of another configuration",
    )
    search.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    search.set_defaults(func=_search, default_layers=default_layers)


def add_commands(subparsers: Any) -> None:
    """Registers ``hvl train``, ``hvl search`` and ``hvl search-layers`` on the sub-parsers of the ``hvl`` command."""
    train = subparsers.add_parser(
        "train",
        help="train with the curriculum and task switching of the paper",
        description="Train from a preset (demo, paper_run1, paper_run2, single_vqa, ...) or a YAML file; "
        "override any field with KEY=VALUE (e.g. tasks.vqa.batch_size=128 data.root=/data).",
    )
    train.add_argument("config", help="training preset name or YAML file")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, values in YAML syntax")
    train.add_argument(
        "--fragment",
        action="append",
        default=[],
        metavar="FILE.yaml",
        help="YAML fragment merged on top of the configuration (e.g. best_vqa.yaml of hvl search); several are "
        "merged in order, the KEY=VALUE overrides last",
    )
    train.add_argument("--output-dir", default=None)
    train.add_argument(
        "--overwrite-output",
        action="store_true",
        help="start afresh in an --output-dir that holds a run of another configuration (removes its checkpoints); "
        "without it such a run is refused rather than resumed",
    )
    train.set_defaults(func=_train)

    _add_search_parser(
        subparsers,
        "search",
        None,
        "grid search of one task trained alone over layer, #iter, #step and batch size, selected on its "
        "validation split (paper Sec. 4.2); writes a preset fragment for hvl train --fragment",
    )
    _add_search_parser(subparsers, "search-layers", "1-5", "hvl search with the layers 1-5 by default")
