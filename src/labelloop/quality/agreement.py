"""Inter-annotator agreement for nominal labels. Arrays in, floats (or arrays) out.

Every chance-corrected metric here is a function of a few per-item sums (vote counts, the
item's share of agreeing pairs, ...). Computing the metrics from weighted sums of those
per-item statistics makes the item-level bootstrap one matrix product per batch of replicates
instead of a loop that recomputes each metric.

Values that cannot be computed (no item with two ratings, a single class) are NaN here; the
stage turns them into JSON nulls.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from labelloop.quality.encode import vote_counts
from labelloop.quality.registry import register_metric

#: The nominal metrics, all computed from one set of per-item sums (`metrics_from_sums`).
METRICS = ("krippendorff_alpha", "fleiss_kappa", "percent_agreement", "all_agree_rate")
NOMINAL_FAMILIES = ("single", "multi")


def item_statistics(counts: np.ndarray) -> np.ndarray:
    """Per-item sufficient statistics of the nominal metrics, for items with 2+ ratings.

    Args:
        counts: (n_items, n_labels) vote counts.

    Returns:
        (n_pairable, n_labels + 4): the vote counts, then Krippendorff's within-item agreement
        `sum_c n_c (n_c - 1) / (m - 1)`, the share of agreeing pairs
        `sum_c n_c (n_c - 1) / (m (m - 1))`, whether all ratings agree, and 1 (an item count).
    """
    m = counts.sum(axis=1)
    keep = m >= 2
    counts, m = counts[keep], m[keep]
    same = (counts * (counts - 1.0)).sum(axis=1)
    return np.column_stack(
        [
            counts,
            same / (m - 1.0),
            same / (m * (m - 1.0)),
            (counts.max(axis=1) == m).astype(np.float64),
            np.ones_like(m),
        ]
    )


def metrics_from_sums(sums: np.ndarray, *, n_labels: int) -> dict[str, np.ndarray]:
    """Every nominal metric from (B, n_labels + 4) summed item statistics; NaN where undefined."""
    sums = np.atleast_2d(sums)
    n_c = sums[:, :n_labels]
    within, pair_share, all_agree, n_items = (sums[:, n_labels + j] for j in range(4))
    n = n_c.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = (n * n - (n_c * n_c).sum(axis=1)) / (n - 1.0)
        alpha = np.where(expected > 0, 1.0 - (n - within) / expected, np.nan)
        p_bar = np.where(n_items > 0, pair_share / n_items, np.nan)
        p_e = ((n_c / n[:, None]) ** 2).sum(axis=1)
        fleiss = np.where((n_items > 0) & (p_e < 1.0), (p_bar - p_e) / (1.0 - p_e), np.nan)
        agree = np.where(n_items > 0, all_agree / n_items, np.nan)
    return {
        "krippendorff_alpha": alpha,
        "fleiss_kappa": fleiss,
        "percent_agreement": p_bar,
        "all_agree_rate": agree,
    }


def nominal_metrics(counts: np.ndarray) -> dict[str, float]:
    """All nominal metrics (see `METRICS`) of an (n_items, n_labels) vote-count matrix."""
    stats = item_statistics(counts)
    values = metrics_from_sums(stats.sum(axis=0), n_labels=counts.shape[1])
    return {name: float(v[0]) for name, v in values.items()}


@register_metric("krippendorff_alpha", families=NOMINAL_FAMILIES)
def krippendorff_alpha(
    item: np.ndarray, label: np.ndarray, *, n_items: int, n_labels: int
) -> float:
    """Krippendorff's alpha (nominal), missing data allowed; items with one rating are ignored.

    Returns NaN when there is nothing to compare (no item has two ratings, or one class only).
    """
    counts = vote_counts(item, label, n_items=n_items, n_labels=n_labels)
    return nominal_metrics(counts)["krippendorff_alpha"]


@register_metric("fleiss_kappa", families=NOMINAL_FAMILIES)
def fleiss_kappa(item: np.ndarray, label: np.ndarray, *, n_items: int, n_labels: int) -> float:
    """Fleiss' kappa, generalised to a varying number of ratings per item (mean per-item P_i)."""
    counts = vote_counts(item, label, n_items=n_items, n_labels=n_labels)
    return nominal_metrics(counts)["fleiss_kappa"]


