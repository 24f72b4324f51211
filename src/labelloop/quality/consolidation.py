"""Consolidate several annotators' labels into one label per item.

Estimators follow crowd-kit's shape without pandas: `fit(item, annotator, label, ...)` on
parallel int arrays, fitted state in trailing-underscore attributes, options keyword-only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from labelloop.quality.encode import response_matrix, vote_counts

if TYPE_CHECKING:
    import scipy.sparse as sp

log = logging.getLogger(__name__)

#: Posteriors closer than this count as a tie (DS ties are rare but exact ones happen).
TIE_TOLERANCE = 1e-9


def _row_max(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's largest value and its first column, a column at a time (numpy reduces a
    narrow row at a time, which is several times slower for a handful of labels)."""
    top = values[:, 0].copy()
    best = np.zeros(values.shape[0], dtype=np.int64)
    for k in range(1, values.shape[1]):
        better = values[:, k] > top
        best[better] = k
        np.maximum(top, values[:, k], out=top)
    return top, best


def _ties(probas: np.ndarray, top: np.ndarray | None = None) -> np.ndarray:
    """Items whose two best labels are (numerically) equally likely: two or more labels lie
    within `TIE_TOLERANCE` of the best one."""
    if probas.shape[1] < 2:
        return np.zeros(probas.shape[0], dtype=bool)
    if top is None:
        top = _row_max(probas)[0]
    floor = top - TIE_TOLERANCE
    close = np.zeros(probas.shape[0], dtype=np.int8)
    for k in range(probas.shape[1]):
        close += probas[:, k] >= floor
    return close > 1


def _check_indices(values: np.ndarray, size: int, name: str) -> None:
    """Raise a clear ValueError for an index array outside [0, size)."""
    if values.size and (values.min() < 0 or values.max() >= size):
        raise ValueError(
            f"{name} indices must lie in [0, {size}); got {values.min()}..{values.max()}"
        )


