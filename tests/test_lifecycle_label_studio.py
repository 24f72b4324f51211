"""Three scheduled runs against a real Label Studio server, people labeling in between.

Run 1 opens a project; people do part of it. Run 2 collects that (partial answers kept), and
tops the queue up in the same project. People finish. Run 3 collects the rest, closes the job,
and the gate and training use every label collected so far. A run with the server unreachable
completes what it can, leaves the job open and loses nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labelloop import ledger, storage
from labelloop.gates import GatePolicy
from labelloop.ledger import Ledger
from labelloop.providers.label_studio_format import to_result
from labelloop.schemas import Item, TaskType, text_item_id
from labelloop.stages.create_dataset import create_dataset
from labelloop.stages.quality_gate import quality_gate
from labelloop.stages.reconcile import reconcile
from labelloop.stages.run_labeling_job import run_labeling_job
from labelloop.stages.select_for_labeling import select_for_labeling
from labelloop.stages.train_model import train_model
from tests.servers import label_studio as ls_server
from tests.test_provider_label_studio import Annotator, _project_count, server  # noqa: F401

pytestmark = pytest.mark.server

TEXTS = [f"review {i}: {'great, loved it' if i % 2 else 'awful, broke at once'}" for i in range(11)]
TRUTH = {text_item_id(t): ("pos" if i % 2 else "neg") for i, t in enumerate(TEXTS)}


def _run(state_uri: str, pool: str, work: Path, run: str, options: dict[str, Any]) -> dict:
    out = work / run
    out.mkdir()
    opts = json.dumps(options)
    rec = reconcile(
        state_uri=state_uri, provider="label_studio", provider_options=opts,
        max_job_age_hours=336.0, run_id=run, summary_uri=str(out / "reconcile.json"),
    )  # fmt: skip
    sel = select_for_labeling(
        import_uri=pool, state_uri=state_uri, task_type="text_classification", labels="neg,pos",
        strategy="random", k=6, seed=0, output_uri=str(out / "selected.jsonl"),
        summary_uri=str(out / "sel.json"), queue_size=8,
    )  # fmt: skip
    create_dataset(
        import_uri=str(out / "selected.jsonl"), task_type="text_classification",
        display_name="t", state_uri=state_uri, manifest_uri=str(out / "m.json"),
        items_uri=str(out / "items.jsonl"), rejects_uri=str(out / "r1.jsonl"),
    )  # fmt: skip
    lab = run_labeling_job(
        items_uri=str(out / "items.jsonl"), task_type="text_classification", labels="neg,pos",
        provider="label_studio", provider_options=opts, labelers_per_item=2,
        annotations_uri=str(out / "annotations.jsonl"), job_uri=str(out / "job.json"),
        rejects_uri=str(out / "r2.jsonl"), state_uri=state_uri, run_id=run,
    )  # fmt: skip
    return {"reconcile": rec, "selected": sel.selected, "labeling": lab, "out": out}


def _label(people: list[Annotator], project: int, *, tasks_each: int | None) -> int:
    """Each person takes up to `tasks_each` tasks from the next-task stream and answers them."""
    done = 0
    for person in people:
        taken = 0
        while tasks_each is None or taken < tasks_each:
            task = person.next_task(project)
            if task is None:
                break
            label = TRUTH[task["data"]["item_id"]]
            person.submit(project, task["id"], to_result(TaskType.TEXT_CLASSIFICATION, label))
            taken += 1
            done += 1
    return done


def test_three_runs_part_done_topped_up_in_place_then_trained(
    server: ls_server.LabelStudioServer,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.admin_token)
    pool = str(tmp_path / "pool.jsonl")
    storage.write_jsonl(
        pool, [Item(id=text_item_id(t), text=t).to_import_record(TaskType.TEXT_CLASSIFICATION)
               for t in TEXTS],
    )  # fmt: skip
    state_uri = str(tmp_path / "state")
    options = {"url": server.url, "dataset": "lifecycle"}
    before = _project_count(server)

    first = _run(state_uri, pool, tmp_path, "run-1", options)
    assert first["selected"] == 6
    assert first["labeling"].annotations == 0  # nobody has labeled yet: the run did not wait
    (job,) = Ledger.load(state_uri).state.open_jobs()
    project = int(job["external_id"])
    assert _project_count(server) == before + 1

    people = [Annotator(server, e) for e in list(ls_server.ANNOTATORS)[:2]]
    _label(people, project, tasks_each=3)  # three tasks with both answers
    _label(people[:1], project, tasks_each=1)  # one more with one answer

    down = _run(state_uri, pool, tmp_path, "run-down", {**options, "url": "http://127.0.0.1:9"})
    assert down["reconcile"].unreachable == 1  # an outage: the job stays open, nothing lost
    assert ledger.check(state_uri) == []

    second = _run(state_uri, pool, tmp_path, "run-2", options)
    assert second["reconcile"].collected == 7
    assert second["reconcile"].labeled == 3
    state = Ledger.load(state_uri).state
    assert state.counts()["labeled"] == 3
    # Topped up to the queue size (8) in the same project, not a new one.
    assert second["selected"] == 5
    assert _project_count(server) == before + 1
    (job,) = state.open_jobs()
    assert int(job["external_id"]) == project
    assert len(job["items"]) == 11
    partial = list(Ledger.load(state_uri).read_annotations(job["key"]))
    assert len(partial) == 7  # the half-answered task's answer is kept

    _label(people, project, tasks_each=None)  # people finish everything

    third = _run(state_uri, pool, tmp_path, "run-3", options)
    assert third["selected"] == 0  # the pool is empty
    state = Ledger.load(state_uri).state
    assert state.counts() == {"pool": 0, "queued": 0, "labeled": 11, "total": 11}
    assert state.jobs[job["key"]]["closed_reason"] == "done"
    assert _project_count(server) == before + 1
    assert ledger.check(state_uri) == []
    rows = [json.loads(x) for x in (third["out"] / "annotations.jsonl").read_text().splitlines()]
    assert len(rows) == 22
    assert {r["round"] for r in rows} == {"run-1"}
    assert {r["collected_round"] for r in rows} == {"run-2", "run-3"}

    out = third["out"]
    gate = quality_gate(
        annotations_uri=str(out / "annotations.jsonl"), task_type="text_classification",
        labels="neg,pos", consolidation_method="mv", agreement_metric="krippendorff_alpha",
        min_confidence=0.0, state_uri=state_uri, consolidated_uri=str(out / "cons.jsonl"),
        review_uri=str(out / "review.jsonl"), metrics_uri=str(out / "metrics.json"),
        rejects_uri=str(out / "gate-rej.jsonl"),
        policy=GatePolicy(min_labeled_count=1, min_agreement=0.0),
    )  # fmt: skip
    assert gate.label_count == 11
    trained = train_model(
        consolidated_uri=str(out / "cons.jsonl"), items_uri=str(out / "items.jsonl"),
        task_type="text_classification", labels="neg,pos", state_uri=state_uri,
        holdout_fraction=0.3, seed=0, model_uri=str(out / "model"),
    )  # fmt: skip
    assert trained.train_items + trained.test_items == 11
