"""Review projects: the quality step's review queue sent to people, their corrections brought back.

The quality step writes the review file (items likeliest to be wrong first, each with the
consolidated label, its confidence, every answer and why it needs a person). `push` sends it to
a provider that hosts review projects (`providers.base.ReviewProvider`; Label Studio makes a
project whose tasks show the answers and reasons, pre-filled with the consolidated label as a
prediction), and records the review job in the state. `pull` collects the reviewers' answers
into the state as `expert` annotations; the pipeline's reconcile step pulls too, so the next
quality step sees them: a reviewer's answer decides its item (`quality.classification`).

State (each file written whole under a deterministic name, so a retry overwrites):

    review/jobs/<key>.json       the review job: provider, its options (no secrets), project id,
                                 task, the pushed review rows
    review/answers/<key>.jsonl   the reviewers' answers so far (annotator_kind `expert`)

The key is a hash of the task and the pushed (item, consolidated label) pairs: pushing the same
review file again finds the same project and adds nothing twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from labelloop import state, storage
from labelloop.errors import BadRecord, InputError, summarize_bad_records
from labelloop.providers.base import Job, LabelingTask, ReviewProvider
from labelloop.schemas import Annotation, AnnotatorKind, Item, TaskType, annotator_kind_of

log = logging.getLogger(__name__)

JOBS = "review/jobs"
ANSWERS = "review/answers"


def review_key(provider: str, rows: Sequence[Mapping[str, Any]], task: LabelingTask) -> str:
    """A deterministic key for a review job (same rows and task: same key)."""
    payload = json.dumps(
        {
            "review": provider,
            "task_type": task.task_type.value,
            "labels": list(task.labels),
            "rows": sorted([str(r["item"]), str(r.get("label"))] for r in rows),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def read_review_file(uri: str, *, top: int = 0) -> list[dict[str, Any]]:
    """Review rows, likeliest errors first (the first `top` when `top` > 0).

    Raises:
        InputError: The file is missing, or no row names an item.
    """
    if not storage.exists(uri):
        raise InputError("review file does not exist", source=uri)
    parsed, bad = storage.read_jsonl_objects(uri)
    rows = []
    for line, row in parsed:
        if not str(row.get("item") or "").strip():
            bad.append(BadRecord(uri, line, "item", "missing or empty"))
            continue
        rows.append(row)
    if bad:
        log.warning("review file: %s", summarize_bad_records(bad))
    if not rows:
        raise InputError("no review row with an item", source=uri)
    rows.sort(key=lambda r: (-float(r.get("expected_error") or 0.0), str(r["item"])))
    return rows[:top] if top > 0 else rows


def items_for(
    rows: Sequence[Mapping[str, Any]], state_uri: str = "", items_uri: str = ""
) -> list[Item]:
    """The items of review rows: from an import file, else the ledger, else the id as the URI."""
    known: dict[str, Item] = {}
    if items_uri:
        from labelloop.items import read_import_file

        found, bad = read_import_file(items_uri)
        if bad:
            log.warning("%s: %s", items_uri, summarize_bad_records(bad))
        known = {i.id: i for i in found}
    elif state_uri:
        from labelloop.ledger import Ledger

        for item_id, entry in Ledger.load(state_uri).state.items.items():
            record = entry.get("record")
            if record:
                known[item_id] = Item.from_import_record(record)
    out = []
    for row in rows:
        item_id = str(row["item"])
        if item_id in known:
            out.append(known[item_id])
        elif item_id.startswith("text:"):
            raise InputError(
                f"{item_id}: inline text is not in the review file; give --items (the import "
                "file) or --state",
                field="items",
            )
        else:
            out.append(Item(id=item_id, uri=item_id))
    return out


@dataclasses.dataclass(frozen=True)
class Pushed:
    """A review job at a provider: its key, the provider's id, where people open it."""

    job: Job
    url: str
    items: int


