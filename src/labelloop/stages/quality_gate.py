"""Stage 5: measure agreement, consolidate labels and count the items good enough to train on.

Handles every task type: single-label classification (majority vote or Dawid-Skene),
multi-label (one binary problem per label), object detection (boxes clustered by IoU and
averaged by annotator reliability) and entity extraction (spans voted over matched spans).
Writes the contract artifacts: consolidated labels, the review queue, the quality JSON and
the rejected rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from labelloop import state, storage
from labelloop.annotations import read_annotations, read_gold, write_bad_records
from labelloop.errors import BadRecord, InputError
from labelloop.quality import agreement as agr
from labelloop.quality.consolidation import (
    AnnotatorStats,
    DawidSkene,
    MajorityVote,
    annotator_stats,
    consolidate_multilabel,
    flag_annotators,
    flagged_decisive,
)
from labelloop.quality.encode import Encoded, encode, encode_columns, vote_counts
from labelloop.quality.regions import (
    REGION_STATS,
    Regions,
    consolidate_regions,
    pairwise_region_stats,
)
from labelloop.schemas import Annotation, Box, Shape, Span, TaskType, parse_labels

log = logging.getLogger(__name__)

NOMINAL_METRICS = agr.METRICS
BOX_METRICS = ("f1", "mean_iou")
SPAN_METRICS = ("span_f1", "span_f1_overlap", "span_f1_exact", "mean_iou")
#: The pairwise table covers the most active annotators only (it is quadratic in their number).
MAX_PAIRWISE_ANNOTATORS = 50


@dataclasses.dataclass(frozen=True)
class GateResult:
    """The gate's numbers. `agreement` is the configured metric (NaN mapped to 0.0)."""

    label_count: int
    labeled_items: int
    annotations: int
    annotators: int
    agreement: float
    agreement_metric: str
    all_agree_rate: float
    ties: int
    review_items: int
    bad_records: int


@dataclasses.dataclass
class _Outcome:
    """What one task family's assessment hands back to the common writer."""

    consolidated: list[dict[str, Any]]
    review: list[dict[str, Any]]
    metrics: dict[str, float]
    agreement_metric: str
    agreement_ci: tuple[float, float]
    per_class: dict[str, float]
    pairwise: dict[str, Any]
    annotator_table: list[dict[str, Any]]
    ties: int
    annotators: int


def _num(value: float) -> float | None:
    """A JSON number, or null for NaN/inf."""
    value = float(value)
    return round(value, 6) if math.isfinite(value) else None


def _choose_metric(requested: str, available: Sequence[str], task: TaskType) -> str:
    """The requested metric, or the task's first metric when it does not apply to the task."""
    if requested in available:
        return requested
    known = set(NOMINAL_METRICS) | set(BOX_METRICS) | set(SPAN_METRICS)
    if requested not in known:
        raise InputError(
            f"unknown agreement metric {requested!r}; expected one of {', '.join(sorted(known))}",
            field="agreement_metric",
        )
    log.warning(
        "%s does not apply to %s; the gate uses %s instead", requested, task.value, available[0]
    )
    return available[0]


def _review_row(
    item: str,
    reasons: list[str],
    votes: dict[str, int],
    annotations: list[dict[str, Any]],
    confidence: float,
) -> dict[str, Any]:
    return {
        "item": item,
        "reason": "; ".join(reasons),
        "votes": votes,
        "annotations": annotations,
        "confidence": _num(confidence),
    }


def _annotator_rows(
    ids: np.ndarray,
    stats: AnnotatorStats,
    flagged: np.ndarray,
    reasons: list[str],
    *,
    with_confusion: bool,
) -> list[dict[str, Any]]:
    rows = []
    for a, annotator in enumerate(ids):
        rows.append(
            {
                "annotator": str(annotator),
                "annotations": int(stats.annotations[a]),
                "accuracy": _num(stats.accuracy[a]),
                "gold_accuracy": _num(stats.gold_accuracy[a]),
                "gold_items": int(stats.gold_items[a]),
                "flagged": bool(flagged[a]),
                "flag_reason": reasons[a],
                "confusion": (
                    [[_num(v) for v in row] for row in stats.confusion[a]]
                    if with_confusion
                    else None
                ),
            }
        )
    return rows


