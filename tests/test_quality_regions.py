"""Boxes and spans: IoU, Hungarian matching, pairwise agreement, reliability-weighted clusters."""

from __future__ import annotations

import numpy as np
import pytest

from labelloop.quality.regions import (
    REGION_STATS,
    Regions,
    cluster_regions,
    consolidate_regions,
    iou_matrix,
    match,
    pairwise_region_stats,
)


def boxes(*rows: tuple[float, float, float, float]) -> np.ndarray:
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def test_iou_hand_computed() -> None:
    a = boxes((0.0, 0.0, 0.5, 0.5))
    b = boxes((0.25, 0.25, 0.75, 0.75), (0.6, 0.6, 0.9, 0.9), (0.0, 0.0, 0.5, 0.5))
    # Overlap 0.25 x 0.25 = 1/16; union 1/4 + 1/4 - 1/16 = 7/16.
    np.testing.assert_allclose(iou_matrix(a, b), [[1 / 7, 0.0, 1.0]])
    spans = np.array([[0.0, 10.0]]), np.array([[5.0, 15.0]])
    np.testing.assert_allclose(iou_matrix(*spans), [[5 / 15]])


def test_hungarian_match_prefers_total_iou_and_label() -> None:
    a = boxes((0.0, 0.0, 0.4, 0.4), (0.5, 0.5, 0.9, 0.9))
    b = boxes((0.52, 0.5, 0.9, 0.9), (0.0, 0.02, 0.4, 0.4))
    rows, cols, iou = match(a, np.array([0, 1]), b, np.array([1, 0]), same_label=True)
    assert dict(zip(rows.tolist(), cols.tolist(), strict=True)) == {0: 1, 1: 0}
    assert np.all(iou > 0.9)
    rows, _, _ = match(a, np.array([0, 1]), b, np.array([0, 1]), same_label=True)
    assert rows.size == 0  # labels swapped: nothing matches


def _regions(raters, owner, coords, label, width: int = 4) -> Regions:
    return Regions(
        raters=np.array(raters),
        owner=np.array(owner, dtype=np.int64),
        coords=np.array(coords, dtype=np.float64).reshape(len(owner), width),
        label=np.array(label, dtype=np.int64),
    )


def test_pairwise_box_stats_hand_computed() -> None:
    # Annotator 0 draws two boxes, annotator 1 draws one matching the first exactly.
    reg = _regions(
        [0, 1], [0, 0, 1], [(0, 0, 0.5, 0.5), (0.6, 0.6, 0.9, 0.9), (0, 0, 0.5, 0.5)], [0, 0, 0]
    )
    stats = dict(zip(REGION_STATS, pairwise_region_stats([reg])[0], strict=True))
    assert stats == {"iou_sum": 1.0, "matched": 1.0, "tp2": 2.0, "regions": 3.0, "exact_tp2": 2.0}
    # F1 = 2 TP / (|A| + |B|) = 2/3.
    assert stats["tp2"] / stats["regions"] == pytest.approx(2 / 3)


def test_span_exact_versus_overlap() -> None:
    reg = _regions([0, 1], [0, 1], [(0, 10), (2, 10)], [1, 1], width=2)
    strict = pairwise_region_stats([reg], min_iou=0.5)[0]
    loose = pairwise_region_stats([reg], min_iou=1e-12)[0]
    assert strict[4] == 0.0  # not an exact match
    assert strict[2] == 2.0  # IoU 0.8 >= 0.5
    assert loose[2] == 2.0


def test_cluster_boxes_weighted_average_and_support() -> None:
    reg = _regions(
        [0, 1, 2],
        [0, 1, 2, 2],
        [(0.1, 0.1, 0.5, 0.5), (0.1, 0.1, 0.6, 0.6), (0.1, 0.1, 0.5, 0.5), (0.7, 0.7, 0.9, 0.9)],
        [0, 0, 1, 0],
    )
    weights = np.array([1.0, 3.0, 1.0])
    cl = cluster_regions(reg, weights)
    assert cl.coords.shape == (2, 4)
    first = cl.member[0]
    # Weighted mean of x_max: (1 * 0.5 + 3 * 0.6 + 1 * 0.5) / 5.
    assert cl.coords[first, 2] == pytest.approx(2.8 / 5)
    assert cl.support[first] == pytest.approx(1.0)
    assert cl.label[first] == 0
    assert cl.label_share[first] == pytest.approx(4 / 5)
    lonely = cl.member[3]
    assert cl.support[lonely] == pytest.approx(1 / 5)
    assert cl.kept.tolist() == [i == first for i in range(2)]
    assert cl.confidence() == pytest.approx(min(4 / 5, 4 / 5))


def test_cluster_spans_vote_boundaries() -> None:
    reg = _regions([0, 1, 2], [0, 1, 2], [(3, 9), (3, 9), (3, 8)], [0, 0, 0], width=2)
    cl = cluster_regions(reg, np.ones(3), average=False)
    np.testing.assert_array_equal(cl.coords, [[3, 9]])
    assert cl.support[0] == pytest.approx(1.0)


def test_consolidation_downweights_unreliable_annotator() -> None:
    rng = np.random.default_rng(0)
    regions = []
    for _ in range(30):
        x, y = rng.uniform(0, 0.5, 2)
        good = (x, y, x + 0.3, y + 0.3)
        noisy = (x + 0.2, y + 0.2, x + 0.45, y + 0.45)  # annotator 2 is far off
        regions.append(_regions([0, 1, 2], [0, 1, 2], [good, good, noisy], [0, 0, 0]))
    result = consolidate_regions(regions, n_annotators=3, n_labels=1)
    assert result.reliability[0] == pytest.approx(1.0)
    assert result.reliability[2] < 0.2
    assert all(cl.kept.sum() == 1 for cl in result.clusters)
    np.testing.assert_array_equal(result.regions, [30, 30, 30])
    np.testing.assert_allclose(result.confusion[0], [[1.0]])


def test_empty_answers_count_against_a_box() -> None:
    # Three raters; only one draws a box: the box is not kept, the item is confident-ish.
    reg = _regions([0, 1, 2], [0], [(0.1, 0.1, 0.2, 0.2)], [0])
    cl = cluster_regions(reg, np.ones(3))
    assert not cl.kept.any()
    assert cl.confidence() == pytest.approx(2 / 3)
    none = cluster_regions(_regions([0, 1], [], np.zeros((0, 4)), []), np.ones(2))
    assert none.confidence() == 1.0
