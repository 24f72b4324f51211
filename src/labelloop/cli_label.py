"""`labelloop label status|collect` and `labelloop import-annotations`: labeling jobs by hand.

`label status` shows how far a labeling job is (a progress bar on stderr with `--watch`);
`label collect` waits (optionally) and writes the long-format annotations; both find the job
from the pipeline's `job` record (`--job job.json`) or, for providers that keep no server-side
state, by submitting the same items again (idempotent: the same deterministic job key, so no
second job). `import-annotations` converts a Label Studio export, a Vertex dataset export or a
CSV/JSONL file to labelloop's long format. Provider credentials come from the environment
(e.g. `LABEL_STUDIO_API_KEY`), as in the pipeline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from labelloop import storage
from labelloop.annotations import write_annotations, write_bad_records
from labelloop.errors import EXIT_FAILED, InputError, summarize_bad_records
from labelloop.options import options_argument
from labelloop.providers import Job, LabelingProvider, LabelingTask, Progress, get_provider
from labelloop.providers.importer import FORMATS, read_any
from labelloop.providers.registry import JOB_OPTIONS
from labelloop.schemas import TaskType, parse_labels

BAR_WIDTH = 30
# `label status --watch`: the job was still unfinished at --timeout.
EXIT_UNFINISHED = EXIT_FAILED


def progress_bar(progress: Progress, *, width: int = BAR_WIDTH) -> str:
    """`[#####.....] 12/30 items (40%)`."""
    total = max(progress.total, 1)
    filled = min(width, round(width * progress.labeled / total))
    pct = 100.0 * progress.labeled / total
    bar = "#" * filled + "." * (width - filled)
    return f"[{bar}] {progress.labeled}/{progress.total} items ({pct:.0f}%)"


def _options(value: str) -> dict[str, Any]:
    return options_argument(value)


def _record(uri: str, provider: str) -> dict[str, Any]:
    """The job record the pipeline wrote (`job.json`), checked against `--provider`."""
    try:
        record = json.loads(storage.read_text(uri))
    except json.JSONDecodeError as exc:
        raise InputError(f"not JSON ({exc.msg})", source=uri, line=exc.lineno) from None
    if not isinstance(record, dict):
        raise InputError("not a job record (a JSON object)", source=uri)
    if record.get("provider") != provider:
        raise InputError(f"the job record is for provider {record.get('provider')!r}", source=uri)
    return record


def _finished_record(record: dict[str, Any]) -> Progress | None:
    """A record of a job that was complete when collected (Gemini labels within the step):
    its progress is final, and no provider needs asking (nor credentials)."""
    progress = record.get("progress")
    if record.get("complete") is True and isinstance(progress, dict):
        return Progress(int(progress.get("labeled", 0)), int(progress.get("total", 0)))
    return None


def _job(args: argparse.Namespace) -> tuple[LabelingProvider, Job]:
    options = _options(args.options)
    for key in JOB_OPTIONS:
        options.pop(key, None)
    provider = get_provider(args.provider, options)
    if args.job:
        record = _record(args.job, args.provider)
        fields = ("provider", "key", "external_id", "items", "labelers_per_item")
        missing = [k for k in fields if k not in record]
        if missing:
            raise InputError(f"the job record lacks {', '.join(missing)}", source=args.job)
        return provider, Job(**{k: record[k] for k in fields})
    if not (args.items and args.task_type and args.labels):
        raise InputError("give --job, or --items with --task-type and --labels")
    from labelloop.stages.generate_import_file import read_import_file

    items, bad = read_import_file(args.items)
    if bad:
        print(summarize_bad_records(bad), file=sys.stderr)  # noqa: T201 - CLI output
    task = LabelingTask(TaskType.parse(args.task_type), tuple(parse_labels(args.labels)))
    return provider, provider.submit(items, task, labelers_per_item=args.labelers_per_item)


def watch(
    provider: LabelingProvider,
    job: Job,
    *,
    timeout: float,
    interval: float,
    out: IO[str],
    sleep: Callable[[float], None] = time.sleep,
) -> Progress:
    """Poll until the job is done or `timeout` seconds passed, drawing a progress bar."""
    waited = 0.0
    tty = out.isatty()
    while True:
        progress = provider.progress(job)
        line = progress_bar(progress)
        out.write(f"\r{line}" if tty else f"{line}\n")
        out.flush()
        if progress.done or waited >= timeout:
            break
        step = min(interval, timeout - waited)
        sleep(step)
        waited += step
    if tty:
        out.write("\n")
    return progress


def cmd_status(args: argparse.Namespace) -> int:
    record = _record(args.job, args.provider) if args.job else {}
    final = _finished_record(record)
    if final is not None:
        fields = ("provider", "key", "external_id")
        job_fields: dict[str, Any] = {k: record.get(k, "") for k in fields}
        progress = final
        if args.watch:
            sys.stderr.write(progress_bar(progress) + "\n")
    else:
        provider, job = _job(args)
        job_fields = {"provider": job.provider, "key": job.key, "external_id": job.external_id}
        if args.watch:
            progress = watch(
                provider, job, timeout=args.timeout, interval=args.interval, out=sys.stderr
            )
        else:
            progress = provider.progress(job)
    print(  # noqa: T201 - the command's output
        json.dumps(
            {
                **job_fields,
                "labeled": progress.labeled,
                "total": progress.total,
                "done": progress.done,
            }
        )
    )
    if args.watch and not progress.done:
        sys.stderr.write(
            f"error: the job is unfinished after {args.timeout:g} s"
            f" ({progress.labeled}/{progress.total} items labeled)\n"
        )
        return EXIT_UNFINISHED
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    provider, job = _job(args)
    progress = watch(provider, job, timeout=args.wait, interval=args.interval, out=sys.stderr)
    collected = provider.collect(job)
    task_type = TaskType.parse(args.task_type) if args.task_type else None
    if task_type is None:
        raise InputError("--task-type is needed to write the annotations")
    count = write_annotations(args.out, collected.annotations, task_type)
    if args.rejects:
        write_bad_records(args.rejects, collected.bad)
    print(  # noqa: T201 - the command's output
        f"{count} annotation(s) for {len({a.item for a in collected.annotations})} item(s) "
        f"from {len({a.annotator for a in collected.annotations})} annotator(s); "
        f"{progress.labeled}/{progress.total} items complete; {collected.skipped} skipped; "
        f"{summarize_bad_records(collected.bad)}"
    )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    mapping: dict[str, str] = {}
    if args.annotator_map:
        import csv

        for row in csv.DictReader(storage.read_text(args.annotator_map).splitlines()):
            mapping[row["source"]] = row["annotator"]
    task_type = TaskType.parse(args.task_type)
    read, skipped = read_any(
        args.uri,
        task_type=task_type,
        labels=parse_labels(args.labels),
        file_format=args.format,
        annotator_map=mapping,
    )
    annotations = read.annotations
    bad = list(read.bad)
    if args.items:
        from labelloop.errors import BadRecord
        from labelloop.stages.generate_import_file import read_import_file

        known = {i.id for i in read_import_file(args.items)[0]}
        bad += [
            BadRecord(args.uri, 0, "item", f"{a.item}: not in {args.items}")
            for a in annotations
            if a.item not in known
        ]
        annotations = [a for a in annotations if a.item in known]
    count = write_annotations(args.out, annotations, task_type)
    if args.rejects:
        write_bad_records(args.rejects, bad)
    print(  # noqa: T201 - the command's output
        f"{count} annotation(s) written to {args.out}; {skipped} skipped; "
        f"{summarize_bad_records(bad)}"
    )
    return 0


def _job_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--provider",
        required=True,
        help="the provider that runs the job: simulated, label_studio, gemini, gemini_then_human",
    )
    parser.add_argument(
        "--options", default="{}", help="provider options as JSON, or @file.json (no secrets)"
    )
    parser.add_argument("--job", help="the job record the pipeline wrote (job.json)")
    parser.add_argument("--items", help="the items (import JSONL), to find the job by its key")
    parser.add_argument("--task-type", help="task type (with --items; needed by collect)")
    parser.add_argument("--labels", help="label set, comma-separated (with --items)")
    parser.add_argument(
        "--labelers-per-item", type=int, default=3, help="annotators per item (with --items)"
    )
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between polls")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `label status|collect` and `import-annotations`."""
    label = subparsers.add_parser(
        "label",
        help="follow and collect labeling jobs",
        description="Follow a labeling job (status) or write its annotations (collect). The job"
        " comes from the pipeline's job record (--job job.json) or from the items it was made"
        " for (--items, --task-type, --labels).",
    )
    sub = label.add_subparsers(dest="label_command", required=True, metavar="ACTION")

    status = sub.add_parser(
        "status",
        help="how far a labeling job is",
        description="Print how far a labeling job is, as one JSON line on stdout. With --watch,"
        " poll with a progress bar on stderr until the job is done or --timeout passes; exit"
        " code 1 when it is still unfinished then.",
    )
    _job_arguments(status)
    status.add_argument("--watch", action="store_true", help="poll with a progress bar")
    status.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds to watch before giving up (exit 1)"
    )
    status.set_defaults(func=cmd_status)

    collect = sub.add_parser(
        "collect",
        help="write a job's annotations (long format)",
        description="Write every annotation a labeling job has so far, one (item, annotator,"
        " label) row per line, waiting up to --wait seconds for the job to finish first.",
    )
    _job_arguments(collect)
    collect.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the job")
    collect.add_argument("--out", required=True, help="annotations JSONL to write")
    collect.add_argument("--rejects", help="where to write unusable records (JSONL)")
    collect.set_defaults(func=cmd_collect)

    imp = subparsers.add_parser(
        "import-annotations",
        help="convert annotations from another tool to the long format",
        description="Convert a Label Studio export, a Vertex AI dataset export or a CSV/JSONL"
        " file to labelloop's long format (item, annotator, label); unusable records are"
        " counted and, with --rejects, written out.",
    )
    imp.add_argument("uri", help="Label Studio export, Vertex export JSONL, or CSV/JSONL")
    imp.add_argument(
        "--format", default="auto", choices=FORMATS, help="input format; auto reads the file"
    )
    imp.add_argument("--task-type", required=True, help="task type the annotations are for")
    imp.add_argument("--labels", required=True, help="label set, comma-separated")
    imp.add_argument("--annotator-map", help="CSV with source,annotator columns")
    imp.add_argument("--items", help="keep only these items (import JSONL); others reported")
    imp.add_argument("--out", required=True, help="annotations JSONL to write")
    imp.add_argument("--rejects", help="where to write rejected records (JSONL)")
    imp.set_defaults(func=cmd_import)
