"""Report facts of issue 18: who the gate listened to, and how the model does on fixed data."""

from __future__ import annotations

from typing import Any

from labelloop.report.data import ReportData, integer, number
from labelloop.report.format import fmt


def people_and_models(data: ReportData) -> list[tuple[str, str]]:
    """Agreement with and without flagged annotators (and which the gate read), model labels."""
    r = data.result
    out = [("agreement items", fmt(r.agreement_items))]
    if r.flagged_policy:
        used = "with" if r.flagged_policy == "keep" else "without"
        out += [
            ("with flagged", fmt(r.agreement_with_flagged)),
            ("without flagged", fmt(r.agreement_without_flagged)),
            ("gate used", f"{used} flagged ({r.flagged_policy})"),
        ]
    if r.model_items:
        out += [("auto-accepted", fmt(r.model_items)), ("model precision", fmt(r.model_precision))]
    return out


CURVE_HEAD = ("round", "arm", "labels", "accuracy", "ci_low", "ci_high")


def curve_points(rounds: list[dict[str, Any]]) -> list[list[Any]]:
    """Every round's learning-curve points (`CURVE_HEAD` rows), oldest round first."""
    rows: list[list[Any]] = []
    for number_, record in enumerate(rounds, start=1):
        curve = record.get("curve")
        for p in curve if isinstance(curve, list) else []:
            if not isinstance(p, dict) or not isinstance(p.get("ci"), list) or not p["ci"]:
                continue
            labels, accuracy = integer(p.get("labels")), number(p.get("accuracy"))
            if labels is None or accuracy is None:
                continue
            low, high = number(p["ci"][0]), number(p["ci"][-1])
            rows.append(
                [number_, str(p.get("arm")), labels, round(accuracy, 4)]
                + [None if v is None else round(v, 4) for v in (low, high)]
            )
    return rows