def _pairwise_table(
    enc: Encoded, *, item: np.ndarray, label: np.ndarray, min_overlap: int
) -> dict[str, Any]:
    """Cohen's kappa etc. for the most active annotators (`MAX_PAIRWISE_ANNOTATORS`)."""
    count = np.bincount(enc.annotator, minlength=enc.n_annotators)
    top = np.sort(np.argsort(-count, kind="stable")[:MAX_PAIRWISE_ANNOTATORS])
    remap = np.full(enc.n_annotators, -1, dtype=np.int64)
    remap[top] = np.arange(top.size)
    keep = remap[enc.annotator] >= 0
    pw = agr.pairwise_agreement(
        item[keep], remap[enc.annotator[keep]], label[keep],
        n_items=enc.n_items, n_annotators=int(top.size), n_labels=enc.n_labels,
        min_overlap=min_overlap,
    )  # fmt: skip
    return {
        "annotators": [str(a) for a in enc.annotators[top]],
        "cohen_kappa": [[_num(v) for v in row] for row in pw.cohen_kappa],
        "agreement": [[_num(v) for v in row] for row in pw.agreement],
        "overlap": pw.overlap.tolist(),
    }


def _gold_indices(enc: Encoded, gold: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    position = {str(item): i for i, item in enumerate(enc.items)}
    index = {label: i for i, label in enumerate(enc.labels)}
    pairs = [(position[i], index[g]) for i, g in gold.items() if i in position]
    if not pairs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    arr = np.array(pairs, dtype=np.int64)
    return arr[:, 0], arr[:, 1]


def _classification(
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
) -> _Outcome:
    enc = encode(annotations, label_list)
    n_labels = enc.n_labels
    counts = vote_counts(enc.item, enc.label, n_items=enc.n_items, n_labels=n_labels)
    stats = agr.item_statistics(counts)
    metrics = {
        k: float(v[0]) for k, v in agr.metrics_from_sums(stats.sum(0), n_labels=n_labels).items()
    }
    ci = agr.bootstrap_ci(stats, metric, n_labels=n_labels, n_boot=n_boot, seed=seed)
    g_item, g_label = _gold_indices(enc, gold)
    kwargs = {"n_items": enc.n_items, "n_labels": n_labels, "n_annotators": enc.n_annotators}
    model: MajorityVote | DawidSkene
    if method == "mv":
        model = MajorityVote().fit(enc.item, enc.annotator, enc.label, **kwargs)
    else:
        model = DawidSkene().fit(
            enc.item, enc.annotator, enc.label, gold_item=g_item, gold_label=g_label, **kwargs
        )
    a_stats = annotator_stats(
        enc.item, enc.annotator, enc.label, model.probas_, n_annotators=enc.n_annotators,
        gold_item=g_item, gold_label=g_label,
    )  # fmt: skip
    flagged, reasons = flag_annotators(a_stats, n_labels=n_labels)
    decisive = flagged_decisive(
        enc.item, enc.annotator, enc.label, model.labels_, flagged,
        n_items=enc.n_items, n_labels=n_labels,
    )  # fmt: skip
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
            "confidence": _num(confidence),
            "votes": votes,
            "trainable": trainable,
            "posterior": {label_list[j]: _num(p) for j, p in enumerate(model.probas_[i])},
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
            review.append(_review_row(str(item_id), reasons_i, votes, given, confidence))
    per_class = agr.per_class_agreement(counts)
    return _Outcome(
        consolidated=consolidated,
        review=review,
        metrics=metrics,
        agreement_metric=metric,
        agreement_ci=ci,
        per_class={label_list[j]: v for j, v in enumerate(per_class)},
        pairwise=_pairwise_table(enc, item=enc.item, label=enc.label, min_overlap=min_overlap),
        annotator_table=_annotator_rows(
            enc.annotators, a_stats, flagged, reasons, with_confusion=True
        ),
        ties=int(model.ties_.sum()),
        annotators=enc.n_annotators,
    )


def _multilabel(
    annotations: list[Annotation],
    label_list: list[str],
    *,
    method: str,
    metric: str,
    min_confidence: float,
    n_boot: int,
    seed: int,
) -> _Outcome:
    # Encode rows with a placeholder label; the value matrix carries the chosen labels.
    enc = encode_columns(
        [a.item for a in annotations], [a.annotator for a in annotations],
        [label_list[0]] * len(annotations), label_list,
    )  # fmt: skip
    index = {label: j for j, label in enumerate(label_list)}
    chosen = np.zeros((len(annotations), len(label_list)), dtype=bool)
    for r, a in enumerate(annotations):
        if isinstance(a.value, frozenset):
            chosen[r, [index[v] for v in a.value]] = True
    result = consolidate_multilabel(
        enc.item, enc.annotator, chosen, n_items=enc.n_items, n_annotators=enc.n_annotators,
        method=method,
    )  # fmt: skip
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
        hits += np.bincount(enc.annotator, weights=np.where(binary == 1, p, 1 - p),
                            minlength=enc.n_annotators)  # fmt: skip
    with np.errstate(invalid="ignore"):
        metrics = {k: float(np.nanmean([m[k] for m in per_label_metrics])) for k in NOMINAL_METRICS}
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
                "confidence": _num(confidence),
                "votes": votes,
                "trainable": trainable,
                "posterior": {label_list[j]: _num(p) for j, p in enumerate(result.probas[i])},
            }
        )
        reasons_i = ["tie"] if tie else (["low confidence"] if not trainable else [])
        if reasons_i:
            given = [
                {"annotator": a.annotator, "label": sorted(a.value)}
                for a in by_item[str(item_id)]
                if isinstance(a.value, frozenset)
            ]
            review.append(_review_row(str(item_id), reasons_i, votes, given, confidence))
    return _Outcome(
        consolidated=consolidated,
        review=review,
        metrics=metrics,
        agreement_metric=metric,
        agreement_ci=ci,
        per_class=per_class,
        pairwise={"annotators": [], "cohen_kappa": [], "agreement": [], "overlap": []},
        annotator_table=_annotator_rows(
            enc.annotators, a_stats, flagged, reasons, with_confusion=False
        ),
        ties=int(result.ties.sum()),
        annotators=enc.n_annotators,
    )