@register_metric("percent_agreement", families=NOMINAL_FAMILIES)
def percent_agreement(item: np.ndarray, label: np.ndarray, *, n_items: int, n_labels: int) -> float:
    """Mean over items (2+ ratings) of the share of annotator pairs that agree."""
    counts = vote_counts(item, label, n_items=n_items, n_labels=n_labels)
    return nominal_metrics(counts)["percent_agreement"]


@register_metric("all_agree_rate", families=NOMINAL_FAMILIES)
def all_agree_rate(item: np.ndarray, label: np.ndarray, *, n_items: int, n_labels: int) -> float:
    """Share of items (with 2+ ratings) on which every annotator gave the same label.

    Kept for comparison with common practice; it is not chance-corrected.
    """
    counts = vote_counts(item, label, n_items=n_items, n_labels=n_labels)
    return nominal_metrics(counts)["all_agree_rate"]


def per_item_agreement(counts: np.ndarray) -> np.ndarray:
    """(n_items,) share of agreeing annotator pairs per item; NaN for items with < 2 ratings."""
    m = counts.sum(axis=1)
    same = (counts * (counts - 1.0)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(m >= 2, same / (m * (m - 1.0)), np.nan)


def per_class_agreement(counts: np.ndarray) -> np.ndarray:
    """(n_labels,) specific agreement per class: of the pairs with one rating `c`, the share
    whose other rating is `c` too. NaN for a class nobody used on a shared item."""
    m = counts.sum(axis=1, keepdims=True)
    counts = counts[m[:, 0] >= 2]
    m = m[m[:, 0] >= 2]
    agree = (counts * (counts - 1.0)).sum(axis=0)
    total = (counts * (m - 1.0)).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, agree / total, np.nan)


def bootstrap_replicates(
    stats: np.ndarray,
    metric: str,
    *,
    n_labels: int,
    n_boot: int = 200,
    seed: int = 0,
    batch: int = 25,
) -> np.ndarray:
    """Bootstrap replicates of a nominal metric, resampling items with replacement.

    Every call with the same seed and item count draws the same items, so replicates of
    several metrics over the same items (e.g. one per label) can be combined replicate by
    replicate. For one table's metrics, `bootstrap_all` is much faster.

    Args:
        stats: Per-item statistics from `item_statistics`.
        metric: One of `METRICS`.
        n_labels: The label count the statistics were built with.
        n_boot: Bootstrap replicates.
        seed: Random seed.
        batch: Replicates per matrix product (bounds memory to `batch * n_items` weights).

    Returns:
        (n_boot,) replicate values (NaN where undefined); empty with fewer than two items.
    """
    n = stats.shape[0]
    if n < 2:
        return np.zeros(0)
    rng = np.random.default_rng(seed)
    values: list[np.ndarray] = []
    for start in range(0, n_boot, batch):
        size = min(batch, n_boot - start)
        draws = rng.integers(0, n, size=(size, n))
        weights = np.empty((size, n))
        for r in range(size):  # one replicate at a time: no (size * n) index temporaries
            weights[r] = np.bincount(draws[r], minlength=n)
        del draws
        values.append(metrics_from_sums(weights @ stats, n_labels=n_labels)[metric])
    return np.concatenate(values)


