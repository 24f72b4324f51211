"""Agreement and consolidation for regions: boxes (object detection) and spans (entities).

A box is a 2-D interval `[x_min, y_min, x_max, y_max]` and a span a 1-D one `[start, end]`,
so both share one IoU, one Hungarian matching and one clustering routine. Matching is
per item (scipy's `linear_sum_assignment` on a small IoU matrix); the arithmetic inside an
item is vectorized.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclasses.dataclass(frozen=True)
class Regions:
    """Every annotator's regions on one item.

    Attributes:
        raters: (r,) annotator indices that answered the item (an empty answer counts).
        owner: (n,) annotator index of each region.
        coords: (n, 2d) region coordinates: the d minimums, then the d maximums.
        label: (n,) label index of each region.
    """

    raters: np.ndarray
    owner: np.ndarray
    coords: np.ndarray
    label: np.ndarray


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) intersection over union of n and m axis-aligned intervals/boxes, shape (., 2d)."""
    d = a.shape[1] // 2
    low = np.maximum(a[:, None, :d], b[None, :, :d])
    high = np.minimum(a[:, None, d:], b[None, :, d:])
    inter = np.prod(np.clip(high - low, 0.0, None), axis=2)
    size_a = np.prod(a[:, d:] - a[:, :d], axis=1)
    size_b = np.prod(b[:, d:] - b[:, :d], axis=1)
    union = size_a[:, None] + size_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match(
    a: np.ndarray, a_label: np.ndarray, b: np.ndarray, b_label: np.ndarray, *, same_label: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hungarian matching maximising total IoU; returns (rows, cols, iou) of pairs with IoU > 0.

    With `same_label`, regions of different labels never match.
    """
    if a.shape[0] == 0 or b.shape[0] == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    iou = iou_matrix(a, b)
    if same_label:
        iou = np.where(a_label[:, None] == b_label[None, :], iou, 0.0)
    rows, cols = linear_sum_assignment(iou, maximize=True)
    values = iou[rows, cols]
    keep = values > 0
    return rows[keep], cols[keep], values[keep]


#: Columns of `pairwise_region_stats`.
REGION_STATS = ("iou_sum", "matched", "tp2", "regions", "exact_tp2")


def pairwise_region_stats(regions: Sequence[Regions], *, min_iou: float = 0.5) -> np.ndarray:
    """Per-item sums over annotator pairs: matched IoU, matches, 2 x true positives, regions.

    A true positive is a same-label match with IoU >= `min_iou`; an exact true positive has
    identical coordinates and label. Pairwise F1 is `tp2 / regions`, mean IoU
    `iou_sum / matched`, both summed over items first (micro averages).

    Returns:
        (n_items, 5) in `REGION_STATS` order.
    """
    out = np.zeros((len(regions), len(REGION_STATS)))
    for i, reg in enumerate(regions):
        raters = reg.raters
        groups = [reg.owner == r for r in raters]
        for x in range(len(raters)):
            for y in range(x + 1, len(raters)):
                ga, gb = groups[x], groups[y]
                a, b = reg.coords[ga], reg.coords[gb]
                la, lb = reg.label[ga], reg.label[gb]
                rows, cols, iou = match(a, la, b, lb, same_label=True)
                exact = 0
                if rows.size:
                    same = np.all(a[rows] == b[cols], axis=1) & (la[rows] == lb[cols])
                    exact = int(same.sum())
                out[i] += (
                    iou.sum(),
                    iou.size,
                    2.0 * np.sum(iou >= min_iou),
                    a.shape[0] + b.shape[0],
                    2.0 * exact,
                )
    return out


@dataclasses.dataclass(frozen=True)
class Clusters:
    """Consolidated regions of one item.

    Attributes:
        coords: (c, 2d) consolidated coordinates of every cluster.
        label: (c,) winning label per cluster.
        support: (c,) weight share of the item's raters that drew a region in the cluster.
        label_share: (c,) weight share of the cluster's regions that carry the winning label.
        member: (n,) cluster index of each input region.
    """

    coords: np.ndarray
    label: np.ndarray
    support: np.ndarray
    label_share: np.ndarray
    member: np.ndarray

    @property
    def kept(self) -> np.ndarray:
        """Clusters most of the raters' weight agrees exist."""
        return self.support > 0.5

    @property
    def tied(self) -> np.ndarray:
        """Clusters exactly half the weight drew."""
        return np.isclose(self.support, 0.5)

    def confidence(self) -> float:
        """The least certain decision on the item: keep/drop each cluster, and its label."""
        if self.support.size == 0:
            return 1.0
        certainty = np.maximum(self.support, 1.0 - self.support)
        certainty = np.where(self.kept, certainty * self.label_share, certainty)
        return float(certainty.min())


def _weighted_vote(values: np.ndarray, weights: np.ndarray) -> tuple[int, float]:
    """Index of the heaviest distinct row in `values` (first on ties) and its weight share."""
    uniq, inverse = np.unique(values, axis=0, return_inverse=True)
    totals = np.bincount(inverse.ravel(), weights=weights, minlength=uniq.shape[0])
    best = int(np.argmax(totals))
    first = int(np.flatnonzero(inverse.ravel() == best)[0])
    return first, float(totals[best] / weights.sum())


def cluster_regions(
    reg: Regions,
    weights: np.ndarray,
    *,
    min_iou: float = 0.5,
    average: bool = True,
) -> Clusters:
    """Cluster one item's regions across annotators and consolidate each cluster.

    Annotators are visited from the most to the least reliable; each one's regions are matched
    (Hungarian, IoU >= `min_iou`, any label) to the clusters so far, unmatched regions start new
    clusters. Each cluster's coordinates are the reliability-weighted mean (`average`, boxes, as
    SageMaker Ground Truth does) or the weighted vote over exact boundaries (spans, whose
    offsets must stay integers); its label is the weighted vote of its regions' labels.

    Args:
        reg: The item's regions.
        weights: (n_annotators,) annotator reliability weights, positive.
        min_iou: IoU a region needs with a cluster to join it.
        average: Average coordinates (True) or vote on them (False).
    """
    n, width = reg.coords.shape
    member = np.full(n, -1, dtype=np.int64)
    centroid = np.zeros((0, width))
    sums = np.zeros((0, width))
    mass = np.zeros(0)
    order = reg.raters[np.argsort(-weights[reg.raters], kind="stable")]
    for rater in order:
        idx = np.flatnonzero(reg.owner == rater)
        if idx.size == 0:
            continue
        w = weights[rater]
        joined = np.zeros(idx.size, dtype=bool)
        if centroid.shape[0]:
            iou = iou_matrix(reg.coords[idx], centroid)
            rows, cols = linear_sum_assignment(iou, maximize=True)
            ok = iou[rows, cols] >= min_iou
            rows, cols = rows[ok], cols[ok]
            member[idx[rows]] = cols
            sums[cols] += w * reg.coords[idx[rows]]
            mass[cols] += w
            centroid[cols] = sums[cols] / mass[cols, None]
            joined[rows] = True
        new = idx[~joined]
        member[new] = centroid.shape[0] + np.arange(new.size)
        centroid = np.vstack([centroid, reg.coords[new]])
        sums = np.vstack([sums, w * reg.coords[new]])
        mass = np.concatenate([mass, np.full(new.size, w)])
    c = centroid.shape[0]
    total = weights[reg.raters].sum()
    labels = np.zeros(c, dtype=np.int64)
    share = np.ones(c)
    coords = centroid.copy()
    for k in range(c):
        idx = np.flatnonzero(member == k)
        w = weights[reg.owner[idx]]
        first, share[k] = _weighted_vote(reg.label[idx, None], w)
        labels[k] = reg.label[idx[first]]
        if not average:
            first, _ = _weighted_vote(reg.coords[idx], w)
            coords[k] = reg.coords[idx[first]]
    support = mass / total if total > 0 else np.zeros(c)
    return Clusters(coords, labels, support, share, member)


@dataclasses.dataclass(frozen=True)
class RegionConsolidation:
    """Consolidated regions of every item plus per-annotator reliability.

    Attributes:
        clusters: One `Clusters` per item.
        reliability: (n_annotators,) F1 of each annotator's regions against the consolidation.
        confusion: (n_annotators, K, K) label confusion over matched regions, rows = consolidated.
        regions: (n_annotators,) regions drawn.
    """

    clusters: list[Clusters]
    reliability: np.ndarray
    confusion: np.ndarray
    regions: np.ndarray


def consolidate_regions(
    regions: Sequence[Regions],
    *,
    n_annotators: int,
    n_labels: int,
    min_iou: float = 0.5,
    average: bool = True,
    rounds: int = 2,
    floor: float = 0.05,
) -> RegionConsolidation:
    """Consolidate every item; re-weight annotators by their F1 against the result and redo.

    Args:
        regions: Per-item regions.
        n_annotators: Annotator count.
        n_labels: Label count.
        min_iou: Clustering IoU and the F1 match threshold.
        average: Average coordinates (boxes) or vote on them (spans).
        rounds: Consolidation passes; the first uses equal weights.
        floor: Smallest weight, so a poor annotator still counts a little.
    """
    weights = np.ones(n_annotators)
    clusters: list[Clusters] = []
    tp = np.zeros(n_annotators)
    drawn = np.zeros(n_annotators)
    confusion = np.zeros((n_annotators, n_labels, n_labels))
    for _ in range(max(rounds, 1)):
        clusters = [cluster_regions(r, weights, min_iou=min_iou, average=average) for r in regions]
        tp[:] = 0.0
        drawn[:] = 0.0
        confusion[:] = 0.0
        kept_by_rater = np.zeros(n_annotators)
        for reg, cl in zip(regions, clusters, strict=True):
            np.add.at(drawn, reg.owner, 1.0)
            np.add.at(kept_by_rater, reg.raters, float(cl.kept.sum()))
            if not reg.owner.size:
                continue
            kept = cl.kept[cl.member]
            own = reg.owner[kept]
            truth = cl.label[cl.member[kept]]
            np.add.at(confusion, (own, truth, reg.label[kept]), 1.0)
            iou = np.diag(iou_matrix(reg.coords[kept], cl.coords[cl.member[kept]]))
            hit = (reg.label[kept] == truth) & (iou >= min_iou)
            np.add.at(tp, own[hit], 1.0)
        denominator = drawn + kept_by_rater
        reliability = np.divide(
            2.0 * tp, denominator, out=np.full(n_annotators, np.nan), where=denominator > 0
        )
        weights = np.maximum(np.nan_to_num(reliability, nan=1.0), floor)
    rows = confusion.sum(axis=2, keepdims=True)
    confusion = np.divide(confusion, rows, out=np.zeros_like(confusion), where=rows > 0)
    return RegionConsolidation(clusters, reliability, confusion, drawn.astype(np.int64))
