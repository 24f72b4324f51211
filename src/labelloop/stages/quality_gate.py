"""Stage 5: measure agreement, consolidate labels, count the items good enough to train on,
and decide the gates.

The arithmetic lives in `labelloop.quality` (one module per task family); this module reads
and validates the inputs, dispatches on the task family, applies the gate rule
(`labelloop.gates.decide`) and writes the artifacts: consolidated labels, the review queue,
the quality JSON (`QualityResult`, the decision included) and the rejected rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import math
from collections.abc import Sequence
from typing import Any

from labelloop import evaluation, relabel, review, state, storage
from labelloop.annotations import read_annotations, read_gold, write_bad_records
from labelloop.errors import BadRecord, InputError
from labelloop.gates import GatePolicy, decide, format_agreement
from labelloop.quality.classification import assess_classification
from labelloop.quality.metrics import get_metric, metrics_for
from labelloop.quality.multilabel import assess_multilabel
from labelloop.quality.region_tasks import assess_regions
from labelloop.quality.result import FamilyOutcome, QualityResult, num
from labelloop.quality.sources import ModelSource, model_sources
from labelloop.schemas import (
    Annotation,
    Shape,
    TaskType,
    annotator_kind_of,
    parse_labels,
)

log = logging.getLogger(__name__)


def task_family(task: TaskType) -> str:
    """The quality family of a task type: its annotation shape (single, multi, boxes, spans)."""
    return task.shape.value


def choose_metric(requested: str, task: TaskType) -> str:
    """The requested metric, or the task family's fallback when it does not apply to the task.

    Raises:
        InputError: No registered metric of that name.
    """
    available = metrics_for(task_family(task))
    if requested in available:
        return requested
    get_metric(requested)  # raises for an unknown name
    log.warning(
        "%s does not apply to %s; the gate uses %s instead", requested, task.value, available[0]
    )
    return available[0]


def _unmeasurable_reason(out: FamilyOutcome, family: str) -> str:
    """Why the agreement of a round could not be measured, in words."""
    if out.agreement_items == 0:
        return "no item has answers from two or more annotators"
    defined = [v for v in out.per_class.values() if v is not None and math.isfinite(v)]
    if family in (Shape.SINGLE.value, Shape.MULTI.value) and len(defined) <= 1:
        return "every answer on a shared item is the same class"
    return "undefined on these answers"


def _text_lengths(items: set[str]) -> dict[str, int]:
    """Character length of each text item stored as a file (inline `text:` items are skipped)."""
    lengths = {}
    for item in sorted(items):
        if item.startswith("text:") or not storage.exists(item):
            continue
        lengths[item] = len(storage.read_text(item))
    return lengths


def _round_key(items: set[str]) -> str:
    """A round's key: a hash of its item set (a retry has the same key, so it overwrites)."""
    return hashlib.sha256("\n".join(sorted(items)).encode()).hexdigest()[:16]


def _record_lineage(
    state_uri: str,
    consolidated: list[dict[str, object]],
    annotations: Sequence[Annotation],
    *,
    method: str,
    job_uri: str,
) -> None:
    """Who produced each label's inputs, how it was consolidated, its job (`labelloop lineage`)."""
    from labelloop import lineage
    from labelloop.ledger import Ledger

    entries = Ledger.load(state_uri).state.items
    jobs = {item: str(e["job"]) for item, e in entries.items() if e.get("job")}
    record: dict[str, Any] = {}
    if job_uri and storage.exists(job_uri):
        loaded = json.loads(storage.read_text(job_uri))
        record = loaded if isinstance(loaded, dict) else {}
    key = _round_key({str(r["item"]) for r in consolidated})
    rows = lineage.label_rows(
        consolidated,
        annotations,
        job=key,
        jobs=jobs,
        round=len(state.round_outcomes(state_uri)) + 1,
        method=method,
        provider=str(record.get("provider", "")),
        models=lineage.model_sources(record),
    )
    lineage.write_labels(state_uri, rows)


def _earlier_answers(
    state_uri: str, round_key: str, annotations: list[Annotation]
) -> list[Annotation]:
    """Earlier answers of items labeled again this round (not those given again now)."""
    given = {(a.item, a.annotator) for a in annotations}
    rows = relabel.earlier_answers(
        state_uri, round_key=round_key, round_items={a.item for a in annotations}
    )
    out = [
        Annotation(
            str(r["item"]),
            str(r["annotator"]),
            str(r["label"]),
            annotator_kind_of(r),
        )
        for r in rows
        if (str(r["item"]), str(r["annotator"])) not in given
    ]
    if out:
        log.info("added %d earlier answer(s) of items labeled again", len(out))
    return out


