"""The budget in the stages: spend read from the ledger, selection that never overspends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labelloop import accounting, costs, storage
from labelloop.config import PipelineParams
from labelloop.errors import ConfigError, InputError
from labelloop.ledger import Ledger
from labelloop.stages.generate_import_file import generate_import_file
from labelloop.stages.run_labeling_job import run_labeling_job
from labelloop.stages.select_for_labeling import select_for_labeling

RATE = 0.07
BUDGET = json.dumps({"human_usd_per_label": RATE, "per_run_usd": 5.0, "total_usd": 9.0})


def _pool(digits_sample, tmp: Path, state_uri: str, name: str = "") -> Path:
    """Stage 1 on the digits sample: the import file of items not labeled yet."""
    pool = tmp / f"pool{name}.jsonl"
    generate_import_file(
        source_uri=digits_sample.source_uri,
        task_type="image_classification",
        state_uri=state_uri,
        output_uri=str(pool),
        rejects_uri=str(tmp / f"rejects{name}.jsonl"),
    )
    return pool


def _round(digits_sample, tmp: Path, state_uri: str, n: int) -> tuple[int, str, float]:
    """Select (under the budget), label with the simulated workforce; (selected, reason, cost)."""
    pool = _pool(digits_sample, tmp, state_uri, f"-{n}")
    selected = tmp / f"selected-{n}.jsonl"
    picked = select_for_labeling(
        import_uri=str(pool),
        state_uri=state_uri,
        task_type="image_classification",
        labels="0,1,2,3,4,5,6,7,8,9",
        strategy="random",
        k=40,
        seed=n,
        output_uri=str(selected),
        summary_uri=str(tmp / f"summary-{n}.json"),
        budget=BUDGET,
        labelers_per_item=3,
    )
    if picked.selected == 0:
        return 0, picked.stop_reason, 0.0
    job = tmp / f"job-{n}.json"
    labeled = run_labeling_job(
        items_uri=str(selected),
        task_type="image_classification",
        labels="0,1,2,3,4,5,6,7,8,9",
        provider="simulated",
        provider_options=json.dumps({"truth_uri": digits_sample.truth_uri}),
        labelers_per_item=3,
        annotations_uri=str(tmp / f"annotations-{n}.jsonl"),
        job_uri=str(job),
        rejects_uri=str(tmp / f"labeling-rejects-{n}.jsonl"),
        budget=BUDGET,
        state_uri=state_uri,
        run_id=f"run-{n}",
    )
    record = json.loads(job.read_text())
    new = sum(
        1 for r in _rows(tmp / f"annotations-{n}.jsonl") if r["collected_round"] == f"run-{n}"
    )
    assert record["cost"]["run"]["human_labels"] == new
    assert labeled.cost_usd == pytest.approx(new * RATE)
    return picked.selected, "", labeled.cost_usd


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _spent(state_uri: str) -> costs.Cost:
    rates = costs.parse_budget(BUDGET).rates
    return accounting.spend(Ledger.load(state_uri), rates).total


def test_selection_respects_the_budget_and_stops_the_loop(digits_sample, tmp_path: Path) -> None:
    state_uri = str(tmp_path / "state")
    rounds = [_round(digits_sample, tmp_path, state_uri, n) for n in range(5)]
    spent = _spent(state_uri)
    # $0.21 an item: 23 items fit in the $5 per run, 42 in the $9 total.
    assert [r[0] for r in rounds[:3]] == [23, 19, 0]
    assert all(cost <= 5.0 + 1e-9 for _, _, cost in rounds)
    assert spent.total_usd <= 9.0 + 1e-9
    assert spent.total_usd == pytest.approx(sum(c for _, _, c in rounds))
    assert spent.human_usd == pytest.approx(spent.human_labels * RATE)
    assert rounds[2][1].startswith("budget exhausted")
    summary = json.loads((tmp_path / "summary-2.json").read_text())
    assert summary["selected"] == 0
    assert summary["stop_reason"] == rounds[2][1]


def test_a_retried_labeling_job_is_priced_once(digits_sample, tmp_path: Path) -> None:
    state_uri = str(tmp_path / "state")
    first = _round(digits_sample, tmp_path, state_uri, 0)
    again = run_labeling_job(
        items_uri=str(tmp_path / "selected-0.jsonl"),
        task_type="image_classification",
        labels="0,1,2,3,4,5,6,7,8,9",
        provider="simulated",
        provider_options=json.dumps({"truth_uri": digits_sample.truth_uri}),
        labelers_per_item=3,
        annotations_uri=str(tmp_path / "again.jsonl"),
        job_uri=str(tmp_path / "again.json"),
        rejects_uri=str(tmp_path / "again-rejects.jsonl"),
        budget=BUDGET,
        state_uri=state_uri,
        run_id="run-0",
    )
    # Nothing was sent again, nothing new collected: the spend is what the first try recorded.
    assert again.items == 0
    assert again.cost_usd == pytest.approx(first[2])
    assert _spent(state_uri).total_usd == pytest.approx(first[2])


def test_budget_parameter_is_checked_with_the_config() -> None:
    with pytest.raises(ConfigError, match=r"pipeline\.budget\.total_usd"):
        PipelineParams(source_uri="sample://digits", budget='{"total_usd": "lots"}').validate()
    with pytest.raises(ConfigError, match=r"pipeline\.budget"):
        PipelineParams(source_uri="sample://digits", budget='{"usd": 1}').validate()
    with pytest.raises(InputError, match=r"budget\.min_gain_per_usd"):
        costs.parse_budget('{"min_gain_per_usd": -1}')
    parsed = costs.parse_budget('{"human_usd_per_hour": 30, "min_gain_per_100": 0.01}')
    assert parsed.rates.human_usd_per_hour == 30
    assert parsed.min_gain_per_100 == 0.01


def test_spend_from_the_ledger_people_by_the_hour_and_model_tokens() -> None:
    """People priced from reported seconds (an estimate where none), models from recorded
    tokens; each run's cost is what it collected and the calls it made."""
    ledger = Ledger.load("")
    ledger.append(
        "queue", run="r1", job="j", provider="gemini_then_human", options={},
        task_type="image_classification", labels=["x", "y"], labelers_per_item=2,
        items=[{"id": "a"}, {"id": "b"}],
    )  # fmt: skip
    model = "gemini:gemini-2.5-flash"
    row = {"provider": "gemini_then_human", "job": "j", "round": "r1"}
    ledger.merge_annotations(
        "j",
        [
            {**row, "item": "a", "annotator": model, "label": "x", "collected_round": "r1"},
            {**row, "item": "b", "annotator": "ann1", "label": "y", "seconds": 100.0,
             "collected_round": "r1"},
            {**row, "item": "b", "annotator": "ann2", "label": "y", "collected_round": "r2"},
        ],
    )  # fmt: skip
    summary = {"gemini": {"model": "gemini-2.5-flash", "prompt_tokens": 1000, "output_tokens": 10}}
    accounting.record_spend(ledger, run="r1", job="j", summary=summary)
    assert accounting.record_spend(ledger, run="r2", job="j", summary={"gemini": {}}) is None
    paid = accounting.spend(ledger, costs.Rates(human_usd_per_hour=36.0))
    model_usd = costs.model_cost(
        "gemini-2.5-flash", prompt_tokens=1000, output_tokens=10, labels=1
    ).model_usd
    r1, r2 = paid.runs["r1"], paid.runs["r2"]
    assert (r1.model_labels, r1.human_labels, r1.human_seconds) == (1, 1, 100.0)
    assert r1.total_usd == pytest.approx(100 / 3600 * 36.0 + model_usd)
    assert (r2.human_labels, r2.estimated_seconds, r2.model_usd) == (1, 30.0, 0.0)
    assert r2.total_usd == pytest.approx(30 / 3600 * 36.0)
    assert paid.total.total_usd == pytest.approx(r1.total_usd + r2.total_usd)
    assert paid.jobs["j"].items == 2  # b answered over two runs counts once