def _regions(
    annotations: list[Annotation],
    label_list: list[str],
    *,
    task: TaskType,
    metric: str,
    min_confidence: float,
    n_boot: int,
    seed: int,
) -> _Outcome:
    boxes = task.shape is Shape.BOXES
    items = sorted({a.item for a in annotations})
    annotators = np.array(sorted({a.annotator for a in annotations}), dtype=object)
    a_index = {str(a): i for i, a in enumerate(annotators)}
    l_index = {label: j for j, label in enumerate(label_list)}
    width = 4 if boxes else 2
    by_item: dict[str, list[Annotation]] = {item: [] for item in items}
    for a in annotations:
        by_item[a.item].append(a)
    regions = []
    for item in items:
        owner: list[int] = []
        coords: list[tuple[float, ...]] = []
        labels: list[int] = []
        for a in by_item[item]:
            for part in a.value if isinstance(a.value, tuple) else ():
                owner.append(a_index[a.annotator])
                labels.append(l_index[part.label])
                if isinstance(part, Box):
                    coords.append((part.x_min, part.y_min, part.x_max, part.y_max))
                elif isinstance(part, Span):
                    coords.append((float(part.start), float(part.end)))
        regions.append(
            Regions(
                raters=np.array(
                    sorted(a_index[a.annotator] for a in by_item[item]), dtype=np.int64
                ),
                owner=np.array(owner, dtype=np.int64),
                coords=np.array(coords, dtype=np.float64).reshape(-1, width),
                label=np.array(labels, dtype=np.int64),
            )
        )
    stats = pairwise_region_stats(regions, min_iou=0.5)
    col = {name: stats[:, j] for j, name in enumerate(REGION_STATS)}
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_iou = col["iou_sum"].sum() / col["matched"].sum()
        f1 = col["tp2"].sum() / col["regions"].sum()
        exact = col["exact_tp2"].sum() / col["regions"].sum()
        paired = col["regions"] > 0
        agree = (
            float(np.mean(col["tp2"][paired] == col["regions"][paired]))
            if paired.any()
            else math.nan
        )
    if boxes:
        metrics = {"mean_iou": mean_iou, "f1": f1, "all_agree_rate": agree}
        ci_num, ci_den = (
            (col["iou_sum"], col["matched"])
            if metric == "mean_iou"
            else (col["tp2"], col["regions"])
        )
    else:
        # Any same-label overlap counts for span_f1_overlap (IoU > 0), hence the separate pass.
        loose = pairwise_region_stats(regions, min_iou=1e-12)
        with np.errstate(divide="ignore", invalid="ignore"):
            overlap = loose[:, 2].sum() / loose[:, 3].sum()
        metrics = {
            "span_f1": exact, "span_f1_exact": exact, "span_f1_overlap": overlap,
            "mean_iou": mean_iou, "all_agree_rate": agree,
        }  # fmt: skip
        num_by_metric = {
            "mean_iou": (col["iou_sum"], col["matched"]),
            "span_f1_overlap": (loose[:, 2], loose[:, 3]),
        }
        ci_num, ci_den = num_by_metric.get(metric, (col["exact_tp2"], col["regions"]))
    ci = agr.bootstrap_ratio_ci(ci_num, ci_den, n_boot=n_boot, seed=seed)
    result = consolidate_regions(
        regions, n_annotators=len(annotators), n_labels=len(label_list), average=boxes
    )
    count = np.bincount(
        [a_index[a.annotator] for a in annotations], minlength=len(annotators)
    ).astype(np.int64)
    a_stats = AnnotatorStats(
        annotations=count,
        accuracy=result.reliability,
        confusion=result.confusion,
        gold_accuracy=np.full(len(annotators), np.nan),
        gold_items=np.zeros(len(annotators), dtype=np.int64),
    )
    flagged, reasons = flag_annotators(a_stats, n_labels=2)
    consolidated, review = [], []
    ties = 0
    per_class_hits = np.zeros(len(label_list))
    per_class_all = np.zeros(len(label_list))
    for item, reg, cl in zip(items, regions, result.clusters, strict=True):
        kept = np.flatnonzero(cl.kept)
        votes: dict[str, int] = {}
        for k in kept:
            name = label_list[cl.label[k]]
            votes[name] = votes.get(name, 0) + 1
        np.add.at(per_class_all, cl.label, 1.0)
        np.add.at(per_class_hits, cl.label[kept], 1.0)
        if boxes:
            parts: list[dict[str, Any]] = [
                {
                    "x_min": _num(cl.coords[k, 0]), "y_min": _num(cl.coords[k, 1]),
                    "x_max": _num(cl.coords[k, 2]), "y_max": _num(cl.coords[k, 3]),
                    "label": label_list[cl.label[k]], "confidence": _num(cl.support[k]),
                }
                for k in kept
            ]  # fmt: skip
        else:
            parts = [
                {
                    "start": int(cl.coords[k, 0]), "end": int(cl.coords[k, 1]),
                    "label": label_list[cl.label[k]], "confidence": _num(cl.support[k]),
                }
                for k in kept
            ]  # fmt: skip
        confidence = cl.confidence()
        tie = bool(cl.tied.any())
        ties += int(tie)
        trainable = not tie and confidence >= min_confidence
        row: dict[str, Any] = {
            "item": item,
            "boxes" if boxes else "spans": parts,
            "confidence": _num(confidence),
            "votes": votes,
            "trainable": trainable,
        }
        consolidated.append(row)
        flagged_here = bool(reg.owner.size) and bool(flagged[reg.owner].any())
        reasons_i = [
            r
            for r, hit in (
                ("tie", tie),
                ("flagged annotator", flagged_here),
                ("low confidence", not tie and confidence < min_confidence),
            )
            if hit
        ]
        if reasons_i:
            given = [
                {
                    "annotator": a.annotator,
                    "label": a.to_json(task).get("boxes" if boxes else "spans"),
                }
                for a in by_item[item]
            ]
            review.append(_review_row(item, reasons_i, votes, given, confidence))
    with np.errstate(divide="ignore", invalid="ignore"):
        kept_share = per_class_hits / per_class_all
    return _Outcome(
        consolidated=consolidated,
        review=review,
        metrics=metrics,
        agreement_metric=metric,
        agreement_ci=ci,
        # Per class: the share of that class's clusters a majority of annotators drew.
        per_class={label_list[j]: float(v) for j, v in enumerate(kept_share)},
        pairwise={"annotators": [], "cohen_kappa": [], "agreement": [], "overlap": []},
        annotator_table=_annotator_rows(annotators, a_stats, flagged, reasons, with_confusion=True),
        ties=ties,
        annotators=len(annotators),
    )


