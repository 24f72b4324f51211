"""The stop rule on digits: does "labels no longer paying off" come when the true curve flattens?

Each seed runs active-learning rounds (margin sampling, the pipeline's LogisticRegression) on
a pool of the scikit-learn digits. After each round the model is scored on a fixed evaluation
set (a random sample labeled once, as the pipeline keeps) and the stop rule
(`labelloop.stop_rule.advise`) sees only those scores. The true curve is the accuracy on the
rest of the data; in hindsight it "flattens" at the first round where its fitted gain per 100
labels falls below the same floor. The table compares the two rounds per seed.

Usage:
    .venv/bin/python benchmarks/stop_rule.py                 # 10 seeds
    .venv/bin/python benchmarks/stop_rule.py --seeds 3 --batch 40
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from labelloop.active_learning import strategies  # noqa: E402
from labelloop.stop_rule import CurvePoint, advise, fit_curve  # noqa: E402


def curves(
    seed: int, *, batch: int, rounds: int, initial: int, eval_size: int, usd_per_label: float
) -> tuple[list[int], list[float], list[float]]:
    """Label counts, evaluation-set accuracy and true accuracy after each round."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x, y = digits.data / 16.0, digits.target
    x_rest, x_pool, y_rest, y_pool = train_test_split(
        x, y, test_size=0.55, random_state=seed, stratify=y
    )
    x_eval, x_true, y_eval, y_true = train_test_split(
        x_rest, y_rest, train_size=eval_size, random_state=seed, stratify=y_rest
    )
    labeled = np.zeros(len(y_pool), dtype=bool)
    rng = np.random.default_rng(seed)
    labeled[rng.choice(len(y_pool), size=initial, replace=False)] = True
    counts: list[int] = []
    evals: list[float] = []
    trues: list[float] = []
    for r in range(rounds):
        clf = LogisticRegression(max_iter=2000).fit(x_pool[labeled], y_pool[labeled])
        counts.append(int(labeled.sum()))
        evals.append(float(np.mean(clf.predict(x_eval) == y_eval)))
        trues.append(float(np.mean(clf.predict(x_true) == y_true)))
        picked = strategies.select(
            "margin", batch, seed=seed * 100 + r, proba=clf.predict_proba(x_pool), exclude=labeled
        )
        labeled[picked.indices] = True
    return counts, evals, trues


def stop_round(counts: list[int], accs: list[float], *, floor: float, usd: float) -> int | None:
    """The first round (0-based) at which the rule, seeing rounds 0..r only, says stop."""
    for r in range(1, len(counts)):
        seen = zip(counts[: r + 1], accs[: r + 1], strict=True)
        points = [CurvePoint(c, a, c * usd) for c, a in seen]
        if advise(points, min_gain_per_100=floor).paying_off is False:
            return r
    return None


def flat_round(counts: list[int], accs: list[float], *, floor: float) -> int | None:
    """In hindsight: the first round whose gain per 100 labels on the fitted true curve < floor."""
    _, (curve, _) = fit_curve(np.array(counts), np.array(accs))
    for r, c in enumerate(counts):
        if float(curve(c + 100) - curve(c)) < floor:
            return r
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--batch", type=int, default=40, help="labels per round")
    p.add_argument("--rounds", type=int, default=16)
    p.add_argument("--initial", type=int, default=40)
    p.add_argument("--eval-size", type=int, default=300, help="fixed evaluation set size")
    p.add_argument("--floor", type=float, default=0.005, help="gain per 100 labels to go on")
    p.add_argument("--usd-per-label", type=float, default=0.08)
    args = p.parse_args(argv)
    started = time.perf_counter()
    print(
        f"{'seed':>4} {'rule stops':>11} {'true flattens':>14} {'rounds apart':>13} "
        f"{'labels':>7} {'true acc':>9} {'final true acc':>15}"
    )
    diffs = []
    for seed in range(args.seeds):
        counts, evals, trues = curves(
            seed,
            batch=args.batch,
            rounds=args.rounds,
            initial=args.initial,
            eval_size=args.eval_size,
            usd_per_label=args.usd_per_label,
        )
        rule = stop_round(counts, evals, floor=args.floor, usd=args.usd_per_label)
        flat = flat_round(counts, trues, floor=args.floor)
        apart = None if rule is None or flat is None else rule - flat
        diffs.append(apart)
        at = rule if rule is not None else len(counts) - 1
        print(
            f"{seed:>4} {rule if rule is not None else '-':>11} "
            f"{flat if flat is not None else '-':>14} {apart if apart is not None else '-':>13} "
            f"{counts[at]:>7} {trues[at]:>9.3f} {trues[-1]:>15.3f}"
        )
    known = [d for d in diffs if d is not None]
    within = sum(abs(d) <= 2 for d in known)
    print(
        f"\nwithin two rounds: {within}/{len(diffs)} seeds; mean rounds apart "
        f"{np.mean(known) if known else float('nan'):+.2f} (batch {args.batch}, floor "
        f"{args.floor * 100:.2f} points per 100 labels, evaluation set {args.eval_size}; "
        f"{time.perf_counter() - started:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
