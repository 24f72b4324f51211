"""Entry points for the pipelines: `python -m pipelines {compile,run-local,...}`.

This is the edge of the system: the only place that reads the environment.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from labelloop.config import load_config
from labelloop.errors import LabelloopError


def _compile(args: argparse.Namespace) -> int:
    from pipelines.compile import compile_all

    image = args.image or os.environ.get("LABELLOOP_IMAGE") or None
    for path in compile_all(Path(args.out_dir), image=image):
        print(path)  # noqa: T201 - the command's output
    return 0


def _run_local(args: argparse.Namespace) -> int:
    from labelloop.sample_data import default_cache_dir
    from pipelines.run_local import run_local

    overrides = list(args.set or [])
    if args.strategy:
        overrides.append(f"pipeline.selection_strategy={args.strategy}")
    config = load_config(args.config, overrides=overrides)
    rounds = args.rounds or config.local.rounds
    cache = Path(config.local.sample_cache_dir) if config.local.sample_cache_dir else default_cache_dir()
    _, summaries = run_local(
        config, rounds=rounds, runs_dir=Path(args.runs_dir or config.local.runs_dir), cache_dir=cache
    )
    return 0 if summaries and all(s.status == "ok" for s in summaries) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compile", help="compile the pipelines to JSON")
    p.add_argument("--out-dir", default="compiled")
    p.add_argument("--image", help="component image to pin (default: the version tag, or $LABELLOOP_IMAGE)")
    p.set_defaults(func=_compile)
    p = sub.add_parser("run-local", help="run the pipeline with kfp.local")
    p.add_argument("--config", default="configs/local.yaml")
    p.add_argument("--rounds", type=int, default=0, help="rounds to run (default: the config's)")
    p.add_argument("--strategy", help="override pipeline.selection_strategy")
    p.add_argument("--runs-dir", help="where run folders go (default: the config's, runs/)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config field")
    p.set_defaults(func=_run_local)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except LabelloopError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2


if __name__ == "__main__":
    sys.exit(main())
