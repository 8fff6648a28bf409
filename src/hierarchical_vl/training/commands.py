"""``hvl train``, ``hvl config`` and ``hvl search`` (``hvl search-layers``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..atomic_files import DiskFullError, write_text_atomic
from ..tasks import TASK_SPECS

__all__ = [
    "INTERRUPTED_EXIT_CODE",
    "add_commands",
    "interrupted_message",
    "parse_int_list",
    "parse_layers",
    "training_arguments_from_command_line",
    "training_summary",
]

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


_TRAINING_FLAGS = (
    # (flag, field its value sets, argparse options)
    ("--output-dir", "output_dir", {"default": None, "metavar": "DIR", "help": "output_dir=DIR"}),
    ("--seed", "seed", {"type": int, "default": None, "help": "seed=N"}),
    (
        "--no-progress",
        "progress",
        {"action": "store_const", "const": False, "default": None, "help": "progress=false: no progress bars at all"},
    ),
    (
        "--progress-lines",
        "progress",
        {
            "action": "store_const",
            "const": "lines",
            "default": None,
            "help": "progress=lines: a progress line every progress_every seconds, also on a terminal",
        },
    ),
    (
        "--allow-contamination",
        "data.allow_contamination",
        {
            "action": "store_const",
            "const": True,
            "default": None,
            "help": "data.allow_contamination=true: start even if an evaluation image is in a training split",
        },
    ),
    (
        "--save-best",
        "save_best",
        {"default": None, "metavar": "METRIC", "help": "save_best=METRIC (e.g. vqa/overall): also keep best/"},
    ),
    (
        "--overwrite-output",
        "overwrite_output_dir",
        {
            "action": "store_const",
            "const": True,
            "default": None,
            "help": "overwrite_output_dir=true: start afresh in an --output-dir that holds a run of another "
            "configuration (removes its checkpoints); without it such a run is refused rather than resumed",
        },
    ),
)
"""The flags of ``hvl train`` and ``hvl config show``: each is the ``KEY=VALUE`` override of one field."""


def _add_training_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="training preset name or YAML file")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, values in YAML syntax")
    parser.add_argument(
        "--fragment",
        action="append",
        default=[],
        metavar="FILE.yaml",
        help="YAML fragment merged on top of the configuration (e.g. best_vqa.yaml of hvl search); several are "
        "merged in order, the KEY=VALUE overrides last",
    )
    for flag, _, options in _TRAINING_FLAGS:
        parser.add_argument(flag, dest=_flag_dest(flag), **options)


def _flag_dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _set_key(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def training_arguments_from_command_line(args: argparse.Namespace) -> Any:
    """The `TrainingArguments` of an ``hvl train`` command line: the configuration, its fragments, the ``KEY=VALUE``
    overrides, then the flags (each the override of one field, see ``_TRAINING_FLAGS``)."""
    from .arguments import load_training_data, training_arguments_from_mapping

    data = load_training_data(args.config, args.overrides, fragments=args.fragment)
    data.pop("search", None)
    for flag, key, _ in _TRAINING_FLAGS:
        value = getattr(args, _flag_dest(flag))
        if value is not None:
            _set_key(data, key, value)
    return training_arguments_from_mapping(data, args.config)


def _train(args: argparse.Namespace) -> int:
    from .run import train_from_arguments

    try:
        training_args = training_arguments_from_command_line(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"hvl train: error: {error}", file=sys.stderr, flush=True)
        return 2
    from ..progress_bars import progress_bars_disabled
    from .progress import progress_mode

    try:
        # Other libraries' bars (transformers' shard writing, datasets' split generation) only with a progress bar:
        # in a log file each of their redraws is a line.
        with progress_bars_disabled(progress_mode(training_args.progress) != "bar"):
            result = train_from_arguments(training_args)
    except KeyboardInterrupt:
        print(interrupted_message(training_args.output_dir), file=sys.stderr, flush=True)
        return INTERRUPTED_EXIT_CODE
    except DiskFullError as error:
        print(f"hvl train: {error}", file=sys.stderr, flush=True)
        return 1
    print(training_summary(training_args, result))
    for record in result.evaluations[-3:]:
        print(json.dumps(record))
    return 0


def training_summary(training_args: Any, result: Any) -> str:
    """The lines ``hvl train`` ends with: updates and time, what was written where, the last evaluation's metrics.

    Args:
        training_args: The run's `TrainingArguments`.
        result: Its `TrainingResult`.
    """
    output = Path(training_args.output_dir)
    lines = [
        f"trained {result.updates} updates in {result.train_seconds:.1f}s; model saved to {training_args.output_dir}",
        f"  model (from_pretrained): {output}",
        f"  training arguments: {output / 'training_args.yaml'}",
        f"  checkpoints (last {training_args.keep_last}): {output / 'checkpoints'}",
    ]
    if result.best is not None:
        lines.append(
            f"  best checkpoint ({training_args.save_best} {result.best['value']:.4g} at update "
            f"{result.best['update']}): {output / 'best'}"
        )
    if training_args.log_with:
        lines.append(f"  logs ({', '.join(training_args.log_with)}): {output / 'logs'}")
    if result.evaluations:
        from ..evaluation.results_table import HEADLINE_METRICS

        last = result.evaluations[-1]
        headline = [f"{key} {value:.2f}" for key, value in last.items() if key in HEADLINE_METRICS]
        if headline:
            lines.append(f"  last evaluation (update {last['update']}, {last['stage']}): {', '.join(headline)}")
    return "\n".join(lines)


def _config_show(args: argparse.Namespace) -> int:
    import yaml

    try:
        training_args = training_arguments_from_command_line(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"hvl config show: error: {error}", file=sys.stderr, flush=True)
        return 2
    print(yaml.safe_dump(training_args._saved_form(), sort_keys=False), end="")
    return 0


def _config_fields(args: argparse.Namespace) -> int:
    from .config_help import format_config_fields

    print(format_config_fields())
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
    from .arguments import load_training_data, training_arguments_from_mapping
    from .layer_search import SearchGrid, load_search_grid, search_grid

    data = load_training_data(args.config, args.overrides)
    grid = SearchGrid.from_dict(data.pop("search", None) or {}, source=f"{args.config}: search")
    training_args = training_arguments_from_mapping(data, args.config)
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
    """Registers ``hvl train``, ``hvl config``, ``hvl search`` and ``hvl search-layers`` on the sub-parsers of the
    ``hvl`` command."""
    from .config_help import format_config_fields

    fields_help = (
        "configuration fields (KEY=VALUE, dotted; `hvl config show CONFIG [KEY=VALUE ...]` prints the effective "
        "configuration):\n" + format_config_fields()
    )
    train = subparsers.add_parser(
        "train",
        help="train with the curriculum and task switching of the paper",
        description="Train from a preset (demo, paper_run1, paper_run2, single_vqa, ...) or a YAML file; "
        "override any field with KEY=VALUE (e.g. tasks.vqa.batch_size=128 data.root=/data); every flag below is "
        "the KEY=VALUE override it names.",
        epilog=fields_help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_training_flags(train)
    train.set_defaults(func=_train)

    config = subparsers.add_parser(
        "config",
        help="the training configuration: its fields, or the effective configuration of a command line",
        description="hvl config fields lists every training configuration field (type, default, description); "
        "hvl config show CONFIG [KEY=VALUE ...] [flags of hvl train] prints the configuration that hvl train "
        "would run, as YAML.",
    )
    actions = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = actions.add_parser(
        "show",
        help="print the effective configuration (YAML) of hvl train's command line",
        epilog=fields_help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_training_flags(show)
    show.set_defaults(func=_config_show)
    actions.add_parser("fields", help="list every configuration field").set_defaults(func=_config_fields)

    _add_search_parser(
        subparsers,
        "search",
        None,
        "grid search of one task trained alone over layer, #iter, #step and batch size, selected on its "
        "validation split (paper Sec. 4.2); writes a preset fragment for hvl train --fragment",
    )
    _add_search_parser(subparsers, "search-layers", "1-5", "hvl search with the layers 1-5 by default")
