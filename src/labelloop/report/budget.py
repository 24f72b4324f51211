"""The report's Budget section: what this round cost and what was spent, what the budget
allows, whether labels still pay off (the stop rule on the fixed evaluation set's learning
curve) and, under a guarantee, the auto-accept bound with its audits.

Sources: the selection summary's `budget` block (`labelloop.accounting.Plan`), the labeling job
record's `cost` (priced from the ledger) and provider summary (`guarantee`, `audit`), and the
recorded rounds (`eval_accuracy`, `labels_used`, `spent_usd`)."""

from __future__ import annotations

from typing import Any

from labelloop import stop_rule
from labelloop.report.data import ReportData, integer, number
from labelloop.report.format import kpis


def _usd(value: Any, digits: int = 2) -> str:
    num = number(value)
    return "none" if num is None else f"${num:,.{digits}f}"


def _pct(value: Any) -> str:
    num = number(value)
    return "-" if num is None else f"{num:.1%}"


def _cost(data: ReportData) -> tuple[dict[str, Any], dict[str, Any]]:
    got = data.job.get("cost")
    cost: dict[str, Any] = got if isinstance(got, dict) else {}
    run, total = cost.get("run"), cost.get("total")
    return (run if isinstance(run, dict) else {}), (total if isinstance(total, dict) else {})


def _guarantee(data: ReportData) -> tuple[list[tuple[str, str]], list[str], list[list[str]]]:
    """Tiles, notes and the audit trend of an auto-accept guarantee ([] without one)."""
    got = data.job.get("provider_summary")
    summary: dict[str, Any] = got if isinstance(got, dict) else {}
    decision = summary.get("guarantee")
    if not isinstance(decision, dict):
        return [], [], []
    got = decision.get("certificate")
    cert: dict[str, Any] = got if isinstance(got, dict) else {}
    got = summary.get("audit")
    audit: dict[str, Any] = got if isinstance(got, dict) else {}
    tiles = [
        ("auto-accept", str(decision.get("status", "-"))),
        ("error bound (upper)", _pct(cert.get("upper_bound"))),
        ("target error", _pct(cert.get("target_error"))),
        ("audited this round", str(integer(audit.get("audited")) or 0)),
        ("audit errors", str(integer(audit.get("errors")) or 0)),
    ]
    notes = [f"Auto-accept: {decision.get('reason', '')}"] if decision.get("reason") else []
    trend = [
        [
            str(row.get("round", "")),
            str(row.get("accepted", "")),
            str(row.get("audited", "")),
            str(row.get("errors", "")),
            _pct(row.get("upper_bound")),
        ]
        for row in decision.get("trend") or []
        if isinstance(row, dict)
    ]
    return tiles, notes, trend


def budget(data: ReportData) -> dict[str, Any] | None:
    """The section's content; None when nothing is priced, limited or guaranteed."""
    block = data.selection.get("budget")
    block = block if isinstance(block, dict) else {}
    run_cost, total_cost = _cost(data)
    g_tiles, g_notes, trend = _guarantee(data)
    limited = block.get("per_run_usd") is not None or block.get("total_usd") is not None
    priced = bool(number(block.get("item_usd"))) or bool(number(total_cost.get("total_usd")))
    if not (limited or priced or g_tiles):
        return None
    wanted, affordable = integer(block.get("wanted")), integer(block.get("affordable"))
    notes = []
    if block.get("stop_reason"):
        notes.append(f"Selection stopped: {block['stop_reason']}.")
    elif wanted is not None and affordable is not None and affordable < wanted:
        notes.append(
            f"The budget affords {affordable} of the {wanted} items asked for: selection took "
            "fewer items rather than overspend."
        )
    advice = stop_rule.advise(
        stop_rule.curve_from_rounds(data.rounds),
        min_gain_per_100=number(block.get("min_gain_per_100")) or 0.005,
        min_gain_per_usd=number(block.get("min_gain_per_usd")),
    )
    notes.append(f"{advice.verdict.capitalize()}: {advice.reason}.")
    unpriced = integer(total_cost.get("unpriced")) or 0
    if unpriced:
        notes.append(f"{unpriced} model label(s) have no price in the table: not counted.")
    notes.append(
        "Spend is read from the item ledger (`labelloop state STATE_URI` shows it): people at "
        "the configured rates, Gemini at its price table; docs/budget.md explains the estimate."
    )
    gain = advice.gain_per_100_labels
    tiles = [
        ("this round", _usd(run_cost.get("total_usd"))),
        ("spent so far", _usd(total_cost.get("total_usd", block.get("spent_usd")))),
        ("per-run limit", _usd(block.get("per_run_usd"))),
        ("total limit", _usd(block.get("total_usd"))),
        ("one item costs about", _usd(block.get("item_usd"), 4)),
        ("items asked / affordable", f"{wanted or 0} / {affordable or 0}"),
        ("gain per 100 labels", "-" if gain is None else f"{gain * 100:.2f} pts"),
    ]
    return {
        "lead": (
            f"What labeling cost ({_usd(run_cost.get('total_usd'))} this round, "
            f"{_usd(total_cost.get('total_usd', block.get('spent_usd')))} so far), what the "
            f"budget allows, and whether labels still pay off: {advice.verdict}."
        ),
        "facts": kpis(tiles + g_tiles),
        "notes": notes + g_notes,
        "trend_head": ["audit round", "accepted", "audited", "wrong", "error bound"],
        "trend": trend,
    }
