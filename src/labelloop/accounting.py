"""What the loop has spent, read from the item ledger: per job, per run and in total.

The ledger is the one record of spend. People's labels are the annotation rows it keeps per
job (each with the seconds the provider reported, Label Studio's `lead_time`, when it reports
any); a model's calls are `spend` events (model, prompt and output tokens) written by the
labeling step after each call. Prices are applied when the ledger is read, from the pipeline's
`budget` rates (`labelloop.costs`), so changing a rate re-prices the history instead of leaving
two answers on record.

Selection asks `plan` how many items the budget affords this run: what is spent, plus what the
items still queued in open jobs will cost once people answer them (committed spend), against
the per-run and total limits.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from labelloop import costs
from labelloop.ledger import QUEUED, Ledger
from labelloop.schemas import AnnotatorKind, annotator_kind_of

log = logging.getLogger(__name__)

__all__ = ["Plan", "Spend", "model_usage", "plan", "record_spend", "spend"]


def model_usage(summary: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The model tokens a provider's `summary()` reports for this process's calls, or None.

    Gemini reports `model`, `prompt_tokens` and `output_tokens`; `gemini_then_human` reports
    the same under `gemini`.
    """
    data = dict(summary or {})
    usage = data.get("gemini") if isinstance(data.get("gemini"), Mapping) else data
    if not usage or "prompt_tokens" not in usage:
        return None
    out = {
        "model": str(usage.get("model", "")),
        "prompt_tokens": int(usage.get("prompt_tokens") or 0),
        "output_tokens": int(usage.get("output_tokens") or 0),
    }
    return out if out["prompt_tokens"] or out["output_tokens"] else None


def record_spend(
    ledger: Ledger, *, run: str, job: str, summary: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """Write a `spend` event for the model calls of this step (none when it made no call).

    Answers already paid for are cached by the provider and not asked again, so a retried
    step's summary counts only new calls and the events add up without double counting.
    """
    usage = model_usage(summary)
    if usage is None or job not in ledger.state.jobs:
        return None
    ledger.append("spend", run=run, job=job, **usage)
    return usage


def _is_model(row: Mapping[str, Any]) -> bool:
    return annotator_kind_of(row) is AnnotatorKind.MODEL


@dataclasses.dataclass(frozen=True)
class Spend:
    """Spend read from the ledger: each job's cost, each run's, and the total."""

    jobs: dict[str, costs.Cost]
    runs: dict[str, costs.Cost]
    total: costs.Cost
    priced: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "priced": self.priced,
            "total": self.total.to_json(),
            "jobs": {k: v.to_json() for k, v in self.jobs.items()},
            "runs": {k: v.to_json() for k, v in self.runs.items()},
        }


def spend(ledger: Ledger, rates: costs.Rates) -> Spend:
    """Price every job in the ledger: people from its annotation rows, models from `spend`.

    A run's cost is what was collected in it (`collected_round` of each row) plus the model
    calls it made; a job's items are its items with at least one answer.
    """
    jobs: dict[str, costs.Cost] = {}
    runs: dict[str, costs.Cost] = {}
    for key, rec in ledger.state.jobs.items():
        rows = ledger.read_annotations(key)
        human_by_run: dict[str, list[float | None]] = {}
        model_by_run: dict[str, int] = {}
        items_by_run: dict[str, set[str]] = {}
        first_run: dict[str, str] = {}
        for row in rows:
            run = str(row.get("collected_round", rec["round"]))
            # An item answered over several runs counts once, in the run of its first answer.
            if first_run.setdefault(str(row["item"]), run) == run:
                items_by_run.setdefault(run, set()).add(str(row["item"]))
            if _is_model(row):
                model_by_run[run] = model_by_run.get(run, 0) + 1
            else:
                seconds = row.get("seconds")
                human_by_run.setdefault(run, []).append(
                    float(seconds) if isinstance(seconds, int | float) else None
                )
        calls = list(rec.get("spend") or [])
        spend_runs = {str(c["run"]) for c in calls}
        job_total = costs.Cost()
        for run in sorted(set(human_by_run) | set(model_by_run) | spend_runs):
            cost = costs.human_cost(rates, lead_times=human_by_run.get(run, []))
            labels = model_by_run.get(run, 0)
            run_calls = [c for c in calls if str(c["run"]) == run]
            for i, call in enumerate(run_calls):
                cost = cost + costs.model_cost(
                    str(call.get("model", "")),
                    prompt_tokens=int(call.get("prompt_tokens") or 0),
                    output_tokens=int(call.get("output_tokens") or 0),
                    labels=labels if i == 0 else 0,
                )
            if labels and not run_calls:
                # Model answers with no recorded call (cached from an earlier step): counted.
                cost = cost + costs.Cost(model_labels=labels)
            cost = cost + costs.Cost(items=len(items_by_run.get(run, ())))
            runs[run] = runs.get(run, costs.Cost()) + cost
            job_total = job_total + cost
        jobs[key] = job_total
    total = costs.total(jobs.values())
    return Spend(jobs=jobs, runs=runs, total=total, priced=rates.priced or total.model_usd > 0)


@dataclasses.dataclass(frozen=True)
class Plan:
    """How many items a run may select under the budget, and why not more."""

    wanted: int
    affordable: int
    item_usd: float
    spent_usd: float
    committed_usd: float
    per_run_usd: float | None
    total_usd: float | None
    stop_reason: str
    min_gain_per_100: float = 0.005
    min_gain_per_usd: float | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def plan(
    ledger: Ledger,
    options: costs.BudgetOptions,
    *,
    wanted: int,
    labelers_per_item: int,
    model_usd_per_item: float = 0.0,
) -> Plan:
    """Items of `wanted` the budget affords: fewer rather than overspend, none once spent.

    Spend so far counts what is paid (the ledger's jobs) and what is committed: each item still
    queued in an open job, at the estimated cost of one item, since people may answer it any time.
    """
    paid = spend(ledger, options.rates)
    history: Iterable[costs.Cost] = [c for c in paid.jobs.values() if c.items]
    item_usd = costs.estimate_item_cost(
        options.rates,
        labelers_per_item=max(labelers_per_item, 1),
        model_usd_per_item=model_usd_per_item,
        history=history,
    )
    queued = len(ledger.state.ids_in(QUEUED))
    committed = queued * item_usd
    spent_total = paid.total.total_usd + committed
    limits = options.budget
    affordable = limits.affordable_items(wanted, item_usd=item_usd, spent_total=spent_total)
    reason = limits.stop_reason(item_usd=item_usd, spent_total=spent_total) if wanted else ""
    if 0 < affordable < wanted:
        log.info("selection: the budget affords %d of %d items", affordable, wanted)
    return Plan(
        wanted=wanted,
        affordable=affordable,
        item_usd=item_usd,
        spent_usd=paid.total.total_usd,
        committed_usd=committed,
        per_run_usd=limits.per_run_usd,
        total_usd=limits.total_usd,
        stop_reason=reason,
        min_gain_per_100=options.min_gain_per_100,
        min_gain_per_usd=options.min_gain_per_usd,
    )
