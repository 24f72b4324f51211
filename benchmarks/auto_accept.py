"""Auto-accept with an error guarantee, in simulation: does the certified bound hold, and does
drift pause auto-accept?

A fake model answers with a confidence in one of six bands, each with a known accuracy (the
model is over-confident, as language models are). Because the accuracy per band is known, the
true error of the labels accepted at any threshold is known exactly.

Part 1, the guarantee: for each calibration sample size and seed, the threshold is chosen on a
fresh calibration sample by `labelloop.guarantee.certify` (Clopper-Pearson upper bound <= the
target, fixed-sequence testing) and, for comparison, by the point estimate the routing
provider used before (`calibrate_threshold`: precision >= 95% on the sample). The table shows
how often the true error of what each accepts exceeds the target (the guarantee allows 5%).

Part 2, drift: rounds of auto-accept with a 5% audit (at least 20 items); from round
`--drift-at` the model gets worse. The table shows when auto-accept paused and how often it
paused before the drift (false alarms).

Usage:
    .venv/bin/python benchmarks/auto_accept.py              # 400 seeds
    .venv/bin/python benchmarks/auto_accept.py --seeds 100
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from labelloop.guarantee import AuditRound, audit_ids, certify, decide  # noqa: E402
from labelloop.providers.gemini import calibrate_threshold  # noqa: E402

# Confidence bands [EDGES[i], EDGES[i+1]), the model's accuracy in each, and their shares.
EDGES = np.array([0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 1.0])
ACCURACY = np.array([0.55, 0.75, 0.88, 0.94, 0.965, 0.985])
SHARE = np.array([0.15, 0.15, 0.15, 0.2, 0.15, 0.2])
TARGET = 0.05
CONFIDENCE = 0.95


def draw(rng: np.random.Generator, n: int, *, drift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """n answers: confidences, and whether each is right (accuracy lowered by `drift`)."""
    band = rng.choice(len(SHARE), size=n, p=SHARE)
    conf = rng.uniform(EDGES[band], EDGES[band + 1])
    right = rng.random(n) < np.clip(ACCURACY[band] - drift, 0.0, 1.0)
    return conf, right


def true_error(threshold: float, *, drift: float = 0.0) -> float:
    """The exact error rate of the answers with confidence >= threshold (0 if none)."""
    lo, hi = EDGES[:-1], EDGES[1:]
    mass = np.clip((hi - np.maximum(lo, threshold)) / (hi - lo), 0.0, 1.0) * SHARE
    if mass.sum() == 0:
        return 0.0
    return float((mass * (1.0 - np.clip(ACCURACY - drift, 0.0, 1.0))).sum() / mass.sum())


def accepted_share(threshold: float) -> float:
    lo, hi = EDGES[:-1], EDGES[1:]
    return float((np.clip((hi - np.maximum(lo, threshold)) / (hi - lo), 0.0, 1.0) * SHARE).sum())


def guarantee_table(sizes: list[int], seeds: int) -> list[dict[str, float]]:
    """Per calibration size: how often each rule's accepted labels exceed the target error."""
    rows = []
    for n in sizes:
        cert_over = point_over = certified = 0
        shares: list[float] = []
        for seed in range(seeds):
            conf, right = draw(np.random.default_rng([seed, n]), n)
            cert = certify(conf, right, target_error=TARGET, confidence=CONFIDENCE)
            if cert.certified:
                certified += 1
                shares.append(accepted_share(cert.threshold))
                cert_over += true_error(cert.threshold) > TARGET
            point = calibrate_threshold(conf, right, target_precision=1 - TARGET, min_accepted=10)
            if math.isfinite(point):
                point_over += true_error(point) > TARGET
        rows.append(
            {
                "sample": n,
                "certified": certified / seeds,
                "accepted": float(np.mean(shares)) if shares else 0.0,
                "over_certified": cert_over / seeds,
                "over_point": point_over / seeds,
            }
        )
    return rows


