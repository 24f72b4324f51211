"""Stage 4: send the dataset's items to a labeling provider and collect long-format annotations.

The step is safe to retry: providers derive a deterministic job key from the task and the
items, so a second run finds the job the first one created (no duplicate project or tasks)
and collects everything labeled so far. It either waits up to `wait_seconds` (a provider
option, default 0) for the job to finish, or returns the partial labels at once and lets the
count gate decide; a scheduled pipeline picks up the rest on its next run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable

from labelloop import storage
from labelloop.annotations import write_annotations, write_bad_records
from labelloop.errors import InputError
from labelloop.options import parse_options
from labelloop.providers import LabelingTask, get_provider
from labelloop.providers.registry import JOB_OPTIONS, JobOptions
from labelloop.schemas import TaskType, parse_labels
from labelloop.stages.generate_import_file import read_import_file

log = logging.getLogger(__name__)

# Options the step reads itself; they are not passed on to the provider.


@dataclasses.dataclass(frozen=True)
class LabelingResult:
    """What came back from the provider."""

    job_key: str
    items: int
    labeled_items: int
    annotations: int
    annotators: int
    bad_records: int
    complete: bool = True
    skipped: int = 0
    waited_seconds: float = 0.0


def run_labeling_job(
    *,
    items_uri: str,
    task_type: str,
    labels: str,
    provider: str,
    provider_options: str,
    labelers_per_item: int,
    annotations_uri: str,
    job_uri: str,
    rejects_uri: str,
    sleep: Callable[[float], None] = time.sleep,
) -> LabelingResult:
    """Submit the items, collect every annotation, write them in long format.

    Args:
        items_uri: The dataset's items (Vertex import JSONL).
        task_type: A `TaskType` value.
        labels: The label set, comma-separated.
        provider: Provider name (`simulated`, ...).
        provider_options: The provider's options as a JSON object (no secrets). The step
            itself reads `wait_seconds` (how long to wait for the job to finish; 0 collects
            what is there now), `poll_seconds` (default 30) and `instructions` (shown to
            annotators).
        labelers_per_item: How many different annotators label each item.
        annotations_uri: Where to write the annotations (JSONL, long format).
        job_uri: Where to write the job record (JSON: provider, key, external id).
        rejects_uri: Where to write records the provider returned but could not be used.
        sleep: How to wait between polls (tests pass a fake clock).
    """
    task = LabelingTask(TaskType.parse(task_type), tuple(parse_labels(labels)))
    try:
        options = json.loads(provider_options or "{}")
    except json.JSONDecodeError:
        raise InputError("not a JSON object", field="provider_options") from None
    if not isinstance(options, dict):
        raise InputError("not a JSON object", field="provider_options")
    job_options = parse_options(
        JobOptions, {k: v for k, v in options.items() if k in JOB_OPTIONS}, field="provider_options"
    )
    wait_seconds, poll_seconds = job_options.wait_seconds, job_options.poll_seconds
    instructions = job_options.instructions
    provider_opts = {k: v for k, v in options.items() if k not in JOB_OPTIONS}
    items, bad_items = read_import_file(items_uri)
    labeler = get_provider(provider, provider_opts)
    job = labeler.submit(
        items, task, labelers_per_item=labelers_per_item, instructions=instructions
    )
    progress = labeler.progress(job)
    waited = 0.0
    while not progress.done and waited < wait_seconds:
        step = min(poll_seconds, wait_seconds - waited)
        log.info(
            "labeling: %d/%d items done; waiting %.0f s", progress.labeled, progress.total, step
        )
        sleep(step)
        waited += step
        progress = labeler.progress(job)
    if not progress.done:
        log.warning(
            "labeling job %s incomplete (%d/%d items); collecting partial labels",
            job.key,
            progress.labeled,
            progress.total,
        )
    collected = labeler.collect(job)
    write_annotations(annotations_uri, collected.annotations, task.task_type)
    bad = bad_items + collected.bad
    write_bad_records(rejects_uri, bad)
    record = {
        **job.to_json(),
        "progress": {"labeled": progress.labeled, "total": progress.total},
        "complete": progress.done,
        "skipped": collected.skipped,
    }
    summary = getattr(labeler, "summary", None)
    if callable(summary):
        # Calibration, usage and cost (Gemini), kept with the job for the report.
        record["provider_summary"] = summary()
    storage.write_text(job_uri, json.dumps(record, indent=2, sort_keys=True))
    result = LabelingResult(
        job_key=job.key,
        items=len(items),
        labeled_items=len({a.item for a in collected.annotations}),
        annotations=len(collected.annotations),
        annotators=len({a.annotator for a in collected.annotations}),
        bad_records=len(bad),
        complete=progress.done,
        skipped=collected.skipped,
        waited_seconds=waited,
    )
    log.info("labeling: %s", result)
    return result