def _text_lengths(items: set[str]) -> dict[str, int]:
    """Character length of each text item stored as a file (inline `text:` items are skipped)."""
    lengths = {}
    for item in sorted(items):
        if item.startswith("text:") or not storage.exists(item):
            continue
        lengths[item] = len(storage.read_text(item))
    return lengths


def _write_empty(
    *,
    task: TaskType,
    labels: list[str],
    metric: str,
    method: str,
    min_confidence: float,
    bad_records: int,
    consolidated_uri: str,
    review_uri: str,
    metrics_uri: str,
) -> GateResult:
    """Write the artifacts of a round without a single valid annotation."""
    storage.write_jsonl(consolidated_uri, [])
    storage.write_jsonl(review_uri, [])
    result = GateResult(
        label_count=0,
        labeled_items=0,
        annotations=0,
        annotators=0,
        agreement=0.0,
        agreement_metric=metric,
        all_agree_rate=0.0,
        ties=0,
        review_items=0,
        bad_records=bad_records,
    )
    quality = {
        **dataclasses.asdict(result),
        "agreement": None,
        "all_agree_rate": None,
        "agreement_ci": [None, None],
        "min_confidence": min_confidence,
        "consolidation_method": method,
        "task_type": task.value,
        "labels": labels,
        "gold_items": 0,
        "metrics": {},
        "per_class_agreement": {},
        "pairwise": {"annotators": [], "cohen_kappa": [], "agreement": [], "overlap": []},
        "annotator_table": [],
    }
    storage.write_text(metrics_uri, json.dumps(quality, indent=2, sort_keys=True))
    return result


