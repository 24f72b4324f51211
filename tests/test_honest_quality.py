"""Right answers from people and models together: honest agreement, flagged annotators,
calibrated model answers, review that sends items back, and a fixed evaluation set."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from labelloop import evaluation, relabel, state, storage
from labelloop.gates import GatePolicy
from labelloop.quality.consolidation import DawidSkene, MajorityVote
from labelloop.quality.encode import encode_columns
from labelloop.schemas import Item, TaskType
from labelloop.stages.quality_gate import quality_gate
from labelloop.stages.run_labeling_job import run_labeling_job
from labelloop.stages.select_for_labeling import select_for_labeling
from tests.servers import gemini_fake

LABELS = ["cat", "dog", "fox"]


def gate(
    tmp_path: Path, rows: list[dict[str, Any]], *, name: str = "r", **options: Any
) -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]:
    """Run the quality step; return its result, consolidated rows and review rows."""
    ann = tmp_path / f"{name}-ann.jsonl"
    storage.write_jsonl(str(ann), rows)
    kwargs: dict[str, Any] = {
        "task_type": "image_classification",
        "labels": ",".join(LABELS),
        "consolidation_method": "ds",
        "agreement_metric": "krippendorff_alpha",
        "min_confidence": 0.0,
        "state_uri": str(tmp_path / "state"),
        "policy": GatePolicy(min_labeled_count=1, min_agreement=0.3),
        **options,
    }
    result = quality_gate(
        annotations_uri=str(ann),
        consolidated_uri=str(tmp_path / f"{name}-cons.jsonl"),
        review_uri=str(tmp_path / f"{name}-review.jsonl"),
        metrics_uri=str(tmp_path / f"{name}-quality.json"),
        rejects_uri=str(tmp_path / f"{name}-rej.jsonl"),
        **kwargs,
    )
    cons = [json.loads(x) for x in (tmp_path / f"{name}-cons.jsonl").read_text().splitlines()]
    review = [json.loads(x) for x in (tmp_path / f"{name}-review.jsonl").read_text().splitlines()]
    return result, cons, review


def crowd(n: int, skills: dict[str, float], *, seed: int = 0) -> tuple[list[dict], dict]:
    rng = np.random.default_rng(seed)
    rows, truth = [], {}
    for i in range(n):
        t = int(rng.integers(0, 3))
        item = f"gs://b/{i:03d}.png"
        truth[item] = LABELS[t]
        for name, p in skills.items():
            answer = t if rng.random() < p else int((t + rng.integers(1, 3)) % 3)
            rows.append({"item": item, "annotator": name, "label": LABELS[answer]})
    return rows, truth


# -- agreement that is honest ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "why"),
    [
        ([{"item": f"i{i}", "annotator": "ann", "label": LABELS[i % 3]} for i in range(30)], "two"),
        (
            [{"item": f"i{i}", "annotator": a, "label": "cat"} for i in range(30) for a in "xy"],
            "same class",
        ),
    ],
    ids=["single-annotator", "single-class"],
)
def test_unmeasurable_agreement_is_null_with_a_reason_and_the_policy_decides(
    tmp_path: Path, rows: list[dict[str, Any]], why: str
) -> None:
    closed, _, _ = gate(tmp_path, rows, policy=GatePolicy(1, -1.0, unmeasurable="close"))
    quality = json.loads((tmp_path / "r-quality.json").read_text())
    assert closed.agreement is None
    assert quality["agreement"] is None  # never an invented 0
    assert why in closed.agreement_reason
    assert closed.decision.train is False  # even with a negative threshold
    assert "not measurable" in closed.decision.reason
    assert why in closed.decision.reason
    assert quality["decision"]["rule"] == "unmeasurable:close"
    opened, _, _ = gate(tmp_path, rows, policy=GatePolicy(1, 0.6, unmeasurable="train"))
    assert opened.decision.train
    assert opened.decision.rule == "unmeasurable:train"


def test_too_few_doubly_labeled_items_make_agreement_unmeasurable(tmp_path: Path) -> None:
    rows, _ = crowd(5, {"a": 0.9, "b": 0.9})
    result, _, _ = gate(tmp_path, rows, policy=GatePolicy(1, 0.3, min_agreement_items=10))
    assert result.agreement is None
    assert "only 5 item(s)" in result.agreement_reason
    assert result.decision.train is False


# -- annotator reliability in the decision -----------------------------------------------------


def test_flagged_annotator_is_excluded_and_the_report_has_both_figures(tmp_path: Path) -> None:
    rows, truth = crowd(80, {"good1": 0.9, "good2": 0.85, "good3": 0.8, "noise": 0.34})
    excluded, cons, _ = gate(tmp_path, rows, name="ex")
    kept, cons_kept, _ = gate(tmp_path, rows, name="keep", flagged_policy="keep")
    flagged = [r["annotator"] for r in excluded.annotator_table if r["flagged"]]
    assert flagged == ["noise"]
    assert excluded.agreement_without_flagged > excluded.agreement_with_flagged
    assert excluded.agreement == pytest.approx(excluded.agreement_without_flagged, abs=1e-6)
    assert kept.agreement == pytest.approx(kept.agreement_with_flagged, abs=1e-6)
    assert excluded.flagged_policy == "exclude"
    acc = np.mean([truth[r["item"]] == r["label"] for r in cons])
    acc_kept = np.mean([truth[r["item"]] == r["label"] for r in cons_kept])
    assert acc >= acc_kept - 0.02


# -- mixed consolidation: Gemini fake + simulated people ---------------------------------------


@pytest.mark.server
def test_mixed_round_keeps_calibrated_answers_and_beats_both_baselines(tmp_path: Path) -> None:
    labels = ("cat", "dog", "fox")
    rng = np.random.default_rng(5)
    n = 120
    uris = [f"gs://bucket/img{i:03d}.png" for i in range(n)]
    truth = {u: labels[i % 3] for i, u in enumerate(uris)}
    sure = rng.random(n) < 0.6
    answers = {
        u: (truth[u], -0.01) if sure[i] else (labels[(i + 1) % 3] if i % 2 else truth[u], -1.5)
        for i, u in enumerate(uris)
    }

    def model(body: dict[str, Any]) -> tuple[int, Any]:
        data = body["contents"][0]["parts"][0]["fileData"]
        uri = data.get("fileUri", data.get("file_uri"))
        label, lp = answers[uri]
        return 200, gemini_fake.answer(label, lp)

    truth_csv = tmp_path / "truth.csv"
    truth_csv.write_text("item,label\n" + "".join(f"{u},{truth[u]}\n" for u in uris))
    calibration = tmp_path / "calibration.jsonl"
    storage.write_jsonl(str(calibration), [{"item": u, "label": truth[u]} for u in uris[:40]])
    pool = uris[40:]
    items_uri = str(tmp_path / "items.jsonl")
    storage.write_jsonl(
        items_uri, [Item(u, uri=u).to_import_record(TaskType.IMAGE_CLASSIFICATION) for u in pool]
    )
    with gemini_fake.serve(model) as fake:
        options = {
            "gemini": {"project": "p", "base_url": fake.url, "cache_uri": str(tmp_path / "g")},
            "human": {
                "provider": "simulated",
                "options": {"truth_uri": str(truth_csv), "workforce": "mixed"},
            },
            "calibration_uri": str(calibration),
            "target_precision": 0.95,
        }
        run_labeling_job(
            items_uri=items_uri,
            task_type="image_classification",
            labels=",".join(labels),
            provider="gemini_then_human",
            provider_options=json.dumps(options),
            labelers_per_item=3,
            annotations_uri=str(tmp_path / "ann.jsonl"),
            job_uri=str(tmp_path / "job.json"),
            rejects_uri=str(tmp_path / "rej.jsonl"),
        )
    rows = [json.loads(x) for x in (tmp_path / "ann.jsonl").read_text().splitlines()]
    result, cons, _ = gate(
        tmp_path,
        rows,
        job_uri=str(tmp_path / "job.json"),
        policy=GatePolicy(min_labeled_count=50, min_agreement=0.3),
    )
    by_item = {r["item"]: r for r in cons}
    auto = {r["item"]: r["label"] for r in rows if r["annotator_kind"] == "model"}
    assert auto
    # Auto-accepted answers survive consolidation, trainable, at their calibrated precision.
    assert all(by_item[u]["label"] == lab and by_item[u]["trainable"] for u, lab in auto.items())
    assert np.mean([auto[u] == truth[u] for u in auto]) >= 0.95
    assert result.model_items == len(auto)
    assert result.model_precision >= 0.95
    for u in auto:
        assert by_item[u]["confidence"] == pytest.approx(result.model_precision, abs=0.05)
    # Consolidated accuracy >= the better of majority vote and humans-only Dawid-Skene.
    acc = np.mean([truth[u] == by_item[u]["label"] for u in pool])
    enc = encode_columns(
        [r["item"] for r in rows],
        [r["annotator"] for r in rows],
        [r["label"] for r in rows],
        labels,
    )
    dims = {"n_items": enc.n_items, "n_labels": 3}
    mv = MajorityVote().fit(enc.item, enc.annotator, enc.label, **dims).labels_
    models = {r["annotator"] for r in rows if r["annotator_kind"] == "model"}
    human = ~np.array([str(a) in models for a in enc.annotators])[enc.annotator]
    ds = DawidSkene().fit(
        enc.item[human], enc.annotator[human], enc.label[human],
        n_annotators=enc.n_annotators, **dims,
    ).labels_  # fmt: skip
    ds = np.where(ds >= 0, ds, mv)  # humans-only DS has no answer on auto items: fall back
    base = [
        np.mean(
            [
                truth[str(u)] == (labels[p] if p >= 0 else None)
                for u, p in zip(enc.items, v, strict=True)
            ]
        )
        for v in (mv, ds)
    ]
    assert acc >= max(base) - 1e-9
    # Agreement is measured between people only, and the gate opens on it.
    assert result.agreement is not None
    assert result.decision.train
    assert result.decision.rule == "agreement"


@pytest.mark.parametrize(
    ("name", "kind"),
    [("gemini:flash", None), ("vision-v2", "model")],
    ids=["legacy-name-prefix", "annotator_kind-field"],
)
def test_all_model_round_opens_on_calibrated_precision(
    tmp_path: Path, name: str, kind: str | None
) -> None:
    rows = [{"item": f"i{i}", "annotator": name, "label": LABELS[i % 3]} for i in range(30)]
    if kind:
        rows = [{**r, "annotator_kind": kind} for r in rows]
    job = tmp_path / "job.json"
    record = {"provider_summary": {"model_annotator": name,
                                   "calibration": {"precision": 0.97, "accepted": 40}}}  # fmt: skip
    job.write_text(json.dumps(record))
    result, cons, _ = gate(tmp_path, rows, job_uri=str(job), policy=GatePolicy(20, 0.6))
    assert result.agreement is None
    assert result.decision.train
    assert result.decision.rule == "unmeasurable:model_precision"
    assert "0.970" in result.decision.reason
    assert all(r["trainable"] and r["label"] == LABELS[int(r["item"][1:]) % 3] for r in cons)
    assert all(r["confidence"] == pytest.approx(0.97, abs=0.02) for r in cons)
    strict, _, _ = gate(
        tmp_path, rows, job_uri=str(job), policy=GatePolicy(20, 0.6, min_model_precision=0.99)
    )
    assert not strict.decision.train


def test_annotator_kind_field_decides_and_the_name_prefix_is_only_a_counted_fallback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from labelloop.annotations import read_annotations
    from labelloop.schemas import AnnotatorKind

    path = tmp_path / "a.jsonl"
    storage.write_jsonl(str(path), [
        {"item": "a", "annotator": "model:bob", "annotator_kind": "human", "label": "cat"},
        {"item": "a", "annotator": "v2", "annotator_kind": "model", "label": "cat"},
        {"item": "a", "annotator": "gemini:flash", "label": "dog"},  # written before the field
        {"item": "a", "annotator": "ann1", "label": "dog"},
        {"item": "b", "annotator": "ann1", "annotator_kind": "robot", "label": "dog"},
    ])  # fmt: skip
    with caplog.at_level("INFO", logger="labelloop.annotations"):
        read = read_annotations(str(path), task_type=TaskType.IMAGE_CLASSIFICATION, labels=LABELS)
    kinds = {a.annotator: a.annotator_kind for a in read.annotations}
    assert kinds == {
        "model:bob": AnnotatorKind.HUMAN,
        "v2": AnnotatorKind.MODEL,
        "gemini:flash": AnnotatorKind.MODEL,
        "ann1": AnnotatorKind.HUMAN,
    }
    assert read.legacy_kinds == 2
    assert "2 annotation(s) without annotator_kind" in caplog.text
    assert [(b.line, b.field) for b in read.bad] == [(5, "annotator_kind")]
    # Written back, every row carries the field.
    assert all(a.to_json(TaskType.IMAGE_CLASSIFICATION)["annotator_kind"] for a in read.annotations)


# -- review that acts --------------------------------------------------------------------------


def test_review_rows_explain_and_go_back_to_labeling_next_round(tmp_path: Path) -> None:
    rows, truth = crowd(40, {"a": 0.75, "b": 0.6, "c": 0.5}, seed=2)
    _, cons, review = gate(tmp_path, rows, name="r1", min_confidence=0.95)
    assert review
    errors = [r["expected_error"] for r in review]
    assert errors == sorted(errors, reverse=True)  # likeliest mistakes first
    by_item = {r["item"]: r for r in cons}
    for row in review:
        assert row["label"] == by_item[row["item"]]["label"]
        assert row["confidence"] == by_item[row["item"]]["confidence"]
        assert row["reasons"]
        assert len(row["annotations"]) == 3
    state_uri = str(tmp_path / "state")
    pending = relabel.pending(state_uri)
    assert [p["item"] for p in pending] == [r["item"] for r in review]
    # The next selection takes the likeliest errors back, next to new items.
    pool = [Item(u, uri=u) for u in truth] + [
        Item(f"gs://b/new{i}.png", uri=f"gs://b/new{i}.png") for i in range(20)
    ]
    import_uri = tmp_path / "pool.jsonl"
    storage.write_jsonl(
        str(import_uri), [i.to_import_record(TaskType.IMAGE_CLASSIFICATION) for i in pool]
    )
    select_for_labeling(
        import_uri=str(import_uri), state_uri=state_uri, task_type="image_classification",
        labels=",".join(LABELS), strategy="random", k=10, seed=0,
        output_uri=str(tmp_path / "sel.jsonl"), summary_uri=str(tmp_path / "sel.json"),
    )  # fmt: skip
    summary = json.loads((tmp_path / "sel.json").read_text())
    again = [r["item"] for r in summary["items"] if r["arm"] == "relabel"]
    assert again
    assert len(again) <= 5
    assert again == [p["item"] for p in pending][: len(again)]
    selected = [json.loads(x) for x in (tmp_path / "sel.jsonl").read_text().splitlines()]
    attempts = {
        r["imageGcsUri"]: r["dataItemResourceLabels"].get("labelloop_attempt") for r in selected
    }
    assert all(attempts[i] == "1" for i in again)
    # New answers from other people join the earlier ones in the next quality step.
    item = again[0]
    new = [{"item": item, "annotator": name, "label": truth[item]} for name in ("d", "e")]
    _, cons2, _ = gate(tmp_path, new, name="r2", min_confidence=0.95)
    assert cons2[0]["item"] == item
    assert sum(cons2[0]["votes"].values()) == 5
    assert cons2[0]["label"] == truth[item]
    assert item not in {p["item"] for p in relabel.pending(state_uri)}


# -- honest model evaluation -------------------------------------------------------------------


def test_evaluation_set_stays_fixed_and_is_never_actively_selected(tmp_path: Path) -> None:
    ids = [f"gs://b/{i:03d}.png" for i in range(60)]
    import_uri = tmp_path / "pool.jsonl"
    storage.write_jsonl(
        str(import_uri),
        [Item(u, uri=u).to_import_record(TaskType.IMAGE_CLASSIFICATION) for u in ids],
    )
    state_uri = str(tmp_path / "state")
    seen: list[list[str]] = []
    for seed in (0, 1):
        select_for_labeling(
            import_uri=str(import_uri), state_uri=state_uri, task_type="image_classification",
            labels=",".join(LABELS), strategy="random", k=10, seed=seed,
            output_uri=str(tmp_path / f"sel{seed}.jsonl"),
            summary_uri=str(tmp_path / f"sel{seed}.json"), random_share=0.3, eval_size=8,
        )  # fmt: skip
        # The batch gets labeled (the quality step records consolidated labels in the state).
        batch = [json.loads(x) for x in (tmp_path / f"sel{seed}.jsonl").read_text().splitlines()]
        storage.write_jsonl(
            state.path(state_uri, state.LABELS, f"round{seed}.jsonl"),
            [{"item": r["imageGcsUri"], "label": "cat", "trainable": True} for r in batch],
        )
        seen.append(evaluation.eval_ids(state_uri))
        summary = json.loads((tmp_path / f"sel{seed}.json").read_text())
        arms = [r["arm"] for r in summary["items"]]
        assert arms.count("random") == 3
        assert arms.count("active") == 7
        assert arms.count("eval") == (8 if seed == 0 else 0)  # labeled once, with the first
        active = {r["item"] for r in summary["items"] if r["arm"] != "eval"}
        assert not active & set(seen[-1])
    assert seen[0] == seen[1]
    assert len(seen[0]) == 8
    lo, hi = evaluation.accuracy_interval(np.array([1, 1, 0, 1]), seed=0)
    assert 0.0 <= lo <= 0.75 <= hi <= 1.0
    assert math.isnan(evaluation.accuracy_interval(np.zeros(0))[0])
