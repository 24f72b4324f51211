"""Quality of single-label classification answers: agreement, consolidation, review, annotators.

Majority vote or Dawid-Skene over a `(task, worker, label)` table; gold answers clamp
Dawid-Skene and score annotators; flagged annotators who decide an item send it to review.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labelloop.quality import agreement as agr
from labelloop.quality.consolidation import (
    DawidSkene,
    MajorityVote,
    annotator_stats,
    flag_annotators,
    flagged_decisive,
)
from labelloop.quality.encode import Encoded, encode, vote_counts
from labelloop.quality.result import FamilyOutcome, annotator_rows, num, review_row
from labelloop.schemas import Annotation

#: The pairwise table covers the most active annotators only (it is quadratic in their number).
MAX_PAIRWISE_ANNOTATORS = 50


def pairwise_table(
    enc: Encoded, *, item: np.ndarray, label: np.ndarray, min_overlap: int
) -> dict[str, Any]:
    """Cohen's kappa etc. for the most active annotators (`MAX_PAIRWISE_ANNOTATORS`)."""
    count = np.bincount(enc.annotator, minlength=enc.n_annotators)
    top = np.sort(np.argsort(-count, kind="stable")[:MAX_PAIRWISE_ANNOTATORS])
    remap = np.full(enc.n_annotators, -1, dtype=np.int64)
    remap[top] = np.arange(top.size)
    keep = remap[enc.annotator] >= 0
    pw = agr.pairwise_agreement(
        item[keep],
        remap[enc.annotator[keep]],
        label[keep],
        n_items=enc.n_items,
        n_annotators=int(top.size),
        n_labels=enc.n_labels,
        min_overlap=min_overlap,
    )
    return {
        "annotators": [str(a) for a in enc.annotators[top]],
        "cohen_kappa": [[num(v) for v in row] for row in pw.cohen_kappa],
        "agreement": [[num(v) for v in row] for row in pw.agreement],
        "overlap": pw.overlap.tolist(),
    }


def gold_indices(enc: Encoded, gold: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    position = {str(item): i for i, item in enumerate(enc.items)}
    index = {label: i for i, label in enumerate(enc.labels)}
    pairs = [(position[i], index[g]) for i, g in gold.items() if i in position]
    if not pairs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    arr = np.array(pairs, dtype=np.int64)
    return arr[:, 0], arr[:, 1]


def assess_classification(
    annotations: list[Annotation],
    label_list: list[str],
    *,
    method: str,
    metric: str,
    gold: dict[str, str],
    min_confidence: float,
    n_boot: int,
    seed: int,
    min_overlap: int,
) -> FamilyOutcome:
    enc = encode(annotations, label_list)
    n_labels = enc.n_labels
    counts = vote_counts(enc.item, enc.label, n_items=enc.n_items, n_labels=n_labels)
    stats = agr.item_statistics(counts)
    metrics = {
        k: float(v[0]) for k, v in agr.metrics_from_sums(stats.sum(0), n_labels=n_labels).items()
    }
    ci = agr.bootstrap_ci(stats, metric, n_labels=n_labels, n_boot=n_boot, seed=seed)
    g_item, g_label = gold_indices(enc, gold)
    kwargs = {"n_items": enc.n_items, "n_labels": n_labels, "n_annotators": enc.n_annotators}
    model: MajorityVote | DawidSkene
    if method == "mv":
        model = MajorityVote().fit(enc.item, enc.annotator, enc.label, **kwargs)
    else:
        model = DawidSkene().fit(
            enc.item, enc.annotator, enc.label, gold_item=g_item, gold_label=g_label, **kwargs
        )
    a_stats = annotator_stats(
        enc.item,
        enc.annotator,
        enc.label,
        model.probas_,
        n_annotators=enc.n_annotators,
        gold_item=g_item,
        gold_label=g_label,
    )
    flagged, reasons = flag_annotators(a_stats, n_labels=n_labels)
    decisive = flagged_decisive(
        enc.item,
        enc.annotator,
        enc.label,
        model.labels_,
        flagged,
        n_items=enc.n_items,
        n_labels=n_labels,
    )
    order = np.argsort(enc.item, kind="stable")
    starts = np.searchsorted(enc.item[order], np.arange(enc.n_items + 1))
    consolidated, review = [], []
    for i, item_id in enumerate(enc.items):
        votes = {label_list[j]: int(c) for j, c in enumerate(counts[i]) if c}
        winner = int(model.labels_[i])
        confidence = float(model.confidence_[i])
        tie = bool(model.ties_[i])
        trainable = not tie and winner >= 0 and confidence >= min_confidence
        row: dict[str, Any] = {
            "item": str(item_id),
            "label": label_list[winner] if winner >= 0 else None,
            "confidence": num(confidence),
            "votes": votes,
            "trainable": trainable,
            "posterior": {label_list[j]: num(p) for j, p in enumerate(model.probas_[i])},
        }
        consolidated.append(row)
        reasons_i = [
            r
            for r, hit in (
                ("tie", tie),
                ("flagged annotator", bool(decisive[i])),
                ("low confidence", not tie and confidence < min_confidence),
            )
            if hit
        ]
        if reasons_i:
            rows = order[starts[i] : starts[i + 1]]
            given = [
                {
                    "annotator": str(enc.annotators[enc.annotator[r]]),
                    "label": label_list[enc.label[r]],
                }
                for r in rows
            ]
            review.append(
                review_row(
                    str(item_id),
                    reasons_i,
                    votes,
                    given,
                    confidence,
                    label=row["label"],
                )
            )
    per_class = agr.per_class_agreement(counts)
    return FamilyOutcome(
        consolidated=consolidated,
        review=review,
        metrics=metrics,
        agreement_metric=metric,
        agreement_ci=ci,
        agreement_items=int(stats.shape[0]),
        per_class={label_list[j]: v for j, v in enumerate(per_class)},
        pairwise=pairwise_table(enc, item=enc.item, label=enc.label, min_overlap=min_overlap),
        annotator_table=annotator_rows(
            enc.annotators, a_stats, flagged, reasons, with_confusion=True
        ),
        ties=int(model.ties_.sum()),
        annotators=enc.n_annotators,
    )
