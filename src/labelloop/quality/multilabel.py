"""Quality of multi-label classification answers: one binary present/absent problem per label.

Agreement is the mean over labels of each label's binary agreement; consolidation decides each
label separately (majority vote or Dawid-Skene) and an item's confidence is its least certain
label's.
"""

from __future__ import annotations

import numpy as np

from labelloop.quality import agreement as agr
from labelloop.quality.consolidation import (
    AnnotatorStats,
    consolidate_multilabel,
    flag_annotators,
)
from labelloop.quality.encode import encode_columns, vote_counts
from labelloop.quality.result import (
    EMPTY_PAIRWISE,
    FamilyOutcome,
    annotator_rows,
    num,
    review_row,
)
from labelloop.schemas import Annotation


def assess_multilabel(
    annotations: list[Annotation],
    label_list: list[str],
    *,
    method: str,
    metric: str,
    min_confidence: float,
    n_boot: int,
    seed: int,
) -> FamilyOutcome:
    # Encode rows with a placeholder label; the value matrix carries the chosen labels.
    enc = encode_columns(
        [a.item for a in annotations],
        [a.annotator for a in annotations],
        [label_list[0]] * len(annotations),
        label_list,
    )
    index = {label: j for j, label in enumerate(label_list)}
    chosen = np.zeros((len(annotations), len(label_list)), dtype=bool)
    for r, a in enumerate(annotations):
        if isinstance(a.value, frozenset):
            chosen[r, [index[v] for v in a.value]] = True
    result = consolidate_multilabel(
        enc.item,
        enc.annotator,
        chosen,
        n_items=enc.n_items,
        n_annotators=enc.n_annotators,
        method=method,
    )
    per_label_metrics: list[dict[str, float]] = []
    replicates = []
    per_class: dict[str, float] = {}
    hits = np.zeros(enc.n_annotators)
    for j, name in enumerate(label_list):
        binary = chosen[:, j].astype(np.int64)
        counts = vote_counts(enc.item, binary, n_items=enc.n_items, n_labels=2)
        stats = agr.item_statistics(counts)
        values = agr.metrics_from_sums(stats.sum(0), n_labels=2)
        per_label_metrics.append({k: float(v[0]) for k, v in values.items()})
        per_class[name] = float(values["krippendorff_alpha"][0])
        replicates.append(
            agr.bootstrap_replicates(stats, metric, n_labels=2, n_boot=n_boot, seed=seed)
        )
        p = result.probas[enc.item, j]
        hits += np.bincount(
            enc.annotator, weights=np.where(binary == 1, p, 1 - p), minlength=enc.n_annotators
        )
    with np.errstate(invalid="ignore"):
        metrics = {k: float(np.nanmean([m[k] for m in per_label_metrics])) for k in agr.METRICS}
        ci = agr.generic_interval(np.nanmean(np.vstack(replicates), axis=0))
    count = np.bincount(enc.annotator, minlength=enc.n_annotators)
    a_stats = AnnotatorStats(
        annotations=count,
        accuracy=hits / np.maximum(count, 1) / len(label_list),
        confusion=np.zeros((enc.n_annotators, 0, 0)),
        gold_accuracy=np.full(enc.n_annotators, np.nan),
        gold_items=np.zeros(enc.n_annotators, dtype=np.int64),
    )
    flagged, reasons = flag_annotators(a_stats, n_labels=2)
    consolidated, review = [], []
    by_item: dict[str, list[Annotation]] = {}
    for a in annotations:
        by_item.setdefault(a.item, []).append(a)
    votes_all = np.zeros((enc.n_items, len(label_list)), dtype=np.int64)
    np.add.at(votes_all, enc.item, chosen.astype(np.int64))
    for i, item_id in enumerate(enc.items):
        votes = {label_list[j]: int(c) for j, c in enumerate(votes_all[i]) if c}
        confidence = float(result.confidence[i])
        tie = bool(result.ties[i])
        trainable = not tie and confidence >= min_confidence
        consolidated.append(
            {
                "item": str(item_id),
                "label": [label_list[j] for j in np.flatnonzero(result.decided[i])],
                "confidence": num(confidence),
                "votes": votes,
                "trainable": trainable,
                "posterior": {label_list[j]: num(p) for j, p in enumerate(result.probas[i])},
            }
        )
        reasons_i = ["tie"] if tie else (["low confidence"] if not trainable else [])
        if reasons_i:
            given = [
                {"annotator": a.annotator, "label": sorted(a.value)}
                for a in by_item[str(item_id)]
                if isinstance(a.value, frozenset)
            ]
            review.append(
                review_row(
                    str(item_id),
                    reasons_i,
                    votes,
                    given,
                    confidence,
                    label=consolidated[-1]["label"],
                )
            )
    return FamilyOutcome(
        consolidated=consolidated,
        review=review,
        metrics=metrics,
        agreement_metric=metric,
        agreement_ci=ci,
        agreement_items=int(np.sum(np.bincount(enc.item, minlength=enc.n_items) >= 2)),
        per_class=per_class,
        pairwise=dict(EMPTY_PAIRWISE),
        annotator_table=annotator_rows(
            enc.annotators, a_stats, flagged, reasons, with_confusion=False
        ),
        ties=int(result.ties.sum()),
        annotators=enc.n_annotators,
    )
