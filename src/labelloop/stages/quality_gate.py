"""Stage 5: measure agreement, consolidate labels and count the items good enough to train on."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging

import numpy as np

from labelloop import state, storage
from labelloop.annotations import read_annotations, write_bad_records
from labelloop.errors import InputError
from labelloop.quality.agreement import all_agree_rate, krippendorff_alpha
from labelloop.quality.consolidation import MajorityVote
from labelloop.quality.encode import encode
from labelloop.schemas import TaskType, parse_labels

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class GateResult:
    """The gate's numbers. `agreement` is the configured metric (NaN mapped to 0.0)."""

    label_count: int
    labeled_items: int
    annotations: int
    annotators: int
    agreement: float
    agreement_metric: str
    all_agree_rate: float
    ties: int
    review_items: int
    bad_records: int


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
) -> GateResult:
    """Validate annotations, compute agreement, consolidate, and count trainable labels.

    Args:
        annotations_uri: Long-format annotations (JSONL or CSV).
        task_type: A `TaskType` value.
        labels: The label set, comma-separated.
        consolidation_method: `mv` (majority vote).
        agreement_metric: `krippendorff_alpha` or `all_agree_rate`.
        min_confidence: An item counts as labeled when its consolidated confidence is at least this.
        state_uri: The loop's state; consolidated labels are recorded there for later rounds.
        consolidated_uri: Where to write `item,label,confidence,votes` rows (JSONL).
        review_uri: Where to write the items that need a person to look (JSONL).
        metrics_uri: Where to write all metrics (JSON).
        rejects_uri: Where to write rejected annotation rows (JSONL).
    """
    task = TaskType.parse(task_type)
    label_list = parse_labels(labels)
    if not task.is_classification or task.multi_label:
        raise InputError(f"the quality gate does not handle {task.value} yet", field="task_type")
    if consolidation_method != "mv":
        raise InputError(f"unknown consolidation method {consolidation_method!r}", field="consolidation_method")
    read = read_annotations(annotations_uri, task_type=task, labels=label_list)
    enc = encode(read.annotations, label_list)
    kwargs = {"n_items": enc.n_items, "n_labels": enc.n_labels}
    alpha = krippendorff_alpha(enc.item, enc.label, **kwargs)
    agree = all_agree_rate(enc.item, enc.label, **kwargs)
    metrics_by_name = {"krippendorff_alpha": alpha, "all_agree_rate": agree}
    if agreement_metric not in metrics_by_name:
        raise InputError(f"unknown agreement metric {agreement_metric!r}", field="agreement_metric")
    mv = MajorityVote().fit(enc.item, enc.label, **kwargs)
    consolidated = []
    review = []
    for i, item_id in enumerate(enc.items):
        votes = {label_list[j]: int(c) for j, c in enumerate(mv.counts_[i]) if c}
        if mv.labels_[i] < 0:
            review.append({"item": str(item_id), "reason": "tie", "votes": votes})
            continue
        row = {
            "item": str(item_id),
            "label": label_list[int(mv.labels_[i])],
            "confidence": round(float(mv.confidence_[i]), 6),
            "votes": votes,
        }
        consolidated.append(row)
        if row["confidence"] < min_confidence:
            review.append({"item": row["item"], "reason": "low confidence", "votes": votes})
    label_count = sum(1 for r in consolidated if r["confidence"] >= min_confidence)
    storage.write_jsonl(consolidated_uri, consolidated)
    storage.write_jsonl(review_uri, review)
    write_bad_records(rejects_uri, read.bad)
    agreement_value = metrics_by_name[agreement_metric]
    result = GateResult(
        label_count=label_count,
        labeled_items=enc.n_items,
        annotations=len(read.annotations),
        annotators=enc.n_annotators,
        agreement=0.0 if np.isnan(agreement_value) else float(agreement_value),
        agreement_metric=agreement_metric,
        all_agree_rate=0.0 if np.isnan(agree) else float(agree),
        ties=int(mv.ties_.sum()),
        review_items=len(review),
        bad_records=len(read.bad),
    )
    storage.write_text(metrics_uri, json.dumps(dataclasses.asdict(result), indent=2, sort_keys=True))
    if state_uri and consolidated:
        key = hashlib.sha256("\n".join(sorted(r["item"] for r in consolidated)).encode()).hexdigest()[:16]
        storage.write_jsonl(state.path(state_uri, state.LABELS, f"{key}.jsonl"), consolidated)
    log.info("quality gate: %s", result)
    return result
