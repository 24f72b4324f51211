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

from labelloop.cli import guarded
from labelloop.config import load_config
from labelloop.preflight import preflight

if TYPE_CHECKING:
    from pipelines.vertex_runs import Target


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


def _vertex_target(args: argparse.Namespace, *, image: bool = False, **needs: bool) -> Target:
    """The checked target; with `image`, the component image resolved (`--image`, then
    `$LABELLOOP_IMAGE`, then the digest `make image` pushed last)."""
    import dataclasses

    from pipelines.image import resolve_image
    from pipelines.vertex_api import init_vertex
    from pipelines.vertex_runs import load_target, parse_labels_option

    target = load_target(
        args.config,
        overrides=tuple(args.set or ()),
        extra_labels=parse_labels_option(getattr(args, "label", None)),
        **needs,
    )
    endpoint = (
        getattr(args, "api_endpoint", None)
        or os.environ.get("LABELLOOP_VERTEX_API_ENDPOINT")
        or None
    )
    # Checked before anything is compiled or sent; a loopback fake needs no credentials.
    preflight(target.config, target="vertex", env=os.environ, check_credentials=not endpoint)
    if image:
        explicit = getattr(args, "image", None) or os.environ.get("LABELLOOP_IMAGE") or None
        template = getattr(args, "template", None) or ""
        if not template.startswith("https://"):
            target = dataclasses.replace(
                target, image=resolve_image(target.vertex, explicit=explicit)
            )
    credentials = None
    if endpoint:
        # A loopback fake of the API (tests, local dry runs): no Google credentials involved.
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
    init_vertex(target.vertex, api_endpoint=endpoint or None, credentials=credentials)
    return target


def _image(args: argparse.Namespace) -> int:
    from pipelines.image import build_image
    from pipelines.vertex_runs import load_target

    target = load_target(args.config, overrides=tuple(args.set or ()))
    record = build_image(target.vertex)
    print(record.image)  # noqa: T201 - the command's output
    return 0


def _submit(args: argparse.Namespace) -> int:
    from pipelines.vertex_runs import submit

    target = _vertex_target(args, image=True)
    name = submit(
        target,
        template=args.template,
        enable_caching=args.cache,
        experiment=args.experiment,
    )
    print(name)  # noqa: T201 - the command's output
    return 0


def _schedule(args: argparse.Namespace) -> int:
    from pipelines.vertex_schedules import apply_schedule, change_schedule

    if args.action:
        target = _vertex_target(args, need_schedule=True)
        name = change_schedule(target, args.action)
        print(f"{args.action}d {name}")  # noqa: T201 - paused, resumed, deleted
        return 0
    target = _vertex_target(args, image=True, need_schedule=True)
    action, name = apply_schedule(target, template=args.template)
    print(f"{action} {name}")  # noqa: T201
    return 0


def _upload(args: argparse.Namespace) -> int:
    import dataclasses

    from labelloop import __version__
    from pipelines.image import read_record, resolve_image
    from pipelines.vertex_registry import upload
    from pipelines.vertex_runs import load_target

    target = load_target(args.config, overrides=tuple(args.set or ()), need_registry=True)
    explicit = args.image or os.environ.get("LABELLOOP_IMAGE") or None
    image = resolve_image(target.vertex, explicit=explicit)
    target = dataclasses.replace(target, image=image)
    record = read_record()
    commit = args.commit or (record.commit if record and record.image == image else "")
    package, version, tag = upload(
        target,
        args.template,
        version=args.version or __version__,
        commit=commit,
        host=args.registry_host,
    )
    print(f"{package}/{tag} {version}")  # noqa: T201
    return 0


def _run_template(args: argparse.Namespace) -> int:
    from pipelines.vertex_registry import run_template

    target = _vertex_target(args)
    print(  # noqa: T201
        run_template(
            target,
            args.template,
            version=args.version,
            enable_caching=args.cache,
            host=args.registry_host,
        )
    )
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
    p.add_argument(
        "--label",
        action="append",
        metavar="KEY=VALUE",
        help="a resource label added to the config's labels (repeatable)",
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
        "--image",
        help="component image to pin (default: the placeholder compiled/image.json describes)",
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
    p = sub.add_parser(
        "image", help="build and push the component image with Cloud Build; record its digest"
    )
    p.add_argument("--config", default="configs/vertex.yaml", help="the run's YAML config")
    p.add_argument(
        "--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config field"
    )
    p.set_defaults(func=_image)
    p = sub.add_parser("submit", help="submit one run to Vertex AI Pipelines")
    _add_vertex_arguments(p)
    p.add_argument(
        "--template", help="compiled JSON/YAML or registry URI (default: compile from the config)"
    )
    p.add_argument(
        "--image",
        help="component image (default: $LABELLOOP_IMAGE, else the digest `make image` pushed)",
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
        "--image",
        help="component image (default: $LABELLOOP_IMAGE, else the digest `make image` pushed)",
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
    p.add_argument("--version", help="package version in the tag (default: labelloop's)")
    p.add_argument("--commit", help="commit in the tag v<version>-g<commit> (default: the image's)")
    p.add_argument(
        "--image",
        help="component image (default: $LABELLOOP_IMAGE, else the digest `make image` pushed)",
    )
    p.add_argument(
        "--registry-host",
        help="registry host (default: https://{region}-kfp.pkg.dev/{project}/{repo})",
    )
    p.set_defaults(func=_upload)
    p = sub.add_parser("run-template", help="launch a run from a registry template URI")
    _add_vertex_arguments(p)
    p.add_argument(
        "--template",
        help="a full https://{region}-kfp.pkg.dev/{project}/{repo}/{package}/{tag} URI",
    )
    p.add_argument(
        "--version",
        help="template version tag, v<version>-g<commit> or latest (default: "
        "vertex.template_tag, else the version this checkout uploaded last)",
    )
    p.add_argument("--registry-host", help="registry host (tests: a loopback fake)")
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
    return guarded(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