def _review_answers(state_uri: str, annotations: list[Annotation]) -> list[Annotation]:
    """Reviewers' corrections (`expert` answers) this step has not consolidated yet."""
    given = {(a.item, a.annotator) for a in annotations}
    out = [
        a
        for a in review.answers_for_round(
            state_uri, {a.item for a in annotations}, state.latest_labels(state_uri)
        )
        if (a.item, a.annotator) not in given
    ]
    if out:
        log.info(
            "added %d reviewer correction(s) and earlier answer(s) of %d reviewed item(s)",
            len(out),
            len({a.item for a in out}),
        )
    return out


def _model_sources(job_uri: str) -> dict[str, ModelSource]:
    """Calibrated model annotators from the labeling job record (`{}` when none)."""
    if not job_uri or not storage.exists(job_uri):
        return {}
    try:
        record = json.loads(storage.read_text(job_uri))
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", source=job_uri, line=exc.lineno) from exc
    return model_sources(record) if isinstance(record, dict) else {}


def quality_gate(
    *,
    annotations_uri: str,
    task_type: str,
    labels: str,
    consolidation_method: str,
    agreement_metric: str,
    min_confidence: float,
    state_uri: str,
    consolidated_uri: str,
    review_uri: str,
    metrics_uri: str,
    rejects_uri: str,
    policy: GatePolicy,
    flagged_policy: str = "exclude",
    job_uri: str = "",
    gold_uri: str = "",
    n_boot: int = 200,
    seed: int = 0,
    min_overlap: int = 10,
) -> QualityResult:
    """Validate annotations, compute agreement, consolidate, count trainable labels, decide.

    Args:
        annotations_uri: Long-format annotations (JSONL or CSV).
        task_type: A `TaskType` value.
        labels: The label set, comma-separated.
        consolidation_method: `mv` (majority vote) or `ds` (Dawid-Skene). Boxes and spans
            always use reliability-weighted clustering.
        agreement_metric: The gate's metric, a registered one (`quality.registry`):
            `krippendorff_alpha` (default), `fleiss_kappa`, `percent_agreement` or
            `all_agree_rate` for classification; `f1` or `mean_iou` for boxes; `span_f1`
            (exact), `span_f1_exact`, `span_f1_overlap` or `mean_iou` for spans. A metric that
            does not apply to the task falls back to the task's first one, with a warning.
        min_confidence: An item counts as labeled when its consolidated confidence is at least this.
        state_uri: The loop's state; consolidated labels are recorded there for later rounds.
        consolidated_uri: Where to write consolidated rows (JSONL).
        review_uri: Where to write the items that need a person to look (JSONL).
        metrics_uri: Where to write the quality JSON (`QualityResult`, the decision included).
        rejects_uri: Where to write rejected annotation and gold rows (JSONL).
        policy: The gates' thresholds and the policy for unmeasurable agreement.
        flagged_policy: What flagged (near-chance) annotators count for: `exclude` (default)
            drops their answers from consolidation and agreement, `downweight` keeps them in
            consolidation only, `keep` counts them everywhere (classification).
        job_uri: The labeling job record: a calibrated model's precision and confusion from
            the routing provider make its auto-accepted answers a source of known accuracy.
        gold_uri: Optional gold table `item,label` of known answers (classification only):
            Dawid-Skene clamps those items, and annotators get a gold score.
        n_boot: Bootstrap replicates for the agreement interval.
        seed: Bootstrap seed.
        min_overlap: Shared items a pair of annotators needs for Cohen's kappa.

    Raises:
        InputError: Unknown task type, method or metric. No valid annotation at all is not an
            error: the result has zero labels, so the count gate closes.
    """
    task = TaskType.parse(task_type)
    label_list = parse_labels(labels)
    if consolidation_method not in ("mv", "ds"):
        raise InputError(
            f"unknown consolidation method {consolidation_method!r}; expected mv or ds",
            field="consolidation_method",
        )
    family = task_family(task)
    metric = choose_metric(agreement_metric, task)
    read = read_annotations(annotations_uri, task_type=task, labels=label_list)
    if task.shape is Shape.SPANS:
        lengths = _text_lengths({a.item for a in read.annotations})
        if lengths:  # validate again, now rejecting spans past the end of their text
            read = read_annotations(
                annotations_uri, task_type=task, labels=label_list, text_lengths=lengths
            )
    bad: list[BadRecord] = list(read.bad)
    gold: dict[str, str] = {}
    if gold_uri:
        gold, gold_bad = read_gold(gold_uri, labels=label_list)
        bad.extend(gold_bad)
    write_bad_records(rejects_uri, bad)
    base = QualityResult(
        agreement_metric=metric,
        bad_records=len(bad),
        min_confidence=min_confidence,
        consolidation_method=consolidation_method,
        task_type=task.value,
        labels=label_list,
    )
    if not read.annotations:
        # Nothing to judge (an empty round, or every row rejected): a result of zero labels,
        # so the count gate closes with its reason instead of the run failing.
        log.warning(
            "%s: no valid annotations (%d rejected rows, see the rejects file)",
            annotations_uri,
            len(read.bad),
        )
        reason = "no valid annotations"
        result = dataclasses.replace(
            base,
            agreement_reason=reason,
            decision=decide(
                label_count=0,
                agreement=None,
                agreement_reason=reason,
                metric=metric,
                policy=policy,
            ),
        )
        storage.write_jsonl(consolidated_uri, [])
        storage.write_jsonl(review_uri, [])
        storage.write_text(metrics_uri, result.to_json())
        return result
    annotations = read.annotations
    round_key = _round_key({a.item for a in annotations})
    if family == Shape.SINGLE.value and state_uri:
        annotations = annotations + _earlier_answers(state_uri, round_key, annotations)
        annotations = annotations + _review_answers(state_uri, annotations)
    out: FamilyOutcome
    if family == Shape.SINGLE.value:
        out = assess_classification(
            annotations,
            label_list,
            method=consolidation_method,
            metric=metric,
            gold=gold,
            min_overlap=min_overlap,
            min_confidence=min_confidence,
            n_boot=n_boot,
            seed=seed,
            flagged_policy=flagged_policy,
            sources=_model_sources(job_uri),
        )
    elif family == Shape.MULTI.value:
        out = assess_multilabel(
            annotations,
            label_list,
            method=consolidation_method,
            metric=metric,
            min_confidence=min_confidence,
            n_boot=n_boot,
            seed=seed,
        )
    else:
        out = assess_regions(
            annotations,
            label_list,
            task=task,
            metric=metric,
            min_confidence=min_confidence,
            n_boot=n_boot,
            seed=seed,
        )
    # The review queue, likeliest errors first; each row also goes back to labeling as a
    # request the next selection weighs against a new item.
    out.review.sort(key=lambda r: (-(r.get("expected_error") or 0.0), str(r["item"])))
    if state_uri:
        relabel.update(
            state_uri,
            round_key=round_key,
            round_items={a.item for a in read.annotations},
            new_requests=out.review,
        )
    # Items of the fixed evaluation set are labeled like any other but never trained on, so
    # they do not count toward the count gate.
    held_out = set(evaluation.eval_ids(state_uri))
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
    for row in out.consolidated:
        row["consolidated_at"] = stamp  # the newest row of an item is its label
        if row["item"] in held_out:
            row["eval"] = True
    label_count = sum(1 for r in out.consolidated if r["trainable"] and not r.get("eval"))
    agreement = num(out.metrics[metric])
    reason = "" if agreement is not None else _unmeasurable_reason(out, family)
    result = dataclasses.replace(
        base,
        label_count=label_count,
        labeled_items=len(out.consolidated),
        annotations=len(annotations),
        annotators=out.annotators,
        agreement=agreement,
        agreement_reason=reason,
        agreement_ci=(num(out.agreement_ci[0]), num(out.agreement_ci[1])),
        agreement_items=out.agreement_items,
        agreement_with_flagged=num(out.agreement_with_flagged),
        agreement_without_flagged=num(out.agreement_without_flagged),
        flagged_policy=out.flagged_policy,
        model_items=out.model_items,
        model_precision=num(out.model_precision),
        all_agree_rate=num(out.metrics.get("all_agree_rate", float("nan"))),
        ties=out.ties,
        review_items=len(out.review),
        gold_items=sum(1 for r in out.consolidated if r["item"] in gold),
        metrics={k: num(v) for k, v in out.metrics.items()},
        per_class_agreement={k: num(v) for k, v in out.per_class.items()},
        pairwise=out.pairwise,
        annotator_table=out.annotator_table,
        decision=decide(
            label_count=label_count,
            agreement=agreement,
            agreement_reason=reason,
            agreement_items=out.agreement_items,
            metric=metric,
            policy=policy,
            model_precision=num(out.model_precision),
        ),
    )
    if result.decision and result.decision.agreement is None and agreement is not None:
        # The gate found too few shared items to trust the number: say so everywhere.
        result = dataclasses.replace(
            result, agreement=None, agreement_reason=result.decision.agreement_reason
        )
    storage.write_jsonl(consolidated_uri, out.consolidated)
    storage.write_jsonl(review_uri, out.review)
    storage.write_text(metrics_uri, result.to_json())
    if state_uri and out.consolidated:
        state.record_labels(state_uri, out.consolidated)
        _record_lineage(
            state_uri, out.consolidated, read.annotations, method=consolidation_method,
            job_uri=job_uri,
        )  # fmt: skip
    log.info(
        "quality gate: %d labels, %s %s, %s",
        label_count,
        metric,
        format_agreement(agreement, reason),
        result.decision.reason if result.decision else "",
    )
    return result
