"""Stage 4: send the dataset's items to a labeling provider and collect long-format annotations."""

from __future__ import annotations

import dataclasses
import json
import logging

from labelloop import storage
from labelloop.annotations import write_annotations, write_bad_records
from labelloop.errors import InputError
from labelloop.providers.base import LabelingTask, get_provider
from labelloop.schemas import TaskType, parse_labels
from labelloop.stages.generate_import_file import read_import_file

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LabelingResult:
    """What came back from the provider."""

    job_key: str
    items: int
    labeled_items: int
    annotations: int
    annotators: int
    bad_records: int


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
) -> LabelingResult:
    """Submit the items, collect every annotation, write them in long format.

    Args:
        items_uri: The dataset's items (Vertex import JSONL).
        task_type: A `TaskType` value.
        labels: The label set, comma-separated.
        provider: Provider name (`simulated`, ...).
        provider_options: The provider's options as a JSON object (no secrets).
        labelers_per_item: How many different annotators label each item.
        annotations_uri: Where to write the annotations (JSONL, long format).
        job_uri: Where to write the job record (JSON: provider, key, external id).
        rejects_uri: Where to write records the provider returned but could not be used.
    """
    task = LabelingTask(TaskType.parse(task_type), tuple(parse_labels(labels)))
    try:
        options = json.loads(provider_options or "{}")
    except json.JSONDecodeError:
        raise InputError("not a JSON object", field="provider_options") from None
    items, bad_items = read_import_file(items_uri)
    labeler = get_provider(provider, options)
    job = labeler.submit(items, task, labelers_per_item=labelers_per_item)
    collected = labeler.collect(job)
    write_annotations(annotations_uri, collected.annotations, task.task_type)
    bad = bad_items + collected.bad
    write_bad_records(rejects_uri, bad)
    storage.write_text(job_uri, json.dumps(job.to_json(), indent=2, sort_keys=True))
    result = LabelingResult(
        job_key=job.key,
        items=len(items),
        labeled_items=len({a.item for a in collected.annotations}),
        annotations=len(collected.annotations),
        annotators=len({a.annotator for a in collected.annotations}),
        bad_records=len(bad),
    )
    log.info("labeling: %s", result)
    return result
