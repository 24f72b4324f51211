"""The `labelloop` command: the library's tools for people (consolidate, agreement, select, ...).

Pipeline entry points (compile, run-local, submit, schedule, upload) live in `python -m pipelines`.
Each feature area registers its own subcommands from a `register(subparsers)` function in the
modules listed in `COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from labelloop import __version__
from labelloop.errors import LabelloopError

COMMAND_MODULES: tuple[str, ...] = (
    "labelloop.cli_quality",
    "labelloop.cli_select",
    "labelloop.cli_label",
    "labelloop.cli_lineage",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="labelloop", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--version", action="version", version=f"labelloop {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (2 for bad input, with the error on stderr)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except LabelloopError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 - the command's error output
        return 2
    except OSError as exc:  # a write or read the system refused: one line, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)  # noqa: T201
        return 1


if __name__ == "__main__":
    sys.exit(main())