def push(
    provider: ReviewProvider,
    rows: Sequence[Mapping[str, Any]],
    items: Sequence[Item],
    task: LabelingTask,
    *,
    state_uri: str = "",
    options: Mapping[str, Any] | None = None,
) -> Pushed:
    """Create (or find) the review project for these rows and record it in the state.

    Args:
        provider: A provider with review projects (see `providers.registry.get_reviewer`).
        rows: Review rows (`item`, `label`, `confidence`, `annotations`, `reasons`, ...).
        items: The rows' items, in the same order.
        task: Task type and label set.
        state_uri: The loop's state; the job is recorded there so `pull` (and the next run's
            reconcile step) collects its answers. "" records nothing.
        options: The provider's options as given (no secrets), kept with the job record.
    """
    key = review_key(provider.name, rows, task)
    job = provider.submit_review(rows, items, task, key=key)
    url = str(getattr(provider, "project_url", lambda _id: "")(job.external_id) or "")
    if state_uri:
        record = {
            **job.to_json(),
            "task_type": task.task_type.value,
            "labels": list(task.labels),
            "options": dict(options or {}),
            "url": url,
            "rows": [dict(r) for r in rows],
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        uri = state.path(state_uri, JOBS, f"{key}.json")
        if storage.exists(uri):  # a retry: keep when it was first pushed
            record["created_at"] = json.loads(storage.read_text(uri)).get("created_at", "")
        storage.write_text(uri, json.dumps(record, indent=1, sort_keys=True))
    log.info("review job %s: %d item(s) at %s %s", key, len(rows), provider.name, url)
    return Pushed(job, url, len(rows))


def jobs(state_uri: str) -> list[dict[str, Any]]:
    """Every recorded review job (oldest first)."""
    folder = state.path(state_uri, JOBS)
    if not state_uri or (not storage.is_gcs(folder) and not storage.local_path(folder).is_dir()):
        return []
    out = [
        json.loads(storage.read_text(u)) for u in storage.iter_files(folder, suffixes=(".json",))
    ]
    return sorted(out, key=lambda r: (str(r.get("created_at", "")), str(r.get("key", ""))))


def job_of(record: Mapping[str, Any]) -> Job:
    return Job(
        str(record["provider"]),
        str(record["key"]),
        str(record.get("external_id") or ""),
        int(record.get("items") or 0),
        int(record.get("labelers_per_item") or 1),
    )


def pull(
    state_uri: str,
    reviewer_for: Any,
) -> dict[str, int]:
    """Collect every recorded review job's answers into the state (`expert` annotations).

    Args:
        state_uri: The loop's state.
        reviewer_for: `(record) -> ReviewProvider | None`: the provider to ask for a job (None
            skips the job, e.g. another provider's without credentials here).

    Returns:
        Answers collected per review job key. A job whose provider cannot be reached (or
        built here) keeps its earlier answers and is logged, not raised: the run goes on.
    """
    counts: dict[str, int] = {}
    for record in jobs(state_uri):
        key = str(record["key"])
        pushed = {str(r["item"]) for r in record.get("rows") or []}
        try:
            provider = reviewer_for(record)
            if provider is None:
                continue
            got = provider.collect_review(job_of(record), sorted(pushed))
        except Exception as exc:
            log.warning("review job %s at %s not collected: %s", key, record.get("provider"), exc)
            continue
        if got.bad:
            log.warning("review job %s: %s", key, summarize_bad_records(got.bad))
        task_type = TaskType.parse(str(record["task_type"]))
        rows = [
            {**dataclasses.replace(a, annotator_kind=AnnotatorKind.EXPERT).to_json(task_type),
             "review_job": key}
            for a in got.annotations
            if a.item in pushed
        ]  # fmt: skip
        storage.write_jsonl(state.path(state_uri, ANSWERS, f"{key}.jsonl"), rows)
        counts[key] = len(rows)
    return counts


def expert_answers(state_uri: str) -> list[dict[str, Any]]:
    """Every reviewer answer collected so far, with the earlier answers of its item.

    Returns:
        Rows `item`, `annotator`, `annotator_kind` (`expert`), the value (`label`, ...), and
        `earlier`: the answers the item had when it was pushed (from the review job).
    """
    if not state_uri:
        return []
    earlier: dict[str, list[dict[str, Any]]] = {}
    for record in jobs(state_uri):
        for row in record.get("rows") or []:
            given = [a for a in row.get("annotations") or [] if isinstance(a, Mapping)]
            earlier[str(row["item"])] = [dict(a) for a in given]
    folder = state.path(state_uri, ANSWERS)
    if not storage.is_gcs(folder) and not storage.local_path(folder).is_dir():
        return []
    out = []
    for uri in storage.iter_files(folder, suffixes=(".jsonl",)):
        parsed, bad = storage.read_jsonl_objects(uri)
        if bad:
            log.warning("review answers: %s", summarize_bad_records(bad))
        for _, row in parsed:
            out.append({**row, "earlier": earlier.get(str(row.get("item")), [])})
    return out


def answers_for_round(
    state_uri: str, round_items: set[str], consolidated: Mapping[str, Mapping[str, Any]]
) -> list[Annotation]:
    """The reviewer answers a quality step adds: those on its own items, and those on earlier
    items whose latest consolidated label does not reflect them yet (with the item's earlier
    answers, so the item is consolidated again, with the correction deciding it).

    Args:
        state_uri: The loop's state.
        round_items: The items this quality step labels.
        consolidated: The latest consolidated row of every earlier item, by item.
    """
    out: list[Annotation] = []
    for row in expert_answers(state_uri):
        item = str(row["item"])
        label = row.get("label")
        if not isinstance(label, str):
            continue  # review projects carry single-label corrections
        latest = consolidated.get(item) or {}
        settled = (
            row["annotator"] in (latest.get("reviewed_by") or []) and latest.get("label") == label
        )
        if item not in round_items and settled:
            continue
        out.append(Annotation(item, str(row["annotator"]), label, AnnotatorKind.EXPERT))
        if item not in round_items:
            for a in row["earlier"]:
                out.append(
                    Annotation(item, str(a["annotator"]), str(a["label"]), annotator_kind_of(a))
                )
    # One answer per (item, annotator): the first (a reviewer's correction comes first).
    seen: set[tuple[str, str]] = set()
    unique = []
    for a in out:
        if (a.item, a.annotator) not in seen:
            seen.add((a.item, a.annotator))
            unique.append(a)
    return unique
