"""crowd-kit style estimators on tables: `fit`, `fit_predict`, `fit_predict_proba`.

Input is a pandas DataFrame or an Arrow table (anything `pyarrow.table()` accepts) with columns
`item, annotator, label` (crowd-kit's `task, worker, label` are accepted too). Results come back
in the input's kind: pandas in, pandas out (indexed by item, like crowd-kit); Arrow in, Arrow out
(an `item` column first).

    >>> from labelloop.quality import DawidSkene
    >>> labels = DawidSkene(n_iter=100).fit_predict(df)  # doctest: +SKIP

Ties are missing values (`None` / `pd.NA`), never a class. Rows with a missing item, annotator
or label, a label outside `labels`, or a repeated (item, annotator) are not used; they are
listed in `bad_records_` (row number and field) and logged, never dropped silently.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from labelloop import tables
from labelloop.annotations import CROWDKIT_NAMES, LabelTable, encode_loaded
from labelloop.errors import BadRecord, InputError, summarize_bad_records
from labelloop.quality import consolidation

log = logging.getLogger(__name__)


def _as_arrow(data: Any) -> tuple[Any, bool]:
    """`(Arrow table with item, annotator, label as strings, whether the input was pandas)`."""
    import pyarrow as pa

    is_pandas = type(data).__module__.startswith("pandas")
    table = pa.Table.from_pandas(data, preserve_index=False) if is_pandas else pa.table(data)
    names = set(table.column_names)
    columns = {}
    for ours in ("item", "annotator", "label"):
        theirs = CROWDKIT_NAMES.get(ours, ours)
        name = ours if ours in names else theirs if theirs in names else None
        if name is None:
            raise InputError(
                f"the table has no {ours!r} column (or crowd-kit's {theirs!r}); "
                f"found {', '.join(sorted(names))}"
            )
        column = table.column(name)
        columns[ours] = column if pa.types.is_string(column.type) else column.cast(pa.string())
    return pa.table(columns), is_pandas


class _TableEstimator:
    """Shared input handling; subclasses set `_fit_codes`."""

    labels: Sequence[str] | None

    def _encode(self, data: Any) -> tuple[LabelTable, bool]:
        table, is_pandas = _as_arrow(data)
        read = encode_loaded(tables.from_arrow(table), labels=self.labels)
        self.bad_records_: list[BadRecord] = read.bad
        if read.bad:
            log.warning("%s", summarize_bad_records(read.bad))
        return read, is_pandas

    def fit(self, data: Any) -> _TableEstimator:
        """Fit on a table of `item, annotator, label` rows; returns `self`."""
        read, self._pandas = self._encode(data)
        enc = read.encoded
        self._items = enc.items
        self._label_names = list(enc.labels)
        model = self._fit_codes(read)
        decided = model.labels_ >= 0
        self.ties_ = self._series(model.ties_, "tie")
        self.labels_ = self._labels(model.labels_, decided)
        self.probas_ = self._frame(model.probas_)
        stats = consolidation.annotator_stats(
            enc.item, enc.annotator, enc.label, model.probas_, n_annotators=enc.n_annotators
        )
        self.skills_ = self._table(
            "annotator",
            enc.annotators,
            {"skill": stats.accuracy, "annotations": stats.annotations.astype(np.int64)},
        )
        return self

    def fit_predict(self, data: Any) -> Any:
        """Fit and return one label per item (missing for ties)."""
        return self.fit(data).labels_

    def fit_predict_proba(self, data: Any) -> Any:
        """Fit and return each item's probability per label (one column per label)."""
        return self.fit(data).probas_

    def _fit_codes(self, read: LabelTable) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- results in the input's kind

    def _table(self, key: str, index: Any, columns: dict[str, Any]) -> Any:
        import pyarrow as pa

        table = pa.table({key: index, **columns})
        if not self._pandas:
            return table
        return table.to_pandas().set_index(key)

    def _labels(self, codes: np.ndarray, decided: np.ndarray) -> Any:
        import pyarrow as pa

        names = pa.array(self._label_names, pa.string())
        values = names.take(pa.array(np.maximum(codes, 0), mask=~decided))
        table = self._table("item", self._items, {"label": values})
        return table["label"] if self._pandas else table

    def _series(self, values: np.ndarray, name: str) -> Any:
        table = self._table("item", self._items, {name: values})
        return table[name] if self._pandas else table

    def _frame(self, probas: np.ndarray) -> Any:
        return self._table(
            "item", self._items, {n: probas[:, j] for j, n in enumerate(self._label_names)}
        )


