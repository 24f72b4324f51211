"""The report's Budget section: what was spent, what one more item costs, and why selection
stopped (from the selection summary's `budget` block, `labelloop.costs`)."""

from __future__ import annotations

from typing import Any

from labelloop.report.data import ReportData, integer, number
from labelloop.report.format import kpis


def _usd(value: Any, digits: int = 2) -> str:
    num = number(value)
    return "none" if num is None else f"${num:,.{digits}f}"


def budget(data: ReportData) -> dict[str, Any] | None:
    """Spend before this round, the limits, the cost estimate per item and the selection it
    allowed; None when the run has no budget block or nothing is priced or limited."""
    block = data.selection.get("budget")
    if not isinstance(block, dict):
        return None
    limited = block.get("per_run_usd") is not None or block.get("total_usd") is not None
    if not limited and not number(block.get("item_usd")):
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
    notes.append(
        "Costs per labeling job are kept under the state's costs/ folder (people at the "
        "configured rates, Gemini at its price table); docs/budget.md explains the estimate."
    )
    spent = _usd(block.get("spent_usd"))
    return {
        "lead": f"What labeling cost ({spent} before this round) and what the budget allows.",
        "facts": kpis(
            [
                ("spent before this round", spent),
                ("per-run limit", _usd(block.get("per_run_usd"))),
                ("total limit", _usd(block.get("total_usd"))),
                ("one item costs about", _usd(block.get("item_usd"), 4)),
                ("items asked / affordable", f"{wanted or 0} / {affordable or 0}"),
            ]
        ),
        "notes": notes,
    }
