"""Auto-accept with an error guarantee: bounds, certification, audits and drift."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.auto_accept import drift_run, guarantee_table
from labelloop.errors import InputError
from labelloop.guarantee import (
    AuditRound,
    Certificate,
    audit_ids,
    audit_round,
    certify,
    decide,
    lower_bound,
    min_sample,
    upper_bound,
)


def test_clopper_pearson_bounds() -> None:
    # 0 errors in 59: the classic "rule of three" neighbourhood, just under 5%.
    assert upper_bound(0, 59) == pytest.approx(1 - 0.05 ** (1 / 59))
    assert upper_bound(0, 59) < 0.05 < upper_bound(0, 58)
    assert min_sample(0.05, 0.95) == 59
    assert upper_bound(3, 100) == pytest.approx(0.0757, abs=1e-3)
    assert lower_bound(3, 100) == pytest.approx(0.00823, abs=1e-4)
    # Checked against the binomial tails: P(X >= 3 | p = lower) = P(X <= 3 | p = upper) = 5%.
    assert (upper_bound(0, 0), lower_bound(0, 10)) == (1.0, 0.0)
    with pytest.raises(InputError):
        upper_bound(5, 3)


def test_certify_keeps_the_bound_and_refuses_small_samples() -> None:
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, 2000)
    correct = rng.random(2000) < conf  # calibrated: error 1 - conf
    cert = certify(conf, correct, target_error=0.05)
    assert cert.certified
    accepted = conf >= cert.threshold
    assert cert.accepted == int(accepted.sum())
    assert cert.errors == int((~correct[accepted]).sum())
    assert cert.upper_bound is not None
    assert cert.upper_bound <= 0.05
    assert Certificate.from_json(cert.to_json()) == cert
    assert cert.id.startswith("cal-")
    small = certify(conf[:40], correct[:40])
    assert not small.certified
    assert "needs at least" in small.reason
    bad = certify(conf, np.zeros(2000, dtype=bool))
    assert not bad.certified
    assert "no threshold certifies" in bad.reason


def test_the_guarantee_holds_over_many_seeds() -> None:
    """The true error of accepted labels exceeds the target in at most ~5% of runs; the old
    point estimate exceeds it in about half."""
    (row,) = guarantee_table([1000], seeds=120)
    assert row["certified"] > 0.5
    assert row["over_certified"] <= 0.075
    assert row["over_point"] > 0.3


def test_audits_are_a_deterministic_random_share() -> None:
    ids = [f"i{n}" for n in range(1000)]
    picked = audit_ids(ids, share=0.05, minimum=20, seed=3)
    assert len(picked) == 50
    assert picked == audit_ids(reversed(ids), share=0.05, seed=3)
    assert len(audit_ids(ids[:100], share=0.05, minimum=20)) == 20
    assert audit_ids([], share=0.5) == set()
    scored = audit_round(
        2,
        threshold=0.9,
        model_labels={"a": "x", "b": "y", "c": "x"},
        human_labels={"a": "x", "b": "x"},
        audited=["a", "b", "c"],
    )
    assert (scored.accepted, scored.audited, scored.errors) == (3, 2, 1)


def test_decide_pauses_on_drift_and_resumes_with_a_new_certificate() -> None:
    cert = Certificate(0.9, 0.05, 0.95, 500, 300, 3, 0.03, round=0)
    fine = [AuditRound(r, 0.9, 300, 20, 0) for r in (1, 2)]
    active = decide(cert, fine)
    assert active.accepting
    assert active.threshold == 0.9
    assert active.audited == 40
    assert active.audit_upper_bound is not None
    drifted = decide(cert, [*fine, AuditRound(3, 0.9, 300, 20, 6)])
    assert drifted.status == "paused"
    assert math.isinf(drifted.threshold)
    assert "6/20" in drifted.reason
    assert "round 3" in drifted.reason
    renewed = Certificate(0.97, 0.05, 0.95, 600, 200, 1, 0.04, round=3)
    assert decide(renewed, [*fine, AuditRound(3, 0.9, 300, 20, 6)]).accepting
    uncertified = decide(Certificate(math.inf, 0.05, 0.95, 10, 0, 0, None, "too few"), [])
    assert uncertified.status == "uncertified"
    assert uncertified.reason == "too few"
    assert [t["errors"] for t in drifted.to_json()["trend"]] == [0, 0, 6]


def test_drift_pauses_auto_accept_within_a_few_rounds() -> None:
    runs = [
        drift_run(seed, rounds=10, drift_at=5, drift=0.15, batch=600, calibration=1000)
        for seed in range(30)
    ]
    exposed = [r for r in runs if r["accepting_at_drift"]]
    assert len(exposed) >= 20
    delays = [int(r["paused_at"]) - 5 for r in exposed if r["paused_at"] and not r["false_alarm"]]
    assert sum(d <= 3 for d in delays) >= 0.8 * len(exposed)
    assert sum(bool(r["false_alarm"]) for r in runs) <= 3
