"""Measured label savings of active learning: simulated labeling rounds with a local model.

Every strategy starts from its pipeline cold start (`--initial` items: k-center diversity for
k_center / cluster_margin, seeded random for the others), then labels `--batch` items per
round chosen by the strategy from the pool, retraining the pipeline's model (scikit-learn
LogisticRegression, as in labelloop.training) each round. Accuracy is measured on a held-out
test split. For each seed we record the labels needed to reach 95% and 98% of the accuracy of
the same model trained on the whole pool, and report every strategy against random (same run).

Usage:
    .venv/bin/python benchmarks/active_learning.py                 # digits, 5 seeds
    .venv/bin/python benchmarks/active_learning.py --csv data.csv --label-column y
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from labelloop.active_learning import strategies  # noqa: E402

log = logging.getLogger("benchmarks.active_learning")
VARIANTS = (*strategies.STRATEGIES, "margin+balance")


def load_data(csv_path: str | None, label_column: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """Features (scaled to [0, 1] per column) and labels: digits, or a CSV file."""
    if csv_path is None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.data / 16.0, digits.target.astype(str), "digits"
    if not label_column:
        raise SystemExit("--label-column is required with --csv")
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or label_column not in rows[0]:
        raise SystemExit(f"{csv_path}: no column {label_column!r}")
    columns = [c for c in rows[0] if c != label_column]
    x = np.array([[float(r[c]) for c in columns] for r in rows])
    lo, hi = x.min(axis=0), x.max(axis=0)
    x = (x - lo) / np.where(hi > lo, hi - lo, 1.0)
    y = np.array([str(r[label_column]) for r in rows])
    return x, y, Path(csv_path).name


def model():
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000, C=1.0)


def run_curve(
    variant: str,
    x_pool: np.ndarray,
    y_pool: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    seed: int,
    initial: int,
    batch: int,
    budget: int,
) -> tuple[list[int], list[float]]:
    """Label counts and test accuracies, round by round, for one strategy and seed."""
    n = x_pool.shape[0]
    labeled = np.zeros(n, dtype=bool)
    strategy = "margin" if variant == "margin+balance" else variant
    # The cold start the pipeline uses for this strategy (no model yet): k-center diversity
    # sampling for the batch-aware strategies, a seeded random sample for the others.
    labeled[strategies.select(strategy, initial, seed=seed, features=x_pool).indices] = True
    counts: list[int] = []
    accs: list[float] = []
    round_no = 0
    while True:
        seen = np.unique(y_pool[labeled])
        counts.append(int(labeled.sum()))
        if seen.size < 2:
            # One class so far (an imbalanced pool): no model can be fit, it predicts that
            # class, and the next batch is another cold-start pick.
            accs.append(float(np.mean(y_test == seen[0])))
            proba = None
        else:
            clf = model().fit(x_pool[labeled], y_pool[labeled])
            accs.append(float(np.mean(clf.predict(x_test) == y_test)))
            proba = clf.predict_proba(x_pool)
        if labeled.sum() >= min(budget, n):
            break
        picked = strategies.select(
            strategy,
            min(batch, budget - int(labeled.sum())),
            seed=seed * 1000 + round_no,
            proba=proba,
            features=x_pool,
            labeled_features=x_pool[labeled],
            exclude=labeled,
            class_balance=variant == "margin+balance",
        )
        labeled[picked.indices] = True
        round_no += 1
    return counts, accs


def labels_to_reach(counts: list[int], accs: list[float], target: float) -> float:
    """The first label count whose accuracy reaches `target` (inf if never)."""
    for c, a in zip(counts, accs, strict=True):
        if a >= target:
            return float(c)
    return float("inf")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--csv", help="CSV of numeric features plus a label column")
    p.add_argument("--label-column", help="the label column of --csv")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--initial", type=int, default=10, help="cold-start labels before round 1")
    p.add_argument("--batch", type=int, default=5, help="labels per round")
    p.add_argument("--budget", type=int, default=300, help="stop at this many labels")
    p.add_argument("--test-fraction", type=float, default=0.3)
    p.add_argument("--strategies", default=",".join(VARIANTS))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from sklearn.model_selection import train_test_split

    x, y, name = load_data(args.csv, args.label_column)
    variants = [v.strip() for v in args.strategies.split(",") if v.strip()]
    if "random" not in variants:
        variants.insert(0, "random")
    curves: dict[str, list[tuple[list[int], list[float]]]] = {v: [] for v in variants}
    needed: dict[str, dict[float, list[float]]] = {v: {0.95: [], 0.98: []} for v in variants}
    full_accs = []
    started = time.perf_counter()
    for seed in range(args.seeds):
        x_pool, x_test, y_pool, y_test = train_test_split(
            x, y, test_size=args.test_fraction, random_state=seed, stratify=y
        )
        full = float(np.mean(model().fit(x_pool, y_pool).predict(x_test) == y_test))
        full_accs.append(full)
        for v in variants:
            counts, accs = run_curve(
                v,
                x_pool,
                y_pool,
                x_test,
                y_test,
                seed=seed,
                initial=args.initial,
                batch=args.batch,
                budget=args.budget,
            )
            curves[v].append((counts, accs))
            for frac in (0.95, 0.98):
                needed[v][frac].append(labels_to_reach(counts, accs, frac * full))
        print(f"seed {seed}: full-data accuracy {full:.4f} ({time.perf_counter() - started:.0f} s)")

    print(
        f"\n{name}: pool {len(y) - int(len(y) * args.test_fraction)} items, "
        f"full-data accuracy {np.mean(full_accs):.4f}, {args.seeds} seeds, "
        f"initial {args.initial}, batch {args.batch}, budget {args.budget}"
    )
    header = (
        f"{'strategy':<16}{'labels@95%':>12}{'x random':>10}{'worst seed':>12}"
        f"{'labels@98%':>12}{'x random':>10}{'worst seed':>12}"
    )
    print(header)
    print("-" * len(header))
    rand = needed["random"]
    for v in variants:
        cells = []
        for frac in (0.95, 0.98):
            mine = np.array(needed[v][frac])
            # Random not reaching the target within the budget: its need is at least the
            # budget, so the ratio is an upper bound ("<").
            reached = np.isfinite(rand[frac])
            base = np.where(reached, rand[frac], args.budget + args.batch)
            bound = "" if reached.all() else "<"
            mean = float(np.mean(mine))
            cells.append(f"{mean:>12.0f}" if np.isfinite(mean) else f"{'>' + str(args.budget):>12}")
            ratio = mean / float(np.mean(base))
            worst = float(np.max(mine / base))
            cells.append(f"{bound + f'{ratio:.2f}':>10}" if np.isfinite(ratio) else f"{'-':>10}")
            cells.append(f"{bound + f'{worst:.2f}':>12}" if np.isfinite(worst) else f"{'-':>12}")
        print(f"{v:<16}" + "".join(cells))
    print(
        "(x random: mean labels / random's mean labels; worst seed: largest per-seed ratio;"
        " '<': random missed the target within the budget on some seed, its need is taken as"
        " the budget, so the ratio is an upper bound; '-': not reached)"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for v in variants:
        counts = curves[v][0][0]
        accs = np.array([a for _, a in curves[v]])
        mean, std = accs.mean(axis=0), accs.std(axis=0)
        ax.plot(counts, mean, label=v, linewidth=2 if v in ("random", "margin") else 1)
        ax.fill_between(counts, mean - std, mean + std, alpha=0.15)
    full = float(np.mean(full_accs))
    for frac in (0.95, 0.98):
        ax.axhline(frac * full, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("labels used")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Active learning on {name} ({args.seeds} seeds, mean ± std)")
    ax.set_ylim(max(0.0, min(0.5, full - 0.4)), 1.0)
    ax.legend()
    ax.grid(alpha=0.3)
    png = out / f"active_learning_{Path(name).stem}.png"
    fig.savefig(png, dpi=120, bbox_inches="tight")
    print(f"plot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
