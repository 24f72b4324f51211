"""Stage 0 of every run: reconcile the ledger with the labeling providers.

For every open job: collect what people did since the last run (items with all their labels
become `labeled`; partial answers are kept), close the finished ones, and close those that were
cancelled or are older than `max_job_age_hours`, keeping their answers and returning the items
nobody answered to the pool. A provider that cannot be reached leaves its job open (counted and
reported); the run goes on. Nothing waits for people.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

from labelloop import lease, storage
from labelloop.errors import BadRecord, InputError
from labelloop.ledger import QUEUED, Ledger, age_hours, annotation_keys_digest
from labelloop.providers import get_provider
from labelloop.providers.base import Job, JobGone, LabelingProvider, LabelingTask, resume
from labelloop.providers.registry import JOB_OPTIONS
from labelloop.schemas import Item, TaskType

log = logging.getLogger(__name__)


def provider_options_object(provider_options: str) -> dict[str, Any]:
    """The provider options JSON object."""
    try:
        options = json.loads(provider_options or "{}")
    except json.JSONDecodeError:
        raise InputError("not a JSON object", field="provider_options") from None
    if not isinstance(options, dict):
        raise InputError("not a JSON object", field="provider_options")
    return options


def provider_only(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k not in JOB_OPTIONS}


def task_of(rec: Mapping[str, Any]) -> LabelingTask:
    return LabelingTask(TaskType.parse(rec["task_type"]), tuple(rec["labels"]))


def job_of(rec: Mapping[str, Any]) -> Job:
    return Job(
        rec["provider"],
        rec["key"],
        rec.get("external_id") or "",
        len(rec["items"]),
        int(rec["labelers_per_item"]),
        collections=int(rec.get("collections", 0)),
    )


def items_of(ledger: Ledger, rec: Mapping[str, Any]) -> list[Item]:
    out = []
    for item_id in rec["items"]:
        record = ledger.state.items[item_id].get("record")
        out.append(Item.from_import_record(record) if record else Item(id=item_id, uri=item_id))
    return out


@dataclasses.dataclass
class Collected:
    """What one collection found."""

    annotations: int = 0
    new_annotations: int = 0
    labeled: int = 0
    closed: str = ""
    returned: int = 0
    skipped: int = 0
    bad: list[BadRecord] = dataclasses.field(default_factory=list)


def collect_job(
    ledger: Ledger,
    labeler: LabelingProvider,
    job: Job,
    *,
    run: str,
    key: str = "",
    close_reason: str = "",
) -> Collected:
    """Collect a job's annotations into the ledger; close it when done or when asked to.

    Items with all `labelers_per_item` answers become labeled; a closing job also labels the
    items with at least one answer and returns the unanswered ones to the pool. `key` is the
    ledger's job key when the provider's own differs.
    """
    key = key or job.key
    rec = ledger.state.jobs[key]
    task = task_of(rec)
    progress = labeler.progress(job)
    got = labeler.collect(job)
    members = set(rec["items"])
    # Seconds per answer where the provider reports them (Label Studio's lead_time): people
    # paid by the hour are priced from them (`labelloop.accounting`).
    work = getattr(labeler, "work_seconds", None)
    seconds: Mapping[tuple[str, str], float] = work(job) if callable(work) else {}
    rows = [
        {
            **a.to_json(task.task_type),
            **(
                {"seconds": round(seconds[(a.item, a.annotator)], 3)}
                if (a.item, a.annotator) in seconds
                else {}
            ),
            "provider": rec["provider"],
            "job": rec["key"],
            "round": rec["round"],
            "collected_round": run,
        }
        for a in got.annotations
        if a.item in members
    ]
    before = len(ledger.read_annotations(key))
    # Annotations first, the event second: a crash in between re-collects, never loses.
    merged = ledger.merge_annotations(key, rows)
    labeled, returned, closing = _settle(
        ledger,
        key,
        merged,
        progress={"labeled": progress.labeled, "total": progress.total},
        done=progress.done,
        close_reason=close_reason,
        run=run,
    )
    out = Collected(
        annotations=len(merged),
        new_annotations=len(merged) - before,
        labeled=labeled,
        closed=closing,
        returned=returned,
        skipped=got.skipped,
        bad=list(got.bad),
    )
    log.info(
        "job %s (%s): %d annotation(s) (+%d), %d item(s) labeled now%s",
        key,
        rec["provider"],
        out.annotations,
        out.new_annotations,
        out.labeled,
        f"; closed ({closing}), {out.returned} back to the pool" if closing else "",
    )
    return out


def _settle(
    ledger: Ledger,
    key: str,
    rows: list[dict[str, Any]],
    *,
    progress: Mapping[str, int],
    done: bool,
    close_reason: str,
    run: str,
) -> tuple[int, int, str]:
    """Record a collection: items with all their answers become labeled; a job that is done
    (or closed for `close_reason`) also labels items with any answer and returns the rest.
    Returns (labeled now, returned, the reason it closed or "")."""
    rec = ledger.state.jobs[key]
    per_item = Counter(r["item"] for r in rows)
    queued = [
        i
        for i in rec["items"]
        if ledger.state.items[i]["state"] == QUEUED and ledger.state.items[i].get("job") == key
    ]
    need = int(rec["labelers_per_item"])
    if not close_reason and (done or all(per_item[i] >= need for i in queued)):
        close_reason = "done"
    labeled = [i for i in queued if per_item[i] >= (1 if close_reason else need)]
    ledger.append(
        "collect",
        run=run,
        job=key,
        labeled=labeled,
        annotations=len(rows),
        annotation_keys=annotation_keys_digest(rows),
        progress=dict(progress),
    )
    returned: list[str] = []
    if close_reason:
        returned = sorted(set(queued) - set(labeled))
        ledger.append(
            "close",
            run=run,
            job=key,
            reason=close_reason,
            return_reason="unanswered" if close_reason == "done" else close_reason,
            returned=returned,
        )
    return len(labeled), len(returned), close_reason


def close_gone(ledger: Ledger, job_key: str, *, run: str) -> int:
    """Close a job the provider no longer has: answered items stay, the rest go back."""
    rows = ledger.read_annotations(job_key)
    progress = ledger.state.jobs[job_key]["progress"]
    _, returned, _ = _settle(
        ledger, job_key, rows, progress=progress, done=False, close_reason="cancelled", run=run
    )
    return returned


@dataclasses.dataclass(frozen=True)
class ReconcileResult:
    """What reconciling found and did."""

    open_jobs: int
    collected: int
    labeled: int
    closed: int
    returned: int
    unreachable: int
    queued: int
    pool_returned: dict[str, int]
    review_answers: int = 0


def reconcile(
    *,
    state_uri: str,
    provider: str,
    provider_options: str,
    max_job_age_hours: float,
    run_id: str,
    summary_uri: str,
    rejects_uri: str = "",
) -> ReconcileResult:
    """Collect from every open job, close the finished, cancelled and expired ones.

    Args:
        state_uri: The loop's state (the ledger); "" reconciles nothing.
        provider: This run's provider; its options are used for that provider's open jobs
            (an earlier run's jobs at another provider use the options recorded with them).
        provider_options: This run's provider options (JSON object, no secrets).
        max_job_age_hours: A job open longer than this is closed: its answers are kept, its
            unanswered items go back to the pool (0 = jobs never expire).
        run_id: This run's id (the lease holder; recorded with every event).
        summary_uri: Where to write the reconcile summary (JSON).
        rejects_uri: Where to write provider records that could not be used (JSONL).

    Raises:
        LeaseHeld: Another run is changing the same state.
        InputError: Bad provider options (nothing changes in the ledger).
    """
    from labelloop.annotations import write_bad_records

    if max_job_age_hours < 0:
        raise InputError("must be 0 (never) or more", field="max_job_age_hours")
    options = provider_only(provider_options_object(provider_options))
    lease.acquire(state_uri, lease.Holder.here(run_id))
    ledger = Ledger.load(state_uri)
    collected = labeled = closed = returned = unreachable = 0
    bad: list[BadRecord] = []
    errors: list[dict[str, str]] = []
    for rec in ledger.state.open_jobs():
        key = rec["key"]
        opts = options if rec["provider"] == provider else rec.get("options", {})
        labeler = get_provider(rec["provider"], opts)
        try:
            job = resume(labeler, job_of(rec), items_of(ledger, rec), task_of(rec))
            if job.external_id and job.external_id != rec.get("external_id"):
                ledger.append("submit", run=run_id, job=key, external_id=job.external_id)
            reason = ""
            if rec.get("cancel_requested"):
                reason = "cancelled"
            elif max_job_age_hours and age_hours(rec["created_at"]) > max_job_age_hours:
                reason = "expired"
            got = collect_job(ledger, labeler, job, run=run_id, key=key, close_reason=reason)
            if reason:
                try:
                    labeler.cancel(job)
                except Exception as exc:
                    log.warning("could not cancel job %s at %s: %s", key, rec["provider"], exc)
        except JobGone as exc:
            log.warning("%s", exc)
            returned += close_gone(ledger, key, run=run_id)
            closed += 1
            continue
        except InputError:
            raise
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("job %s at %s unreachable, stays open: %s", key, rec["provider"], message)
            ledger.append("error", run=run_id, job=key, error=message)
            errors.append({"job": key, "provider": rec["provider"], "error": message})
            unreachable += 1
            continue
        collected += got.new_annotations
        labeled += got.labeled
        closed += bool(got.closed)
        returned += got.returned
        bad.extend(got.bad)
    review_answers = _pull_reviews(state_uri, provider, options)
    counts = ledger.state.counts()
    result = ReconcileResult(
        open_jobs=len(ledger.state.open_jobs()),
        collected=collected,
        labeled=labeled,
        closed=closed,
        returned=returned,
        unreachable=unreachable,
        queued=counts[QUEUED],
        pool_returned=dict(ledger.state.returned),
        review_answers=review_answers,
    )
    summary = {**dataclasses.asdict(result), "items": counts, "errors": errors}
    if state_uri:
        ledger.append(
            "run",
            run=run_id,
            summary={
                "reconcile": {k: v for k, v in summary.items() if k != "items"},
                "items": counts,
            },
        )
        ledger.compact()
    storage.write_text(summary_uri, json.dumps(summary, indent=2, sort_keys=True))
    if rejects_uri:
        write_bad_records(rejects_uri, bad)
    log.info("reconcile: %s", result)
    return result


def _pull_reviews(state_uri: str, provider: str, options: Mapping[str, Any]) -> int:
    """Collect reviewers' corrections from the recorded review projects (`labelloop review
    push`) so this run's quality step uses them; returns the answers collected."""
    from labelloop import review
    from labelloop.providers.registry import get_reviewer

    def reviewer_for(record: Mapping[str, Any]) -> Any:
        opts = options if record["provider"] == provider else record.get("options", {})
        return get_reviewer(str(record["provider"]), opts)

    return sum(review.pull(state_uri, reviewer_for).values()) if state_uri else 0


def queue_room(state_uri: str, *, queue_size: int, selection_size: int) -> tuple[int, int]:
    """How many items a selection may add (backpressure) and how many are queued now.

    The open queue is topped up to `queue_size` items (0: `selection_size`), at most
    `selection_size` per run.
    """
    limit = queue_size or selection_size
    queued = len(Ledger.load(state_uri).state.ids_in(QUEUED)) if state_uri else 0
    return max(0, min(selection_size, limit - queued)), queued


def finish_run(state_uri: str, run_id: str, outcome: Mapping[str, Any]) -> None:
    """Record the run's outcome in the ledger's run list and give the lease back (the last step
    of every run; a killed run's lease is taken over as `labelloop.lease` describes)."""
    if not state_uri:
        return
    try:
        lease.acquire(state_uri, lease.Holder.here(run_id))
    except lease.LeaseHeld as exc:
        # Our lease expired and another run took it: leave the ledger to that run.
        log.warning("run outcome not recorded in the ledger: %s", exc)
        return
    ledger = Ledger.load(state_uri)
    ledger.append("run", run=run_id, summary={"outcome": dict(outcome)})
    ledger.compact()
    lease.release(state_uri, lease.Holder.here(run_id))
