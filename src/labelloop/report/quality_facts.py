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


def curve_rows(curve: list[Any]) -> list[list[str]]:
    """One table row per arm of the learning curve: labels, accuracy, 95% interval."""
    rows = []
    for p in curve:
        if not isinstance(p, dict) or not isinstance(p.get("ci"), list) or not p["ci"]:
            continue
        interval = f"[{fmt(number(p['ci'][0]))}, {fmt(number(p['ci'][-1]))}]"
        rows.append(
            [str(p.get("arm")), fmt(integer(p.get("labels"))), fmt(p.get("accuracy")), interval]
        )
    return rows
