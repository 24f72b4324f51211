"""Active-learning scores and selection strategies (arrays in, arrays out)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from labelloop.active_learning import strategies as al
from labelloop.errors import InputError


def test_scores_on_a_hand_worked_example() -> None:
    proba = np.array([[0.5, 0.3, 0.2], [1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(al.least_confidence(proba), [0.5, 0.0, 2 / 3])
    np.testing.assert_allclose(al.margin(proba), [1 - 0.2, 0.0, 1.0])
    h = -(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2)) / math.log(3)
    np.testing.assert_allclose(al.entropy(proba), [h, 0.0, 1.0])


def test_scores_of_an_empty_pool_are_empty() -> None:
    for name in al.SCORERS:
        assert al.uncertainty(np.zeros((0, 4)), strategy=name).shape == (0,)


@settings(max_examples=60, deadline=None)
@given(
    scores=arrays(np.float64, st.integers(1, 60), elements=st.sampled_from([0.0, 0.25, 0.5, 1.0])),
    k=st.integers(0, 70),
)
def test_top_k_matches_a_full_stable_sort(scores: np.ndarray, k: int) -> None:
    expected = np.argsort(-scores, kind="stable")[:k]
    np.testing.assert_array_equal(al.top_k(scores, k), expected)


def test_top_k_never_returns_excluded_rows() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    exclude = np.array([True, False, True, False])
    np.testing.assert_array_equal(al.top_k(scores, 3, exclude=exclude), [1, 3])


def test_random_sample_is_seeded_distinct_and_respects_exclusion() -> None:
    exclude = np.zeros(100, dtype=bool)
    exclude[:50] = True
    a = al.random_sample(100, 20, seed=7, exclude=exclude)
    b = al.random_sample(100, 20, seed=7, exclude=exclude)
    c = al.random_sample(100, 20, seed=8, exclude=exclude)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert len(set(a.tolist())) == 20
    assert (a >= 50).all()


def _three_clusters(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    cluster = np.repeat([0, 1, 2], [40, 5, 5])
    return centers[cluster] + rng.normal(scale=0.1, size=(50, 2)), cluster


def test_k_center_covers_every_cluster_even_small_ones() -> None:
    x, cluster = _three_clusters(np.random.default_rng(0))
    picks = al.k_center_greedy(x, 3, seed=0)
    assert sorted(cluster[picks].tolist()) == [0, 1, 2]


def test_k_center_starts_from_labeled_centers() -> None:
    x, cluster = _three_clusters(np.random.default_rng(1))
    labeled = cluster == 0
    picks = al.k_center_greedy(x, 2, seed=0, labeled=labeled)
    assert sorted(cluster[picks].tolist()) == [1, 2]
    assert not labeled[picks].any()


def test_cluster_margin_avoids_near_duplicates_that_margin_picks() -> None:
    rng = np.random.default_rng(0)
    n_dup, n_other = 30, 30
    features = np.vstack(
        [
            np.zeros((n_dup, 2)) + rng.normal(scale=1e-3, size=(n_dup, 2)),
            rng.uniform(1, 20, size=(n_other, 2)),
        ]
    )
    # The near-duplicates are the most uncertain items; the others are a bit less so.
    proba = np.vstack([np.tile([0.5, 0.5], (n_dup, 1)), np.tile([0.6, 0.4], (n_other, 1))])
    by_margin = al.top_k(al.margin(proba), 10)
    assert (by_margin < n_dup).all()
    picks = al.cluster_margin(proba, features, 10, seed=0, candidate_factor=6)
    assert len(set(picks.tolist())) == 10
    assert (picks < n_dup).sum() <= 2


def test_round_robin_balances_classes() -> None:
    rng = np.random.default_rng(3)
    scores = rng.uniform(size=200)
    predicted = rng.choice(4, size=200, p=[0.7, 0.1, 0.1, 0.1])
    picks = al.class_balanced(scores, predicted, 20)
    counts = np.bincount(predicted[picks], minlength=4)
    assert counts.tolist() == [5, 5, 5, 5]
    # Within a class the best scores go first.
    for c in range(4):
        mine = np.sort(scores[predicted == c])[::-1][:5]
        np.testing.assert_allclose(np.sort(scores[picks][predicted[picks] == c])[::-1], mine)


def test_select_uses_the_named_score_and_excludes() -> None:
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(5), size=100)
    exclude = np.zeros(100, dtype=bool)
    exclude[al.top_k(al.entropy(proba), 5)] = True
    out = al.select("entropy", 10, seed=0, proba=proba, exclude=exclude)
    expected = al.top_k(al.entropy(proba), 10, exclude=exclude)
    np.testing.assert_array_equal(out.indices, expected)
    assert out.strategy == "entropy"
    assert not out.cold_start
    assert not exclude[out.indices].any()


@pytest.mark.parametrize("strategy", list(al.STRATEGIES))
def test_every_strategy_is_deterministic_per_seed(strategy: str) -> None:
    rng = np.random.default_rng(5)
    proba = rng.dirichlet(np.ones(4), size=120)
    features = rng.normal(size=(120, 6))
    exclude = rng.uniform(size=120) < 0.2
    runs = [
        al.select(strategy, 15, seed=s, proba=proba, features=features, exclude=exclude).indices
        for s in (1, 1)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert len(set(runs[0].tolist())) == 15
    assert not exclude[runs[0]].any()


def test_cold_start_is_diversity_with_features_and_random_without() -> None:
    x, cluster = _three_clusters(np.random.default_rng(2))
    diverse = al.select("cluster_margin", 3, seed=0, features=x)
    assert diverse.cold_start
    assert diverse.strategy == "k_center"
    assert sorted(cluster[diverse.indices].tolist()) == [0, 1, 2]
    rand = al.select("margin", 3, seed=0, n=50)
    assert rand.cold_start
    assert rand.strategy == "random"
    np.testing.assert_array_equal(rand.indices, al.random_sample(50, 3, seed=0))


def test_select_rejects_unknown_strategy_and_missing_features() -> None:
    with pytest.raises(InputError, match="unknown strategy"):
        al.select("bald", 3, seed=0, n=10)
    with pytest.raises(InputError, match="needs features"):
        al.select("k_center", 3, seed=0, proba=np.full((10, 2), 0.5))
