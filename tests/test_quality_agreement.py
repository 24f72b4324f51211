"""Agreement metrics: hand-computed cases, oracles (krippendorff, scikit-learn), properties."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score

from labelloop.quality import agreement as agr
from labelloop.quality.encode import vote_counts

# Two raters, four items: (a, a), (a, b), (b, b), (b, b); a = 0, b = 1.
ITEM = np.array([0, 0, 1, 1, 2, 2, 3, 3])
ANNOTATOR = np.array([0, 1, 0, 1, 0, 1, 0, 1])
LABEL = np.array([0, 0, 0, 1, 1, 1, 1, 1])
KW = {"n_items": 4, "n_labels": 2}


def test_hand_computed_two_raters() -> None:
    # Coincidences o_aa = 2, o_ab = o_ba = 1, o_bb = 4; n_a = 3, n_b = 5, n = 8.
    # alpha = 1 - D_o / D_e = 1 - 2 / ((64 - 9 - 25) / 7) = 16 / 30.
    assert agr.krippendorff_alpha(ITEM, LABEL, **KW) == pytest.approx(16 / 30)
    # Fleiss: P_bar = 3/4, P_e = (3/8)^2 + (5/8)^2 = 34/64.
    assert agr.fleiss_kappa(ITEM, LABEL, **KW) == pytest.approx((0.75 - 34 / 64) / (1 - 34 / 64))
    assert agr.percent_agreement(ITEM, LABEL, **KW) == pytest.approx(0.75)
    assert agr.all_agree_rate(ITEM, LABEL, **KW) == pytest.approx(0.75)


def test_per_item_and_per_class_hand_computed() -> None:
    counts = vote_counts(ITEM, LABEL, **KW)
    np.testing.assert_allclose(agr.per_item_agreement(counts), [1.0, 0.0, 1.0, 1.0])
    # Class a: agreeing pairs 2 (item 0, both orders) of 3 pair-ends; class b: 4 of 5.
    np.testing.assert_allclose(agr.per_class_agreement(counts), [2 / 3, 4 / 5])


def test_cohen_kappa_hand_computed_and_sklearn() -> None:
    pw = agr.pairwise_agreement(
        ITEM, ANNOTATOR, LABEL, n_items=4, n_annotators=2, n_labels=2, min_overlap=1
    )
    # p_o = 3/4, p_e = 1/2 * 1/4 + 1/2 * 3/4 = 1/2 -> kappa = 1/2.
    assert pw.cohen_kappa[0, 1] == pytest.approx(0.5)
    assert pw.cohen_kappa[0, 1] == pytest.approx(cohen_kappa_score(LABEL[0::2], LABEL[1::2]))
    assert pw.agreement[1, 0] == pytest.approx(0.75)
    assert pw.overlap[0, 1] == 4
    assert np.isnan(pw.cohen_kappa[0, 0])


def test_cohen_kappa_needs_min_overlap() -> None:
    pw = agr.pairwise_agreement(
        ITEM, ANNOTATOR, LABEL, n_items=4, n_annotators=2, n_labels=2, min_overlap=5
    )
    assert np.isnan(pw.cohen_kappa[0, 1])


def test_pairwise_matches_sklearn_on_random_overlap() -> None:
    rng = np.random.default_rng(3)
    n_items, n_ann, k = 60, 4, 3
    rows = [(i, a) for i in range(n_items) for a in range(n_ann) if rng.random() < 0.7]
    item = np.array([r[0] for r in rows])
    annotator = np.array([r[1] for r in rows])
    label = rng.integers(0, k, item.size)
    pw = agr.pairwise_agreement(
        item, annotator, label, n_items=n_items, n_annotators=n_ann, n_labels=k, min_overlap=2
    )
    table = {(i, a): lab for i, a, lab in zip(item, annotator, label, strict=True)}
    for a in range(n_ann):
        for b in range(a + 1, n_ann):
            shared = [i for i in range(n_items) if (i, a) in table and (i, b) in table]
            x = [table[i, a] for i in shared]
            y = [table[i, b] for i in shared]
            assert pw.overlap[a, b] == len(shared)
            assert pw.cohen_kappa[a, b] == pytest.approx(cohen_kappa_score(x, y))


def _reliability(
    item: np.ndarray, annotator: np.ndarray, label: np.ndarray, n_items: int, n_ann: int
):
    data = np.full((n_ann, n_items), np.nan)
    data[annotator, item] = label
    return data


def test_alpha_matches_krippendorff_package_with_missing_data() -> None:
    rng = np.random.default_rng(0)
    n_items, n_ann, k = 80, 6, 4
    truth = rng.integers(0, k, n_items)
    rows = [(i, a) for i in range(n_items) for a in range(n_ann) if rng.random() < 0.6]
    item = np.array([r[0] for r in rows])
    annotator = np.array([r[1] for r in rows])
    noisy = rng.random(item.size) < 0.3
    label = np.where(noisy, rng.integers(0, k, item.size), truth[item])
    ours = agr.krippendorff_alpha(item, label, n_items=n_items, n_labels=k)
    oracle = krippendorff.alpha(
        reliability_data=_reliability(item, annotator, label, n_items, n_ann),
        level_of_measurement="nominal",
    )
    assert ours == pytest.approx(oracle, abs=1e-10)


def test_undefined_metrics_are_nan() -> None:
    one_each = np.array([0, 1, 2])
    assert np.isnan(agr.krippendorff_alpha(one_each, np.zeros(3, int), n_items=3, n_labels=2))
    # A single class everywhere: agreement is perfect but chance-corrected metrics are undefined.
    item = np.array([0, 0, 1, 1])
    assert np.isnan(agr.krippendorff_alpha(item, np.zeros(4, int), n_items=2, n_labels=2))
    assert agr.percent_agreement(item, np.zeros(4, int), n_items=2, n_labels=2) == 1.0


def test_bootstrap_interval_brackets_estimate_and_is_reproducible() -> None:
    rng = np.random.default_rng(1)
    n_items, k = 300, 3
    truth = rng.integers(0, k, n_items)
    item = np.repeat(np.arange(n_items), 3)
    label = np.where(rng.random(item.size) < 0.7, truth[item], rng.integers(0, k, item.size))
    counts = vote_counts(item, label, n_items=n_items, n_labels=k)
    stats = agr.item_statistics(counts)
    point = agr.nominal_metrics(counts)["krippendorff_alpha"]
    low, high = agr.bootstrap_ci(stats, "krippendorff_alpha", n_labels=k, n_boot=300)
    assert low < point < high
    assert high - low < 0.2
    assert (low, high) == agr.bootstrap_ci(stats, "krippendorff_alpha", n_labels=k, n_boot=300)


def test_bootstrap_over_count_patterns_matches_the_item_bootstrap() -> None:
    """Drawing how many items fall on each distinct statistics row is the item bootstrap."""
    rng = np.random.default_rng(2)
    n_items, k = 400, 4
    truth = rng.integers(0, k, n_items)
    per_item = rng.integers(2, 5, n_items)  # 2-4 ratings: several count patterns
    item = np.repeat(np.arange(n_items), per_item)
    label = np.where(rng.random(item.size) < 0.6, truth[item], rng.integers(0, k, item.size))
    stats = agr.item_statistics(vote_counts(item, label, n_items=n_items, n_labels=k))
    rows, weight = agr.distinct_rows(stats, n_labels=k)
    assert weight.sum() == n_items
    assert rows.shape[0] < n_items
    np.testing.assert_allclose(weight @ rows, stats.sum(axis=0))
    grouped = agr.bootstrap_all(stats, agr.METRICS, n_labels=k, n_boot=4000, seed=1)
    for metric in agr.METRICS:
        per_item_draws = agr.bootstrap_replicates(stats, metric, n_labels=k, n_boot=4000)
        assert np.mean(grouped[metric]) == pytest.approx(np.mean(per_item_draws), abs=0.005)
        assert np.std(grouped[metric]) == pytest.approx(np.std(per_item_draws), rel=0.08)


# --- properties -------------------------------------------------------------------------------

ratings = st.integers(min_value=2, max_value=12).flatmap(
    lambda n_items: st.tuples(
        st.just(n_items),
        st.integers(min_value=2, max_value=4),
        st.lists(
            st.tuples(st.integers(0, n_items - 1), st.integers(0, 4), st.integers(0, 3)),
            min_size=4,
            max_size=60,
            unique_by=lambda r: (r[0], r[1]),
        ),
    )
)


def _arrays(rows):
    item = np.array([r[0] for r in rows])
    annotator = np.array([r[1] for r in rows])
    label = np.array([r[2] for r in rows])
    return item, annotator, label


def _all(item: np.ndarray, label: np.ndarray, n_items: int, k: int) -> dict[str, float]:
    return agr.nominal_metrics(vote_counts(item, label, n_items=n_items, n_labels=k))


@settings(max_examples=60, deadline=None)
@given(ratings)
def test_metric_bounds(data) -> None:
    n_items, k, rows = data
    item, _, label = _arrays(rows)
    label = label % k
    values = _all(item, label, n_items, k)
    for name in ("percent_agreement", "all_agree_rate"):
        assert np.isnan(values[name]) or 0.0 <= values[name] <= 1.0
    for name in ("krippendorff_alpha", "fleiss_kappa"):
        # Both are at most 1; alpha's floor is -1 for nominal data with two coders per unit.
        assert np.isnan(values[name]) or values[name] <= 1.0 + 1e-12


@settings(max_examples=60, deadline=None)
@given(ratings, st.randoms(use_true_random=False))
def test_invariant_to_relabeling_and_row_order(data, random) -> None:
    n_items, k, rows = data
    item, _, label = _arrays(rows)
    label = label % k
    before = _all(item, label, n_items, k)
    permutation = np.array(random.sample(range(k), k))
    order = np.array(random.sample(range(item.size), item.size))
    after = _all(item[order], permutation[label][order], n_items, k)
    for name, value in before.items():
        assert after[name] == pytest.approx(value, nan_ok=True, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 3), min_size=2, max_size=20),
    st.integers(min_value=2, max_value=5),
)
def test_perfect_agreement_gives_one(truth, raters) -> None:
    truth_arr = np.array(truth)
    if np.unique(truth_arr).size < 2:
        truth_arr[0] = (truth_arr[0] + 1) % 4
    item = np.repeat(np.arange(truth_arr.size), raters)
    label = truth_arr[item]
    values = _all(item, label, truth_arr.size, 4)
    for name in agr.METRICS:
        assert values[name] == pytest.approx(1.0)
