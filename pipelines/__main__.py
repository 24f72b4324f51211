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
from typing import TYPE_CHECKING

from labelloop.cli import report_error
from labelloop.config import load_config
from labelloop.preflight import preflight

if TYPE_CHECKING:
    from pipelines.vertex_submit import Target


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
    config = load_config(args.config, overrides=overrides, target="portable")
    preflight(config, target="local", env=os.environ)
    rounds = args.rounds or config.local.rounds
    cache = (
        Path(config.local.sample_cache_dir)
        if config.local.sample_cache_dir
        else default_cache_dir()
    )
    _, summaries = run_local(
        config,
        rounds=rounds,
        runs_dir=Path(args.runs_dir or config.local.runs_dir),
        cache_dir=cache,
        lease_wait_seconds=args.wait,
    )
    return 0 if summaries and all(s.status == "ok" for s in summaries) else 1


def _vertex_target(args: argparse.Namespace, **needs: bool) -> Target:
    from pipelines.vertex_submit import init_vertex, load_target

    target = load_target(args.config, overrides=tuple(args.set or ()), **needs)
    endpoint = args.api_endpoint or os.environ.get("LABELLOOP_VERTEX_API_ENDPOINT") or None
    # Checked before anything is compiled or sent; a loopback fake needs no credentials.
    preflight(target.config, target="vertex", env=os.environ, check_credentials=not endpoint)
    credentials = None
    if endpoint:
        # A loopback fake of the API (tests, local dry runs): no Google credentials involved.
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
    init_vertex(target.vertex, api_endpoint=endpoint, credentials=credentials)
    return target


def _image(args: argparse.Namespace) -> str | None:
    return args.image or os.environ.get("LABELLOOP_IMAGE") or None


def _submit(args: argparse.Namespace) -> int:
    from pipelines.vertex_submit import submit

    target = _vertex_target(args)
    name = submit(
        target,
        template=args.template,
        image=_image(args),
        enable_caching=args.cache,
        experiment=args.experiment,
    )
    print(name)  # noqa: T201 - the command's output
    return 0


def _schedule(args: argparse.Namespace) -> int:
    from pipelines.vertex_submit import apply_schedule, change_schedule

    target = _vertex_target(args, need_schedule=True)
    if args.action:
        name = change_schedule(target, args.action)
        print(f"{args.action}d {name}")  # noqa: T201 - paused, resumed, deleted
        return 0
    action, name = apply_schedule(target, template=args.template, image=_image(args))
    print(f"{action} {name}")  # noqa: T201
    return 0


def _upload(args: argparse.Namespace) -> int:
    from labelloop import __version__
    from pipelines.vertex_submit import load_target, upload

    target = load_target(args.config, overrides=tuple(args.set or ()), need_registry=True)
    package, version = upload(
        target, args.template, version=args.version or __version__, host=args.registry_host
    )
    print(f"{package}/{version}")  # noqa: T201
    return 0


def _run_template(args: argparse.Namespace) -> int:
    from pipelines.vertex_submit import run_template

    target = _vertex_target(args)
    print(run_template(target, args.template, enable_caching=args.cache))  # noqa: T201
    return 0


def _add_vertex_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="configs/vertex.yaml", help="the run's YAML config")
    p.add_argument(
        "--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config field"
    )
    p.add_argument(
        "--api-endpoint",
        help="Vertex AI API endpoint (default: the region's; a loopback fake for dry runs)",
    )


def build_parser() -> argparse.ArgumentParser:
    from labelloop.cli import HelpFormatter, SubCommands

    parser = argparse.ArgumentParser(
        prog="python -m pipelines", description=__doc__, formatter_class=HelpFormatter
    )
    # Every sub-command described, every default shown (as in the `labelloop` command).
    parser.register("action", "parsers", SubCommands)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compile", help="compile the pipelines to JSON")
    p.add_argument("--out-dir", default="compiled", help="folder for the pipeline JSON files")
    p.add_argument(
        "--image", help="component image to pin (default: the version tag, or $LABELLOOP_IMAGE)"
    )
    p.set_defaults(func=_compile)
    p = sub.add_parser("run-local", help="run the pipeline with kfp.local")
    p.add_argument("--config", default="configs/local.yaml", help="the run's YAML config")
    p.add_argument(
        "--rounds", type=int, default=0, help="rounds to run; 0 runs the config's number"
    )
    p.add_argument("--strategy", help="override pipeline.selection_strategy")
    p.add_argument("--runs-dir", help="where run folders go (default: the config's, runs/)")
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="if another run is using the same state_uri, wait this long for it (default: stop)",
    )
    p.add_argument(
        "--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config field"
    )
    p.set_defaults(func=_run_local)
    p = sub.add_parser("submit", help="submit one run to Vertex AI Pipelines")
    _add_vertex_arguments(p)
    p.add_argument(
        "--template", help="compiled JSON/YAML or registry URI (default: compile from the config)"
    )
    p.add_argument(
        "--image", help="component image to pin (default: the version tag, or $LABELLOOP_IMAGE)"
    )
    p.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="step caching (default: the config's)",
    )
    p.add_argument("--experiment", help="Vertex AI Experiment (default: the config's)")
    p.set_defaults(func=_submit)
    p = sub.add_parser(
        "schedule",
        help="create or update the schedule named in the config; or pause/resume/delete it",
    )
    _add_vertex_arguments(p)
    p.add_argument(
        "--template", help="compiled JSON/YAML or registry URI (default: compile from the config)"
    )
    p.add_argument(
        "--image", help="component image to pin (default: the version tag, or $LABELLOOP_IMAGE)"
    )
    group = p.add_mutually_exclusive_group()
    for verb in ("pause", "resume", "delete"):
        group.add_argument(
            f"--{verb}",
            dest="action",
            action="store_const",
            const=verb,
            help=f"{verb} the schedule",
        )
    p.set_defaults(func=_schedule, action=None)
    p = sub.add_parser(
        "upload", help="upload the compiled template to the Artifact Registry KFP repository"
    )
    p.add_argument("--config", default="configs/vertex.yaml", help="the run's YAML config")
    p.add_argument(
        "--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config field"
    )
    p.add_argument(
        "--template",
        default="compiled/vertex_labeling_pipeline.json",
        help="the compiled pipeline to upload",
    )
    p.add_argument("--version", help="version tag (default: the package version)")
    p.add_argument(
        "--registry-host",
        help="registry host (default: https://{region}-kfp.pkg.dev/{project}/{repo})",
    )
    p.set_defaults(func=_upload)
    p = sub.add_parser("run-template", help="launch a run from a registry template URI")
    _add_vertex_arguments(p)
    p.add_argument(
        "--template",
        help="https://{region}-kfp.pkg.dev/{project}/{repo}/{package}/{tag} (default: config)",
    )
    p.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="step caching (default: the config's)",
    )
    p.set_defaults(func=_run_template)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except Exception as exc:  # every error a user can act on: one line, no traceback
        return report_error(exc)


if __name__ == "__main__":
    sys.exit(main())
