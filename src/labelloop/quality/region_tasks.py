"""Quality of region answers: boxes (object detection) and spans (entity extraction).

Agreement metrics are ratios of per-item sums from pairwise Hungarian matching (`regions`);
each is registered here with the families it applies to. Consolidation clusters regions by
IoU and weighs annotators by their estimated reliability.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from labelloop.quality import agreement as agr
from labelloop.quality.consolidation import AnnotatorStats, flag_annotators
from labelloop.quality.regions import (
    REGION_STATS,
    Regions,
    consolidate_regions,
    pairwise_region_stats,
)
from labelloop.quality.registry import get_metric, metrics_for, register_metric
from labelloop.quality.result import (
    EMPTY_PAIRWISE,
    FamilyOutcome,
    annotator_rows,
    num,
    review_row,
)
from labelloop.schemas import Annotation, Box, Shape, Span, TaskType

Ratio = tuple[np.ndarray, np.ndarray]


@dataclasses.dataclass(frozen=True)
class RegionStats:
    """Per-item pairwise matching sums (`regions.REGION_STATS` columns).

    Attributes:
        columns: Each statistic by name, (n_items,) arrays, regions matched at IoU >= 0.5.
        loose: The same at any same-label overlap (IoU > 0), for `span_f1_overlap`; None
            when not computed (boxes).
    """

    columns: dict[str, np.ndarray]
    loose: dict[str, np.ndarray] | None

    @classmethod
    def of(cls, regions: list[Regions], *, loose: bool) -> RegionStats:
        def cols(stats: np.ndarray) -> dict[str, np.ndarray]:
            return {name: stats[:, j] for j, name in enumerate(REGION_STATS)}

        strict = cols(pairwise_region_stats(regions, min_iou=0.5))
        # Any same-label overlap counts for span_f1_overlap (IoU > 0), hence the separate pass.
        return cls(strict, cols(pairwise_region_stats(regions, min_iou=1e-12)) if loose else None)

    def ratio(self, metric: str) -> Ratio:
        """Per-item numerators and denominators of a registered region metric."""
        fn: Any = get_metric(metric).compute
        out: Ratio = fn(self)
        return out

    def value(self, metric: str) -> float:
        numerator, denominator = self.ratio(metric)
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(numerator.sum() / denominator.sum())

    def all_agree_rate(self) -> float:
        """Share of items (with regions from 2+ annotators) where every region is matched."""
        tp2, regions = self.columns["tp2"], self.columns["regions"]
        paired = regions > 0
        return float(np.mean(tp2[paired] == regions[paired])) if paired.any() else math.nan


@register_metric("f1", families=("boxes",))
def f1(stats: RegionStats) -> Ratio:
    """Matched-region F1 between annotator pairs (IoU >= 0.5, same label)."""
    return stats.columns["tp2"], stats.columns["regions"]


@register_metric("span_f1", families=("spans",))
def span_f1(stats: RegionStats) -> Ratio:
    """Exact-match span F1 between annotator pairs (same start, end and label)."""
    return stats.columns["exact_tp2"], stats.columns["regions"]


@register_metric("mean_iou", families=("boxes", "spans"))
def mean_iou(stats: RegionStats) -> Ratio:
    """Mean IoU of matched region pairs."""
    return stats.columns["iou_sum"], stats.columns["matched"]


@register_metric("span_f1_overlap", families=("spans",))
def span_f1_overlap(stats: RegionStats) -> Ratio:
    """Span F1 where any same-label overlap counts as a match."""
    if stats.loose is None:
        raise ValueError("span_f1_overlap needs the loose matching pass")
    return stats.loose["tp2"], stats.loose["regions"]


@register_metric("span_f1_exact", families=("spans",))
def span_f1_exact(stats: RegionStats) -> Ratio:
    """The same as `span_f1` (exact matches), under an explicit name."""
    return span_f1(stats)


def assess_regions(
    annotations: list[Annotation],
    label_list: list[str],
    *,
    task: TaskType,
    metric: str,
    min_confidence: float,
    n_boot: int,
    seed: int,
) -> FamilyOutcome:
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
    family = "boxes" if boxes else "spans"
    stats = RegionStats.of(regions, loose=not boxes)
    metrics = {name: stats.value(name) for name in metrics_for(family)}
    metrics["all_agree_rate"] = stats.all_agree_rate()
    ci_num, ci_den = stats.ratio(metric)
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
                    "x_min": num(cl.coords[k, 0]), "y_min": num(cl.coords[k, 1]),
                    "x_max": num(cl.coords[k, 2]), "y_max": num(cl.coords[k, 3]),
                    "label": label_list[cl.label[k]], "confidence": num(cl.support[k]),
                }
                for k in kept
            ]  # fmt: skip
        else:
            parts = [
                {
                    "start": int(cl.coords[k, 0]), "end": int(cl.coords[k, 1]),
                    "label": label_list[cl.label[k]], "confidence": num(cl.support[k]),
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
            "confidence": num(confidence),
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
            review.append(review_row(item, reasons_i, votes, given, confidence, label=parts))
    with np.errstate(divide="ignore", invalid="ignore"):
        kept_share = per_class_hits / per_class_all
    return FamilyOutcome(
        consolidated=consolidated,
        review=review,
        metrics=metrics,
        agreement_metric=metric,
        agreement_ci=ci,
        agreement_items=int(np.sum(stats.columns["regions"] > 0)),
        # Per class: the share of that class's clusters a majority of annotators drew.
        per_class={label_list[j]: float(v) for j, v in enumerate(kept_share)},
        pairwise=dict(EMPTY_PAIRWISE),
        annotator_table=annotator_rows(annotators, a_stats, flagged, reasons, with_confusion=True),
        ties=ties,
        annotators=len(annotators),
    )
