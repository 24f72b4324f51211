"""Label Studio review projects: the quality step's review queue as a project of its own.

Each task shows the item, a note with the consolidated label and its confidence, every answer
(model and flagged answers marked) and why the item needs a person, and is pre-filled with the
consolidated label as a prediction (`model_version` `labelloop-consolidated`), so a reviewer
accepts it with one key or picks another label. One reviewer per task. The project is found
again by the review key in its description: pushing the same review file twice creates
nothing new and imports only the tasks it lacks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from labelloop.errors import ProviderError
from labelloop.providers.base import CollectResult, Job, LabelingTask, review_note
from labelloop.providers.label_studio_format import (
    KEY_IN_TITLE,
    TITLE_MAX,
    dataset_name,
    instructions_html,
    labeling_config,
)
from labelloop.schemas import AnnotationValue, AnnotatorKind, Item, Shape, TaskType


class LabelStudioProvider(Protocol):
    """What a review project needs of the Label Studio provider (`providers.label_studio`):
    its client and its project, file and task helpers. A protocol, so this module does not
    import the provider that calls it."""

    name: str
    client: Any
    dataset: str
    _last: dict[str, Any]

    def project_url(self, project_id: int | str) -> str: ...
    def _find_project(self, key: str) -> tuple[int, str] | None: ...
    def _check_files(self, items: Sequence[Item], task_type: TaskType) -> None: ...
    def _small_images(self, items: Sequence[Item]) -> bool: ...
    def _present_items(self, project_id: int, task_type: TaskType) -> set[str]: ...
    def _task_record(
        self, item: Item, task: LabelingTask, predictions: Mapping[str, Any] | None
    ) -> dict[str, Any]: ...
    def _connect_storages(
        self, project_id: int, items: Sequence[Item], task_type: TaskType
    ) -> None: ...
    def _read(self, job: Job, task: LabelingTask | None = None) -> tuple[Any, list[dict]]: ...


log = logging.getLogger(__name__)

MODEL_VERSION = "labelloop-consolidated"
NOTE_FIELD = "review"


def review_title(dataset: str, day: str, key: str) -> str:
    """`review · digits/images · 2026-11-29 · 3f9a2c1b`, shortened to Label Studio's limit."""
    tail = f" · {day} · {key[:KEY_IN_TITLE]}"
    head = f"review · {dataset}"
    room = TITLE_MAX - len(tail)
    return (head if len(head) <= room else head[: room - 1] + "…") + tail


def review_instructions(labels: Sequence[str]) -> str:
    return (
        "Review: the label below is what the answers consolidated to, pre-selected. Keep it if"
        f" it is right, else choose the right one ({', '.join(labels)}), and submit. The note"
        " says who answered what and why the item was sent for review."
    )


def review_config(task: LabelingTask, *, small_images: bool) -> str:
    """The labeling config with the review note between the instructions and the item."""
    header = f"<Header value={_quote(review_instructions(task.labels))}/>"
    note = f'<Text name="{NOTE_FIELD}" value="${NOTE_FIELD}"/>'
    body = labeling_config(task.task_type, task.labels, small_images=small_images)
    return f"<View>{header}{note}{body.removeprefix('<View>')}"


def _quote(text: str) -> str:
    from xml.sax.saxutils import quoteattr

    return quoteattr(text)


def _prediction(row: Mapping[str, Any], task: LabelingTask) -> tuple[AnnotationValue, float] | None:
    """The consolidated label as a pre-annotation (classification; None without a label)."""
    label, confidence = row.get("label"), row.get("confidence")
    score = float(confidence) if isinstance(confidence, int | float) else 0.0
    if task.task_type.shape is Shape.SINGLE and isinstance(label, str) and label in task.labels:
        return label, score
    if task.task_type.shape is Shape.MULTI and isinstance(label, list | tuple):
        return frozenset(str(v) for v in label if str(v) in task.labels), score
    return None


def submit_review(
    provider: LabelStudioProvider,
    rows: Sequence[Mapping[str, Any]],
    items: Sequence[Item],
    task: LabelingTask,
    *,
    key: str,
) -> Job:
    """Create (or find) the review project and import the review rows it lacks."""
    found = provider._find_project(key)
    if found is None:
        provider._check_files(items, task.task_type)
        dataset = provider.dataset or dataset_name(items)
        title = review_title(dataset, dt.date.today().isoformat(), key)
        created = provider.client.projects.create(
            title=title,
            description=f"{len(rows)} item(s) to review. labelloop review {key}",
            label_config=review_config(
                task, small_images=task.task_type.is_image and provider._small_images(items)
            ),
            expert_instruction=instructions_html(review_instructions(task.labels)),
            show_instruction=True,
            maximum_annotations=1,
            show_skip_button=True,
            model_version=MODEL_VERSION,
        )
        if created.id is None:
            raise ProviderError("Label Studio created a project without an id")
        project_id = int(created.id)
        log.info("created Label Studio review project %s (%s)", project_id, title)
    else:
        project_id, title = found
        log.info("reusing Label Studio review project %s (%s)", project_id, title)
    present = provider._present_items(project_id, task.task_type)
    missing = [(r, i) for r, i in zip(rows, items, strict=True) if i.id not in present]
    if missing:
        records = []
        for row, item in missing:
            predicted = _prediction(row, task)
            record = provider._task_record(item, task, {item.id: predicted} if predicted else None)
            for prediction in record.get("predictions", []):
                prediction["model_version"] = MODEL_VERSION
            record["data"][NOTE_FIELD] = review_note(row)
            record["data"]["consolidated_label"] = row.get("label")
            record["data"]["confidence"] = row.get("confidence")
            record["data"]["expected_error"] = row.get("expected_error")
            records.append(record)
        provider._connect_storages(project_id, [i for _, i in missing], task.task_type)
        batch: Any = records
        provider.client.projects.import_tasks(project_id, request=batch)
    log.info("review: %d task(s) imported, %d already present", len(missing), len(present))
    provider._last = {"title": title, "url": provider.project_url(project_id)}
    return Job(provider.name, key, str(project_id), len(rows), 1)


def collect_review(provider: LabelStudioProvider, job: Job) -> CollectResult:
    """The reviewers' answers, as `expert` annotations."""
    read, _ = provider._read(job)
    answers = [
        dataclasses.replace(a, annotator_kind=AnnotatorKind.EXPERT) for a in read.annotations
    ]
    return CollectResult(answers, read.bad, skipped=read.skipped)
