"""Consolidation: majority vote ties, Dawid-Skene against crowd-kit, gold, annotator stats."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from crowdkit.aggregation import DawidSkene as CrowdKitDS
from hypothesis import given, settings
from hypothesis import strategies as st

from labelloop.quality.consolidation import (
    DawidSkene,
    MajorityVote,
    annotator_stats,
    consolidate_multilabel,
    flag_annotators,
    flagged_decisive,
)

pytestmark = pytest.mark.filterwarnings("ignore::Warning:crowdkit.*")


def synthetic(
    n_items: int = 300, n_annotators: int = 25, k: int = 3, per_item: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n_items)
    skill = rng.uniform(0.3, 0.95, n_annotators)
    annotator = np.concatenate(
        [rng.choice(n_annotators, per_item, replace=False) for _ in range(n_items)]
    )
    item = np.repeat(np.arange(n_items), per_item)
    correct = rng.random(item.size) < skill[annotator]
    label = np.where(correct, truth[item], (truth[item] + rng.integers(1, k, item.size)) % k)
    return item, annotator, label, truth, skill


def test_majority_vote_ties_go_to_review_not_lowest_label() -> None:
    item = np.array([0, 0, 1, 1, 1])
    label = np.array([1, 0, 2, 2, 0])
    mv = MajorityVote().fit(item, np.array([0, 1, 0, 1, 2]), label, n_items=3, n_labels=3)
    np.testing.assert_array_equal(mv.labels_, [-1, 2, -1])  # item 2 has no annotations
    np.testing.assert_array_equal(mv.ties_, [True, False, False])
    np.testing.assert_allclose(mv.confidence_, [0.5, 2 / 3, 0.0])
    np.testing.assert_allclose(mv.probas_[1], [1 / 3, 0, 2 / 3])


@pytest.mark.parametrize("with_gold", [False, True])
def test_dawid_skene_posteriors_match_crowdkit(with_gold: bool) -> None:
    item, annotator, label, truth, _ = synthetic()
    gold_item = np.arange(0, 300, 10) if with_gold else None
    gold_label = truth[gold_item] if with_gold else None
    ours = DawidSkene(n_iter=15, tol=-np.inf, smoothing=0.0).fit(
        item, annotator, label, n_items=300, n_labels=3, n_annotators=25,
        gold_item=gold_item, gold_label=gold_label,
    )  # fmt: skip
    frame = pd.DataFrame({"task": item, "worker": annotator, "label": label})
    golden = pd.Series(gold_label, index=gold_item) if with_gold else None
    theirs = CrowdKitDS(n_iter=15, tol=-np.inf).fit(frame, golden)
    expected = theirs.probas_.sort_index()[[0, 1, 2]].to_numpy()
    np.testing.assert_allclose(ours.probas_, expected, atol=1e-6)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_.sort_index().to_numpy())
    errors = theirs.errors_  # (worker, answer) x true
    for w in (0, 7, 24):
        block = errors.loc[w].reindex([0, 1, 2]).fillna(0.0)[[0, 1, 2]].to_numpy()
        np.testing.assert_allclose(ours.errors_[w], block.T, atol=1e-6)


def test_dawid_skene_beats_majority_vote_and_recovers_skill() -> None:
    item, annotator, label, truth, skill = synthetic(n_items=600, seed=4)
    kw = {"n_items": 600, "n_labels": 3, "n_annotators": 25}
    ds = DawidSkene().fit(item, annotator, label, **kw)
    mv = MajorityVote().fit(item, annotator, label, **kw)
    assert np.mean(ds.labels_ == truth) > np.mean(mv.labels_ == truth)
    diag = np.einsum("akk->ak", ds.errors_) @ ds.priors_
    assert np.corrcoef(diag, skill)[0, 1] > 0.9
    np.testing.assert_allclose(ds.probas_.sum(axis=1), 1.0)
    np.testing.assert_allclose(ds.errors_.sum(axis=2), 1.0)
    assert ds.n_iter_ < 100  # converged under the default tolerance
    assert all(b >= a - 1e-9 for a, b in zip(ds.loss_history_, ds.loss_history_[1:], strict=False))


def test_gold_items_are_clamped() -> None:
    # Three annotators all say 0 on item 0, but gold says 1.
    item = np.array([0, 0, 0, 1, 1, 1])
    annotator = np.array([0, 1, 2, 0, 1, 2])
    label = np.array([0, 0, 0, 1, 1, 1])
    ds = DawidSkene().fit(
        item, annotator, label, n_items=2, n_labels=2, n_annotators=3,
        gold_item=np.array([0]), gold_label=np.array([1]),
    )  # fmt: skip
    assert ds.labels_[0] == 1
    assert ds.probas_[0, 1] == 1.0


def test_smoothing_keeps_confusions_off_zero() -> None:
    item, annotator, label, _, _ = synthetic(n_items=50, seed=2)
    kw = {"n_items": 50, "n_labels": 3, "n_annotators": 25}
    raw = DawidSkene(smoothing=0.0).fit(item, annotator, label, **kw)
    smooth = DawidSkene(smoothing=1.0).fit(item, annotator, label, **kw)
    assert raw.errors_.min() < 1e-6
    assert smooth.errors_.min() > 1e-3


def test_long_items_do_not_underflow() -> None:
    # 400 annotators on one item: summed log-likelihoods fall far below exp's range, which the
    # shifted fallback of the E-step must handle.
    rng = np.random.default_rng(0)
    n_ann = 400
    item = np.concatenate([np.zeros(n_ann, int), np.repeat(np.arange(1, 201), 3)])
    annotator = np.concatenate([np.arange(n_ann), rng.integers(0, n_ann, 600)])
    label = np.concatenate([np.ones(n_ann, int), rng.integers(0, 4, 600)])
    ds = DawidSkene(smoothing=0.0).fit(
        item, annotator, label, n_items=201, n_labels=4, n_annotators=n_ann
    )
    assert np.all(np.isfinite(ds.probas_))
    np.testing.assert_allclose(ds.probas_.sum(axis=1), 1.0)
    assert ds.labels_[0] == 1
    assert np.isfinite(ds.loss_history_[-1])


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.randoms(use_true_random=False))
def test_dawid_skene_invariant_to_row_order_and_relabeling(seed, random) -> None:
    item, annotator, label, _, _ = synthetic(n_items=40, n_annotators=8, per_item=3, seed=seed)
    kw = {"n_items": 40, "n_labels": 3, "n_annotators": 8}
    base = DawidSkene(n_iter=20, tol=-np.inf).fit(item, annotator, label, **kw)
    order = np.array(random.sample(range(item.size), item.size))
    perm = np.array(random.sample(range(3), 3))
    moved = DawidSkene(n_iter=20, tol=-np.inf).fit(
        item[order], annotator[order], perm[label][order], **kw
    )
    np.testing.assert_allclose(moved.probas_[:, perm], base.probas_, atol=1e-9)


def test_annotator_stats_and_flags() -> None:
    item = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    annotator = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2])
    label = np.array([0, 0, 1, 1, 1, 0, 0, 0, 1])  # annotator 2 always disagrees
    mv = MajorityVote().fit(item, annotator, label, n_items=3, n_labels=2)
    stats = annotator_stats(
        item, annotator, label, mv.probas_, n_annotators=3,
        gold_item=np.array([0, 1]), gold_label=np.array([0, 1]),
    )  # fmt: skip
    np.testing.assert_allclose(stats.accuracy, [2 / 3, 2 / 3, 1 / 3])
    np.testing.assert_array_equal(stats.gold_items, [2, 2, 2])
    np.testing.assert_allclose(stats.gold_accuracy, [1.0, 1.0, 0.0])
    np.testing.assert_allclose(stats.confusion.sum(axis=2), 1.0)
    flagged, reasons = flag_annotators(stats, n_labels=2, min_gold=2)
    np.testing.assert_array_equal(flagged, [False, False, True])
    assert reasons[2].startswith("gold accuracy 0.000")
    decisive = flagged_decisive(item, annotator, label, mv.labels_, flagged, n_items=3, n_labels=2)
    assert not decisive.any()  # annotator 2 never sided with the winner


def test_flagged_annotator_decides_a_close_item() -> None:
    item = np.array([0, 0, 0])
    annotator = np.array([0, 1, 2])
    label = np.array([1, 1, 0])
    flagged = np.array([True, False, False])
    decisive = flagged_decisive(
        item, annotator, label, np.array([1]), flagged, n_items=1, n_labels=2
    )
    assert decisive[0]


@pytest.mark.parametrize("method", ["mv", "ds"])
def test_multilabel_per_label_binary(method: str) -> None:
    item = np.array([0, 0, 0, 1, 1, 1])
    annotator = np.array([0, 1, 2, 0, 1, 2])
    chosen = np.array(
        [[1, 0, 1], [1, 0, 0], [1, 1, 1], [0, 1, 0], [0, 1, 0], [1, 1, 0]], dtype=bool
    )
    result = consolidate_multilabel(
        item, annotator, chosen, n_items=2, n_annotators=3, method=method
    )
    np.testing.assert_array_equal(result.decided, [[True, False, True], [False, True, False]])
    assert result.probas.shape == (2, 3)
    assert np.all((result.confidence > 0.5) & (result.confidence <= 1.0))
    assert not result.ties.any()


def test_dawid_skene_rejects_out_of_range_indices() -> None:
    with pytest.raises(ValueError, match="label indices"):
        DawidSkene().fit(
            np.array([0, 0]), np.array([0, 1]), np.array([0, 3]),
            n_items=1, n_labels=2, n_annotators=2,
        )  # fmt: skip
    with pytest.raises(ValueError, match="smoothing"):
        DawidSkene(smoothing=-1.0)


def test_unannotated_items_get_the_prior_and_no_label() -> None:
    ds = DawidSkene().fit(
        np.array([0, 0, 0]), np.array([0, 1, 2]), np.array([1, 1, 1]),
        n_items=2, n_labels=2, n_annotators=3,
    )  # fmt: skip
    assert ds.labels_.tolist() == [1, -1]
    # The item's posterior is the class prior of the last E-step: all mass seen on class 1.
    assert ds.probas_[1].sum() == pytest.approx(1.0)
    assert ds.probas_[1, 1] > 0.9
    assert ds.confidence_[1] == 0.0