def test_queued_items_count_as_committed_spend() -> None:
    ledger = Ledger.load("")
    ledger.append(
        "queue", run="r1", job="j", provider="label_studio", options={},
        task_type="image_classification", labels=["x", "y"], labelers_per_item=1,
        items=[{"id": f"i{n}"} for n in range(10)],
    )  # fmt: skip
    options = costs.parse_budget(json.dumps({"human_usd_per_label": 0.5, "total_usd": 8.0}))
    got = accounting.plan(ledger, options, wanted=10, labelers_per_item=1)
    # Nothing is paid yet, but ten items await answers: $5 committed, $3 left, 6 items.
    assert (got.spent_usd, got.committed_usd, got.affordable) == (0.0, 5.0, 6)
    assert got.stop_reason == ""


def _gate(tmp: Path, state_uri: str, n: int) -> Any:
    """The quality gate on round `n`'s annotations (every label collected so far)."""
    from labelloop.gates import GatePolicy
    from labelloop.stages.quality_gate import quality_gate

    return quality_gate(
        annotations_uri=str(tmp / f"annotations-{n}.jsonl"),
        task_type="image_classification",
        labels="0,1,2,3,4,5,6,7,8,9",
        consolidation_method="mv",
        agreement_metric="krippendorff_alpha",
        min_confidence=0.0,
        state_uri=state_uri,
        consolidated_uri=str(tmp / f"consolidated-{n}.jsonl"),
        review_uri=str(tmp / f"review-{n}.jsonl"),
        metrics_uri=str(tmp / f"quality-{n}.json"),
        rejects_uri=str(tmp / f"gate-rejects-{n}.jsonl"),
        policy=GatePolicy(min_labeled_count=1, min_agreement=0.0),
        n_boot=10,
    )


