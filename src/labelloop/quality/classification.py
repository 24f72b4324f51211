"""Quality of single-label classification answers: agreement, consolidation, review, annotators.

Majority vote or Dawid-Skene over a `(task, worker, label)` table; gold answers clamp
Dawid-Skene and score annotators; flagged annotators who decide an item send it to review.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from labelloop.errors import InputError
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
from labelloop.quality.sources import ModelSource
from labelloop.schemas import Annotation, AnnotatorKind

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


#: What flagged annotators count for (see `assess_classification`).
FLAGGED_POLICIES = ("exclude", "downweight", "keep")
#: Answers an annotator needs before being flagged (and, by default, excluded).
MIN_ANSWERS_TO_FLAG = 10
#: Items whose answers disagree go to review while their consolidated posterior is below this.
REVIEW_BELOW = 0.9


@dataclasses.dataclass(frozen=True)
class Agreement:
    """Agreement between people on the items two or more of them answered."""

    metrics: dict[str, float]
    ci: tuple[float, float]
    items: int
    counts: np.ndarray


def human_agreement(
    enc: Encoded, keep: np.ndarray, *, metric: str, n_boot: int, seed: int
) -> Agreement:
    """Every nominal metric over the answers `keep` marks (people, maybe minus the flagged)."""
    counts = vote_counts(
        enc.item[keep], enc.label[keep], n_items=enc.n_items, n_labels=enc.n_labels
    )
    stats = agr.item_statistics(counts)
    values = agr.metrics_from_sums(stats.sum(0), n_labels=enc.n_labels)
    ci = agr.bootstrap_ci(stats, metric, n_labels=enc.n_labels, n_boot=n_boot, seed=seed)
    return Agreement({k: float(v[0]) for k, v in values.items()}, ci, int(stats.shape[0]), counts)


def _consolidate(
    enc: Encoded,
    rows: np.ndarray,
    *,
    method: str,
    gold: tuple[np.ndarray, np.ndarray],
    fixed: dict[int, np.ndarray],
) -> MajorityVote | DawidSkene:
    kwargs = {"n_items": enc.n_items, "n_labels": enc.n_labels, "n_annotators": enc.n_annotators}
    item, annotator, label = enc.item[rows], enc.annotator[rows], enc.label[rows]
    if method == "mv":
        return MajorityVote().fit(item, annotator, label, **kwargs)
    return DawidSkene().fit(
        item, annotator, label, gold_item=gold[0], gold_label=gold[1], fixed_errors=fixed, **kwargs
    )


#: How a review row names who gave an answer.
_SOURCE_WORD = {
    AnnotatorKind.HUMAN: "person",
    AnnotatorKind.MODEL: "model",
    AnnotatorKind.EXPERT: "reviewer",
}


def _expert_labels(enc: Encoded, expert_row: np.ndarray) -> np.ndarray:
    """Per item, the label reviewers gave (their majority), or -1 (none, or a tie)."""
    out = np.full(enc.n_items, -1, dtype=np.int64)
    if not expert_row.any():
        return out
    counts = vote_counts(
        enc.item[expert_row], enc.label[expert_row], n_items=enc.n_items, n_labels=enc.n_labels
    )
    best = counts.max(axis=1)
    unique = (counts == best[:, None]).sum(axis=1) == 1
    return np.where((best > 0) & unique, counts.argmax(axis=1), -1)


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
    flagged_policy: str = "exclude",
    sources: Mapping[str, ModelSource] | None = None,
) -> FamilyOutcome:
    """Agreement between people, consolidation of people and calibrated models, review rows.

    Args:
        annotations: Valid single-label answers.
        label_list: The label set.
        method: `mv` or `ds`.
        metric: The gate's agreement metric.
        gold: Known answers by item (clamped in Dawid-Skene, scored per annotator).
        min_confidence: Consolidated confidence an item needs to be trainable.
        n_boot: Bootstrap replicates of the agreement interval.
        seed: Bootstrap seed.
        min_overlap: Shared items an annotator pair needs for Cohen's kappa.
        flagged_policy: What flagged (near-chance) annotators count for: `exclude` drops their
            answers from consolidation and agreement; `downweight` keeps them in consolidation
            (Dawid-Skene weighs them by their estimated confusion) but not in agreement;
            `keep` counts them everywhere.
        sources: Calibrated model annotators by name: their confusion is held fixed in
            Dawid-Skene, their answers never count toward agreement between people, and an
            item only they answered keeps its calibrated precision as confidence.

    Each answer's `annotator_kind` says who gave it: model answers never count toward
    agreement; an `expert` answer (a reviewer's correction) decides its item outright, with
    confidence 1, and takes no part in agreement, annotator scores or the fit.
    """
    if flagged_policy not in FLAGGED_POLICIES:
        raise InputError(
            f"unknown policy {flagged_policy!r} for flagged annotators; "
            f"expected one of {', '.join(FLAGGED_POLICIES)}",
            field="flagged_annotators",
        )
    sources = dict(sources or {})
    enc = encode(annotations, label_list)
    n_labels = enc.n_labels
    names = [str(a) for a in enc.annotators]
    kind_of = {a.annotator: a.annotator_kind for a in annotations}
    kinds = np.array([kind_of[n] for n in names], dtype=object)
    model_annotator = kinds == AnnotatorKind.MODEL
    expert_row = (kinds == AnnotatorKind.EXPERT)[enc.annotator]
    human_row = ~model_annotator[enc.annotator] & ~expert_row
    counts = vote_counts(
        enc.item[~expert_row], enc.label[~expert_row], n_items=enc.n_items, n_labels=n_labels
    )
    expert = _expert_labels(enc, expert_row)
    fixed = {a: sources[n].error_matrix(n_labels) for a, n in enumerate(names) if n in sources}
    g_item, g_label = gold_indices(enc, gold)
    all_rows = np.flatnonzero(~expert_row)
    first = _consolidate(enc, all_rows, method=method, gold=(g_item, g_label), fixed=fixed)
    a_stats = annotator_stats(
        enc.item,
        enc.annotator,
        enc.label,
        first.probas_,
        n_annotators=enc.n_annotators,
        gold_item=g_item,
        gold_label=g_label,
    )
    flagged, reasons = flag_annotators(a_stats, n_labels=n_labels)
    # A calibrated model is judged by its calibration, a reviewer is trusted: neither here.
    flagged &= kinds == AnnotatorKind.HUMAN
    # A handful of answers is too little evidence to set someone aside.
    flagged &= a_stats.annotations >= MIN_ANSWERS_TO_FLAG
    reasons = [r if f else "" for r, f in zip(reasons, flagged, strict=True)]
    flagged_row = flagged[enc.annotator]
    with_flagged = human_agreement(enc, human_row, metric=metric, n_boot=n_boot, seed=seed)
    without_flagged = human_agreement(
        enc, human_row & ~flagged_row, metric=metric, n_boot=n_boot, seed=seed
    )
    gate_agreement = with_flagged if flagged_policy == "keep" else without_flagged
    model: MajorityVote | DawidSkene = first
    if flagged_policy == "exclude" and flagged.any():
        model = _consolidate(
            enc,
            np.flatnonzero(~flagged_row & ~expert_row),
            method=method,
            gold=(g_item, g_label),
            fixed=fixed,
        )
    decisive = flagged_decisive(
        enc.item,
        enc.annotator,
        enc.label,
        first.labels_,
        flagged,
        n_items=enc.n_items,
        n_labels=n_labels,
    )
    pivotal = flagged_policy != "exclude"  # excluded answers decide nothing
    answered_by_human = np.bincount(enc.item[human_row], minlength=enc.n_items) > 0
    calibrated = np.zeros(enc.n_items)  # precision of the model answer on model-only items
    for a in fixed:
        rows = enc.annotator == a
        calibrated[enc.item[rows]] = sources[names[a]].precision
    model_only = ~answered_by_human & (calibrated > 0)
    gold_index = dict(zip(g_item.tolist(), g_label.tolist(), strict=True))
    order = np.argsort(enc.item, kind="stable")
    starts = np.searchsorted(enc.item[order], np.arange(enc.n_items + 1))
    consolidated, review = [], []
    for i, item_id in enumerate(enc.items):
        votes = {label_list[j]: int(c) for j, c in enumerate(counts[i]) if c}
        winner = int(model.labels_[i])
        confidence = float(model.confidence_[i])
        posterior = model.probas_[i]
        source = "model" if model_only[i] else "people"
        if model_only[i] and method == "mv":
            confidence = float(calibrated[i])  # the model's calibrated precision, not 1 vote
        tie = bool(model.ties_[i])
        if expert[i] >= 0:  # a reviewer's correction decides the item
            winner, confidence, tie, source = int(expert[i]), 1.0, False, "expert"
            posterior = np.eye(n_labels)[winner]
        trainable = not tie and winner >= 0 and confidence >= min_confidence
        row: dict[str, Any] = {
            "item": str(item_id),
            "label": label_list[winner] if winner >= 0 else None,
            "confidence": num(confidence),
            "votes": votes,
            "trainable": trainable,
            "posterior": {label_list[j]: num(p) for j, p in enumerate(posterior)},
            "source": source,
        }
        if expert[i] >= 0:
            row["reviewed_by"] = sorted(
                {names[enc.annotator[r]] for r in np.flatnonzero(expert_row & (enc.item == i))}
            )
        consolidated.append(row)
        item_rows = order[starts[i] : starts[i + 1]]
        people = int(np.count_nonzero(human_row[item_rows]))
        disagree = int(np.count_nonzero(counts[i])) > 1 and confidence < REVIEW_BELOW
        gold_label = gold_index.get(i)
        reasons_i = [
            r
            for r, hit in (
                ("tie", tie),
                ("disagreement", disagree and not tie),
                ("pivotal flagged annotator", pivotal and bool(decisive[i])),
                ("only flagged annotators answered", winner < 0 and not tie and people > 0),
                ("low posterior", not tie and winner >= 0 and confidence < min_confidence),
                ("gold mismatch", gold_label is not None and winner >= 0 and winner != gold_label),
            )
            # A reviewer's correction settles the item unless gold says otherwise.
            if hit and (expert[i] < 0 or r == "gold mismatch")
        ]
        if reasons_i:
            given = [
                {
                    "annotator": names[enc.annotator[r]],
                    "label": label_list[enc.label[r]],
                    "flagged": bool(flagged_row[r]),
                    "source": _SOURCE_WORD[kinds[enc.annotator[r]]],
                    "annotator_kind": str(kinds[enc.annotator[r]]),
                }
                for r in item_rows
            ]
            review.append(
                review_row(
                    str(item_id),
                    reasons_i,
                    votes,
                    given,
                    confidence,
                    label=row["label"],
                    expected_error=1.0 - confidence if winner >= 0 else 1.0,
                )
            )
    per_class = agr.per_class_agreement(gate_agreement.counts)
    return FamilyOutcome(
        consolidated=consolidated,
        review=review,
        metrics=gate_agreement.metrics,
        agreement_metric=metric,
        agreement_ci=gate_agreement.ci,
        agreement_items=gate_agreement.items,
        agreement_with_flagged=with_flagged.metrics[metric],
        agreement_without_flagged=without_flagged.metrics[metric],
        flagged_policy=flagged_policy,
        model_items=int(model_only.sum()),
        model_precision=float(np.mean(calibrated[model_only])) if model_only.any() else None,
        per_class={label_list[j]: v for j, v in enumerate(per_class)},
        pairwise=pairwise_table(enc, item=enc.item, label=enc.label, min_overlap=min_overlap),
        annotator_table=annotator_rows(
            enc.annotators, a_stats, flagged, reasons, with_confusion=True
        ),
        ties=int(model.ties_.sum()),
        annotators=enc.n_annotators,
    )
