"""The budget in the stages: jobs priced into the state, selection that never overspends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labelloop import costs
from labelloop.config import PipelineParams
from labelloop.errors import ConfigError, InputError
from labelloop.stages.generate_import_file import generate_import_file
from labelloop.stages.run_labeling_job import run_labeling_job
from labelloop.stages.select_for_labeling import select_for_labeling

RATE = 0.07
BUDGET = json.dumps({"human_usd_per_label": RATE, "per_run_usd": 5.0, "total_usd": 9.0})


def _round(digits_sample, tmp: Path, state_uri: str, n: int) -> tuple[int, str, float]:
    """Select (under the budget), label with the simulated workforce; (selected, reason, cost)."""
    pool = tmp / f"pool-{n}.jsonl"
    generate_import_file(
        source_uri=digits_sample.source_uri,
        task_type="image_classification",
        state_uri=state_uri,
        output_uri=str(pool),
        rejects_uri=str(tmp / f"rejects-{n}.jsonl"),
    )
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
    )
    record = json.loads(job.read_text())
    assert record["cost"]["human_labels"] == labeled.annotations
    assert labeled.cost_usd == pytest.approx(labeled.annotations * RATE)
    return picked.selected, "", labeled.cost_usd


def test_selection_respects_the_budget_and_stops_the_loop(digits_sample, tmp_path: Path) -> None:
    state_uri = str(tmp_path / "state")
    rounds = [_round(digits_sample, tmp_path, state_uri, n) for n in range(5)]
    spent = costs.total(costs.Cost.from_json(r) for r in costs.job_costs(state_uri))
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
    )
    assert len(costs.job_costs(state_uri)) == 1
    assert again.cost_usd == pytest.approx(first[2])


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


def test_job_cost_from_a_routing_summary_and_reported_time() -> None:
    rates = costs.Rates(human_usd_per_hour=36.0)
    cost = costs.labeling_job_cost(
        rates,
        annotations=[("a", "gemini:gemini-2.5-flash"), ("b", "ann1"), ("b", "ann2")],
        items=2,
        provider_summary={
            "calibration": {},
            "gemini": {"model": "gemini-2.5-flash", "prompt_tokens": 1000, "output_tokens": 10},
        },
        work_seconds={("b", "ann1"): 100.0},
    )
    assert cost.model_labels == 1
    assert cost.human_labels == 2
    assert cost.human_seconds == 100.0
    assert cost.estimated_seconds == 30.0
    assert cost.human_usd == pytest.approx(130 / 3600 * 36.0)
    assert cost.model_usd == pytest.approx(
        costs.model_cost(
            "gemini-2.5-flash", prompt_tokens=1000, output_tokens=10, labels=1
        ).model_usd
    )


def test_gate_and_training_record_lineage(digits_sample, tmp_path: Path) -> None:
    from labelloop import lineage
    from labelloop.stages.quality_gate import quality_gate
    from labelloop.stages.train_model import train_model

    state_uri = str(tmp_path / "state")
    _round(digits_sample, tmp_path, state_uri, 0)
    gate = quality_gate(
        annotations_uri=str(tmp_path / "annotations-0.jsonl"),
        task_type="image_classification",
        labels="0,1,2,3,4,5,6,7,8,9",
        consolidation_method="mv",
        agreement_metric="krippendorff_alpha",
        min_confidence=0.0,
        state_uri=state_uri,
        consolidated_uri=str(tmp_path / "consolidated.jsonl"),
        review_uri=str(tmp_path / "review.jsonl"),
        metrics_uri=str(tmp_path / "quality.json"),
        rejects_uri=str(tmp_path / "gate-rejects.jsonl"),
        n_boot=10,
    )
    train_model(
        consolidated_uri=str(tmp_path / "consolidated.jsonl"),
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
