"""Encode long-format annotations as integer arrays (crowd-kit's layout, without pandas)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from labelloop.errors import InputError
from labelloop.schemas import Annotation, Encoded

if TYPE_CHECKING:
    import scipy.sparse as sp


def _factorize(values: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique string ids and each value's index into them."""
    if len(values) == 0:
        return np.array([], dtype=object), np.zeros(0, dtype=np.int64)
    uniques, inverse = np.unique(np.asarray(values, dtype=str), return_inverse=True)
    return uniques.astype(object), inverse.astype(np.int64).ravel()


def encode_columns(
    item_ids: Sequence[str],
    annotator_ids: Sequence[str],
    label_values: Sequence[str],
    labels: Sequence[str],
) -> Encoded:
    """Encode parallel id columns; every label value must be in `labels`.

    Raises:
        InputError: A value is not in the label set (validate rows first to quarantine them).
    """
    index = {label: i for i, label in enumerate(labels)}
    try:
        label = np.fromiter(
            (index[v] for v in label_values), dtype=np.int64, count=len(label_values)
        )
    except KeyError as exc:
        raise InputError(f"label {exc.args[0]!r} is not in the label set", field="label") from None
    items, item = _factorize(item_ids)
    annotators, annotator = _factorize(annotator_ids)
    return Encoded(items, annotators, tuple(labels), item, annotator, label)


def encode(annotations: Sequence[Annotation], labels: Sequence[str]) -> Encoded:
    """Encode single-label annotations; every value must be in `labels`."""
    return encode_columns(
        [a.item for a in annotations],
        [a.annotator for a in annotations],
        [str(a.value) for a in annotations],
        labels,
    )


def vote_counts(item: np.ndarray, label: np.ndarray, *, n_items: int, n_labels: int) -> np.ndarray:
    """(n_items, n_labels) matrix of how many annotators gave each label to each item."""
    flat = np.bincount(item.astype(np.int64) * n_labels + label, minlength=n_items * n_labels)
    return flat.reshape(n_items, n_labels).astype(np.float64)


def response_matrix(
    item: np.ndarray,
    annotator: np.ndarray,
    label: np.ndarray,
    *,
    n_items: int,
    n_annotators: int,
    n_labels: int,
) -> sp.csr_matrix:
    """Sparse (n_items, n_annotators * n_labels) indicator: item i got label k from annotator a.

    Column `a * n_labels + k` is one (annotator, answer) pair, so `matrix @ table` sums a
    per-(annotator, answer) table over each item's annotations without a Python loop. Built
    straight in CSR layout (one stable sort by item, 32-bit column indices) to keep the peak
    memory near the size of the result.
    """
    import scipy.sparse as sp  # here, not at import: only Dawid-Skene needs it

    order = np.argsort(item, kind="stable")
    index_type = np.int32 if n_annotators * n_labels < 2**31 else np.int64
    columns: np.ndarray = annotator[order].astype(index_type)
    np.multiply(columns, n_labels, out=columns)
    np.add(columns, label[order].astype(index_type), out=columns)
    del order
    indptr = np.zeros(n_items + 1, dtype=index_type)
    np.cumsum(np.bincount(item, minlength=n_items), out=indptr[1:])
    data = np.ones(columns.shape[0], dtype=np.float64)
    return sp.csr_matrix(
        (data, columns, indptr), shape=(n_items, n_annotators * n_labels), copy=False
    )