class MajorityVote(_TableEstimator):
    """Majority vote; a tie is a missing label (and goes to review), never the last class.

    Args:
        labels: The label set and its order (default: the labels seen, sorted).

    Fitted: `labels_` (missing for ties), `probas_` vote shares, `ties_`, `skills_` (each
    annotator's agreement with the vote shares and annotation count), `bad_records_`.
    """

    def __init__(self, *, labels: Sequence[str] | None = None) -> None:
        self.labels = labels

    def _fit_codes(self, read: LabelTable) -> Any:
        enc = read.encoded
        return consolidation.MajorityVote().fit(
            enc.item, enc.annotator, enc.label, n_items=enc.n_items, n_labels=enc.n_labels
        )


class DawidSkene(_TableEstimator):
    """Dawid-Skene EM (one confusion matrix per annotator), crowd-kit's estimator on tables.

    Args:
        n_iter: Maximum EM iterations.
        tol: Stop when the mean log-likelihood per annotation improves by less than this.
        smoothing: Dirichlet pseudo-count (0 reproduces crowd-kit's unsmoothed estimates).
        labels: The label set and its order (default: the labels seen, sorted).

    Fitted: `labels_`, `probas_` posteriors, `ties_`, `skills_` (expected accuracy and count),
    `errors_` (annotator, true label, answered label, probability), `priors_` (label, prior),
    `bad_records_`.
    """

    def __init__(
        self,
        *,
        n_iter: int = 100,
        tol: float = 1e-5,
        smoothing: float = 0.01,
        labels: Sequence[str] | None = None,
    ) -> None:
        self.n_iter = n_iter
        self.tol = tol
        self.smoothing = smoothing
        self.labels = labels

    def _fit_codes(self, read: LabelTable) -> Any:
        import pyarrow as pa

        enc = read.encoded
        model = consolidation.DawidSkene(
            n_iter=self.n_iter, tol=self.tol, smoothing=self.smoothing
        ).fit(
            enc.item,
            enc.annotator,
            enc.label,
            n_items=enc.n_items,
            n_labels=enc.n_labels,
            n_annotators=enc.n_annotators,
        )
        names = pa.array(list(enc.labels), pa.string())
        a_idx, t_idx, l_idx = np.indices(model.errors_.shape).reshape(3, -1)
        errors = pa.table(
            {
                "annotator": enc.annotators.take(pa.array(a_idx)),
                "true_label": names.take(pa.array(t_idx)),
                "label": names.take(pa.array(l_idx)),
                "probability": model.errors_.reshape(-1),
            }
        )
        self._errors_table = errors
        self.priors_ = pa.table({"label": names, "prior": model.priors_})
        self.n_iter_ = model.n_iter_
        self.loss_history_ = list(model.loss_history_)
        return model

    def fit(self, data: Any) -> DawidSkene:
        """Fit on a table of `item, annotator, label` rows; returns `self`."""
        super().fit(data)
        if self._pandas:
            self.errors_ = self._errors_table.to_pandas().set_index(
                ["annotator", "true_label", "label"]
            )["probability"]
            self.priors_ = self.priors_.to_pandas().set_index("label")["prior"]
        else:
            self.errors_ = self._errors_table
        return self