def _gold_arrays(
    gold_item: np.ndarray | None, gold_label: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    if gold_item is None or gold_label is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.asarray(gold_item, dtype=np.int64), np.asarray(gold_label, dtype=np.int64)


# Row sums and products over the narrow (items, labels) arrays use einsum: BLAS is several
# times slower there and its threads spin on a busy machine.


def _e_step(
    responses: sp.csr_matrix, log_table: np.ndarray, priors: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Posteriors (divided by the prior) and each item's log evidence, without a Python loop.

    Returns `scaled` with `posterior = scaled * priors` (column-wise): the M-step is linear in
    the posteriors, so the prior is applied to its (n_annotators * n_labels, n_labels) result
    instead of to the (n_items, n_labels) array, saving a pass. `exp` of the summed
    log-likelihoods is taken without the usual max shift (the shift costs two more passes);
    rows whose evidence under- or overflows are redone with the shift, so the result is the same.
    """
    scaled = np.asarray(responses @ log_table)
    # exp in single precision (several times faster here; relative error 6e-8, posteriors
    # within 2e-7 of double's), stored back in double; rows outside single precision's
    # comfortable range are redone exactly below.
    scaled[...] = np.exp(scaled, dtype=np.float32)
    norm = np.einsum("ij,j->i", scaled, priors)
    bad = ~((norm > 1e-30) & (norm < 1e30))
    log_norm = np.log(np.where(bad, 1.0, norm))
    if bad.any():
        rows = np.flatnonzero(bad)
        shifted = np.asarray(responses[rows] @ log_table) + np.log(priors)
        top = shifted.max(axis=1, keepdims=True)
        part = np.exp(shifted - top)
        part_norm = part.sum(axis=1)
        scaled[rows] = part / part_norm[:, None] / priors
        norm[rows] = 1.0
        log_norm[rows] = np.log(part_norm) + top[:, 0]
    np.reciprocal(norm, out=norm)
    scaled *= norm[:, None]
    return scaled, log_norm


class MajorityVote:
    """Majority vote with an explicit tie policy: tied items get no label and go to review.

    Fitted state (after `fit`): `probas_` (n_items, n_labels) vote shares; `labels_` (n_items,)
    label index, -1 for ties and unannotated items; `confidence_` share of votes for the
    winning label; `ties_` boolean mask; `counts_` vote counts.
    """

    def fit(
        self,
        item: np.ndarray,
        annotator: np.ndarray,
        label: np.ndarray,
        *,
        n_items: int,
        n_labels: int,
        n_annotators: int | None = None,
    ) -> MajorityVote:
        """Count votes. `annotator` and `n_annotators` are accepted for a common signature."""
        del annotator, n_annotators  # every vote weighs the same
        counts = vote_counts(item, label, n_items=n_items, n_labels=n_labels)
        total = counts.sum(axis=1)
        best = counts.max(axis=1) if n_labels else np.zeros(n_items)
        winners = (counts == best[:, None]).sum(axis=1)
        self.ties_ = (winners > 1) & (total > 0)
        self.labels_ = np.where(self.ties_ | (total == 0), -1, counts.argmax(axis=1))
        self.confidence_ = np.divide(best, total, out=np.zeros_like(best), where=total > 0)
        self.probas_ = np.divide(
            counts, total[:, None], out=np.zeros_like(counts), where=total[:, None] > 0
        )
        self.counts_ = counts
        return self


class DawidSkene:
    """Dawid-Skene EM with a full confusion matrix per annotator, in log space, vectorized.

    The E-step sums each item's log-likelihoods with one sparse product
    `responses @ log_errors` (responses is the item x (annotator, answer) indicator), and the
    M-step gets every annotator's expected confusion counts with `responses.T @ probas`: no
    Python loop over annotations, items or annotators.

    Args:
        n_iter: Maximum EM iterations.
        tol: Stop when the mean per-annotation log-likelihood improves by less than this.
        smoothing: Dirichlet pseudo-count added to every confusion-matrix cell and to the
            class prior (0 reproduces crowd-kit's unsmoothed estimates, clipped at 1e-10).

    EM starts from majority-vote shares, as crowd-kit does.

    Fitted state: `probas_` (n_items, n_labels) posteriors; `labels_` argmax (-1 for
    unannotated items); `confidence_` the winning posterior; `ties_`; `priors_` (n_labels,);
    `errors_` (n_annotators, n_labels true, n_labels answered), rows sum to 1;
    `loss_history_` mean log-likelihood per annotation after each E-step; `n_iter_`.
    """

    def __init__(self, *, n_iter: int = 100, tol: float = 1e-5, smoothing: float = 0.01) -> None:
        if smoothing < 0:
            raise ValueError("smoothing must be >= 0")
        if n_iter < 1:
            raise ValueError("n_iter must be >= 1")
        self.n_iter = n_iter
        self.tol = tol
        self.smoothing = smoothing

    def _m_step(
        self,
        responses_t: sp.csc_matrix,
        scaled: np.ndarray,
        scale: np.ndarray,
        n_annotators: int,
        n_labels: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Priors and (annotator, true, answer) confusion from posteriors `scaled * scale`."""
        counts = np.asarray(responses_t @ scaled) * scale  # (annotator * answer, true)
        counts = counts.reshape(n_annotators, n_labels, n_labels).transpose(0, 2, 1)
        errors = np.maximum(counts + self.smoothing, 1e-10)
        errors /= errors.sum(axis=2, keepdims=True)
        priors = np.einsum("ij->j", scaled) * scale + self.smoothing
        priors = np.maximum(priors / priors.sum(), 1e-10)
        return priors, errors

    def fit(
        self,
        item: np.ndarray,
        annotator: np.ndarray,
        label: np.ndarray,
        *,
        n_items: int,
        n_labels: int,
        n_annotators: int,
        gold_item: np.ndarray | None = None,
        gold_label: np.ndarray | None = None,
        fixed_errors: Mapping[int, np.ndarray] | None = None,
    ) -> DawidSkene:
        """Run EM.

        Args:
            item: (n,) item index of each annotation.
            annotator: (n,) annotator index.
            label: (n,) answered label index.
            n_items: Item count (items without annotations get the prior).
            n_labels: Label count.
            n_annotators: Annotator count.
            gold_item: Items with a known label; their posteriors are clamped to it.
            gold_label: The known labels, parallel to `gold_item`.
            fixed_errors: Annotators whose (n_labels, n_labels) confusion P(answer | true) is
                known (a model calibrated on human-labeled items): held fixed, not estimated.
        """
        g_item, g_label = _gold_arrays(gold_item, gold_label)
        fixed = dict(fixed_errors or {})

        def m_step(scaled: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            priors, errors = self._m_step(responses_t, scaled, scale, n_annotators, n_labels)
            for a, table in fixed.items():
                errors[a] = np.maximum(table, 1e-10)
            return priors, errors

        _check_indices(item, n_items, "item")
        _check_indices(annotator, n_annotators, "annotator")
        _check_indices(label, n_labels, "label")
        _check_indices(g_item, n_items, "gold_item")
        _check_indices(g_label, n_labels, "gold_label")
        if not item.shape == annotator.shape == label.shape or g_item.shape != g_label.shape:
            raise ValueError("item, annotator and label (and gold_item, gold_label) must align")
        responses = response_matrix(
            item, annotator, label, n_items=n_items, n_annotators=n_annotators, n_labels=n_labels
        )
        # The transpose is a CSC view of the same buffers: no copy, and its product is fast.
        responses_t = responses.T
        # Majority-vote shares as the starting posteriors (crowd-kit's start): votes per label
        # are the response columns summed over annotators.
        answer_of_column = np.tile(np.eye(n_labels), (n_annotators, 1))
        probas = np.asarray(responses @ answer_of_column)
        total = np.einsum("ij->i", probas)
        annotated = total > 0
        probas /= np.where(annotated, total, 1.0)[:, None]
        del total

        def clamp(scaled: np.ndarray, scale: np.ndarray) -> None:
            if g_item.size:
                scaled[g_item] = 0.0
                scaled[g_item, g_label] = 1.0 / scale[g_label]

        scale = np.ones(n_labels)
        clamp(probas, scale)
        priors, errors = m_step(probas, scale)
        self.loss_history_: list[float] = []
        n = max(int(item.shape[0]), 1)
        previous = -np.inf
        self.n_iter_ = 0
        for _ in range(self.n_iter):
            self.n_iter_ += 1
            del probas  # the E-step rebuilds it; dropping it first halves the peak
            # (annotator * answer, true) table of log P(answer | true, annotator).
            log_table = np.log(errors).transpose(0, 2, 1).reshape(n_annotators * n_labels, n_labels)
            probas, log_norm = _e_step(responses, log_table, priors)
            scale = priors
            loss = float(log_norm.sum() / n)
            del log_norm
            self.loss_history_.append(loss)
            clamp(probas, scale)
            priors, errors = m_step(probas, scale)
            if loss - previous < self.tol:
                break
            previous = loss
        probas *= scale  # the posteriors proper
        self.probas_ = probas
        self.priors_ = priors
        self.errors_ = errors
        top, best = _row_max(probas)
        self.ties_ = _ties(probas, top) & annotated
        self.labels_ = np.where(annotated & ~self.ties_, best, -1)
        self.confidence_ = np.where(annotated, top, 0.0)
        log.debug("dawid-skene: %d iterations, loss %s", self.n_iter_, self.loss_history_[-1:])
        return self


@dataclasses.dataclass(frozen=True)
class AnnotatorStats:
    """Per-annotator quality, arrays indexed by annotator.

    Attributes:
        annotations: (A,) annotation count.
        accuracy: (A,) expected share of correct answers under the consolidated posteriors.
        confusion: (A, K, K) row-normalised confusion, rows = true class, columns = answer.
        gold_accuracy: (A,) share correct on gold items; NaN without gold items.
        gold_items: (A,) gold items the annotator labeled.
    """

    annotations: np.ndarray
    accuracy: np.ndarray
    confusion: np.ndarray
    gold_accuracy: np.ndarray
    gold_items: np.ndarray


def annotator_stats(
    item: np.ndarray,
    annotator: np.ndarray,
    label: np.ndarray,
    probas: np.ndarray,
    *,
    n_annotators: int,
    gold_item: np.ndarray | None = None,
    gold_label: np.ndarray | None = None,
) -> AnnotatorStats:
    """Accuracy, confusion and gold score of every annotator against item posteriors."""
    n_items, n_labels = probas.shape
    g_item, g_label = _gold_arrays(gold_item, gold_label)
    count = np.bincount(annotator, minlength=n_annotators).astype(np.float64)
    hit = np.bincount(annotator, weights=probas[item, label], minlength=n_annotators)
    responses = response_matrix(
        item, annotator, label, n_items=n_items, n_annotators=n_annotators, n_labels=n_labels
    )
    soft = np.asarray(responses.T @ probas).reshape(n_annotators, n_labels, n_labels)
    confusion = soft.transpose(0, 2, 1)
    row = confusion.sum(axis=2, keepdims=True)
    confusion = np.divide(confusion, row, out=np.zeros_like(confusion), where=row > 0)
    truth = np.full(n_items, -1, dtype=np.int64)
    truth[g_item] = g_label
    on_gold = truth[item] >= 0
    gold_n = np.bincount(annotator[on_gold], minlength=n_annotators)
    gold_hit = np.bincount(
        annotator[on_gold], weights=(label[on_gold] == truth[item][on_gold]), minlength=n_annotators
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        accuracy = np.where(count > 0, hit / count, np.nan)
        gold_accuracy = np.where(gold_n > 0, gold_hit / gold_n, np.nan)
    return AnnotatorStats(count.astype(np.int64), accuracy, confusion, gold_accuracy, gold_n)


def flag_annotators(
    stats: AnnotatorStats, *, n_labels: int, min_accuracy: float | None = None, min_gold: int = 3
) -> tuple[np.ndarray, list[str]]:
    """Flag annotators whose accuracy is near chance.

    Args:
        stats: From `annotator_stats`.
        n_labels: Label count (chance is `1 / n_labels`).
        min_accuracy: Threshold; default chance + 0.1.
        min_gold: Gold items needed before the gold score is used instead of the estimate.

    Returns:
        (A,) flags and a reason per annotator ("" when not flagged).
    """
    threshold = (1.0 / max(n_labels, 1) + 0.1) if min_accuracy is None else min_accuracy
    use_gold = stats.gold_items >= min_gold
    score = np.where(use_gold, stats.gold_accuracy, stats.accuracy)
    flagged = np.nan_to_num(score, nan=1.0) < threshold
    reasons = [
        (f"{'gold' if g else 'estimated'} accuracy {s:.3f} < {threshold:.3f}" if f else "")
        for f, g, s in zip(flagged, use_gold, score, strict=True)
    ]
    return flagged, reasons


def flagged_decisive(
    item: np.ndarray,
    annotator: np.ndarray,
    label: np.ndarray,
    winner: np.ndarray,
    flagged: np.ndarray,
    *,
    n_items: int,
    n_labels: int,
) -> np.ndarray:
    """(n_items,) items whose winning label would lose its lead without flagged annotators."""
    counts = vote_counts(item, label, n_items=n_items, n_labels=n_labels)
    bad = flagged[annotator]
    bad_counts = vote_counts(item[bad], label[bad], n_items=n_items, n_labels=n_labels)
    clean = counts - bad_counts
    safe_winner = np.maximum(winner, 0)
    rows = np.arange(n_items)
    win_clean = clean[rows, safe_winner]
    clean[rows, safe_winner] = -np.inf
    runner_up = clean.max(axis=1) if n_labels > 1 else np.zeros(n_items)
    return (winner >= 0) & (bad_counts[rows, safe_winner] > 0) & (win_clean <= runner_up)


@dataclasses.dataclass(frozen=True)
class MultiLabelResult:
    """Per-label binary consolidation of multi-label annotations.

    Attributes:
        probas: (n_items, L) probability that each label applies.
        decided: (n_items, L) the consolidated label set as a boolean matrix.
        confidence: (n_items,) the least certain per-label decision, `min max(p, 1 - p)`.
        ties: (n_items,) some label's decision is a tie.
    """

    probas: np.ndarray
    decided: np.ndarray
    confidence: np.ndarray
    ties: np.ndarray


def consolidate_multilabel(
    item: np.ndarray,
    annotator: np.ndarray,
    chosen: np.ndarray,
    *,
    n_items: int,
    n_annotators: int,
    method: str = "ds",
    n_iter: int = 100,
    tol: float = 1e-5,
    smoothing: float = 0.01,
) -> MultiLabelResult:
    """Consolidate each label as a binary present/absent question.

    Args:
        item: (n,) item index of each (item, annotator) row.
        annotator: (n,) annotator index.
        chosen: (n, L) boolean: the annotator marked the label on the item.
        n_items: Item count.
        n_annotators: Annotator count.
        method: `mv` or `ds`.
        n_iter: DS iterations.
        tol: DS tolerance.
        smoothing: DS smoothing.
    """
    n_labels = chosen.shape[1]
    probas = np.zeros((n_items, n_labels))
    ties = np.zeros((n_items, n_labels), dtype=bool)
    for j in range(n_labels):  # one binary problem per label; each is vectorized
        answer = chosen[:, j].astype(np.int64)
        model: MajorityVote | DawidSkene
        if method == "mv":
            model = MajorityVote().fit(item, annotator, answer, n_items=n_items, n_labels=2)
        else:
            model = DawidSkene(n_iter=n_iter, tol=tol, smoothing=smoothing).fit(
                item, annotator, answer, n_items=n_items, n_labels=2, n_annotators=n_annotators
            )
        probas[:, j] = model.probas_[:, 1]
        ties[:, j] = model.ties_
    decided = (probas > 0.5) & ~ties
    certainty = np.maximum(probas, 1.0 - probas)
    confidence = certainty.min(axis=1) if n_labels else np.ones(n_items)
    return MultiLabelResult(probas, decided, confidence, np.asarray(ties.any(axis=1)))
