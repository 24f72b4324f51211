"""A labeling operation over 30 scheduled runs with an asynchronous workforce.

Each run is what the pipeline runs before the quality gate, through the same step functions
its components call: reconcile every open job, top the open queue up (backpressure), queue the
new items at the provider, collect once. People answer between runs at a pace that varies from
run to run, one annotator is much slower than the others, one job is cancelled, and the
provider is down for one run. At the end the operation stops: a last reconcile closes every
open job (answers kept, unanswered items back to the pool).

It checks that every item ever selected ends labeled or back in the pool, that no collected
annotation was lost between runs, and that the ledger's invariants hold after every run; then
prints one row per run.

    python benchmarks/long_run.py [--runs 30] [--state DIR] [--gcs]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from labelloop import ledger  # noqa: E402
from labelloop.ledger import Ledger  # noqa: E402
from labelloop.sample_data import materialize_digits  # noqa: E402
from labelloop.stages.create_dataset import create_dataset  # noqa: E402
from labelloop.stages.generate_import_file import generate_import_file  # noqa: E402
from labelloop.stages.reconcile import reconcile  # noqa: E402
from labelloop.stages.run_labeling_job import run_labeling_job  # noqa: E402
from labelloop.stages.select_for_labeling import select_for_labeling  # noqa: E402

LABELS = "0,1,2,3,4,5,6,7,8,9"
SLOW_ANNOTATOR = "sim-02"
COLUMNS = (
    "run", "pace", "event", "collected", "labeled+", "closed", "returned", "selected",
    "queued", "open jobs", "labeled", "pool", "secs",
)  # fmt: skip


def pace_of(run: int) -> float:
    """People's pace between two runs: it varies (weekends, busy weeks)."""
    return round(0.15 + 0.6 * abs(math.sin(run * 0.7)), 2)


def one_run(
    run: int, *, sample: Any, state_uri: str, work: Path, options: dict[str, Any], k: int,
    queue_size: int, max_age: float,
) -> dict[str, Any]:  # fmt: skip
    out = work / f"run-{run:02d}"
    out.mkdir(parents=True)
    opts = json.dumps(options)
    run_id = f"run-{run:02d}"
    rec = reconcile(
        state_uri=state_uri, provider="simulated", provider_options=opts,
        max_job_age_hours=max_age, run_id=run_id, summary_uri=str(out / "reconcile.json"),
    )  # fmt: skip
    generate_import_file(
        source_uri=sample.source_uri, task_type="image_classification", state_uri=state_uri,
        output_uri=str(out / "pool.jsonl"), rejects_uri=str(out / "r0.jsonl"),
    )  # fmt: skip
    sel = select_for_labeling(
        import_uri=str(out / "pool.jsonl"), state_uri=state_uri,
        task_type="image_classification", labels=LABELS, strategy="random", k=k, seed=run,
        output_uri=str(out / "selected.jsonl"), summary_uri=str(out / "sel.json"),
        queue_size=queue_size,
    )  # fmt: skip
    create_dataset(
        import_uri=str(out / "selected.jsonl"), task_type="image_classification",
        display_name="bench", state_uri=state_uri, manifest_uri=str(out / "m.json"),
        items_uri=str(out / "items.jsonl"), rejects_uri=str(out / "r1.jsonl"),
    )  # fmt: skip
    lab = run_labeling_job(
        items_uri=str(out / "items.jsonl"), task_type="image_classification", labels=LABELS,
        provider="simulated", provider_options=opts, labelers_per_item=3,
        annotations_uri=str(out / "annotations.jsonl"), job_uri=str(out / "job.json"),
        rejects_uri=str(out / "r2.jsonl"), state_uri=state_uri, run_id=run_id,
    )  # fmt: skip
    return {"reconcile": rec, "selected": sel.selected, "labeling": lab}


def _all_annotations(state_uri: str) -> set[tuple[str, str, str]]:
    led = Ledger.load(state_uri)
    return {
        (r["job"], r["item"], r["annotator"])
        for k in led.state.jobs
        for r in led.read_annotations(k)
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--selection-size", type=int, default=40)
    parser.add_argument("--queue-size", type=int, default=80)
    parser.add_argument("--state", help="state folder (default: a temporary one)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="labelloop-long-run-"))
    sample = materialize_digits(work / "cache", limit=1000)
    state_uri = args.state or str(work / "state")
    rows: list[tuple[str, ...]] = []
    kept: set[tuple[str, str, str]] = set()
    cancelled_at = args.runs * 2 // 5
    outage_at = args.runs * 3 // 5
    start_all = time.perf_counter()
    for run in range(1, args.runs + 1):
        pace = pace_of(run)
        event = ""
        options: dict[str, Any] = {
            "truth_uri": sample.truth_uri,
            "pace": pace,
            "annotator_pace": {SLOW_ANNOTATOR: 0.05},
        }
        if run == cancelled_at:
            # The newest job: people have barely started on it.
            newest = Ledger.load(state_uri).state.open_jobs()[-1]
            ledger.request_cancel(state_uri, newest["key"])
            event = f"cancel {newest['key'][:6]}"
        if run == outage_at:
            options["unreachable"] = True
            event = "outage"
        start = time.perf_counter()
        got = one_run(
            run, sample=sample, state_uri=state_uri, work=work, options=options,
            k=args.selection_size, queue_size=args.queue_size, max_age=336.0,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        problems = ledger.check(state_uri)
        if problems:
            print(f"run {run}: ledger invariant violated: {problems[0]}", file=sys.stderr)
            return 1
        now = _all_annotations(state_uri)
        if not kept <= now:
            print(f"run {run}: {len(kept - now)} annotation(s) lost", file=sys.stderr)
            return 1
        kept = now
        counts = Ledger.load(state_uri).state.counts()
        rec = got["reconcile"]
        rows.append(
            (
                str(run), f"{pace:.2f}", event, str(rec.collected), str(rec.labeled),
                str(rec.closed), str(rec.returned), str(got["selected"]), str(counts["queued"]),
                str(got["labeling"].open_jobs), str(counts["labeled"]), str(counts["pool"]),
                f"{seconds:.2f}",
            )
        )  # fmt: skip
    # The operation stops: every open job is closed; answers kept, the rest back to the pool.
    final = reconcile(
        state_uri=state_uri, provider="simulated",
        provider_options=json.dumps({"truth_uri": sample.truth_uri, "pace": 0.5}),
        max_job_age_hours=1e-9, run_id="final", summary_uri=str(work / "final.json"),
    )  # fmt: skip
    state = Ledger.load(state_uri).state
    counts = state.counts()
    rows.append(
        (
            "end", "-", "close all", str(final.collected), str(final.labeled), str(final.closed),
            str(final.returned), "-", str(counts["queued"]), "0", str(counts["labeled"]),
            str(counts["pool"]), "-",
        )
    )  # fmt: skip
    widths = [max(len(r[i]) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    for row in [COLUMNS, *rows]:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    sent = {i for i, e in state.items.items()}
    ok = (
        counts["queued"] == 0
        and all(e["state"] in ("labeled", "pool") for e in state.items.values())
        and not ledger.check(state_uri)
        and kept <= _all_annotations(state_uri)
    )
    print(
        f"\n{len(sent)} items selected over {args.runs} runs: {counts['labeled']} labeled, "
        f"{sum(1 for e in state.items.values() if e['state'] == 'pool')} back in the pool "
        f"(returned: {json.dumps(state.returned, sort_keys=True)}); "
        f"{len(kept)} annotations, none lost; invariants hold after every run: {ok}; "
        f"{time.perf_counter() - start_all:.1f} s in all"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
