"""The ``hvl`` command line.

Each command group lives next to the code it drives and exposes ``add_commands(subparsers)``; this module only
collects them, so that importing the package never imports training code.

The library reports through `logging` (``logging.getLogger(__name__)`` in each module); the command line shows
the package's records as plain lines: ``INFO`` on standard output, next to the commands' own output, and warnings
and errors on standard error as ``warning: ...``. Other libraries' loggers are left as they are.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

__all__ = ["build_parser", "main"]

# Modules that register sub-commands, in the order they appear in ``hvl --help``.
_COMMAND_MODULES = (
    "hierarchical_vl.demo",
    "hierarchical_vl.data.commands",
    "hierarchical_vl.training.commands",
    "hierarchical_vl.training.experiments",
    "hierarchical_vl.evaluation.commands",
    "hierarchical_vl.metrics.commands",
    "hierarchical_vl.app.commands",
    "hierarchical_vl.hub_commands",
)

_PACKAGE_LOGGER = "hierarchical_vl"


class _ConsoleHandler(logging.Handler):
    """Writes a record as one plain line to the current ``sys.stdout`` (``sys.stderr`` from ``WARNING`` up).

    The streams are looked up for every record, so redirections made after the handler was installed (pytest's
    capture, ``contextlib.redirect_stdout``) are honoured.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.levelno >= logging.WARNING:
                message = f"{record.levelname.lower()}: {message}"
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write(message + "\n")
            stream.flush()
        except Exception:  # logging must never break the command
            self.handleError(record)


def _configure_logging() -> None:
    """Shows the package's ``INFO`` records and above on the console (idempotent)."""
    package = logging.getLogger(_PACKAGE_LOGGER)
    if not any(isinstance(handler, _ConsoleHandler) for handler in package.handlers):
        package.addHandler(_ConsoleHandler())
    package.setLevel(logging.INFO)


def build_parser() -> argparse.ArgumentParser:
    """The ``hvl`` argument parser with every command group's sub-commands."""
    parser = argparse.ArgumentParser(
        prog="hvl",
        description="Multi-task hierarchical vision-language model: data, training, evaluation and inference.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one ``hvl`` command.

    Args:
        argv: The arguments (``sys.argv[1:]`` when ``None``).

    Returns:
        The process exit code.
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may come after a command's flags (``hvl train demo --output-dir x data.root=y``):
    # argparse gives the positional list only the words before the first flag, so the rest join it here.
    if extra and hasattr(args, "overrides") and all("=" in word and not word.startswith("-") for word in extra):
        args.overrides = [*(args.overrides or []), *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _configure_logging()
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
