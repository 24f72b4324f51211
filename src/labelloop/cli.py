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
from labelloop.errors import describe_error

COMMAND_MODULES: tuple[str, ...] = (
    "labelloop.cli_quality",
    "labelloop.cli_select",
    "labelloop.cli_label",
    "labelloop.cli_state",
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


def report_error(exc: BaseException) -> int:
    """Print one line about `exc` on stderr and return its exit code (a bug is re-raised).

    Used by every command (`labelloop`, `python -m pipelines`): `describe_error` decides.
    """
    described = describe_error(exc)
    if described is None:
        raise exc
    code, message = described
    logging.getLogger("labelloop").debug("details", exc_info=exc)
    print(f"error: {message}", file=sys.stderr)  # noqa: T201 - the command's error output
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (2 for bad input, with the error on stderr)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except Exception as exc:  # every error a user can act on: one line, no traceback
        return report_error(exc)


if __name__ == "__main__":
    sys.exit(main())
