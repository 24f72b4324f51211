"""Cost accounting per source and a budget that selection respects."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labelloop.costs import (
    Budget,
    Cost,
    Rates,
    compute_cost,
    estimate_item_cost,
    human_cost,
    model_cost,
    total,
)
from labelloop.errors import InputError
from labelloop.providers.base import LabelingTask
from labelloop.providers.gemini_models import price_for
from labelloop.providers.simulated import SimulatedWorkforce
from labelloop.schemas import Item, TaskType


def test_human_cost_per_label_and_per_hour_with_reported_time() -> None:
    rates = Rates(human_usd_per_label=0.05, human_usd_per_hour=12.0, seconds_per_label=20)
    cost = human_cost(rates, lead_times=[30.0, 60.0, None])
    # 3 labels x $0.05 + (90 reported + 20 estimated seconds) x $12/h
    assert cost.human_usd == pytest.approx(0.15 + 110 / 3600 * 12.0)
    assert (cost.human_labels, cost.human_seconds, cost.estimated_seconds) == (3, 90.0, 20.0)


def test_model_cost_reads_the_provider_price_table() -> None:
    p_in, p_out = price_for("gemini-2.5-flash")
    cost = model_cost("gemini-2.5-flash", prompt_tokens=1_000_000, output_tokens=2_000, labels=7)
    assert cost.model_usd == pytest.approx(p_in + 2_000 * p_out / 1e6)
    assert cost.unpriced == 0
    unknown = model_cost("no-such-model", prompt_tokens=10, output_tokens=1, labels=4)
    assert (unknown.model_usd, unknown.unpriced, unknown.model_labels) == (0.0, 4, 4)


def test_costs_add_by_source_and_round_trip_json() -> None:
    a = Cost(human_usd=1.0, model_usd=0.25, human_labels=10, items=5)
    b = compute_cost(Rates(compute_usd_per_hour=3.6), seconds=100) + Cost(items=1)
    both = total([a, b])
    assert both.total_usd == pytest.approx(1.0 + 0.25 + 0.1)
    assert both.items == 6
    assert Cost.from_json(both.to_json()) == both


def test_rates_and_budget_name_the_bad_field() -> None:
    with pytest.raises(InputError, match=r"costs\.human_usd_per_label"):
        Rates.from_options({"human_usd_per_label": "cheap"})
    with pytest.raises(InputError, match=r"costs\.per_label"):
        Rates.from_options({"per_label": 1})
    with pytest.raises(InputError, match=r"budget\.total_usd"):
        Budget.from_options({"total_usd": -1})


def test_budget_selects_fewer_items_rather_than_overspend() -> None:
    budget = Budget(per_run_usd=1.0, total_usd=2.5)
    assert budget.affordable_items(50, item_usd=0.1, spent_total=0.0) == 10
    assert budget.affordable_items(50, item_usd=0.1, spent_total=2.0) == 5
    assert budget.affordable_items(3, item_usd=0.1, spent_total=2.0) == 3
    assert Budget().affordable_items(50, item_usd=0.1, spent_total=1e9) == 50
    assert budget.stop_reason(item_usd=0.1, spent_total=2.0) == ""
    reason = budget.stop_reason(item_usd=0.1, spent_total=2.45)
    assert reason.startswith("budget exhausted")
    assert "total budget $2.50" in reason


def test_item_estimate_errs_high_with_history() -> None:
    rates = Rates(human_usd_per_label=0.04)
    a_priori = estimate_item_cost(rates, labelers_per_item=3, human_share=0.5)
    assert a_priori == pytest.approx(0.06)
    dearer = estimate_item_cost(
        rates, labelers_per_item=3, human_share=0.5, history=[Cost(human_usd=1.0, items=10)]
    )
    assert dearer == pytest.approx(0.1)


def test_simulated_loop_costs_add_up_and_never_exceed_the_budget() -> None:
    """Rounds of simulated people (per-label rate) and a priced model: exact sums, no overspend."""
    rng = np.random.default_rng(0)
    labels = ("a", "b", "c")
    truth = {f"item-{i}": labels[int(rng.integers(3))] for i in range(400)}
    people = SimulatedWorkforce(truth, workforce="mixed", seed=1)
    task = LabelingTask(TaskType.IMAGE_CLASSIFICATION, labels)
    rates = Rates(human_usd_per_label=0.07)
    budget = Budget(per_run_usd=4.0, total_usd=9.0)
    model = "gemini-2.5-flash"
    tokens_per_item = (408, 3)  # one image + prompt in, a label out
    pool = sorted(truth)
    history: list[Cost] = []
    for _round in range(10):
        spent = total(history).total_usd
        model_item = model_cost(
            model, prompt_tokens=tokens_per_item[0], output_tokens=tokens_per_item[1], labels=1
        ).model_usd
        item_usd = estimate_item_cost(
            rates, labelers_per_item=2, model_usd_per_item=model_item, history=history
        )
        k = budget.affordable_items(60, item_usd=item_usd, spent_total=spent)
        if k == 0:
            assert budget.stop_reason(item_usd=item_usd, spent_total=spent)
            break
        batch, pool = pool[:k], pool[k:]
        job = people.submit([Item(i, uri=i) for i in batch], task, labelers_per_item=2)
        got = people.collect(job).annotations
        human = human_cost(rates, lead_times=[None] * len(got))
        machine = model_cost(
            model,
            prompt_tokens=tokens_per_item[0] * k,
            output_tokens=tokens_per_item[1] * k,
            labels=k,
        )
        this_round = human + machine + Cost(items=k)
        assert this_round.total_usd <= budget.per_run_usd + 1e-12
        history.append(this_round)
    spent = total(history)
    assert len(history) >= 2  # the cap bound in more than one round
    assert spent.total_usd <= 9.0 + 1e-12
    assert spent.human_usd == pytest.approx(spent.human_labels * 0.07, abs=1e-12)
    assert math.isclose(
        spent.total_usd, sum(c.human_usd + c.model_usd for c in history), abs_tol=1e-12
    )
    assert spent.human_labels == 2 * spent.items
