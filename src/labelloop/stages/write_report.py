"""The last stage: explain the run on one page (HTML + Markdown) and record the round."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from typing import Any

from labelloop import state, storage
from labelloop.errors import InputError, summarize_bad_records
from labelloop.quality.result import QualityResult
from labelloop.report.data import (
    ReportData,
    attach_annotations,
    integer,
    load_items,
    number,
    read_json_object,
    read_jsonl_objects,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ReportResult:
    """The round's outcome as recorded in the state, and the numbers worth logging natively.

    Attributes:
        trained: Whether a model was trained this round.
        reason: Why (or why not), in words.
        accuracy: Held-out accuracy of the model, when one was trained.
        label_count: Consolidated labels counted by the quality gate.
        metrics: Headline numbers for a `Metrics` artifact (no nulls).
        confusion_labels: Class names of `confusion_matrix` (empty when no model).
        confusion_matrix: The model's held-out confusion matrix (empty when no model).
    """

    trained: bool
    reason: str
    accuracy: float | None
    label_count: int
    metrics: dict[str, float]
    confusion_labels: list[str]
    confusion_matrix: list[list[int]]


def _parse_outcome(outcome: str) -> dict[str, Any]:
    try:
        data = json.loads(outcome) if outcome.strip() else {}
    except json.JSONDecodeError as exc:
        raise InputError(f"the training outcome is not JSON: {exc.msg}", field="outcome") from exc
    if not isinstance(data, dict):
        raise InputError("the training outcome must be a JSON object", field="outcome")
    return data


def _round_record(
    run_id: str, quality: QualityResult, outcome: dict[str, Any], job: dict[str, Any]
) -> dict[str, Any]:
    got = job.get("cost")
    cost: dict[str, Any] = got if isinstance(got, dict) else {}
    run_cost, total_cost = cost.get("run") or {}, cost.get("total") or {}
    train_items = integer(outcome.get("train_items"))
    test_items = integer(outcome.get("test_items"))
    trained = bool(outcome.get("trained"))
    labels_used = (train_items or 0) + (test_items or 0) if trained and train_items else None
    return {
        "run_id": run_id,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        "label_count": quality.label_count,
        "labeled_items": quality.labeled_items,
        "agreement": quality.agreement,
        "agreement_reason": quality.agreement_reason,
        "gate_rule": quality.decision.rule if quality.decision else "",
        "trained": trained,
        "reason": str(outcome.get("reason", "")),
        "accuracy": number(outcome.get("accuracy")),
        "eval_accuracy": number(outcome.get("eval_accuracy")),
        "curve": outcome.get("curve") if isinstance(outcome.get("curve"), list) else [],
        "train_items": train_items,
        "test_items": test_items,
        "labels_used": labels_used,
        # What this round cost and the spend so far (the stop rule's dollars).
        "cost_usd": number(run_cost.get("total_usd")),
        "spent_usd": number(total_cost.get("total_usd")),
    }


def _headline_metrics(data: ReportData) -> dict[str, float]:
    count, agreement = data.gates()
    out = {
        "label_count": float(data.label_count),
        "min_labeled_count": float(data.min_labeled_count),
        "min_agreement": float(data.min_agreement),
        "count_gate_open": float(count.passed),
        "agreement_gate_open": float(agreement.passed and agreement.evaluated),
        "trained": float(data.trained),
        "review_items": float(len(data.review)),
    }
    if data.agreement is not None:
        out[data.agreement_metric] = data.agreement
    if data.agreement_ci is not None:
        out[f"{data.agreement_metric}_ci_low"], out[f"{data.agreement_metric}_ci_high"] = (
            data.agreement_ci
        )
    if (acc := number(data.outcome.get("accuracy"))) is not None:
        out["accuracy"] = acc
    if data.result.annotator_table:
        out["flagged_annotators"] = float(data.result.flagged_annotators)
    return out


def _ledger_view(state_uri: str, job: dict[str, Any]) -> dict[str, Any]:
    """Items per state and the open jobs, from the ledger now (the labeling step's copy when
    the state cannot be read)."""
    if state_uri:
        from labelloop.ledger import Ledger, LedgerError, open_job_rows

        try:
            state_now = Ledger.load(state_uri).state
        except (LedgerError, OSError, ValueError) as exc:
            log.warning("the report shows the labeling step's view of the ledger: %s", exc)
        else:
            return {"items": state_now.counts(), "open_jobs": open_job_rows(state_now)}
    recorded = job.get("ledger")
    return recorded if isinstance(recorded, dict) else {}


def write_report(
    *,
    quality_uri: str,
    selection_uri: str,
    outcome: str,
    state_uri: str,
    run_id: str,
    min_labeled_count: int,
    min_agreement: float,
    html_uri: str,
    markdown_uri: str,
    review_uri: str = "",
    items_uri: str = "",
    annotations_uri: str = "",
    job_uri: str = "",
) -> ReportResult:
    """Record this round's outcome under `state_uri/rounds/`, then write the report.

    Every input but `outcome` may be missing or partial: the page says what it could not show.

    Args:
        quality_uri: The quality gate's JSON.
        selection_uri: The selection summary JSON.
        outcome: The training outcome JSON (trained, or the closed gate and its reason).
        state_uri: The loop's state (earlier rounds are read from it for the trend plot).
        run_id: The pipeline run id (names the round record, so a retry overwrites it).
        min_labeled_count: The count gate's threshold.
        min_agreement: The agreement gate's threshold.
        html_uri: Where to write the HTML page.
        markdown_uri: Where to write the Markdown summary.
        review_uri: The review JSONL (items for a person to look at); "" to leave out.
        items_uri: The dataset's items (import JSONL), for text snippets of inline text.
        annotations_uri: Long-format annotations, to list each annotator's answer on review
            rows that do not carry them.
        job_uri: The labeling job record (provider, job, progress, the provider's summary:
            project URL, per-annotator time, Gemini's threshold and cost); "" to leave out.

    Raises:
        InputError: `outcome` or a JSON input is malformed.
    """
    start = time.perf_counter()
    quality = read_json_object(quality_uri)
    selection = read_json_object(selection_uri)
    job = read_json_object(job_uri)
    result_outcome = _parse_outcome(outcome)
    review, bad = read_jsonl_objects(review_uri)
    if annotations_uri and any(not isinstance(r.get("annotations"), list) for r in review):
        answers, bad_answers = read_jsonl_objects(annotations_uri)
        review = attach_annotations(review, answers)
        bad += bad_answers
    items, bad_items = load_items(items_uri)
    bad += bad_items
    if bad:
        log.warning("report inputs: %s", summarize_bad_records(bad))

    record = _round_record(run_id, QualityResult.from_json(quality), result_outcome, job)
    rounds: list[dict[str, Any]] = []
    if state_uri:
        storage.write_text(
            state.path(state_uri, state.ROUNDS, f"{run_id}.json"),
            json.dumps(record, sort_keys=True),
        )
        rounds = state.round_outcomes(state_uri)
    if not any(r.get("run_id") == run_id for r in rounds):
        rounds.append(record)

    data = ReportData(
        run_id=run_id,
        quality=quality,
        selection=selection,
        outcome=result_outcome,
        review=review,
        items=items,
        rounds=rounds,
        min_labeled_count=min_labeled_count,
        min_agreement=min_agreement,
        bad_records=bad,
        job=job,
        state_uri=state_uri,
        ledger=_ledger_view(state_uri, job),
    )
    # matplotlib (~1 s to import) is paid only here, by the report stage.
    from labelloop.report.page import render_html
    from labelloop.report.summary import render_markdown

    storage.write_text(html_uri, render_html(data))
    storage.write_text(markdown_uri, render_markdown(data))
    labels: list[str] = []
    confusion: list[list[int]] = []
    matrix_json = result_outcome.get("confusion_matrix")
    if (
        data.trained
        and isinstance(matrix_json, list)
        and isinstance(result_outcome.get("labels"), list)
    ):
        labels = [str(v) for v in result_outcome["labels"]]
        confusion = [[integer(c) or 0 for c in row] for row in matrix_json if isinstance(row, list)]
    from labelloop.stages.reconcile import finish_run

    finish_run(
        state_uri,
        run_id,
        {k: record[k] for k in ("trained", "reason", "label_count", "accuracy") if k in record},
    )
    log.info("report written to %s in %.2f s", html_uri, time.perf_counter() - start)
    return ReportResult(
        trained=record["trained"],
        reason=record["reason"],
        accuracy=record["accuracy"],
        label_count=record["label_count"],
        metrics=_headline_metrics(data),
        confusion_labels=labels,
        confusion_matrix=confusion,
    )
