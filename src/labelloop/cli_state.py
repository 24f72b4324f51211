"""`labelloop state STATE_URI [--json] [--check] [--budget JSON]`: the item ledger at a glance
(items, open jobs, runs, spend), and its checks."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from labelloop import accounting, costs, lease
from labelloop.ledger import LEDGER, Ledger, age_hours, check


def register(sub: Any) -> None:
    """Add the `state` subcommand."""
    p = sub.add_parser(
        "state",
        help="show the item ledger: items per state, open jobs, last runs",
        description=(
            "Counts per state (pool, queued, labeled), open labeling jobs (provider, key, age, "
            "progress) and the last runs. --check verifies the ledger's invariants and exits "
            "non-zero naming the first violation."
        ),
    )
    p.add_argument("state_uri", metavar="STATE_URI", help="the pipeline's state_uri")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--check", action="store_true", help="verify the invariants (exit 1 if broken)")
    p.add_argument(
        "--budget",
        default=None,
        metavar="JSON",
        help="rates to price the ledger with, as the pipeline's budget parameter "
        "(default: the rates of the last run that labeled)",
    )
    p.set_defaults(func=_state)


def _rates(state: Any, budget: str | None) -> costs.Rates:
    """The rates given, else those the last labeling run recorded, else none."""
    if budget is not None:
        return costs.parse_budget(budget, field="--budget").rates
    for run in reversed(state.runs):
        if isinstance(run.get("budget"), dict):
            return costs.parse_budget(json.dumps(run["budget"])).rates
    return costs.Rates()


def summary(state_uri: str, *, budget: str | None = None) -> dict[str, Any]:
    """The `--json` document."""
    ledger = Ledger.load(state_uri)
    state = ledger.state
    paid = accounting.spend(ledger, _rates(state, budget))
    jobs = [
        {
            "key": j["key"],
            "provider": j["provider"],
            "external_id": j.get("external_id"),
            "round": j["round"],
            "created_at": j["created_at"],
            "age_hours": round(age_hours(j["created_at"]), 2),
            "items": len(j["items"]),
            "labeled": j.get("labeled", 0),
            "progress": j.get("progress", {}),
            "annotations": j.get("annotations", 0),
            "collections": j.get("collections", 0),
            "last_collected_at": j.get("last_collected_at"),
            "errors": j.get("errors", 0),
            "last_error": j.get("last_error", ""),
            "cancel_requested": bool(j.get("cancel_requested")),
        }
        for j in state.open_jobs()
    ]
    closed: dict[str, int] = {}
    for j in state.jobs.values():
        if j["status"] != "open":
            closed[j.get("closed_reason", "?")] = closed.get(j.get("closed_reason", "?"), 0) + 1
    return {
        "state_uri": state_uri,
        "items": state.counts(),
        "open_jobs": len(jobs),
        "jobs": jobs,
        "closed_jobs": closed,
        "returned_to_pool": dict(state.returned),
        "used": state.used,
        "runs": state.runs[-10:],
        "events": ledger.seq,
        "lease": lease.read(state_uri),
        "spend": {
            "total": paid.total.to_json(),
            "runs": {
                r["run"]: paid.runs[r["run"]].to_json()
                for r in state.runs[-10:]
                if r["run"] in paid.runs
            },
            "priced": paid.priced,
        },
    }


def _table(doc: dict[str, Any]) -> str:
    items = doc["items"]
    lines = [
        f"state: {doc['state_uri']}  ({doc['events']} events in {LEDGER}/)",
        f"items: pool {items['pool']}  queued {items['queued']}  labeled {items['labeled']}"
        f"  total {items['total']}",
    ]
    if doc["returned_to_pool"]:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(doc["returned_to_pool"].items()))
        lines.append(f"returned to the pool so far: {parts}")
    lines.append(f"open jobs: {doc['open_jobs']}")
    if doc["jobs"]:
        head = ("provider", "key", "age", "progress", "annotations", "last collected", "note")
        rows = [
            (
                j["provider"],
                j["key"],
                f"{j['age_hours']:.1f} h",
                f"{j['progress'].get('labeled', 0)}/{j['items']}",
                str(j["annotations"]),
                str(j["last_collected_at"] or "-"),
                (f"unreachable x{j['errors']}: {j['last_error'][:40]}" if j["errors"] else "")
                + (" cancel requested" if j["cancel_requested"] else ""),
            )
            for j in doc["jobs"]
        ]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        for row in [head, *rows]:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    if doc["closed_jobs"]:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(doc["closed_jobs"].items()))
        lines.append(f"closed jobs: {parts}")
    if doc["runs"]:
        lines.append("last runs:")
        for run in doc["runs"]:
            outcome = run.get("outcome", {})
            rec = run.get("reconcile", {})
            lines.append(
                f"  {run['at']}  {run['run']}: collected {rec.get('collected', 0)}, "
                f"returned {rec.get('returned', 0)}, new items {run.get('new_items', 0)}, "
                f"unreachable {rec.get('unreachable', 0)}"
                + (f"; {outcome.get('reason', '')}" if outcome else "; unfinished")
            )
    spend = doc["spend"]["total"]
    lines.append(
        f"spent: ${spend['total_usd']:.2f} (people ${spend['human_usd']:.2f} for "
        f"{spend['human_labels']} labels, models ${spend['model_usd']:.2f} for "
        f"{spend['model_labels']} labels"
        + (f", {spend['unpriced']} unpriced" if spend["unpriced"] else "")
        + ")"
        + ("" if doc["spend"]["priced"] else "; no rates set (--budget)")
    )
    held = doc["lease"]
    lines.append(f"lease: {lease.describe(held) if held else 'free'}")
    return "\n".join(lines)


def _state(args: argparse.Namespace) -> int:
    doc = summary(args.state_uri, budget=args.budget)
    problems = check(args.state_uri) if args.check else []
    if args.check:
        doc["check"] = {"ok": not problems, "problems": problems}
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True, default=str))  # noqa: T201 - output
    else:
        print(_table(doc))  # noqa: T201 - the command's output
        if args.check:
            print(f"check: {'ok' if not problems else 'FAILED: ' + problems[0]}")  # noqa: T201
    if problems:
        print(f"ledger invariant violated: {problems[0]}", file=sys.stderr)  # noqa: T201
        return 1
    return 0
