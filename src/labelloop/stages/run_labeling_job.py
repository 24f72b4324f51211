"""Stage 4: queue this run's new items at the labeling provider; hand on every label so far.

The new items join the ledger (`queued`) before the provider hears of them, under a
deterministic job key, so a run killed at any point and run again finds the same job (same
Label Studio project) instead of creating a second one. Where the provider can, the items are
added to the open job in place (Label Studio: the same project); otherwise they make a new job.
A provider that refuses the items (bad options) sends them back to the pool and fails the step;
one that cannot be reached sends them back and lets the run go on.

The step then collects the job once (the simulated workforce at `pace` 1 answers at once; people
answer between runs, and the next run's reconcile collects that) or waits up to `wait_seconds`
(a provider option, default 0) for it. Its `annotations` output holds every annotation collected
so far (labeled items, and the partial answers of queued ones), so the quality gate and
training see all labels collected so far, not just this run's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from labelloop import costs, lease, storage
from labelloop.accounting import record_spend, spend
from labelloop.errors import BadRecord, InputError
from labelloop.ledger import OPEN, POOL, QUEUED, Ledger, open_job_rows
from labelloop.options import parse_options
from labelloop.providers import LabelingTask, get_provider
from labelloop.providers.base import Job, LabelingProvider, tops_up_in_place
from labelloop.providers.registry import JOB_OPTIONS, JobOptions
from labelloop.schemas import Item, TaskType, parse_labels
from labelloop.stages.generate_import_file import read_import_file
from labelloop.stages.reconcile import collect_job, items_of, job_of, provider_options_object

log = logging.getLogger(__name__)

__all__ = ["LabelingResult", "run_labeling_job"]


@dataclasses.dataclass(frozen=True)
class LabelingResult:
    """What came back from the provider, and the ledger after it."""

    job_key: str
    items: int
    labeled_items: int  # items with at least one annotation handed on
    annotations: int
    annotators: int
    bad_records: int
    complete: bool = True
    skipped: int = 0
    waited_seconds: float = 0.0
    queued: int = 0
    open_jobs: int = 0
    submit_error: str = ""
    cost_usd: float = 0.0  # this run's spend: what it collected and the model calls it made


def _target_job(
    ledger: Ledger, labeler: LabelingProvider, *, provider: str, task: LabelingTask, per_item: int
) -> dict[str, Any] | None:
    """The open job new items can join in place (same provider and task), if any."""
    if not tops_up_in_place(labeler):
        return None
    for rec in reversed(ledger.state.open_jobs()):
        same = (
            rec["provider"] == provider
            and rec["task_type"] == task.task_type.value
            and list(rec["labels"]) == list(task.labels)
            and int(rec["labelers_per_item"]) == per_item
        )
        if same and not rec.get("cancel_requested") and rec.get("external_id"):
            return rec
    return None


def _queue(
    ledger: Ledger,
    labeler: LabelingProvider,
    fresh: list[Item],
    *,
    provider: str,
    options: dict[str, Any],
    task: LabelingTask,
    per_item: int,
    instructions: str,
    run: str,
) -> tuple[Job | None, str]:
    """Queue `fresh` in the ledger, then at the provider; returns the job (None if refused)."""
    from labelloop.providers.base import job_key

    target = _target_job(ledger, labeler, provider=provider, task=task, per_item=per_item)
    key = target["key"] if target else job_key(provider, fresh, task, per_item)
    ledger.append(
        "queue",
        run=run,
        job=key,
        provider=provider,
        options=options,
        task_type=task.task_type.value,
        labels=list(task.labels),
        labelers_per_item=per_item,
        items=[{"id": i.id, "record": i.to_import_record(task.task_type)} for i in fresh],
    )
    rec = ledger.state.jobs[key]
    try:
        top_up = getattr(labeler, "top_up", None)
        if target is not None and callable(top_up):
            job: Job = top_up(job_of(rec), items_of(ledger, rec), task)
        else:
            job = labeler.submit(
                items_of(ledger, rec), task, labelers_per_item=per_item, instructions=instructions
            )
    except Exception as exc:
        # Refused or unreachable: this run's items go back to the pool, unconsumed.
        ledger.append(
            "return", run=run, job=key, items=[i.id for i in fresh], reason="failed",
            **{"from": [QUEUED]},
        )  # fmt: skip
        rec = ledger.state.jobs[key]
        if not rec["items"]:
            ledger.append("close", run=run, job=key, reason="failed", returned=[])
        ledger.compact()
        if isinstance(exc, InputError):
            raise
        message = f"{type(exc).__name__}: {exc}"[:300]
        log.warning(
            "%s unreachable, %d item(s) back to the pool: %s", provider, len(fresh), message
        )
        return None, message
    if job.external_id != rec.get("external_id"):
        ledger.append("submit", run=run, job=key, external_id=job.external_id)
    # The provider's own job (its key may differ from the ledger's: a top-up keeps the first).
    return dataclasses.replace(job, collections=int(rec["collections"])), key


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
    state_uri: str = "",
    run_id: str = "",
    budget: str = "{}",
    sleep: Callable[[float], None] = time.sleep,
) -> LabelingResult:
    """Queue the new items, collect once (or wait), write every label collected so far.

    Args:
        items_uri: This run's new items (Vertex import JSONL; may be empty: queue full).
        task_type: A `TaskType` value.
        labels: The label set, comma-separated.
        provider: Provider name (`simulated`, ...).
        provider_options: The provider's options as a JSON object (no secrets). The step
            itself reads `wait_seconds` (how long to wait for the job to finish; 0 collects
            what is there now), `poll_seconds` (default 30) and `instructions` (shown to
            annotators).
        labelers_per_item: How many different annotators label each item.
        annotations_uri: Where to write every annotation collected so far (JSONL, long format,
            with provenance: provider, job, round).
        job_uri: Where to write the job record (JSON: provider, key, external id, progress).
        rejects_uri: Where to write records the provider returned but could not be used.
        state_uri: The loop's state (the ledger); "" keeps the ledger in memory for this step.
        run_id: This run's id (recorded in the ledger; the lease holder).
        budget: The pipeline's `budget` JSON: its rates price this run's labels (`cost_usd`;
            the ledger keeps what is needed to price them, `labelloop.accounting`).
        sleep: How to wait between polls (tests pass a fake clock).
    """
    task = LabelingTask(TaskType.parse(task_type), tuple(parse_labels(labels)))
    options = provider_options_object(provider_options)
    job_options = parse_options(
        JobOptions, {k: v for k, v in options.items() if k in JOB_OPTIONS}, field="provider_options"
    )
    wait_seconds, poll_seconds = job_options.wait_seconds, job_options.poll_seconds
    instructions = job_options.instructions
    if labelers_per_item < 1:
        raise InputError("must be at least 1", field="labelers_per_item")
    provider_opts = {k: v for k, v in options.items() if k not in JOB_OPTIONS}
    rates = costs.parse_budget(budget).rates
    policy = provider_opts.get("guarantee")
    if state_uri and isinstance(policy, dict) and not policy.get("audits_uri"):
        # Audits and renewed certificates live in the loop's state, across rounds.
        provider_opts["guarantee"] = {
            **policy,
            "audits_uri": storage.join(state_uri, "audits.jsonl"),
        }
    items, bad_items = read_import_file(items_uri)
    labeler = get_provider(provider, provider_opts)
    lease.acquire(state_uri, lease.Holder.here(run_id))
    ledger = Ledger.load(state_uri)
    entries = ledger.state.items
    fresh = [i for i in items if entries.get(i.id, {}).get("state", POOL) == POOL]
    if len(fresh) < len(items):
        log.info(
            "%d item(s) already queued or labeled (a rerun): not sent again",
            len(items) - len(fresh),
        )
    job: Job | None = None
    submit_error = key = ""
    if fresh:
        job, key_or_error = _queue(
            ledger, labeler, fresh, provider=provider, options=provider_opts, task=task,
            per_item=labelers_per_item, instructions=instructions, run=run_id,
        )  # fmt: skip
        key, submit_error = (key_or_error, "") if job is not None else ("", key_or_error)
    waited = 0.0
    bad: list[BadRecord] = list(bad_items)
    skipped = 0
    progress_json: dict[str, int] = {}
    if job is not None:
        progress = labeler.progress(job)
        while not progress.done and waited < wait_seconds:
            step = min(poll_seconds, wait_seconds - waited)
            log.info(
                "labeling: %d/%d items done; waiting %.0f s", progress.labeled, progress.total, step
            )
            sleep(step)
            waited += step
            progress = labeler.progress(job)
        got = collect_job(ledger, labeler, job, run=run_id, key=key)
        bad.extend(got.bad)
        skipped = got.skipped
        progress_json = {"labeled": progress.labeled, "total": progress.total}
    rows = ledger.collected_annotations()
    storage.write_jsonl(annotations_uri, rows)
    from labelloop.annotations import write_bad_records

    write_bad_records(rejects_uri, bad)
    rec = ledger.state.jobs.get(key) if key else None
    complete = rec is None or rec["status"] != OPEN
    counts = ledger.state.counts()
    open_jobs = ledger.state.open_jobs()
    record = {
        **(job.to_json() if job else {"provider": provider, "items": 0}),
        "key": key,
        "progress": progress_json,
        "complete": complete,
        "skipped": skipped,
        "submit_error": submit_error,
        "ledger": {
            "state_uri": state_uri,
            "items": counts,
            "open_jobs": open_job_rows(ledger.state),
            "returned": dict(ledger.state.returned),
        },
    }
    summary = getattr(labeler, "summary", None)
    if callable(summary) and job is not None:
        # Calibration, usage and cost (Gemini), kept with the job for the report.
        record["provider_summary"] = summary()
        record_spend(ledger, run=run_id, job=key, summary=record["provider_summary"])
    paid = spend(ledger, rates)
    run_cost = paid.runs.get(run_id, costs.Cost())
    record["cost"] = {"run": run_cost.to_json(), "total": paid.total.to_json()}
    storage.write_text(job_uri, json.dumps(record, indent=2, sort_keys=True))
    labeled_items = len({r["item"] for r in rows})
    if state_uri:
        ledger.append(
            "use",
            run=run_id,
            stage="quality_gate",
            items=labeled_items,
            annotations=len(rows),
        )
        ledger.append(
            "run",
            run=run_id,
            summary={
                "new_items": len(fresh),
                "job": key,
                "submit_error": submit_error,
                "items": counts,
                "open_jobs": len(open_jobs),
                # The rates this run priced with: `labelloop state` prices the ledger with them.
                "budget": costs.parse_budget(budget).to_json(),
                "cost_usd": run_cost.total_usd,
            },
        )
        ledger.compact()
    result = LabelingResult(
        job_key=key,
        items=len(fresh),
        labeled_items=labeled_items,
        annotations=len(rows),
        annotators=len({r["annotator"] for r in rows}),
        bad_records=len(bad),
        complete=complete,
        skipped=skipped,
        waited_seconds=waited,
        queued=counts[QUEUED],
        open_jobs=len(open_jobs),
        submit_error=submit_error,
        cost_usd=run_cost.total_usd,
    )
    log.info("labeling: %s", result)
    return result
