"""Honest model evaluation: a fixed evaluation set, and a random control arm in every batch.

Accuracy on held-out labels of actively selected items measures the model on the hardest
items with noisy labels: it under-states the model and can say "stop labeling" too early. So:

- **The evaluation set** is a seeded random sample of the pool (never actively selected),
  chosen once, labeled once (with the first batch, on top of it), kept out of training and
  fixed across rounds (`eval/items.jsonl` in the state).
- **The control arm**: a share of each batch (`random_share`) is a random sample. Training
  compares a model fit on the random-arm labels with one fit on as many actively chosen labels,
  both scored on the evaluation set: whether active learning helps on *your* data.

Each selected item's arm (`active`, `random`, `eval`, `relabel`) is kept under `arms/`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from labelloop import relabel, state, storage
from labelloop.errors import InputError
from labelloop.schemas import Item

log = logging.getLogger(__name__)

EVAL_SET = "eval/items.jsonl"
ARMS = "arms"
ARM_NAMES = ("active", "random", "eval", "relabel")
MAX_EVAL_SHARE_DIVISOR = 5  # the evaluation set takes at most 1/5 of the pool


def eval_ids(state_uri: str) -> list[str]:
    """The fixed evaluation set's item ids (`[]` before it is chosen)."""
    if not state_uri:
        return []
    uri = state.path(state_uri, EVAL_SET)
    if not storage.exists(uri):
        return []
    rows, _ = storage.read_jsonl_objects(uri)
    return [str(row["item"]) for _, row in rows]


