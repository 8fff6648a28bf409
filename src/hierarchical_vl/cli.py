"""The ``hvl`` command line.

Each command group lives next to the code it drives and exposes ``add_commands(subparsers)``; this module only
collects them, so that importing the package never imports training code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that register sub-commands, in the order they appear in ``hvl --help``.
_COMMAND_MODULES = (
    "hierarchical_vl.demo",
    "hierarchical_vl.data.commands",
    "hierarchical_vl.training.commands",
    "hierarchical_vl.evaluation.commands",
    "hierarchical_vl.metrics.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hvl",
        description="Multi-task hierarchical vision-language model: data, training, evaluation and inference.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
