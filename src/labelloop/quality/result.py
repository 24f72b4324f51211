"""The quality step's result: one typed record, written (`to_json`) and read (`from_json`) here.

The quality JSON artifact is this record. Readers (the report, the local runner, later rounds)
call `QualityResult.from_json`, which tolerates files written before a field existed: a missing
or malformed field takes its default, so an old artifact still renders.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from labelloop.gates import GateDecision

EMPTY_PAIRWISE: dict[str, Any] = {
    "annotators": [],
    "cohen_kappa": [],
    "agreement": [],
    "overlap": [],
}


def num(value: float | None) -> float | None:
    """A JSON number, or null for None/NaN/inf."""
    if value is None:
        return None
    value = float(value)
    return round(value, 6) if math.isfinite(value) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def _int(value: Any) -> int:
    out = _number(value)
    return 0 if out is None else round(out)


@dataclasses.dataclass
class FamilyOutcome:
    """What one task family's assessment hands back to the quality step.

    Attributes:
        consolidated: One row per item (label, confidence, votes, trainable, ...).
        review: Items a person should look at.
        metrics: Every agreement metric of the family (NaN where not measurable).
        agreement_metric: The metric the gate reads.
        agreement_ci: Its bootstrap interval.
        agreement_items: Items the agreement was measured on (items with 2+ answers).
        per_class: Per-class agreement.
        pairwise: Annotator-pair tables (classification only).
        annotator_table: One row per annotator.
        ties: Items whose consolidation is a tie.
        annotators: Distinct annotators.
    """

    consolidated: list[dict[str, Any]]
    review: list[dict[str, Any]]
    metrics: dict[str, float]
    agreement_metric: str
    agreement_ci: tuple[float, float]
    agreement_items: int
    per_class: dict[str, float]
    pairwise: dict[str, Any]
    annotator_table: list[dict[str, Any]]
    ties: int
    annotators: int
    agreement_with_flagged: float = math.nan
    agreement_without_flagged: float = math.nan
    flagged_policy: str = ""
    model_items: int = 0
    model_precision: float | None = None


@dataclasses.dataclass(frozen=True)
class QualityResult:
    """Every number of one round's quality step (the quality JSON artifact).

    Attributes:
        label_count: Trainable consolidated labels (what the count gate compares).
        labeled_items: Items with at least one valid answer.
        annotations: Valid answers read.
        annotators: Distinct annotators.
        agreement: The gate's agreement metric; None when it cannot be measured.
        agreement_metric: That metric's name.
        agreement_reason: Why `agreement` is None ("" when it was measured).
        agreement_ci: Its bootstrap interval (None ends when not measurable).
        agreement_items: Items the agreement was measured on (two or more people answered).
        agreement_with_flagged: The metric counting flagged annotators' answers.
        agreement_without_flagged: The metric without them.
        flagged_policy: What flagged annotators counted for (`exclude`, `downweight`, `keep`):
            the gate used `agreement_with_flagged` under `keep`, else the one without.
        model_items: Items only a calibrated model answered (auto-accepted).
        model_precision: Their calibrated precision (None without such items).
        all_agree_rate: Share of multiply-labeled items where every answer agrees.
        ties: Items whose consolidation is a tie.
        review_items: Items in the review queue.
        bad_records: Rejected annotation and gold rows.
        min_confidence: Consolidated confidence an item needs to count.
        consolidation_method: `mv` or `ds`.
        task_type: The task type's value.
        labels: The label set.
        gold_items: Consolidated items with a gold answer.
        metrics: Every agreement metric of the task family.
        per_class_agreement: Per-class agreement.
        pairwise: Annotator-pair tables.
        annotator_table: One row per annotator.
        decision: The gates' decision on this result (see `labelloop.gates`).
    """

    label_count: int = 0
    labeled_items: int = 0
    annotations: int = 0
    annotators: int = 0
    agreement: float | None = None
    agreement_metric: str = "agreement"
    agreement_reason: str = ""
    agreement_ci: tuple[float | None, float | None] = (None, None)
    agreement_items: int = 0
    agreement_with_flagged: float | None = None
    agreement_without_flagged: float | None = None
    flagged_policy: str = ""
    model_items: int = 0
    model_precision: float | None = None
    all_agree_rate: float | None = None
    ties: int = 0
    review_items: int = 0
    bad_records: int = 0
    min_confidence: float = 0.0
    consolidation_method: str = ""
    task_type: str = ""
    labels: list[str] = dataclasses.field(default_factory=list)
    gold_items: int = 0
    metrics: dict[str, float | None] = dataclasses.field(default_factory=dict)
    per_class_agreement: dict[str, float | None] = dataclasses.field(default_factory=dict)
    pairwise: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(EMPTY_PAIRWISE))
    annotator_table: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    decision: GateDecision | None = None

    @property
    def flagged_annotators(self) -> int:
        """Annotators flagged as unreliable."""
        return sum(1 for r in self.annotator_table if r.get("flagged"))

    def to_json(self) -> str:
        """The quality JSON artifact (NaN written as null)."""
        data = dataclasses.asdict(self)
        data["agreement"] = num(self.agreement)
        data["all_agree_rate"] = num(self.all_agree_rate)
        data["agreement_ci"] = [num(v) for v in self.agreement_ci]
        for key in ("agreement_with_flagged", "agreement_without_flagged", "model_precision"):
            data[key] = num(data[key])
        data["decision"] = self.decision.to_dict() if self.decision else None
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QualityResult:
        """Read a quality JSON object; missing or malformed fields take their defaults."""
        ci = data.get("agreement_ci")
        ci_pair = (
            (_number(ci[0]), _number(ci[1]))
            if isinstance(ci, list) and len(ci) == 2
            else (None, None)
        )
        table = data.get("annotator_table")
        pairwise = data.get("pairwise")
        decision = data.get("decision")
        labels = data.get("labels")

        def floats(key: str) -> dict[str, float | None]:
            value = data.get(key)
            return {str(k): _number(v) for k, v in value.items()} if isinstance(value, dict) else {}

        annotators = data.get("annotators")
        if annotators is None and isinstance(table, list):
            annotators = len(table)
        return cls(
            label_count=_int(data.get("label_count")),
            labeled_items=_int(data.get("labeled_items")),
            annotations=_int(data.get("annotations")),
            annotators=_int(annotators),
            agreement=_number(data.get("agreement")),
            agreement_metric=str(data.get("agreement_metric") or "agreement"),
            agreement_reason=str(data.get("agreement_reason") or ""),
            agreement_ci=ci_pair,
            agreement_items=_int(data.get("agreement_items")),
            agreement_with_flagged=_number(data.get("agreement_with_flagged")),
            agreement_without_flagged=_number(data.get("agreement_without_flagged")),
            flagged_policy=str(data.get("flagged_policy") or ""),
            model_items=_int(data.get("model_items")),
            model_precision=_number(data.get("model_precision")),
            all_agree_rate=_number(data.get("all_agree_rate")),
            ties=_int(data.get("ties")),
            review_items=_int(data.get("review_items")),
            bad_records=_int(data.get("bad_records")),
            min_confidence=_number(data.get("min_confidence")) or 0.0,
            consolidation_method=str(data.get("consolidation_method") or ""),
            task_type=str(data.get("task_type") or ""),
            labels=[str(v) for v in labels] if isinstance(labels, list) else [],
            gold_items=_int(data.get("gold_items")),
            metrics=floats("metrics"),
            per_class_agreement=floats("per_class_agreement"),
            pairwise=pairwise if isinstance(pairwise, dict) else dict(EMPTY_PAIRWISE),
            annotator_table=[r for r in table if isinstance(r, dict)]
            if isinstance(table, list)
            else [],
            decision=GateDecision.from_dict(decision) if isinstance(decision, dict) else None,
        )


def review_row(
    item: str,
    reasons: list[str],
    votes: dict[str, int],
    annotations: list[dict[str, Any]],
    confidence: float,
    *,
    label: Any = None,
    expected_error: float | None = None,
) -> dict[str, Any]:
    """One review-queue row: the consolidated label, its confidence, every answer and why.

    `expected_error` (default `1 - confidence`) ranks the queue: the likeliest mistakes first.
    """
    error = 1.0 - float(confidence) if expected_error is None else expected_error
    return {
        "item": item,
        "label": label,
        "reason": "; ".join(reasons),
        "reasons": reasons,
        "votes": votes,
        "annotations": annotations,
        "confidence": num(confidence),
        "expected_error": num(error),
    }


def annotator_rows(
    ids: np.ndarray,
    stats: Any,
    flagged: np.ndarray,
    reasons: list[str],
    *,
    with_confusion: bool,
) -> list[dict[str, Any]]:
    """The annotator table from `consolidation.AnnotatorStats` and the flags."""
    rows = []
    for a, annotator in enumerate(ids):
        rows.append(
            {
                "annotator": str(annotator),
                "annotations": int(stats.annotations[a]),
                "accuracy": num(stats.accuracy[a]),
                "gold_accuracy": num(stats.gold_accuracy[a]),
                "gold_items": int(stats.gold_items[a]),
                "flagged": bool(flagged[a]),
                "flag_reason": reasons[a],
                "confusion": (
                    [[num(v) for v in row] for row in stats.confusion[a]]
                    if with_confusion
                    else None
                ),
            }
        )
    return rows
