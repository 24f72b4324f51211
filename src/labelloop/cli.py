"""The `labelloop` command: the library's tools for people (consolidate, agreement, select, ...).

Pipeline entry points (compile, run-local, submit, schedule, upload) live in `python -m pipelines`.
Each feature area registers its own subcommands from a `register(subparsers)` function in the
modules listed in `COMMAND_MODULES`.

Exit codes: 0 done; 1 a watched labeling job was still unfinished at `--timeout`; 2 bad input or
usage; 3 a server could not be reached; 4 credentials missing or refused; 5 a server refused the
request; 141 the reader of the output went away (`| head`). Errors go to stderr, once, one line.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from labelloop import __version__
from labelloop.errors import describe_error

COMMAND_MODULES: tuple[str, ...] = (
    "labelloop.cli_quality",
    "labelloop.cli_select",
    "labelloop.cli_label",
    "labelloop.cli_state",
    "labelloop.cli_lineage",
)

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `yes | head`
# Loggers of the HTTP clients underneath the providers: one INFO line per request otherwise.
NOISY_LOGGERS = ("httpx", "httpcore", "urllib3", "google.auth", "label_studio_sdk")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every option's default (but not an absent one); keeps descriptions' line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        absent = action.default is None or action.default is False or action.default == ""
        if absent or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


class SubCommands(argparse._SubParsersAction):
    """Sub-commands whose description defaults to their one-line help, with defaults shown."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if kwargs.get("help") and not kwargs.get("description"):
            help_text = str(kwargs["help"])
            kwargs["description"] = help_text[0].upper() + help_text[1:] + "."
        kwargs.setdefault("formatter_class", HelpFormatter)
        parser = super().add_parser(name, **kwargs)
        parser.register("action", "parsers", SubCommands)
        return parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="labelloop",
        description=__doc__.split("\n", 1)[0],
        epilog=__doc__.split("\n\n")[-1],
        formatter_class=HelpFormatter,
    )
    parser.register("action", "parsers", SubCommands)
    parser.add_argument("--version", action="version", version=f"labelloop {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log at DEBUG level, HTTP requests included"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def configure_logging(verbose: bool) -> None:
    """INFO (DEBUG with `verbose`) on stderr; the HTTP clients' per-request lines only when
    verbose."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        for name in NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


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


def guarded(command: Callable[[], int]) -> int:
    """Run a command the way every CLI here does: its exit code; a reader that went away
    (`| head`) exits 141 quietly; any error a user can act on is one line on stderr."""
    try:
        code = int(command())
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader stopped reading (`| head`): no traceback, no "cannot reach" (a broken
        # pipe is a ConnectionError), and no second error when Python flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # every error a user can act on: one line, no traceback
        return report_error(exc)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    return guarded(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
