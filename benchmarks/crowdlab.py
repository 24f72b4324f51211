"""CROWDLAB (cleanlab's multiannotator consensus) against labelloop's consolidation, side by side.

Accuracy of the consolidated labels against the truth, in one run, on:

* simulated crowds on scikit-learn's digits, as the tests build them (labelloop's simulated
  workforce, profiles `mixed` and `noisy`, 1 to 3 answers per item) with the loop's model
  (LogisticRegression on the pixels, out-of-fold probabilities from 5-fold cross-validation,
  trained on the majority-vote labels, as the CROWDLAB paper does);
* real crowds with gold, RTE and TEMP (Snow et al., 2008), from `../shared/datasets/crowd`
  when it is there: all 10 answers per item and a seeded subsample of 1 or 3. These sets carry
  no features, so the "model" is either absent (uniform probabilities) or a simulated calibrated
  classifier of the stated accuracy (confidence c ~ U(1/K, 1), right with probability c).

Methods: majority vote (ties count as wrong: they go to review), labelloop's Dawid-Skene over
people, labelloop's Dawid-Skene with the model's answer as one more source (its confusion
estimated by EM like a person's), and CROWDLAB (`get_label_quality_multiannotator`, consensus
`best_quality`) with the same model probabilities.

    .venv/bin/python benchmarks/crowdlab.py [--seeds 3] [--root ../shared/datasets/crowd]
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from labelloop.quality.consolidation import DawidSkene, MajorityVote  # noqa: E402

# The shared folder beside the checkout (or beside the folder of worktrees).
DEFAULT_ROOT = next(
    (p / "shared" / "datasets" / "crowd" for p in ROOT.parents if (p / "shared").is_dir()),
    ROOT.parent / "shared" / "datasets" / "crowd",
)
METHODS = ("majority vote", "Dawid-Skene", "Dawid-Skene + model", "CROWDLAB")
log = logging.getLogger("benchmarks.crowdlab")


def consolidate(
    item: np.ndarray, annotator: np.ndarray, label: np.ndarray, proba: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Each method's label per item (-1: no label, i.e. a tie sent to review)."""
    n_items, n_labels = (
        int(item.max()) + 1,
        int(max(label.max() + 1, proba.shape[1] if proba is not None else 0)),
    )
    n_annotators = int(annotator.max()) + 1
    kw = {"n_items": n_items, "n_labels": n_labels, "n_annotators": n_annotators}
    out = {
        "majority vote": MajorityVote().fit(item, annotator, label, **kw).labels_,
        "Dawid-Skene": DawidSkene().fit(item, annotator, label, **kw).labels_,
    }
    if proba is None:
        return out
    if np.ptp(proba) > 0:  # a model with something to say (not uniform)
        out["Dawid-Skene + model"] = _with_model(item, annotator, label, proba, kw)
    from cleanlab.multiannotator import get_label_quality_multiannotator

    matrix = np.full((n_items, n_annotators), np.nan)
    matrix[item, annotator] = label
    used = ~np.isnan(matrix).all(axis=0)
    if np.bincount(item, minlength=n_items).max() < 2:
        return out  # CROWDLAB refuses one answer per item (cleanlab.rank is for that case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "annotators labeled only one example" etc.
        result = get_label_quality_multiannotator(
            matrix[:, used], proba, verbose=False, return_annotator_stats=False
        )
    out["CROWDLAB"] = result["label_quality"]["consensus_label"].to_numpy()
    return out


def _with_model(
    item: np.ndarray,
    annotator: np.ndarray,
    label: np.ndarray,
    proba: np.ndarray,
    kw: dict[str, int],
) -> np.ndarray:
    """Dawid-Skene with the model's answer on every item as one more annotator."""
    n_items, n_annotators = kw["n_items"], kw["n_annotators"]
    return (
        DawidSkene()
        .fit(
            np.concatenate([item, np.arange(n_items)]),
            np.concatenate([annotator, np.full(n_items, n_annotators)]),
            np.concatenate([label, proba.argmax(axis=1)]),
            **{**kw, "n_annotators": n_annotators + 1},
        )
        .labels_
    )


def _digits_cases(seeds: int) -> Iterator[tuple[str, int, tuple[np.ndarray, ...], np.ndarray]]:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    from labelloop.providers.base import LabelingTask
    from labelloop.providers.simulated import SimulatedWorkforce
    from labelloop.schemas import Item, TaskType

    digits = load_digits()
    x, truth = digits.data / 16.0, digits.target
    labels = tuple(str(c) for c in range(10))
    task = LabelingTask(TaskType.IMAGE_CLASSIFICATION, labels)
    items = [Item(id=f"d{i}", uri=f"d{i}") for i in range(len(truth))]
    for profile in ("mixed", "noisy"):
        for per_item in (1, 2, 3):
            for seed in range(seeds):
                crowd = SimulatedWorkforce(
                    {f"d{i}": str(t) for i, t in enumerate(truth)}, workforce=profile, seed=seed
                )
                job = crowd.submit(items, task, labelers_per_item=per_item)
                answers = crowd.collect(job).annotations
                names = sorted({a.annotator for a in answers})
                item = np.array([int(a.item[1:]) for a in answers])
                annotator = np.array([names.index(a.annotator) for a in answers])
                label = np.array([int(str(a.value)) for a in answers])
                mv = MajorityVote().fit(item, annotator, label, n_items=len(truth), n_labels=10)
                # The loop's model, trained on majority-vote labels, scored out of fold.
                proba = cross_val_predict(
                    LogisticRegression(max_iter=1000), x, mv.counts_.argmax(axis=1),
                    cv=5, method="predict_proba",
                )  # fmt: skip
                yield f"digits {profile}, {per_item}/item", seed, (item, annotator, label), proba
                del proba