def distinct_rows(stats: np.ndarray, *, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of per-item statistics and how many items have each.

    A row is a function of the item's vote counts (its first `n_labels` columns), and items
    share a handful of count patterns (3 annotators and 5 labels give 35), so the work of a
    bootstrap shrinks from items to patterns.
    """
    counts = stats[:, :n_labels].astype(np.int64)
    base = int(counts.max()) + 1 if counts.size else 1
    if n_labels * np.log2(max(base, 2)) < 62:  # the counts fit one integer key
        key = counts @ (base ** np.arange(n_labels, dtype=np.int64))
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    else:
        _, first, inverse = np.unique(counts, axis=0, return_index=True, return_inverse=True)
    return stats[first], np.bincount(inverse.ravel(), minlength=first.shape[0])


def bootstrap_all(
    stats: np.ndarray,
    metrics: Sequence[str],
    *,
    n_labels: int,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Bootstrap replicates of several metrics, resampling items with replacement.

    Resampling n items with replacement puts a Multinomial(n, share of each pattern) number
    of items on each distinct statistics row (`distinct_rows`): drawing those counts gives
    the item bootstrap's exact distribution at the cost of the pattern count, not the item
    count.

    Returns:
        `{metric: (n_boot,) replicate values}` (NaN where undefined); empty arrays with fewer
        than two items.
    """
    n = stats.shape[0]
    if n < 2:
        return {m: np.zeros(0) for m in metrics}
    rows, weight = distinct_rows(stats, n_labels=n_labels)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, weight / n, size=n_boot).astype(np.float64)
    found = metrics_from_sums(draws @ rows, n_labels=n_labels)
    return {m: found[m] for m in metrics}


def bootstrap_ci(
    stats: np.ndarray,
    metric: str,
    *,
    n_labels: int,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a nominal metric (see `bootstrap_all`).

    Returns:
        (low, high); NaN when fewer than two items can be compared.
    """
    replicates = bootstrap_all(stats, (metric,), n_labels=n_labels, n_boot=n_boot, seed=seed)
    return generic_interval(replicates[metric], level=level)


def generic_interval(values: np.ndarray, *, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates, ignoring undefined (NaN) replicates."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return (float(low), float(high))


def bootstrap_ratio_ci(
    numerators: np.ndarray,
    denominators: np.ndarray,
    *,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap interval of `sum(numerators) / sum(denominators)` over resampled items.

    Used for the box and span metrics (mean IoU, F1), which are ratios of per-item sums.
    """
    n = numerators.shape[0]
    if n < 2:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_boot, n))
    num = numerators[draws].sum(axis=1)
    den = denominators[draws].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return generic_interval(np.where(den > 0, num / den, np.nan), level=level)


@dataclasses.dataclass(frozen=True)
class Pairwise:
    """Annotator-pair tables, (n_annotators, n_annotators); NaN below `min_overlap`."""

    cohen_kappa: np.ndarray
    agreement: np.ndarray
    overlap: np.ndarray


def pairwise_agreement(
    item: np.ndarray,
    annotator: np.ndarray,
    label: np.ndarray,
    *,
    n_items: int,
    n_annotators: int,
    n_labels: int,
    min_overlap: int = 10,
) -> Pairwise:
    """Cohen's kappa and raw agreement for every annotator pair with enough shared items.

    Marginals are each annotator's label shares on the items the two share, as in Cohen's
    original two-rater definition. Computed with sparse products, one per class.
    """
    import scipy.sparse as sp  # here, not at import: the CLI's agreement does without

    shape = (n_annotators, n_items)
    ones = np.ones(item.shape[0])
    seen = sp.csr_matrix((ones, (annotator, item)), shape=shape)
    overlap = (seen @ seen.T).toarray()
    agree = np.zeros((n_annotators, n_annotators))
    chance = np.zeros((n_annotators, n_annotators))
    for k in range(n_labels):
        mask = label == k
        by_k = sp.csr_matrix((ones[mask], (annotator[mask], item[mask])), shape=shape)
        agree += (by_k @ by_k.T).toarray()
        share = (by_k @ seen.T).toarray()  # [a, b]: a said k on items shared with b
        chance += share * share.T
    enough = overlap >= max(min_overlap, 1)
    np.fill_diagonal(enough, val=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_o = np.where(enough, agree / overlap, np.nan)
        p_e = np.where(enough, chance / overlap**2, np.nan)
        kappa = np.where(enough & (p_e < 1.0), (p_o - p_e) / (1.0 - p_e), np.nan)
    return Pairwise(cohen_kappa=kappa, agreement=p_o, overlap=overlap.astype(np.int64))
