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

import labelloop
from labelloop.errors import describe_error

COMMAND_MODULES: tuple[str, ...] = (
    "labelloop.cli_quality",
    "labelloop.cli_select",
    "labelloop.cli_label",
    "labelloop.cli_state",
    "labelloop.cli_lineage",
    "labelloop.cli_review",
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


class VersionAction(argparse.Action):
    """`--version`, reading the installed version only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kwargs: Any) -> None:
        print(f"labelloop {labelloop.__version__}")  # noqa: T201 - the command's output
        parser.exit()


def command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named on a command line (its first word that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with the registered subcommands.

    With `command`, modules are registered in order only until one provides it, so a
    command's start-up does not import every other command's dependencies (a name no module
    provides registers them all, for argparse's list of choices).
    """
    parser = argparse.ArgumentParser(
        prog="labelloop",
        description=__doc__.split("\n", 1)[0],
        epilog=__doc__.split("\n\n")[-1],
        formatter_class=HelpFormatter,
    )
    parser.register("action", "parsers", SubCommands)
    parser.add_argument("--version", action=VersionAction, help="show the version and exit")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log at DEBUG level, HTTP requests included"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
        if command is not None and command in sub.choices:
            break
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
    words = sys.argv[1:] if argv is None else argv
    args = build_parser(command_of(words)).parse_args(words)
    configure_logging(args.verbose)
    return guarded(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