def _load_crowd(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    items: list[str] = []
    workers: list[str] = []
    answers: list[str] = []
    gold: dict[str, str] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            items.append(row["orig_id"])
            workers.append(row["!amt_worker_ids"])
            answers.append(row["response"])
            gold[row["orig_id"]] = row["gold"]
    item_ids = sorted(set(items))
    classes = sorted(set(answers) | set(gold.values()))
    worker_ids = sorted(set(workers))
    return (
        np.array([item_ids.index(i) for i in items]),
        np.array([worker_ids.index(w) for w in workers]),
        np.array([classes.index(a) for a in answers]),
        np.array([classes.index(gold[i]) for i in item_ids]),
    )


def simulated_model(truth: np.ndarray, n_labels: int, accuracy: float, seed: int) -> np.ndarray:
    """Calibrated probabilities of a classifier with about `accuracy` (confidence c, right
    with probability c, the rest spread evenly), so the model is neither over- nor
    under-confident."""
    rng = np.random.default_rng(seed)
    # c ~ U(lo, hi) with mean `accuracy`, within [1/K, 1].
    lo = 1.0 / n_labels
    hi = 2 * accuracy - lo
    if hi > 1.0:
        lo, hi = 2 * accuracy - 1.0, 1.0
    conf = rng.uniform(lo, hi, size=truth.size)
    right = rng.random(truth.size) < conf
    wrong = (truth + rng.integers(1, n_labels, size=truth.size)) % n_labels
    predicted = np.where(right, truth, wrong)
    proba = np.repeat(((1 - conf) / (n_labels - 1))[:, None], n_labels, axis=1)
    proba[np.arange(truth.size), predicted] = conf
    return proba


def _real_cases(
    root: Path, seeds: int
) -> Iterator[tuple[str, int, tuple[np.ndarray, ...], np.ndarray | None, np.ndarray]]:
    for name in ("rte", "temp"):
        path = root / name / f"{name}.standardized.tsv"
        if not path.exists():
            continue
        item, annotator, label, truth = _load_crowd(path)
        n_labels = int(max(label.max(), truth.max()) + 1)
        for per_item in (1, 3, 10):
            for seed in range(seeds):
                rng = np.random.default_rng(seed)
                order = rng.permutation(item.size)
                # Keep `per_item` random answers of each item.
                rank = np.empty(item.size, dtype=np.int64)
                sorted_rows = order[np.argsort(item[order], kind="stable")]
                starts = np.searchsorted(item[sorted_rows], np.arange(truth.size))
                rank[sorted_rows] = np.arange(item.size) - np.repeat(
                    starts, np.diff(np.append(starts, item.size))
                )
                keep = rank < per_item
                rows = (item[keep], annotator[keep], label[keep])
                for model_name, proba in (
                    ("no model", np.full((truth.size, n_labels), 1.0 / n_labels)),
                    ("model 0.75", simulated_model(truth, n_labels, 0.75, seed)),
                    ("model 0.85", simulated_model(truth, n_labels, 0.85, seed)),
                ):
                    yield f"{name} {per_item}/item, {model_name}", seed, rows, proba, truth


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="the real crowd datasets")
    p.add_argument("--no-digits", action="store_true", help="only the real crowd datasets")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        import cleanlab  # noqa: F401
    except ImportError:
        print("cleanlab is not installed: pip install 'labelloop[crowdlab]'")
        return 2
    started = time.perf_counter()
    scores: dict[str, dict[str, list[float]]] = {}

    def record(case: str, labels: dict[str, np.ndarray], truth: np.ndarray) -> None:
        row = scores.setdefault(case, {m: [] for m in METHODS})
        for method, predicted in labels.items():
            row[method].append(float(np.mean(predicted == truth)))

    if not args.no_digits:
        from sklearn.datasets import load_digits

        truth = load_digits().target
        for case, seed, (item, annotator, label), proba in _digits_cases(args.seeds):
            record(case, consolidate(item, annotator, label, proba), truth)
            log.info("%s seed %d (%.0f s)", case, seed, time.perf_counter() - started)
    if args.root.is_dir():
        for case, seed, (item, annotator, label), proba, truth in _real_cases(
            args.root, args.seeds
        ):
            record(case, consolidate(item, annotator, label, proba), truth)
            log.info("%s seed %d (%.0f s)", case, seed, time.perf_counter() - started)
    else:
        print(f"no real crowd datasets at {args.root}: simulated crowds only")
    width = max(len(c) for c in scores) + 2
    print(
        f"\naccuracy of the consolidated labels against the truth (mean of {args.seeds} seeds; "
        "ties count as wrong)"
    )
    head = f"{'case':<{width}}" + "".join(f"{m:>22}" for m in METHODS)
    print(head)
    print("-" * len(head))
    for case, row in scores.items():
        cells = "".join(f"{np.mean(row[m]):>22.4f}" if row[m] else f"{'-':>22}" for m in METHODS)
        print(f"{case:<{width}}{cells}")
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
