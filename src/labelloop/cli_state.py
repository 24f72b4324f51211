"""`labelloop state STATE_URI [--json] [--check] [--budget JSON] [--break-lease [--yes]]`: the
item ledger at a glance (items, open jobs, runs, spend), its checks, and the way out of a lease
nobody will give back."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from typing import Any

from labelloop import accounting, costs, lease
from labelloop.errors import EXIT_REFUSED
from labelloop.ledger import LEDGER, Ledger, check, open_job_rows


def register(sub: Any) -> None:
    """Add the `state` subcommand."""
    p = sub.add_parser(
        "state",
        help="show the item ledger: items per state, open jobs, last runs",
        description=(
            "Counts per state (pool, queued, labeled), open labeling jobs (provider, key, age, "
            "progress) and the last runs. --check verifies the ledger's invariants and exits "
            "non-zero naming the first violation. --break-lease removes the writer's lease left "
            "by a run that will not give it back (a failed Vertex run's lease otherwise expires "
            "after 6 hours)."
        ),
    )
    p.add_argument("state_uri", metavar="STATE_URI", help="the pipeline's state_uri")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--check", action="store_true", help="verify the invariants (exit 1 if broken)")
    p.add_argument(
        "--break-lease",
        action="store_true",
        help="remove the lease after showing who holds it and for how long (asks first)",
    )
    p.add_argument(
        "--yes", action="store_true", help="with --break-lease: do not ask (scripts, no terminal)"
    )
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
    jobs = open_job_rows(state)
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
        head = (
            "provider", "key", "round", "age", "queued", "progress", "annotations",
            "last collected", "note",
        )  # fmt: skip
        rows = [
            (
                j["provider"],
                j["key"],
                str(j["round"]),
                f"{j['age_hours']:.1f} h",
                str(j["queued"]),
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


def _break_lease(args: argparse.Namespace) -> int:
    """Show the holder, ask (unless --yes), remove the lease only if it is unchanged."""
    rec = lease.read(args.state_uri)
    if rec is None:
        print(f"{args.state_uri}: the lease is free; nothing to break")  # noqa: T201
        return 0
    held = f"held by {lease.describe(rec)}, for {lease.held_for(rec)}"
    print(f"{args.state_uri}: lease {held}")  # noqa: T201 - the command's output
    local = rec.get("host") == socket.gethostname()
    if local and lease.alive(int(rec.get("pid", -1))):
        print(  # noqa: T201
            f"warning: process {rec.get('pid')} is still running on this machine; breaking its "
            "lease lets a second run change the state at the same time",
            file=sys.stderr,
        )
    if not args.yes:
        if not sys.stdin.isatty():
            print(  # noqa: T201
                "error: not broken: confirm with --yes (no terminal to ask on)", file=sys.stderr
            )
            return EXIT_REFUSED
        answer = input("Break it? Only do so if that run has stopped. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not broken")  # noqa: T201
            return EXIT_REFUSED
    if not lease.break_lease(args.state_uri, rec):
        print(  # noqa: T201
            "error: not broken: the lease changed since it was read (its run renewed or gave "
            "it back); run the command again to see who holds it now",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    print(f"lease broken: the next run on {args.state_uri} can start")  # noqa: T201
    return 0


def _state(args: argparse.Namespace) -> int:
    if args.break_lease:
        return _break_lease(args)
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
