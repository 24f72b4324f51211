"""The stop rule: marginal value of the next batch from the learning curve."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.stop_rule import curves, flat_round, stop_round
from labelloop.errors import InputError
from labelloop.stop_rule import (
    NOT_PAYING_OFF,
    PAYING_OFF,
    TOO_EARLY,
    CurvePoint,
    advise,
    prediction_stability,
)


def _curve(ns: list[int], usd_per_label: float | None = None) -> list[CurvePoint]:
    return [
        CurvePoint(n, 0.98 - 2.0 * n**-0.7, None if usd_per_label is None else n * usd_per_label)
        for n in ns
    ]


def test_advice_on_a_known_curve() -> None:
    early = advise(_curve([20, 40, 60, 80], usd_per_label=0.1))
    assert early.verdict == PAYING_OFF
    assert early.paying_off
    assert early.gain_per_100_labels is not None
    assert early.gain_per_100_labels > 0.005
    # A dollar buys a tenth of what 100 labels (at $0.10 each = $10) buy.
    assert early.gain_per_usd == pytest.approx(early.gain_per_100_labels / 10)
    late = advise(_curve([2000, 2500, 3000, 3500]))
    assert late.verdict == NOT_PAYING_OFF
    assert late.gain_per_usd is None
    assert advise(_curve([50])).verdict == TOO_EARLY


def test_floor_per_dollar_stops_selection() -> None:
    points = _curve([200, 300, 400, 500], usd_per_label=2.0)
    advice = advise(points, min_gain_per_usd=0.01)
    assert advice.stop_selection
    assert "selection stops" in advice.reason
    assert not advise(points).stop_selection
    with pytest.raises(InputError, match="window"):
        advise(points, window=1)


def test_prediction_stability_is_cohens_kappa() -> None:
    a = ["x", "y"] * 50
    assert prediction_stability(a, a) == 1.0
    flipped = ["y" if v == "x" else "x" for v in a]
    assert prediction_stability(a, flipped) == pytest.approx(-1.0)
    assert 0.0 < prediction_stability(a, a[:90] + flipped[90:]) < 1.0


@pytest.mark.slow
def test_stop_rule_on_digits_calls_the_flattening_within_two_rounds() -> None:
    """Seeing only the fixed evaluation set, the rule says stop within two rounds of where the
    true accuracy curve flattens (benchmarks/stop_rule.py: 9 of 10 seeds)."""
    apart = []
    for seed in range(3):
        counts, evals, trues = curves(
            seed, batch=40, rounds=16, initial=40, eval_size=300, usd_per_label=0.08
        )
        rule = stop_round(counts, evals, floor=0.005, usd=0.08)
        flat = flat_round(counts, trues, floor=0.005)
        assert rule is not None
        assert flat is not None
        apart.append(rule - flat)
    assert sum(abs(d) <= 2 for d in apart) >= 2, apart
    assert np.all(np.abs(apart) <= 3), apart
