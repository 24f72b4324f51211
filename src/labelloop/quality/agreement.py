"""Inter-annotator agreement for nominal labels. Arrays in, floats out."""

from __future__ import annotations

import numpy as np

from labelloop.quality.encode import vote_counts


def krippendorff_alpha(
    item: np.ndarray, label: np.ndarray, *, n_items: int, n_labels: int
) -> float:
    """Krippendorff's alpha (nominal), missing data allowed; items with one rating are ignored.

    Returns NaN when there is nothing to compare (no item has two ratings, or one class only).
    """
    counts = vote_counts(item, label, n_items=n_items, n_labels=n_labels)
    m = counts.sum(axis=1)
    pairable = m >= 2
    counts, m = counts[pairable], m[pairable]
    if counts.shape[0] == 0:
        return float("nan")
    weights = 1.0 / (m - 1.0)
    # Coincidence matrix o[c, k] = sum_u n_uc * (n_uk - [c == k]) / (m_u - 1).
    coincidence = (counts * weights[:, None]).T @ counts
    coincidence -= np.diag((counts * weights[:, None]).sum(axis=0))
    n_c = coincidence.sum(axis=1)
    n = n_c.sum()
    observed = n - np.trace(coincidence)
    expected = (n * n - np.sum(n_c * n_c)) / (n - 1.0)
    if expected <= 0:
        return float("nan")
    return float(1.0 - observed / expected)


def all_agree_rate(item: np.ndarray, label: np.ndarray, *, n_items: int, n_labels: int) -> float:
    """Share of items (with 2+ ratings) on which every annotator gave the same label.

    Kept for comparison with common practice; it is not chance-corrected.
    """
    counts = vote_counts(item, label, n_items=n_items, n_labels=n_labels)
    m = counts.sum(axis=1)
    pairable = m >= 2
    if not pairable.any():
        return float("nan")
    return float(np.mean(counts[pairable].max(axis=1) == m[pairable]))
