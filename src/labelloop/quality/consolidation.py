"""Consolidate several annotators' labels into one label per item."""

from __future__ import annotations

import numpy as np

from labelloop.quality.encode import vote_counts


class MajorityVote:
    """Majority vote with an explicit tie policy: tied items get no label and go to review.

    Fitted state (after `fit`): `labels_` (n_items,) int label index, -1 for ties;
    `confidence_` share of votes for the winning label; `ties_` boolean mask.
    """

    def fit(self, item: np.ndarray, label: np.ndarray, *, n_items: int, n_labels: int) -> MajorityVote:
        counts = vote_counts(item, label, n_items=n_items, n_labels=n_labels)
        total = counts.sum(axis=1)
        best = counts.max(axis=1)
        winners = (counts == best[:, None]).sum(axis=1)
        self.ties_ = (winners > 1) & (total > 0)
        self.labels_ = np.where(self.ties_ | (total == 0), -1, counts.argmax(axis=1))
        self.confidence_ = np.divide(best, total, out=np.zeros_like(best), where=total > 0)
        self.counts_ = counts
        return self
