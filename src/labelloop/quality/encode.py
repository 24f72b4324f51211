"""Encode long-format annotations as integer arrays (crowd-kit's layout, without pandas)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from labelloop.schemas import Annotation


@dataclasses.dataclass(frozen=True)
class Encoded:
    """Annotations as parallel int arrays plus the id tables they index into."""

    items: np.ndarray  # (n_items,) item ids, sorted
    annotators: np.ndarray  # (n_annotators,) annotator ids, sorted
    labels: tuple[str, ...]  # the label set, in the caller's order
    item: np.ndarray  # (n,) int64 index into items
    annotator: np.ndarray  # (n,) int64 index into annotators
    label: np.ndarray  # (n,) int64 index into labels

    @property
    def n_items(self) -> int:
        return int(self.items.shape[0])

    @property
    def n_annotators(self) -> int:
        return int(self.annotators.shape[0])

    @property
    def n_labels(self) -> int:
        return len(self.labels)


def encode(annotations: Sequence[Annotation], labels: Sequence[str]) -> Encoded:
    """Encode single-label annotations; every value must be in `labels`."""
    index = {label: i for i, label in enumerate(labels)}
    item_ids = np.array([a.item for a in annotations], dtype=object)
    annotator_ids = np.array([a.annotator for a in annotations], dtype=object)
    items, item = np.unique(item_ids, return_inverse=True) if len(annotations) else (np.array([], dtype=object), np.zeros(0, dtype=np.int64))
    annotators, annotator = (
        np.unique(annotator_ids, return_inverse=True)
        if len(annotations)
        else (np.array([], dtype=object), np.zeros(0, dtype=np.int64))
    )
    label = np.array([index[str(a.value)] for a in annotations], dtype=np.int64)
    return Encoded(
        items=items,
        annotators=annotators,
        labels=tuple(labels),
        item=item.astype(np.int64),
        annotator=annotator.astype(np.int64),
        label=label,
    )


def vote_counts(item: np.ndarray, label: np.ndarray, *, n_items: int, n_labels: int) -> np.ndarray:
    """(n_items, n_labels) matrix of how many annotators gave each label to each item."""
    flat = np.bincount(item * n_labels + label, minlength=n_items * n_labels)
    return flat.reshape(n_items, n_labels).astype(np.float64)
