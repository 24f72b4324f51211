"""Lineage of every label: record, query by source, and the relabel round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labelloop import lineage
from labelloop.cli import main
from labelloop.errors import InputError
from labelloop.providers.base import LabelingTask
from labelloop.providers.simulated import SimulatedWorkforce
from labelloop.quality.consolidation import MajorityVote
from labelloop.quality.encode import encode
from labelloop.schemas import Annotation, AnnotatorKind, Item, TaskType

LABELS = ("cat", "dog", "fox")


def _consolidate(annotations: list[Annotation]) -> dict[str, tuple[str | None, float]]:
    enc = encode(annotations, LABELS)
    mv = MajorityVote().fit(
        enc.item, enc.annotator, enc.label, n_items=len(enc.items), n_labels=len(LABELS)
    )
    return {
        item: (LABELS[j] if j >= 0 else None, float(c))
        for item, j, c in zip(enc.items, mv.labels_, mv.confidence_, strict=True)
    }


def _round(
    state: str, people: SimulatedWorkforce, items: list[str], round_no: int, gemini: Annotation
) -> tuple[str, list[Annotation]]:
    task = LabelingTask(TaskType.IMAGE_CLASSIFICATION, LABELS)
    job = people.submit([Item(i, uri=i) for i in items], task, labelers_per_item=3)
    annotations = [*people.collect(job).annotations, gemini]
    consolidated = [{"item": i, "label": v[0]} for i, v in _consolidate(annotations).items()]
    model_source = lineage.Source(
        gemini.annotator,
        "model",
        "gemini_then_human",
        model="gemini-2.5-flash",
        prompt_hash=lineage.prompt_hash("label it", ",".join(LABELS)),
        calibration_id="cal-0123456789ab",
    )
    rows = lineage.label_rows(
        consolidated,
        annotations,
        job=job.key,
        round=round_no,
        method="mv",
        provider="simulated",
        models={gemini.annotator: model_source},
    )
    lineage.write_labels(state, rows)
    return job.key, annotations


def test_lineage_round_trip_names_exactly_the_affected_labels_and_models(tmp_path) -> None:
    state = str(tmp_path / "state")
    rng = np.random.default_rng(5)
    truth = {f"img-{i:03d}.png": LABELS[int(rng.integers(3))] for i in range(90)}
    people = SimulatedWorkforce(truth, workforce="mixed", seed=2)
    ids = sorted(truth)
    gemini = Annotation(ids[0], "gemini:gemini-2.5-flash", truth[ids[0]], AnnotatorKind.MODEL)
    job1, ann1 = _round(state, people, ids[:40], 1, gemini)
    job2, ann2 = _round(
        state,
        people,
        ids[40:],
        2,
        Annotation(ids[41], gemini.annotator, "cat", AnnotatorKind.MODEL),
    )
    # Model 1 trained on round 1's labels; model 2 on rounds 1 and 2 but only 20 of round 2's.
    lineage.write_model(state, "model-r1", trained_on=[(i, job1) for i in ids[:40]], round=1)
    lineage.write_model(
        state,
        "model-r2",
        trained_on=[(i, job1) for i in ids[:40]] + [(i, job2) for i in ids[40:60]],
        round=2,
    )
    lineage.write_model(state, "model-other", trained_on=[(ids[80], job2)], round=2)

    # The annotator who labeled the fewest items, so the answer is not "everything".
    counts: dict[str, int] = {}
    for a in ann1 + ann2:
        counts[a.annotator] = counts.get(a.annotator, 0) + 1
    bad = min((n, name) for name, n in counts.items() if name.startswith("sim-"))[1]
    hits = lineage.query(state, annotator=bad)
    named_items = {(r["item"], r["job"]) for r in hits.labels}
    named_models = {m["model"] for m in hits.models}

    # Remove that annotator's labels and consolidate again.
    affected: set[tuple[str, str]] = set()
    for job, given in ((job1, ann1), (job2, ann2)):
        before = _consolidate(given)
        kept = [a for a in given if a.annotator != bad]
        after = _consolidate(kept)
        changed_inputs = {a.item for a in given} - {
            i
            for i in before
            if sorted(a.annotator for a in given if a.item == i)
            == sorted(a.annotator for a in kept if a.item == i)
        }
        affected |= {(i, job) for i in changed_inputs}
        # Whatever re-consolidation changed is among the labels lineage named.
        assert {(i, job) for i in before if before[i] != after.get(i)} <= named_items
    assert named_items == affected
    assert affected
    trained = {
        m["model"]: {(i, j) for j, items in m["trained_on"].items() for i in items}
        for m in lineage.read_models(state)
    }
    assert named_models == {name for name, used in trained.items() if used & affected}
    assert "model-other" not in named_models or (ids[80], job2) in affected

    # A model and a prompt are sources too; each label row says how it was made.
    by_model = lineage.query(state, model="gemini-2.5-flash")
    assert {r["item"] for r in by_model.labels} == {ids[0], ids[41]}
    row = by_model.labels[0]
    assert row["consolidation"]["method"] == "mv"
    assert row["round"] == 1
    model_src = next(s for s in row["sources"] if s["kind"] == "model")
    assert model_src["calibration_id"] == "cal-0123456789ab"
    assert lineage.query(state, prompt=model_src["prompt_hash"]).labels == by_model.labels
    with pytest.raises(InputError):
        lineage.query(state)


def test_lineage_command(tmp_path, capsys) -> None:
    state = str(tmp_path)
    rows = lineage.label_rows(
        [{"item": "a.png", "label": "cat"}, {"item": "b.png", "label": "dog"}],
        [Annotation("a.png", "ann@example.com", "cat"), Annotation("b.png", "other", "dog")],
        job="job1",
        round=1,
        method="ds",
    )
    lineage.write_labels(state, rows)
    lineage.write_model(state, "models/round-1", trained_on=[("a.png", "job1")], round=1)
    assert main(["lineage", state, "--annotator", "ann@example.com"]) == 0
    out = capsys.readouterr().out
    assert "1 label(s) came from annotator ann@example.com" in out
    assert "a.png" in out
    assert "b.png" not in out
    assert "models/round-1" in out
    assert main(["lineage", state, "--annotator", "ann@example.com", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["models"][0]["touched"] == 1
    assert "trained_on" not in data["models"][0]
    assert main(["lineage", state, "--annotator", "nobody"]) == 1
    assert main(["lineage", state]) == 2


def test_labeled_import_file_carries_each_labels_lineage(tmp_path) -> None:
    from labelloop import storage
    from labelloop.vertex_labels import write_labeled_import_file

    state = str(tmp_path / "state")
    items = ["gs://b/a.png", "gs://b/b.png"]
    annotations = [
        Annotation(items[0], "ann@example.com", "cat"),
        Annotation(items[0], "gemini:gemini-2.5-flash", "cat", AnnotatorKind.MODEL),
        Annotation(items[1], "other", "dog"),
    ]
    consolidated = [{"item": items[0], "label": "cat"}, {"item": items[1], "label": "dog"}]
    rows = lineage.label_rows(
        consolidated, annotations, job="3f2a9c0e1b7d4a65", round=2, method="ds"
    )
    lineage.write_labels(state, rows)
    storage.write_jsonl(str(tmp_path / "cons.jsonl"), consolidated)
    storage.write_jsonl(
        str(tmp_path / "items.jsonl"),
        [Item(i, uri=i).to_import_record(TaskType.IMAGE_CLASSIFICATION) for i in items],
    )
    write_labeled_import_file(
        consolidated_uri=str(tmp_path / "cons.jsonl"),
        items_uri=str(tmp_path / "items.jsonl"),
        task_type="image_classification",
        state_uri=state,
        output_uri=str(tmp_path / "labeled.jsonl"),
        rejects_uri=str(tmp_path / "rejects.jsonl"),
    )
    records = [json.loads(x) for x in (tmp_path / "labeled.jsonl").read_text().splitlines()]
    first = records[0]["classificationAnnotation"]["annotationResourceLabels"]
    assert first == {
        "labelloop_job": "3f2a9c0e1b7d4a65",
        "labelloop_round": "2",
        "labelloop_method": "ds",
        "labelloop_sources": "2",
        "labelloop_model": "gemini-2-5-flash",
    }
    second = records[1]["classificationAnnotation"]["annotationResourceLabels"]
    assert second["labelloop_model"] == "none"
