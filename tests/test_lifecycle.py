"""Rounds against the ledger, step by step: reconcile, top-up selection, queue, collect.

People answer between runs (the simulated workforce's `pace`); nothing waits for them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labelloop import ledger
from labelloop.errors import InputError
from labelloop.ledger import Ledger
from labelloop.stages.create_dataset import create_dataset
from labelloop.stages.generate_import_file import generate_import_file
from labelloop.stages.reconcile import reconcile
from labelloop.stages.run_labeling_job import run_labeling_job
from labelloop.stages.select_for_labeling import select_for_labeling

LABELS = "0,1,2,3,4,5,6,7,8,9"


def run_round(
    sample: Any,
    state_uri: str,
    work: Path,
    run: str,
    *,
    k: int = 20,
    queue_size: int = 0,
    max_age: float = 336.0,
    **options: Any,
) -> dict[str, Any]:
    """Stages 0-4 of one run, as the pipeline chains them; returns the numbers."""
    out = work / run
    out.mkdir(parents=True)
    opts = json.dumps({"truth_uri": sample.truth_uri, **options})
    rec = reconcile(
        state_uri=state_uri, provider="simulated", provider_options=opts,
        max_job_age_hours=max_age, run_id=run, summary_uri=str(out / "reconcile.json"),
    )  # fmt: skip
    generate_import_file(
        source_uri=sample.source_uri, task_type="image_classification", state_uri=state_uri,
        output_uri=str(out / "pool.jsonl"), rejects_uri=str(out / "r0.jsonl"),
    )  # fmt: skip
    sel = select_for_labeling(
        import_uri=str(out / "pool.jsonl"), state_uri=state_uri,
        task_type="image_classification", labels=LABELS, strategy="random", k=k, seed=1,
        output_uri=str(out / "selected.jsonl"), summary_uri=str(out / "sel.json"),
        queue_size=queue_size,
    )  # fmt: skip
    create_dataset(
        import_uri=str(out / "selected.jsonl"), task_type="image_classification",
        display_name="t", state_uri=state_uri, manifest_uri=str(out / "m.json"),
        items_uri=str(out / "items.jsonl"), rejects_uri=str(out / "r1.jsonl"),
    )  # fmt: skip
    lab = run_labeling_job(
        items_uri=str(out / "items.jsonl"), task_type="image_classification", labels=LABELS,
        provider="simulated", provider_options=opts, labelers_per_item=3,
        annotations_uri=str(out / "annotations.jsonl"), job_uri=str(out / "job.json"),
        rejects_uri=str(out / "r2.jsonl"), state_uri=state_uri, run_id=run,
    )  # fmt: skip
    return {"reconcile": rec, "selected": sel.selected, "labeling": lab, "out": out}


def _states(state_uri: str) -> dict[str, int]:
    return Ledger.load(state_uri).state.counts()


def test_people_label_between_runs_and_the_queue_is_only_topped_up(
    digits_sample, tmp_path: Path
) -> None:
    state_uri = str(tmp_path / "state")
    first = run_round(digits_sample, state_uri, tmp_path, "r1", k=20, queue_size=30, pace=0.4)
    assert first["selected"] == 20
    after1 = _states(state_uri)
    assert after1["queued"] > 0  # people have not finished: the run did not wait
    labeled1 = after1["labeled"]
    second = run_round(digits_sample, state_uri, tmp_path, "r2", k=20, queue_size=30, pace=0.4)
    # Backpressure: the queue is topped up to 30, never beyond.
    assert second["selected"] == 30 - second["reconcile"].queued
    assert second["reconcile"].collected > 0
    after2 = _states(state_uri)
    assert after2["queued"] <= 30
    assert after2["labeled"] > labeled1
    rows_before = {
        (r["item"], r["annotator"]) for r in Ledger.load(state_uri).collected_annotations()
    }
    # The gate sees every label so far, with where each came from.
    handed_on = [
        json.loads(x) for x in (second["out"] / "annotations.jsonl").read_text().splitlines()
    ]
    assert {(r["item"], r["annotator"]) for r in handed_on} == rows_before
    assert {"provider", "job", "round", "annotator"} <= set(handed_on[0])
    assert {r["round"] for r in handed_on} == {"r1", "r2"} or {r["round"] for r in handed_on} == {
        "r1"
    }
    for i in range(3, 9):
        run_round(digits_sample, state_uri, tmp_path, f"r{i}", k=20, queue_size=30, pace=0.4)
    rows_after = {
        (r["item"], r["annotator"]) for r in Ledger.load(state_uri).collected_annotations()
    }
    assert rows_before <= rows_after  # nothing collected is ever lost
    assert ledger.check(state_uri) == []
    state = Ledger.load(state_uri).state
    assert len(state.runs) == 8
    assert all(j["key"] for j in state.jobs.values())


def test_a_full_queue_selects_nothing_and_makes_no_job(digits_sample, tmp_path: Path) -> None:
    state_uri = str(tmp_path / "state")
    run_round(digits_sample, state_uri, tmp_path, "r1", k=10, queue_size=10, pace=0.01)
    jobs = len(Ledger.load(state_uri).state.jobs)
    second = run_round(digits_sample, state_uri, tmp_path, "r2", k=10, queue_size=10, pace=0.01)
    if second["reconcile"].queued == 10:
        assert second["selected"] == 0
        assert len(Ledger.load(state_uri).state.jobs) == jobs
    assert _states(state_uri)["queued"] <= 10


def test_an_outage_keeps_the_job_open_and_the_new_items_in_the_pool(
    digits_sample, tmp_path: Path
) -> None:
    state_uri = str(tmp_path / "state")
    run_round(digits_sample, state_uri, tmp_path, "r1", k=10, queue_size=30, pace=0.3)
    before = Ledger.load(state_uri)
    queued = before.state.counts()["queued"]
    kept = {
        (r["item"], r["annotator"]) for k in before.state.jobs for r in before.read_annotations(k)
    }
    down = run_round(
        digits_sample, state_uri, tmp_path, "r2", k=10, queue_size=30, pace=0.3, unreachable=True
    )
    assert down["reconcile"].unreachable == 1
    assert down["labeling"].submit_error  # the run completed what it could
    state = Ledger.load(state_uri).state
    assert state.counts()["queued"] == queued  # the open job is untouched
    assert state.returned.get("failed") == down["selected"]  # new items back, counted
    assert all(j["errors"] == 1 for j in state.open_jobs())
    assert ledger.check(state_uri) == []
    up = run_round(digits_sample, state_uri, tmp_path, "r3", k=10, queue_size=30, pace=0.3)
    assert up["reconcile"].unreachable == 0
    after = Ledger.load(state_uri)
    assert kept <= {
        (r["item"], r["annotator"]) for k in after.state.jobs for r in after.read_annotations(k)
    }
    assert ledger.check(state_uri) == []


def test_a_refused_job_fails_the_step_and_consumes_nothing(digits_sample, tmp_path: Path) -> None:
    state_uri = str(tmp_path / "state")
    out = tmp_path / "r1"
    out.mkdir()
    generate_import_file(
        source_uri=digits_sample.source_uri, task_type="image_classification", state_uri=state_uri,
        output_uri=str(out / "pool.jsonl"), rejects_uri=str(out / "r0.jsonl"),
    )  # fmt: skip
    items = "".join(line + "\n" for line in (out / "pool.jsonl").read_text().splitlines()[:5])
    (out / "items.jsonl").write_text(items)
    # The shipped Vertex config's mistake: a simulated workforce without its truth file.
    with pytest.raises(InputError, match="truth_uri"):
        run_labeling_job(
            items_uri=str(out / "items.jsonl"), task_type="image_classification", labels=LABELS,
            provider="simulated", provider_options="{}", labelers_per_item=3,
            annotations_uri=str(out / "a.jsonl"), job_uri=str(out / "j.json"),
            rejects_uri=str(out / "r.jsonl"), state_uri=state_uri, run_id="r1",
        )  # fmt: skip
    assert ledger.excluded_ids(state_uri) == set()


def test_an_old_job_expires_keeping_its_answers(digits_sample, tmp_path: Path) -> None:
    state_uri = str(tmp_path / "state")
    run_round(digits_sample, state_uri, tmp_path, "r1", k=20, pace=0.3)
    led = Ledger.load(state_uri)
    (job,) = led.state.open_jobs()
    answered = {r["item"] for r in led.read_annotations(job["key"])}
    second = run_round(digits_sample, state_uri, tmp_path, "r2", k=5, max_age=1e-9, pace=0.3)
    assert second["reconcile"].closed >= 1
    state = Ledger.load(state_uri).state
    assert state.jobs[job["key"]]["closed_reason"] == "expired"
    for item in job["items"]:
        entry = state.items[item]
        if item in answered:
            assert entry["state"] == "labeled" or entry.get("job") != job["key"]
    assert state.returned.get("expired", 0) == second["reconcile"].returned
    assert ledger.check(state_uri) == []


def test_a_cancelled_job_returns_its_unlabeled_items(digits_sample, tmp_path: Path) -> None:
    state_uri = str(tmp_path / "state")
    run_round(digits_sample, state_uri, tmp_path, "r1", k=20, pace=0.2)
    (job,) = Ledger.load(state_uri).state.open_jobs()
    ledger.request_cancel(state_uri, job["key"])
    run_round(digits_sample, state_uri, tmp_path, "r2", k=1, pace=0.2)
    state = Ledger.load(state_uri).state
    assert state.jobs[job["key"]]["closed_reason"] == "cancelled"
    assert state.returned.get("cancelled", 0) > 0
    assert ledger.check(state_uri) == []


def test_killed_between_queue_and_submit_resumes_the_same_job(
    digits_sample, tmp_path: Path
) -> None:
    """A crash right after the ledger queued the items: the next run submits that very job."""
    state_uri = str(tmp_path / "state")
    led = Ledger.load(state_uri)
    from labelloop.schemas import Item, TaskType

    uris = [f"{digits_sample.source_uri}/digit-0000{i}.png" for i in range(4)]
    items = [Item(id=u, uri=u) for u in uris]
    image = TaskType.IMAGE_CLASSIFICATION
    led.append(
        "queue", run="r1", job="k1", provider="simulated", options={},
        task_type="image_classification", labels=LABELS.split(","), labelers_per_item=3,
        items=[{"id": i.id, "record": i.to_import_record(image)} for i in items],
    )  # fmt: skip
    result = run_round(digits_sample, state_uri, tmp_path, "r2", k=3)
    state = Ledger.load(state_uri).state
    assert state.jobs["k1"]["status"] == "closed"
    assert state.jobs["k1"]["external_id"]
    assert result["reconcile"].labeled == 4
    assert ledger.check(state_uri) == []


@pytest.mark.server
def test_rounds_on_gcs_state(digits_sample, gcs_bucket: str, tmp_path: Path) -> None:
    state_uri = f"{gcs_bucket}/state"
    run_round(digits_sample, state_uri, tmp_path, "r1", k=10, queue_size=15, pace=0.5)
    run_round(digits_sample, state_uri, tmp_path, "r2", k=10, queue_size=15, pace=0.5)
    assert ledger.check(state_uri) == []
    counts = _states(state_uri)
    assert counts["labeled"] > 0
    assert counts["queued"] <= 15