def quality_gate(
    *,
    annotations_uri: str,
    task_type: str,
    labels: str,
    consolidation_method: str,
    agreement_metric: str,
    min_confidence: float,
    state_uri: str,
    consolidated_uri: str,
    review_uri: str,
    metrics_uri: str,
    rejects_uri: str,
    gold_uri: str = "",
    n_boot: int = 200,
    seed: int = 0,
    min_overlap: int = 10,
) -> GateResult:
    """Validate annotations, compute agreement, consolidate, and count trainable labels.

    Args:
        annotations_uri: Long-format annotations (JSONL or CSV).
        task_type: A `TaskType` value.
        labels: The label set, comma-separated.
        consolidation_method: `mv` (majority vote) or `ds` (Dawid-Skene). Boxes and spans
            always use reliability-weighted clustering.
        agreement_metric: The gate's metric: `krippendorff_alpha` (default), `fleiss_kappa`,
            `percent_agreement` or `all_agree_rate` for classification; `f1` or `mean_iou` for
            boxes; `span_f1` (exact), `span_f1_overlap` or `mean_iou` for spans. A metric that
            does not apply to the task falls back to the task's first one, with a warning.
        min_confidence: An item counts as labeled when its consolidated confidence is at least this.
        state_uri: The loop's state; consolidated labels are recorded there for later rounds.
        consolidated_uri: Where to write consolidated rows (JSONL).
        review_uri: Where to write the items that need a person to look (JSONL).
        metrics_uri: Where to write the quality JSON (every metric and the annotator table).
        rejects_uri: Where to write rejected annotation and gold rows (JSONL).
        gold_uri: Optional gold table `item,label` of known answers (classification only):
            Dawid-Skene clamps those items, and annotators get a gold score.
        n_boot: Bootstrap replicates for the agreement interval.
        seed: Bootstrap seed.
        min_overlap: Shared items a pair of annotators needs for Cohen's kappa.

    Raises:
        InputError: Unknown task type, method or metric. No valid annotation at all is not an
            error: the result has zero labels, so the count gate closes.
    """
    task = TaskType.parse(task_type)
    label_list = parse_labels(labels)
    if consolidation_method not in ("mv", "ds"):
        raise InputError(
            f"unknown consolidation method {consolidation_method!r}; expected mv or ds",
            field="consolidation_method",
        )
    read = read_annotations(annotations_uri, task_type=task, labels=label_list)
    if task.shape is Shape.SPANS:
        lengths = _text_lengths({a.item for a in read.annotations})
        if lengths:  # validate again, now rejecting spans past the end of their text
            read = read_annotations(
                annotations_uri, task_type=task, labels=label_list, text_lengths=lengths
            )
    bad: list[BadRecord] = list(read.bad)
    gold: dict[str, str] = {}
    if gold_uri:
        gold, gold_bad = read_gold(gold_uri, labels=label_list)
        bad.extend(gold_bad)
    write_bad_records(rejects_uri, bad)
    if not read.annotations:
        # Nothing to judge (an empty round, or every row rejected): a gate result of zero
        # labels, so the count gate closes with its reason instead of the run failing.
        log.warning(
            "%s: no valid annotations (%d rejected rows, see the rejects file)",
            annotations_uri,
            len(read.bad),
        )
        return _write_empty(
            task=task,
            labels=label_list,
            metric=agreement_metric,
            method=consolidation_method,
            min_confidence=min_confidence,
            bad_records=len(bad),
            consolidated_uri=consolidated_uri,
            review_uri=review_uri,
            metrics_uri=metrics_uri,
        )
    if task.shape is Shape.SINGLE:
        metric = _choose_metric(agreement_metric, NOMINAL_METRICS, task)
        out = _classification(
            read.annotations, label_list, method=consolidation_method, metric=metric, gold=gold,
            min_overlap=min_overlap, min_confidence=min_confidence, n_boot=n_boot, seed=seed,
        )  # fmt: skip
    elif task.multi_label:
        metric = _choose_metric(agreement_metric, NOMINAL_METRICS, task)
        out = _multilabel(
            read.annotations,
            label_list,
            method=consolidation_method,
            metric=metric,
            min_confidence=min_confidence,
            n_boot=n_boot,
            seed=seed,
        )
    else:
        available = BOX_METRICS if task.shape is Shape.BOXES else SPAN_METRICS
        metric = _choose_metric(agreement_metric, available, task)
        out = _regions(
            read.annotations,
            label_list,
            task=task,
            metric=metric,
            min_confidence=min_confidence,
            n_boot=n_boot,
            seed=seed,
        )
    label_count = sum(1 for r in out.consolidated if r["trainable"])
    agreement_value = out.metrics[metric]
    all_agree = out.metrics.get("all_agree_rate", math.nan)
    storage.write_jsonl(consolidated_uri, out.consolidated)
    storage.write_jsonl(review_uri, out.review)
    result = GateResult(
        label_count=label_count,
        labeled_items=len(out.consolidated),
        annotations=len(read.annotations),
        annotators=out.annotators,
        agreement=0.0 if not math.isfinite(agreement_value) else float(agreement_value),
        agreement_metric=metric,
        all_agree_rate=0.0 if not math.isfinite(all_agree) else float(all_agree),
        ties=out.ties,
        review_items=len(out.review),
        bad_records=len(bad),
    )
    quality = {
        **dataclasses.asdict(result),
        "agreement": _num(agreement_value),
        "all_agree_rate": _num(all_agree),
        "agreement_ci": [_num(out.agreement_ci[0]), _num(out.agreement_ci[1])],
        "min_confidence": min_confidence,
        "consolidation_method": consolidation_method,
        "task_type": task.value,
        "labels": label_list,
        "gold_items": sum(1 for r in out.consolidated if r["item"] in gold),
        "metrics": {k: _num(v) for k, v in out.metrics.items()},
        "per_class_agreement": {k: _num(v) for k, v in out.per_class.items()},
        "pairwise": out.pairwise,
        "annotator_table": out.annotator_table,
    }
    storage.write_text(metrics_uri, json.dumps(quality, indent=2, sort_keys=True))
    if state_uri and out.consolidated:
        key = hashlib.sha256(
            "\n".join(sorted(r["item"] for r in out.consolidated)).encode()
        ).hexdigest()[:16]
        storage.write_jsonl(state.path(state_uri, state.LABELS, f"{key}.jsonl"), out.consolidated)
    log.info("quality gate: %s", result)
    return result
