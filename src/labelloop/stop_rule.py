"""When to stop paying for labels: the marginal value of the next batch, from the learning curve.

The model's accuracy on the fixed evaluation set after each round is a learning curve. Its
recent slope in `log(labels)` (a line fitted to the last `window` rounds, 3 by default) gives
the expected accuracy gain of the next 100 labels, and with the spend so far the gain per
dollar. On digits this local slope called the flattening better than one inverse power law
`acc(n) = a - b * n**(-c)` fitted to every round (`benchmarks/stop_rule.py`); the power law
(Figueroa et al. 2012) still estimates the ceiling the curve approaches.

`advise` turns that into the verdict a report shows: "labels still paying off" while the gain
per 100 labels is at least `min_gain_per_100`, "labels no longer paying off" below it. With
`min_gain_per_usd` set, selection may stop (`stop_selection`) once a dollar buys less.

Without an evaluation set, `prediction_stability` measures the stabilizing-predictions
criterion (Bloodgood and Vijay-Shanker 2009): Cohen's kappa between two successive models'
predictions on the same unlabeled items; at or above 0.99 the models stopped changing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from labelloop.errors import InputError

PAYING_OFF = "labels still paying off"
NOT_PAYING_OFF = "labels no longer paying off"
TOO_EARLY = "not enough rounds to tell"
STABLE_KAPPA = 0.99


@dataclasses.dataclass(frozen=True)
class CurvePoint:
    """One round on the learning curve: labels used, accuracy on the fixed evaluation set,
    and the total spend so far (None when not priced)."""

    labels: int
    accuracy: float
    usd: float | None = None


@dataclasses.dataclass(frozen=True)
class StopAdvice:
    """The stop rule's verdict and the numbers behind it."""

    verdict: str
    paying_off: bool | None
    gain_per_100_labels: float | None
    gain_per_usd: float | None
    method: str
    ceiling: float | None
    stop_selection: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a - b * np.power(n, -c)


def fit_curve(labels: np.ndarray, accuracy: np.ndarray) -> tuple[str, Any]:
    """Fit the learning curve; returns the method name and a callable `n -> accuracy`."""
    n = np.asarray(labels, dtype=float)
    acc = np.asarray(accuracy, dtype=float)
    if n.size >= 4:
        from scipy.optimize import curve_fit

        try:
            params, _ = curve_fit(
                _power_law,
                n,
                acc,
                p0=(min(1.0, acc.max() + 0.02), 1.0, 0.5),
                bounds=([0.0, 0.0, 0.05], [1.0, 1e4, 3.0]),
                maxfev=20000,
            )
        except (RuntimeError, ValueError):
            pass
        else:
            a, b, c = (float(p) for p in params)
            return "power_law", (lambda x: _power_law(np.asarray(x, dtype=float), a, b, c), a)
    slope, intercept = np.polyfit(np.log(n), acc, 1)
    return "log_linear", (lambda x: intercept + slope * np.log(np.asarray(x, dtype=float)), None)


def advise(
    points: Sequence[CurvePoint],
    *,
    min_gain_per_100: float = 0.005,
    min_gain_per_usd: float | None = None,
    window: int = 3,
) -> StopAdvice:
    """Is the next batch of labels worth it?

    Args:
        points: The learning curve, one point per round (at least two distinct label counts
            are needed for a verdict).
        min_gain_per_100: Accuracy gain per 100 labels below which labels no longer pay off
            (0.005 = half a percentage point).
        min_gain_per_usd: With spend known, accuracy gain per dollar below which selection
            should stop (None: never stop on cost).
        window: How many recent rounds the slope is fitted on (at least 2).
    """
    if min_gain_per_100 < 0:
        raise InputError("must be >= 0", field="stop_rule.min_gain_per_100")
    if window < 2:
        raise InputError("must be at least 2", field="stop_rule.window")
    pts = sorted((p for p in points if p.labels > 0), key=lambda p: p.labels)
    distinct = sorted({p.labels for p in pts})
    if len(distinct) < 2:
        return StopAdvice(
            TOO_EARLY,
            None,
            None,
            None,
            "none",
            None,
            False,
            f"{len(distinct)} point(s) on the learning curve; two rounds are needed",
        )
    labels = np.array([p.labels for p in pts], dtype=float)
    accuracy = np.array([p.accuracy for p in pts], dtype=float)
    recent = slice(-window, None)
    slope, _ = np.polyfit(np.log(labels[recent]), accuracy[recent], 1)
    last = labels.max()
    gain = max(float(slope * np.log((last + 100.0) / last)), 0.0)
    method = f"log_linear_last_{min(window, len(pts))}"
    ceiling = None
    if len(distinct) >= 4:
        fitted, (_, a) = fit_curve(labels, accuracy)
        ceiling = a if fitted == "power_law" else None
    usd_per_label = _usd_per_label(pts)
    per_usd = gain / 100.0 / usd_per_label if usd_per_label else None
    paying = gain >= min_gain_per_100
    stop = min_gain_per_usd is not None and per_usd is not None and per_usd < min_gain_per_usd
    reason = (
        f"the next 100 labels are expected to add {gain * 100:.2f} accuracy points "
        f"(slope in log(labels) over the last {min(window, len(pts))} rounds"
        + (f"; the curve approaches {ceiling:.3f}" if ceiling is not None else "")
        + f"); the floor is {min_gain_per_100 * 100:.2f}"
    )
    if per_usd is not None:
        reason += f"; {per_usd * 100:.3f} points per dollar"
    if stop:
        reason += f", below the floor of {(min_gain_per_usd or 0) * 100:.3f}: selection stops"
    return StopAdvice(
        PAYING_OFF if paying else NOT_PAYING_OFF,
        paying,
        gain,
        per_usd,
        method,
        ceiling,
        stop,
        reason,
    )


def curve_from_rounds(rounds: Sequence[Mapping[str, Any]]) -> list[CurvePoint]:
    """The learning curve from the recorded round outcomes (`labelloop.state.round_outcomes`):
    one point per trained round with an evaluation-set accuracy, with the spend so far."""
    points = []
    for row in rounds:
        labels, accuracy = row.get("labels_used"), row.get("eval_accuracy")
        if not isinstance(labels, int) or not isinstance(accuracy, int | float):
            continue
        usd = row.get("spent_usd")
        points.append(
            CurvePoint(
                labels, float(accuracy), float(usd) if isinstance(usd, int | float) else None
            )
        )
    return points


def _usd_per_label(points: Sequence[CurvePoint]) -> float | None:
    """The recent price of a label: spend over labels between the last two priced rounds."""
    priced = [p for p in points if p.usd is not None]
    if len(priced) >= 2 and priced[-1].labels > priced[-2].labels:
        delta = float(priced[-1].usd or 0.0) - float(priced[-2].usd or 0.0)
        if delta > 0:
            return delta / (priced[-1].labels - priced[-2].labels)
    if priced and priced[-1].labels and (priced[-1].usd or 0.0) > 0:
        return float(priced[-1].usd or 0.0) / priced[-1].labels
    return None


def prediction_stability(previous: Sequence[str], current: Sequence[str]) -> float:
    """Cohen's kappa between two models' predictions on the same items (1.0 = identical)."""
    if len(previous) != len(current):
        raise InputError("both models must predict the same items")
    if not previous:
        return math.nan
    a = np.asarray(previous)
    b = np.asarray(current)
    observed = float(np.mean(a == b))
    labels = np.union1d(a, b)
    expected = float(sum(np.mean(a == v) * np.mean(b == v) for v in labels))
    if expected >= 1.0:
        return 1.0
    return (observed - expected) / (1.0 - expected)