def ensure_eval_set(
    state_uri: str, pool_ids: Sequence[str], *, size: int, seed: int, excluded: set[str]
) -> list[str]:
    """The evaluation set: read it, or choose it once (a seeded random sample of the pool).

    Items already labeled or queued are not eligible (their labels may be actively chosen).
    It takes at most a fifth of the eligible pool.
    """
    chosen = eval_ids(state_uri)
    if chosen or size <= 0 or not state_uri:
        return chosen
    eligible = sorted(i for i in set(pool_ids) if i not in excluded)
    rng = np.random.default_rng([seed, 2718])
    # At most a fifth of the pool: a small pool must still leave items to train on.
    take = min(size, len(eligible) // MAX_EVAL_SHARE_DIVISOR)
    picks = sorted(rng.choice(len(eligible), size=take, replace=False).tolist()) if take else []
    chosen = [eligible[i] for i in picks]
    storage.write_jsonl(state.path(state_uri, EVAL_SET), ({"item": i} for i in chosen))
    log.info("evaluation set: %d random items, fixed from now on", len(chosen))
    return chosen


def split_batch(k: int, random_share: float) -> tuple[int, int]:
    """(active, random) counts of a batch of `k` with a `random_share` control arm."""
    if not 0.0 <= random_share <= 1.0:
        raise InputError(f"must lie in [0, 1], got {random_share}", field="random_share")
    n_random = min(round(k * random_share), max(k - 1, 0))  # the strategy keeps one slot
    return k - n_random, n_random


def random_picks(pool_ids: Sequence[str], n: int, *, seed: int, excluded: set[str]) -> list[str]:
    """`n` seeded random items of the pool outside `excluded` (the control arm)."""
    eligible = [i for i in pool_ids if i not in excluded]
    if n <= 0 or not eligible:
        return []
    rng = np.random.default_rng([seed, 31415])
    take = min(n, len(eligible))
    return [eligible[i] for i in sorted(rng.choice(len(eligible), size=take, replace=False))]


def record_arms(state_uri: str, arms: dict[str, str]) -> None:
    """Keep each selected item's arm (keyed by the batch: a retry overwrites)."""
    if state_uri and arms:
        key = hashlib.sha256("\n".join(sorted(arms)).encode("utf-8")).hexdigest()[:16]
        rows = ({"item": i, "arm": a} for i, a in sorted(arms.items()))
        storage.write_jsonl(state.path(state_uri, ARMS, f"{key}.jsonl"), rows)


def read_arms(state_uri: str) -> dict[str, str]:
    """Every selected item's arm so far (the latest batch wins)."""
    if not state_uri:
        return {}
    folder = state.path(state_uri, ARMS)
    if not storage.is_gcs(folder) and not storage.local_path(folder).is_dir():
        return {}
    out: dict[str, str] = {}
    for uri in storage.iter_files(folder, suffixes=(".jsonl",)):
        rows, _ = storage.read_jsonl_objects(uri)
        out.update({str(row["item"]): str(row.get("arm", "active")) for _, row in rows})
    return out


def accuracy_interval(
    correct: np.ndarray, *, n_boot: int = 500, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean of 0/1 outcomes (NaN for no outcomes)."""
    correct = np.asarray(correct, dtype=np.float64)
    if correct.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, correct.size, size=(n_boot, correct.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return (float(low), float(high))


def curve_point(name: str, n: int, correct: np.ndarray, *, seed: int) -> dict[str, Any]:
    """One arm's learning-curve point: labels used, accuracy on the evaluation set, interval."""
    low, high = accuracy_interval(correct, seed=seed)
    return {
        "arm": name,
        "labels": int(n),
        "accuracy": float(correct.mean()) if correct.size else None,
        "ci": [low, high] if correct.size else [None, None],
    }


def compose_batch(
    *,
    state_uri: str,
    pool: Sequence[Item],
    active: Sequence[dict[str, Any]],
    k_active: int,
    k_random: int,
    eval_todo: Sequence[str],
    excluded: set[str],
    seed: int,
) -> tuple[list[Item], list[dict[str, Any]], dict[str, str]]:
    """The batch: active picks (some swapped for relabel requests), the random arm, and the
    evaluation items still to label.

    Args:
        state_uri: The loop's state (relabel requests are read from it).
        pool: Every item of the pool.
        active: The strategy's picks (`item`, `score`, `predicted`), at most `k_active`.
        k_active: The active arm's size.
        k_random: The random arm's size.
        eval_todo: Evaluation items not labeled yet (added on top of the batch).
        excluded: Items labeled or queued before, and the evaluation set.
        seed: Seed of the random arm.

    Returns:
        The items to label, their summary rows (with `arm`) and the arm of each item.
    """
    by_id = {item.id: item for item in pool}
    requests = [r for r in relabel.pending(state_uri) if str(r["item"]) in by_id]
    # Relabeling may take at most half of the active arm: new items keep coming.
    kept, taken = relabel.merge_into_batch(
        [(str(c["item"]), float(c["score"])) for c in active],
        requests[: max(k_active // 2, 0)],
        k_active,
    )
    attempts = relabel.attempts(state_uri)
    keep = set(kept)
    rows = [{**c, "arm": "active"} for c in active if str(c["item"]) in keep]
    error = {str(r["item"]): float(r.get("expected_error") or 0.0) for r in requests}
    rows += [{"item": i, "score": error[i], "predicted": None, "arm": "relabel"} for i in taken]
    chosen = {str(r["item"]) for r in rows}
    randoms = random_picks([i.id for i in pool], k_random, seed=seed, excluded=excluded | chosen)
    rows += [{"item": i, "score": 0.0, "predicted": None, "arm": "random"} for i in randoms]
    rows += [
        {"item": i, "score": 0.0, "predicted": None, "arm": "eval"}
        for i in eval_todo
        if i in by_id and i not in chosen
    ]
    items: list[Item] = []
    for row in rows:
        item = by_id[str(row["item"])]
        if row["arm"] == "relabel":
            item = dataclasses.replace(item, attempt=attempts.get(item.id, 0) + 1)
        elif row["arm"] == "eval":
            item = dataclasses.replace(item, ml_use="test")
        items.append(item)
    return items, rows, {str(r["item"]): str(r["arm"]) for r in rows}
