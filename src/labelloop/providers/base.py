"""The provider interface every labeling source implements.

`submit` is idempotent: the job key is derived from the task and the items, so a retried
pipeline task finds the job it already created instead of creating a second one. Credentials
never come in through these arguments; providers read them from the environment or Secret
Manager themselves.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from labelloop.errors import BadRecord, ProviderError
from labelloop.schemas import Annotation, Item, TaskType


@dataclasses.dataclass(frozen=True)
class LabelingTask:
    """What to label and how."""

    task_type: TaskType
    labels: tuple[str, ...]
    instructions: str = ""


@dataclasses.dataclass(frozen=True)
class Job:
    """A labeling job at a provider. `key` is deterministic; `external_id` is the provider's."""

    provider: str
    key: str
    external_id: str
    items: int
    labelers_per_item: int
    # Collections made before this one (the ledger counts them; the simulated workforce's
    # `pace` uses it, other providers ignore it).
    collections: int = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Progress:
    """How far a job is: items with all their labels, out of all items."""

    labeled: int
    total: int

    @property
    def done(self) -> bool:
        return self.labeled >= self.total


@dataclasses.dataclass(frozen=True)
class CollectResult:
    """Annotations collected so far, the provider records that could not be used, and how
    many answers were skipped on purpose (cancelled/skipped tasks in a labeling tool)."""

    annotations: list[Annotation]
    bad: list[BadRecord]
    skipped: int = 0


class JobGone(ProviderError):
    """The provider no longer has the job (deleted or cancelled there)."""


class LabelingProvider(Protocol):
    """Where labels come from."""

    name: str

    def submit(
        self,
        items: Sequence[Item],
        task: LabelingTask,
        *,
        labelers_per_item: int,
        instructions: str = "",
    ) -> Job:
        """Create (or find) the job for these items; never creates a duplicate."""
        ...

    def progress(self, job: Job) -> Progress:
        """Labeled items out of the total."""
        ...

    def collect(self, job: Job) -> CollectResult:
        """Long-format annotations collected so far, with annotator ids."""
        ...

    def cancel(self, job: Job) -> None:
        """Stop the job; collected annotations stay."""
        ...


class ReviewProvider(Protocol):
    """A provider that hosts review projects: people check the items the quality step flagged.

    A review task shows the consolidated label (pre-filled as a prediction), its confidence,
    every answer and why the item needs a person; one reviewer answers it. Implementations
    register like any provider; `registry.get_reviewer` checks for these methods.
    """

    name: str

    def submit_review(
        self,
        rows: Sequence[Mapping[str, Any]],
        items: Sequence[Item],
        task: LabelingTask,
        *,
        key: str,
    ) -> Job:
        """Create (or find, by `key`) the review project and add the rows it lacks."""
        ...

    def collect_review(self, job: Job, items: Sequence[str]) -> CollectResult:
        """The reviewers' answers so far on `items` (one per item and reviewer), with
        `annotator_kind` `expert`."""
        ...


def review_note(row: Mapping[str, Any]) -> str:
    """What a reviewer reads above the item: the consolidated label, the answers and why."""
    label = row.get("label")
    confidence = row.get("confidence")
    head = (
        f"Consolidated: {label} (confidence {float(confidence):.2f})"
        if label is not None and isinstance(confidence, int | float)
        else "Consolidated: none (a tie or no usable answer)"
    )
    answers = []
    for a in row.get("annotations") or []:
        if not isinstance(a, Mapping):
            continue
        tags = [t for t in (_kind_word(a), "flagged" if a.get("flagged") else "") if t]
        answers.append(
            f"{a.get('annotator')}: {a.get('label')}" + (f" ({', '.join(tags)})" if tags else "")
        )
    reasons = row.get("reasons") or ([row["reason"]] if row.get("reason") else [])
    parts = [head]
    if answers:
        parts.append("Answers: " + "; ".join(answers))
    if reasons:
        parts.append("Why: " + "; ".join(str(r) for r in reasons))
    return " · ".join(parts)


def _kind_word(answer: Mapping[str, Any]) -> str:
    kind = answer.get("annotator_kind") or answer.get("source")
    return "" if kind in (None, "human", "person") else str(kind)


def hosts_review(provider: object) -> bool:
    """Whether a provider implements `ReviewProvider`."""
    return all(callable(getattr(provider, m, None)) for m in ("submit_review", "collect_review"))


def resume(provider: LabelingProvider, job: Job, items: Sequence[Item], task: LabelingTask) -> Job:
    """Pick up a job an earlier run created (or meant to create), from its ledger record.

    Providers with a `resume` method reattach without side effects beyond adding items the job
    lacks; for the others `submit` is idempotent (the same items give the same key).
    """
    method = getattr(provider, "resume", None)
    if callable(method):
        resumed: Job = method(job, items, task)
        return resumed
    got = provider.submit(items, task, labelers_per_item=job.labelers_per_item)
    return dataclasses.replace(got, collections=job.collections)


def tops_up_in_place(provider: LabelingProvider) -> bool:
    """Whether new items can join an open job (same Label Studio project) instead of a new one."""
    return callable(getattr(provider, "top_up", None))


def job_key(
    provider: str, items: Sequence[Item], task: LabelingTask, labelers_per_item: int
) -> str:
    """A deterministic job key: same provider, task and items give the same key."""
    payload = json.dumps(
        {
            "provider": provider,
            "task_type": task.task_type.value,
            "labels": list(task.labels),
            "labelers_per_item": labelers_per_item,
            "items": sorted(i.id for i in items),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]