def test_gate_and_training_record_lineage(digits_sample, tmp_path: Path) -> None:
    from labelloop import lineage
    from labelloop.stages.train_model import train_model

    state_uri = str(tmp_path / "state")
    _round(digits_sample, tmp_path, state_uri, 0)
    gate = _gate(tmp_path, state_uri, 0)
    train_model(
        consolidated_uri=str(tmp_path / "consolidated-0.jsonl"),
        items_uri=str(tmp_path / "selected-0.jsonl"),
        task_type="image_classification",
        labels="0,1,2,3,4,5,6,7,8,9",
        state_uri=state_uri,
        holdout_fraction=0.25,
        seed=0,
        model_uri=str(tmp_path / "model"),
    )
    rows = lineage.read_labels(state_uri)
    assert len(rows) >= gate.label_count > 0
    annotations = [
        json.loads(x) for x in (tmp_path / "annotations-0.jsonl").read_text().splitlines()
    ]
    someone = annotations[0]["annotator"]
    hits = lineage.query(state_uri, annotator=someone)
    assert {r["item"] for r in hits.labels} == {
        a["item"] for a in annotations if a["annotator"] == someone
    }
    assert all(r["consolidation"]["method"] == "mv" for r in hits.labels)
    (model,) = hits.models
    assert model["uri"] == str(tmp_path / "model")
    assert 0 < model["touched"] <= model["labels"]
    # Each label names its own labeling job (the ledger's key), and training's use is recorded.
    state = Ledger.load(state_uri).state
    assert {r["job"] for r in hits.labels} <= set(state.jobs)
    assert state.used["train_model"]["model"] == model["model"]
    assert state.used["train_model"]["items"] == model["labels"]
    # A second round consolidates again: the lineage stays one file, with every item's row.
    _round(digits_sample, tmp_path, state_uri, 1)
    _gate(tmp_path, state_uri, 1)
    files = list((tmp_path / "state" / "lineage" / "labels").iterdir())
    assert len(files) == 1
    labeled = {r["item"] for r in _rows(tmp_path / "annotations-1.jsonl")}
    assert {r["item"] for r in lineage.read_labels(state_uri)} == labeled


def test_report_shows_the_budget_when_one_is_set() -> None:
    from labelloop.report.data import ReportData
    from labelloop.report.page import render_html

    def page(selection: dict) -> str:
        return render_html(
            ReportData(
                run_id="r",
                quality={},
                selection=selection,
                outcome={},
                review=[],
                items={},
                rounds=[],
                min_labeled_count=1,
                min_agreement=0.5,
            )
        )

    block = {
        "per_run_usd": None,
        "total_usd": 9.0,
        "spent_usd": 8.82,
        "item_usd": 0.21,
        "wanted": 40,
        "affordable": 0,
        "stop_reason": "budget exhausted: $0.18 left of the total budget $9.00",
    }
    html = page({"budget": block})
    assert 'id="budget"' in html
    assert "$8.82" in html
    assert "Selection stopped: budget exhausted" in html
    assert 'id="budget"' not in page({"budget": {**block, "total_usd": None, "item_usd": 0}})


