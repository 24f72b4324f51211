"""Uncertainty scores and batch selection. Arrays in, arrays out.

Higher score = more useful to label; every score lies in [0, 1]. Top-k is a partial sort
(`np.argpartition`), never a full sort of the pool, and ties break by index, so a seed gives one
answer. Items to skip (already labeled or queued) are passed as a boolean `exclude` mask.

Strategies:
    random: a seeded uniform sample (the baseline, and the cold start without a model).
    least_confidence: 1 - max probability.
    margin: 1 - (best - second best probability).
    entropy: Shannon entropy of the probabilities, divided by log(n_classes).
    k_center: greedy k-center (core-set) on features: each pick is the item farthest from the
        labeled items and the picks so far. Needs no model, so it is also a diversity cold start.
    cluster_margin: the `candidate_factor * k` smallest-margin items, clustered into k groups by
        k-means on features; the most uncertain item of each group, smallest groups first
        (Citovsky et al. 2021, "Batch active learning at scale"). Avoids near-duplicates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from labelloop.errors import InputError

Score = Callable[[np.ndarray], np.ndarray]
S = TypeVar("S", bound=Score)


@dataclasses.dataclass(frozen=True)
class Batch:
    """What a strategy sees when it picks (a model exists: `proba` is set).

    Attributes:
        k: Batch size.
        seed: Seed for random picks, the first k-center and k-means.
        proba: (n, c) class probabilities of the pool.
        features: (n, d) features of the pool (None when not available).
        labeled_features: (m, d) features of the items labeled so far, or None.
        exclude: Boolean mask (n,) of rows never picked, or None.
        class_balance: Spread the picks evenly over predicted classes.
    """

    k: int
    seed: int
    proba: np.ndarray
    features: Any
    labeled_features: Any
    exclude: np.ndarray | None
    class_balance: bool


#: A strategy's pick: (indices in pick order, every row's score).
Pick = Callable[[Batch], tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Strategy:
    """A registered selection strategy.

    Attributes:
        name: The `selection_strategy` value users write.
        pick: Picks a batch when a model exists (cold starts are handled by `select`).
        needs_features: Batch-aware: needs the pool's features (k-center diversity on a cold
            start).
        score: The per-row uncertainty it ranks by, for uncertainty strategies (None otherwise).
    """

    name: str
    pick: Pick
    needs_features: bool = False
    score: Score | None = None


#: Every strategy, by name, in registration order (`register_strategy`, `register_uncertainty`).
STRATEGIES: dict[str, Strategy] = {}
#: The uncertainty scores by name (the strategies that rank rows by a per-row score alone).
SCORERS: dict[str, Score] = {}
#: The same scores as engine (DuckDB SQL) expressions over one row's confidence list `v`: how
#: prediction files are ranked without loading them (the kept candidates are re-scored with
#: `SCORERS`, so the two only need to agree to rounding).
SQL_SCORES: dict[str, str] = {}


def register_strategy(name: str, *, needs_features: bool = False) -> Callable[[Pick], Pick]:
    """Decorator: register a batch `Pick` function as the strategy `name`."""

    def wrap(fn: Pick) -> Pick:
        if name in STRATEGIES:
            raise ValueError(f"strategy {name!r} is registered twice")
        STRATEGIES[name] = Strategy(name, fn, needs_features=needs_features)
        return fn

    return wrap


def register_uncertainty(name: str, *, sql: str) -> Callable[[S], S]:
    """Decorator: register a per-row uncertainty score as the top-k strategy `name`.

    Args:
        name: The strategy name.
        sql: The same score as a DuckDB expression over the confidence list `v` (`SQL_SCORES`).
    """

    def wrap(score: S) -> S:
        if name in STRATEGIES:
            raise ValueError(f"strategy {name!r} is registered twice")
        SCORERS[name] = score
        SQL_SCORES[name] = sql
        STRATEGIES[name] = Strategy(name, _top_k_pick(score), score=score)
        return score

    return wrap


def needs_features(name: str) -> bool:
    """Whether the named strategy is batch-aware (needs the pool's features)."""
    return name in STRATEGIES and STRATEGIES[name].needs_features


def strategy_names() -> list[str]:
    """Every registered strategy name, in registration order."""
    return list(STRATEGIES)


def _top_k_pick(score: Score) -> Pick:
    """The pick of an uncertainty strategy: top-k by `score` (optionally class-balanced)."""

    def pick(batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        scores = score(batch.proba)
        if batch.class_balance:
            # Round robin over the best k * n_classes: enough for every class to fill its share.
            candidates = top_k(
                scores, batch.k * max(1, batch.proba.shape[1]), exclude=batch.exclude
            )
            predicted = batch.proba[candidates].argmax(axis=1)
            return candidates[class_balanced(scores[candidates], predicted, batch.k)], scores
        return top_k(scores, batch.k, exclude=batch.exclude), scores

    return pick


@register_strategy("random")
def _random_pick(batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """A seeded uniform sample (the baseline and the control arm)."""
    n = batch.proba.shape[0]
    return random_sample(n, batch.k, seed=batch.seed, exclude=batch.exclude), np.zeros(n)


@register_uncertainty("least_confidence", sql="1.0 - list_max(v)")
def least_confidence(proba: np.ndarray) -> np.ndarray:
    """1 - max class probability, per row of an (n, c) probability matrix."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape[0] == 0:
        return np.zeros(0)
    return least_confidence_from_top(proba.max(axis=1))


@register_uncertainty(
    "margin",
    # max(x, 2) keeps the two largest, ties included (a list sort per row is 4x slower).
    sql="CASE WHEN len(v) < 2 THEN 1.0 - v[1] "
    "ELSE 1.0 - (list_aggregate(v, 'max', 2)[1] - list_aggregate(v, 'max', 2)[2]) END",
)
def margin(proba: np.ndarray) -> np.ndarray:
    """1 - (largest - second largest probability): 1 for a tie between the top two."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape[0] == 0:
        return np.zeros(0)
    if proba.shape[1] < 2:
        return 1.0 - proba[:, 0]
    top2 = -np.partition(-proba, 1, axis=1)[:, :2]
    return margin_from_top2(top2[:, 0], top2[:, 1])


def margin_from_top2(largest: np.ndarray, second: np.ndarray) -> np.ndarray:
    """`margin` from each row's largest and second largest probability (all it depends on)."""
    return 1.0 - (largest - second)


def least_confidence_from_top(largest: np.ndarray) -> np.ndarray:
    """`least_confidence` from each row's largest probability."""
    return 1.0 - largest


@register_uncertainty(
    "entropy",
    sql="CASE WHEN len(v) < 2 THEN 0.0 ELSE greatest(0.0, least(1.0, -list_sum(list_transform("
    "v, lambda p: CASE WHEN p > 0 THEN p * ln(p) ELSE 0.0 END)) / ln(len(v)))) END",
)
def entropy(proba: np.ndarray) -> np.ndarray:
    """Entropy of each row divided by log(n_classes), so 1 means uniform."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape[0] == 0:
        return np.zeros(0)
    if proba.shape[1] < 2:
        return np.zeros(proba.shape[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(proba > 0, proba * np.log(proba), 0.0)
    return np.clip(-terms.sum(axis=1) / np.log(proba.shape[1]), 0.0, 1.0)


def uncertainty(proba: np.ndarray, *, strategy: str) -> np.ndarray:
    """The named uncertainty score of each row."""
    if strategy not in SCORERS:
        raise InputError(
            f"unknown uncertainty score {strategy!r}; expected one of {', '.join(SCORERS)}",
            field="strategy",
        )
    return SCORERS[strategy](proba)


def top_k(scores: np.ndarray, k: int, *, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the `k` highest scores, highest first (ties: lower index first).

    Args:
        scores: Shape (n,).
        k: How many to return (fewer if fewer are eligible).
        exclude: Boolean mask of shape (n,); True rows are never returned.
    """
    scores = np.asarray(scores, dtype=np.float64)
    allowed = np.arange(scores.shape[0]) if exclude is None else np.flatnonzero(~exclude)
    n = allowed.shape[0]
    k = max(0, min(k, n))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    values = scores[allowed]
    if k < n:
        part = np.argpartition(-values, k - 1)[:k]
        # argpartition splits ties at the cut arbitrarily: take every tie, then order by index.
        cut = values[part].min()
        part = np.concatenate([part[values[part] > cut], np.flatnonzero(values == cut)])
    else:
        part = np.arange(n)
    order = np.lexsort((part, -values[part]))
    return allowed[part[order][:k]].astype(np.int64)


def random_sample(n: int, k: int, *, seed: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """`k` distinct indices out of `n` (minus `exclude`), seeded, in ascending order."""
    rng = np.random.default_rng(seed)
    allowed = np.arange(n) if exclude is None else np.flatnonzero(~exclude)
    k = max(0, min(k, allowed.shape[0]))
    return np.sort(rng.choice(allowed, size=k, replace=False)).astype(np.int64)


def _row_sq_norms(x: Any) -> np.ndarray:
    if hasattr(x, "multiply"):  # scipy sparse
        return np.asarray(x.multiply(x).sum(axis=1), dtype=np.float64).ravel()
    return np.einsum("ij,ij->i", x, x, dtype=np.float64)


def _sq_dist_to_row(x: Any, norms: np.ndarray, row: int) -> np.ndarray:
    """Squared Euclidean distance of every row of `x` to row `row` (dense or scipy sparse)."""
    dots = np.asarray(x @ x[row].T, dtype=np.float64).ravel()
    return np.maximum(norms - 2.0 * dots + norms[row], 0.0)


def k_center_greedy(
    features: Any,
    k: int,
    *,
    seed: int,
    labeled: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Greedy k-center: repeatedly pick the item farthest from every center so far.

    Args:
        features: (n, d) dense array or scipy sparse matrix of the pool and labeled items.
        k: How many to pick.
        seed: Picks the first center when there are no labeled items.
        labeled: Boolean mask (n,) of rows that are already centers (labeled items); they are
            never picked.
        exclude: Boolean mask (n,) of rows never picked (they do not act as centers).

    Returns:
        Indices in pick order. O(n * d) work per pick, O(n) memory.
    """
    n = features.shape[0]
    blocked = np.zeros(n, dtype=bool)
    if exclude is not None:
        blocked |= exclude
    if labeled is not None:
        blocked |= labeled
    k = max(0, min(k, int((~blocked).sum())))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    norms = _row_sq_norms(features)
    min_dist = np.full(n, np.inf)
    centers = np.flatnonzero(labeled) if labeled is not None else np.zeros(0, dtype=np.int64)
    for c in centers:
        np.minimum(min_dist, _sq_dist_to_row(features, norms, int(c)), out=min_dist)
    picks = np.empty(k, dtype=np.int64)
    start = 0
    if centers.size == 0:
        picks[0] = np.random.default_rng(seed).choice(np.flatnonzero(~blocked))
        start = 1
    for i in range(start, k):
        if i > 0:
            np.minimum(min_dist, _sq_dist_to_row(features, norms, int(picks[i - 1])), out=min_dist)
        masked = np.where(blocked, -np.inf, min_dist)
        masked[picks[:i]] = -np.inf
        picks[i] = int(np.argmax(masked))
    return picks


def kmeans(features: np.ndarray, n_clusters: int, *, seed: int, iterations: int = 20) -> np.ndarray:
    """Cluster assignment of each row by Lloyd's k-means with k-means++ seeding (dense input)."""
    x = np.asarray(features, dtype=np.float64)
    n = x.shape[0]
    n_clusters = max(1, min(n_clusters, n))
    rng = np.random.default_rng(seed)
    norms = np.einsum("ij,ij->i", x, x)
    centers = np.empty((n_clusters, x.shape[1]))
    first = int(rng.integers(n))
    centers[0] = x[first]
    dist = np.maximum(norms - 2.0 * x @ x[first] + norms[first], 0.0)
    for j in range(1, n_clusters):
        total = dist.sum()
        pick = int(rng.choice(n, p=dist / total)) if total > 0 else int(rng.integers(n))
        centers[j] = x[pick]
        np.minimum(dist, np.maximum(norms - 2.0 * x @ x[pick] + norms[pick], 0.0), out=dist)
    assign = np.zeros(n, dtype=np.int64)
    for _ in range(iterations):
        c_norms = np.einsum("ij,ij->i", centers, centers)
        d = norms[:, None] - 2.0 * x @ centers.T + c_norms[None, :]
        new = d.argmin(axis=1)
        if _ > 0 and np.array_equal(new, assign):
            break
        assign = new
        sums = np.zeros_like(centers)
        np.add.at(sums, assign, x)
        counts = np.bincount(assign, minlength=n_clusters)
        filled = counts > 0
        centers[filled] = sums[filled] / counts[filled, None]
    return assign


def round_robin(scores: np.ndarray, groups: np.ndarray, k: int) -> np.ndarray:
    """Pick `k` rows: the best-scored of each group in turn, smallest groups first.

    Args:
        scores: (n,) higher is better.
        groups: (n,) non-negative group ids.
        k: How many rows to return.
    """
    n = scores.shape[0]
    k = max(0, min(k, n))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    sizes = np.bincount(groups)
    # Order inside each group by score (ties: index); rank = position inside the group.
    order = np.lexsort((np.arange(n), -scores, groups))
    sorted_groups = groups[order]
    starts = np.searchsorted(sorted_groups, sorted_groups, side="left")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts
    # Round r takes rank r of every group, groups by ascending size (ties: group id).
    group_order = np.empty(sizes.shape[0], dtype=np.int64)
    group_order[np.lexsort((np.arange(sizes.shape[0]), sizes))] = np.arange(sizes.shape[0])
    final = np.lexsort((group_order[groups], rank))
    return final[:k].astype(np.int64)


def class_balanced(scores: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """Top-k by score with the picks spread evenly over the predicted classes (round robin)."""
    return round_robin(np.asarray(scores, dtype=np.float64), np.asarray(predicted), k)


def cluster_margin(
    proba: np.ndarray,
    features: Any,
    k: int,
    *,
    seed: int,
    candidate_factor: int = 10,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Cluster-then-margin: smallest-margin candidates, k clusters, the best of each cluster.

    Args:
        proba: (n, c) class probabilities.
        features: (n, d) embedding used for clustering (input features or probabilities; only
            the candidates' rows are made dense).
        k: How many to pick.
        seed: k-means seed.
        candidate_factor: Candidates = this many times `k` smallest-margin items.
        exclude: Boolean mask (n,) of rows never picked.
    """
    scores = margin(proba)
    candidates = top_k(scores, max(k, candidate_factor * k), exclude=exclude)
    if candidates.size <= k:
        return candidates
    sub = features[candidates]
    sub = sub.toarray() if hasattr(sub, "toarray") else np.asarray(sub)
    groups = kmeans(sub, k, seed=seed)
    chosen = round_robin(scores[candidates], groups, k)
    return candidates[chosen]


@dataclasses.dataclass(frozen=True)
class Selection:
    """What `select` picked: indices in pick order and every row's score (0 when unscored)."""

    indices: np.ndarray
    scores: np.ndarray
    strategy: str
    cold_start: bool


def select(
    strategy: str,
    k: int,
    *,
    seed: int,
    n: int | None = None,
    proba: np.ndarray | None = None,
    features: Any = None,
    labeled_features: Any = None,
    exclude: np.ndarray | None = None,
    class_balance: bool = False,
) -> Selection:
    """Pick `k` rows of the pool with the named strategy.

    Without `proba` (no model yet) this is a cold start: `k_center` on `features` when the
    strategy is batch-aware and features are given (diversity sampling), else a seeded random
    sample.

    Args:
        strategy: A registered strategy (`STRATEGIES`).
        k: Batch size.
        seed: Seed for random picks, the first k-center and k-means.
        n: Pool size (needed only when neither `proba` nor `features` is given).
        proba: (n, c) class probabilities of the pool, or None for a cold start.
        features: (n, d) features of the pool, for the batch-aware strategies.
        labeled_features: (m, d) features of the items labeled so far (k-center starts from them).
        exclude: Boolean mask (n,) of rows never picked (already labeled or queued).
        class_balance: Spread the picks of an uncertainty strategy evenly over predicted classes.

    Raises:
        InputError: Unknown strategy, or a batch-aware strategy with a model but no features.
    """
    if strategy not in STRATEGIES:
        raise InputError(
            f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}",
            field="strategy",
        )
    spec = STRATEGIES[strategy]
    if proba is not None:
        size = int(np.asarray(proba).shape[0])
    elif features is not None:
        size = int(features.shape[0])
    elif n is not None:
        size = n
    else:
        raise InputError("select needs the pool size, probabilities or features", field="n")
    if exclude is not None and exclude.shape != (size,):
        raise InputError(f"exclude mask has shape {exclude.shape}, expected ({size},)")
    zeros = np.zeros(size)
    if proba is None:  # cold start: diversity for batch-aware strategies, else random
        if spec.needs_features and features is not None:
            picks = _k_center_with_labeled(
                features, labeled_features, k, seed=seed, exclude=exclude
            )
            return Selection(picks, zeros, "k_center", cold_start=True)
        return Selection(random_sample(size, k, seed=seed, exclude=exclude), zeros, "random", True)
    if spec.needs_features and features is None:
        raise InputError(f"strategy {strategy!r} needs features of the pool", field="strategy")
    batch = Batch(
        k=k,
        seed=seed,
        proba=np.asarray(proba, dtype=np.float64),
        features=features,
        labeled_features=labeled_features,
        exclude=exclude,
        class_balance=class_balance,
    )
    picks, scores = spec.pick(batch)
    return Selection(picks, scores, strategy, cold_start=False)


@register_strategy("k_center", needs_features=True)
def _k_center_pick(batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """Core-set: each pick is the item farthest from the labeled items and the picks so far."""
    picks = _k_center_with_labeled(
        batch.features, batch.labeled_features, batch.k, seed=batch.seed, exclude=batch.exclude
    )
    return picks, margin(batch.proba)


@register_strategy("cluster_margin", needs_features=True)
def _cluster_margin_pick(batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """Smallest-margin candidates clustered by k-means; the best of each cluster."""
    picks = cluster_margin(
        batch.proba, batch.features, batch.k, seed=batch.seed, exclude=batch.exclude
    )
    return picks, margin(batch.proba)


def _k_center_with_labeled(
    features: Any, labeled_features: Any, k: int, *, seed: int, exclude: np.ndarray | None
) -> np.ndarray:
    """k-center over the pool, with the labeled items stacked below it as fixed centers."""
    n = features.shape[0]
    if labeled_features is None or labeled_features.shape[0] == 0:
        return k_center_greedy(features, k, seed=seed, exclude=exclude)
    if hasattr(features, "tocsr"):
        import scipy.sparse as sp

        stacked: Any = sp.vstack([features, labeled_features]).tocsr()
    else:
        stacked = np.vstack([np.asarray(features), np.asarray(labeled_features)])
    m = labeled_features.shape[0]
    labeled = np.concatenate([np.zeros(n, dtype=bool), np.ones(m, dtype=bool)])
    full_exclude = None
    if exclude is not None:
        full_exclude = np.concatenate([exclude, np.zeros(m, dtype=bool)])
    return k_center_greedy(stacked, k, seed=seed, labeled=labeled, exclude=full_exclude)
