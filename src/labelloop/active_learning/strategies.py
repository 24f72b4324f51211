"""Uncertainty scores and top-k selection. Arrays in, arrays out.

Higher score = more useful to label. Selection is by partial sort (`np.argpartition`), never
a full sort of the pool, and ties break by index so a seed gives one answer.
"""

from __future__ import annotations

import numpy as np


def least_confidence(proba: np.ndarray) -> np.ndarray:
    """1 - max class probability, per row of an (n, k) probability matrix."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape[0] == 0:
        return np.zeros(0)
    return 1.0 - proba.max(axis=1)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` highest scores, highest first (ties: lower index first)."""
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[0]
    k = max(0, min(k, n))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    if k < n:
        part = np.argpartition(-scores, k - 1)[:k]
    else:
        part = np.arange(n)
    order = np.lexsort((part, -scores[part]))
    return part[order].astype(np.int64)


def random_sample(n: int, k: int, *, seed: int) -> np.ndarray:
    """`k` distinct indices out of `n`, seeded."""
    rng = np.random.default_rng(seed)
    k = max(0, min(k, n))
    return np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)