def test_state_command_prices_the_ledger_with_the_last_runs_rates(
    digits_sample, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from labelloop.cli import main

    state_uri = str(tmp_path / "state")
    _, _, cost = _round(digits_sample, tmp_path, state_uri, 0)
    assert main(["state", state_uri]) == 0
    out = capsys.readouterr().out
    assert f"spent: ${cost:.2f} (people ${cost:.2f} for" in out
    assert main(["state", state_uri, "--json", "--budget", '{"human_usd_per_label": 1}']) == 0
    doc = json.loads(capsys.readouterr().out)
    labels = doc["spend"]["total"]["human_labels"]
    assert doc["spend"]["total"]["total_usd"] == pytest.approx(labels * 1.0)
    assert doc["spend"]["runs"]["run-0"]["human_labels"] == labels
    assert main(["state", state_uri, "--budget", '{"usd": 1}']) == 2
    assert "--budget" in capsys.readouterr().err


def test_selection_stops_when_a_dollar_buys_too_little_accuracy(
    digits_sample, tmp_path: Path
) -> None:
    """The stop rule reads the recorded rounds (evaluation-set accuracy, labels, spend)."""
    from labelloop import state

    state_uri = str(tmp_path / "state")
    for n, (labels, accuracy, usd) in enumerate([(100, 0.80, 10.0), (200, 0.805, 20.0)]):
        round_uri = state.path(state_uri, state.ROUNDS, f"r{n}.json")
        record = {"finished_at": f"2026-01-0{n + 1}", "labels_used": labels}
        record |= {"eval_accuracy": accuracy, "spent_usd": usd}
        storage.write_text(round_uri, json.dumps(record))
    pool = _pool(digits_sample, tmp_path, state_uri)

    def select(floor: float) -> tuple[int, str]:
        budget = {"human_usd_per_label": 0.1, "min_gain_per_usd": floor}
        got = select_for_labeling(
            import_uri=str(pool), state_uri=state_uri, task_type="image_classification",
            labels="0,1,2,3,4,5,6,7,8,9", strategy="random", k=10, seed=0,
            output_uri=str(tmp_path / "selected.jsonl"),
            summary_uri=str(tmp_path / "summary.json"), budget=json.dumps(budget),
        )  # fmt: skip
        return got.selected, got.stop_reason

    # Half a point over 100 labels for $10: 0.0007 accuracy per dollar.
    assert select(0.0001) == (10, "")
    selected, reason = select(0.01)
    assert selected == 0
    assert "selection stops" in reason


def test_report_budget_section_shows_cost_verdict_and_guarantee() -> None:
    from labelloop.report.data import ReportData
    from labelloop.report.page import render_html
    from labelloop.report.summary import render_markdown

    decision = {
        "status": "active",
        "reason": "certified at 0.92 (upper bound 4.1% <= 5%)",
        "certificate": {"upper_bound": 0.041, "target_error": 0.05, "id": "cal-1"},
        "trend": [
            {"round": 1, "accepted": 120, "audited": 20, "errors": 0, "upper_bound": 0.139},
            {"round": 2, "accepted": 130, "audited": 20, "errors": 1, "upper_bound": 0.216},
        ],
    }
    data = ReportData(
        run_id="r",
        quality={},
        selection={"budget": {"item_usd": 0.2, "wanted": 10, "affordable": 10}},
        outcome={},
        review=[],
        items={},
        rounds=[
            {"labels_used": 100, "eval_accuracy": 0.70, "spent_usd": 20.0},
            {"labels_used": 200, "eval_accuracy": 0.80, "spent_usd": 40.0},
        ],
        min_labeled_count=1,
        min_agreement=0.5,
        job={
            "cost": {"run": {"total_usd": 1.25}, "total": {"total_usd": 41.25}},
            "provider_summary": {"guarantee": decision, "audit": {"audited": 20, "errors": 1}},
        },
    )
    html = render_html(data)
    markdown = render_markdown(data)
    assert "## Budget" in markdown
    assert "$41.25 so far" in markdown
    assert "| 2 | 130 | 20 | 1 | 21.6% |" in markdown
    assert "$1.25 this round, $41.25 so far" in html
    assert "labels still paying off" in html
    assert "Auto-accept audits" in html
    assert "21.6%" in html  # the trend's second bound
    assert "certified at 0.92" in html


def test_budget_covers_the_evaluation_items_first(digits_sample, tmp_path: Path) -> None:
    state_uri = str(tmp_path / "state")
    pool = _pool(digits_sample, tmp_path, state_uri)
    got = select_for_labeling(
        import_uri=str(pool), state_uri=state_uri, task_type="image_classification",
        labels="0,1,2,3,4,5,6,7,8,9", strategy="cluster_margin", k=40, seed=0, eval_size=20,
        output_uri=str(tmp_path / "selected.jsonl"), summary_uri=str(tmp_path / "summary.json"),
        budget=json.dumps({"human_usd_per_label": 1, "total_usd": 30}),
    )  # fmt: skip
    # $30 at $1 an item: the 20 evaluation items, then 10 of the 40 asked for.
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert got.selected == 30
    assert summary["arms"]["eval"] == 20
    assert summary["budget"]["affordable"] == 30