def drift_run(
    seed: int, *, rounds: int, drift_at: int, drift: float, batch: int, calibration: int
) -> dict[str, object]:
    """One loop: certify, then rounds of auto-accept with audits; the model worsens at drift_at.

    Returns the first paused round (None if never), whether it paused before the drift, and
    the true error of the labels accepted in each round.
    """
    rng = np.random.default_rng([seed, 99])
    conf, right = draw(rng, calibration)
    cert = certify(conf, right, target_error=TARGET, confidence=CONFIDENCE, round=0)
    audits: list[AuditRound] = []
    paused_at: int | None = None
    false_alarm = False
    accepting_at_drift = False
    errors: list[float] = []
    for r in range(1, rounds + 1):
        shift = drift if r >= drift_at else 0.0
        decision = decide(cert, audits)
        if r == drift_at:
            accepting_at_drift = decision.accepting
        conf, right = draw(rng, batch, drift=shift)
        if not decision.accepting:
            if decision.status == "paused" and paused_at is None:
                paused_at = r
                # The decision for round r sees audits up to r - 1: drift shows from drift_at + 1.
                false_alarm = r <= drift_at
            # Everyone labels this round: a fresh calibration sample.
            cert = certify(conf, right, target_error=TARGET, confidence=CONFIDENCE, round=r)
            errors.append(0.0)
            continue
        accepted = np.flatnonzero(conf >= decision.threshold)
        errors.append(true_error(decision.threshold, drift=shift) if accepted.size else 0.0)
        ids = [str(i) for i in accepted]
        checked = audit_ids(ids, share=0.05, minimum=20, seed=seed * 1000 + r)
        wrong = sum(not right[int(i)] for i in checked)
        audits.append(AuditRound(r, decision.threshold, len(ids), len(checked), wrong))
    return {
        "paused_at": paused_at,
        "false_alarm": false_alarm,
        "accepting_at_drift": accepting_at_drift,
        "errors": errors,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--seeds", type=int, default=400)
    p.add_argument("--sizes", default="100,300,1000,3000", help="calibration sample sizes")
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--drift-at", type=int, default=6)
    p.add_argument("--drift", type=float, default=0.15, help="accuracy lost at the drift")
    p.add_argument("--batch", type=int, default=600, help="model answers per round")
    args = p.parse_args(argv)
    started = time.perf_counter()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"target: error <= {TARGET:.0%} at {CONFIDENCE:.0%} confidence, {args.seeds} seeds\n")
    print(
        f"{'calibration':>11} {'certified':>10} {'accepted':>9} {'over target':>12} "
        f"{'point estimate over target':>27}"
    )
    for row in guarantee_table(sizes, args.seeds):
        print(
            f"{row['sample']:>11} {row['certified']:>10.1%} {row['accepted']:>9.1%} "
            f"{row['over_certified']:>12.1%} {row['over_point']:>27.1%}"
        )
    print(
        "(certified: runs where a threshold was certified; accepted: mean share of answers it "
        "accepts;\n over target: runs whose accepted answers' true error exceeds the target, "
        "out of all runs)\n"
    )
    runs = [
        drift_run(
            s,
            rounds=args.rounds,
            drift_at=args.drift_at,
            drift=args.drift,
            batch=args.batch,
            calibration=1000,
        )
        for s in range(args.seeds)
    ]
    exposed = [r for r in runs if r["accepting_at_drift"]]
    delays = [
        int(r["paused_at"]) - args.drift_at  # type: ignore[call-overload]
        for r in exposed
        if r["paused_at"] is not None and not r["false_alarm"]
    ]
    false_alarms = sum(bool(r["false_alarm"]) for r in runs)
    never = sum(r["paused_at"] is None for r in exposed)
    print(
        f"drift: accuracy -{args.drift:.2f} from round {args.drift_at} of {args.rounds}, "
        f"{args.batch} answers per round, audit 5% (>= 20), calibration 1000"
    )
    print(f"{len(exposed)} runs were auto-accepting when the model got worse")
    print(f"{'rounds to pause':>16} {'runs':>6}")
    for d in sorted(set(delays)):
        print(f"{d:>16} {delays.count(d):>6}")
    print(f"{'never paused':>16} {never:>6}")
    print(f"{'paused too early':>16} {false_alarms:>6}  (of all {len(runs)} runs)")
    print(
        "(rounds to pause: 1 = the first decision that sees a drifted round's audit; paused too "
        "early: a pause before any drifted audit, a false alarm)"
    )
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
