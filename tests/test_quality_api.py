"""The crowd-kit style table API: pandas and Arrow in, the same kind out, crowd-kit's answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from crowdkit.aggregation import DawidSkene as CrowdKitDS
from crowdkit.aggregation import MajorityVote as CrowdKitMV

from labelloop.quality import DawidSkene, MajorityVote

pytestmark = pytest.mark.filterwarnings("ignore::Warning:crowdkit.*")


def _crowd(seed: int = 0, n_items: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n_items)
    rows = []
    for i in range(n_items):
        for w in rng.choice(8, size=3, replace=False):
            right = rng.random() < 0.5 + 0.05 * w
            label = truth[i] if right else (truth[i] + 1 + rng.integers(0, 2)) % 3
            rows.append((f"t{i:03d}", f"w{w}", ["bird", "cat", "dog"][label]))
    return pd.DataFrame(rows, columns=["task", "worker", "label"])


def test_dawid_skene_on_crowdkit_columns_matches_crowdkit() -> None:
    df = _crowd()
    ours = DawidSkene(n_iter=15, tol=-np.inf, smoothing=0.0).fit(df)
    theirs = CrowdKitDS(n_iter=15, tol=-np.inf).fit(df)
    proba = ours.probas_.sort_index()
    expected = theirs.probas_.sort_index()[proba.columns]
    np.testing.assert_allclose(proba.to_numpy(), expected.to_numpy(), atol=1e-6)
    assert ours.labels_.sort_index().tolist() == theirs.labels_.sort_index().tolist()
    assert ours.fit_predict(df).index.name == "item"
    assert set(ours.skills_.columns) == {"skill", "annotations"}
    assert ours.errors_.loc[("w0", "cat", "cat")] > 0


def test_majority_vote_ties_are_missing_not_the_last_class() -> None:
    df = pd.DataFrame(
        {"item": ["a", "a", "b", "b", "b"], "annotator": ["x", "y", "x", "y", "z"],
         "label": ["cat", "dog", "dog", "dog", "cat"]}
    )  # fmt: skip
    labels = MajorityVote().fit_predict(df)
    assert pd.isna(labels["a"])
    assert labels["b"] == "dog"
    expected = CrowdKitMV().fit_predict(df.rename(columns={"item": "task", "annotator": "worker"}))
    assert labels["b"] == expected["b"]


def test_arrow_in_arrow_out_and_bad_rows_are_listed() -> None:
    table = pa.table(
        {"item": ["a", "a", "b", None, "c"], "annotator": ["x", "y", "x", "y", "x"],
         "label": ["cat", "cat", "NA", "dog", "dog"]}
    )  # fmt: skip
    model = DawidSkene()
    out = model.fit_predict_proba(table)
    assert isinstance(out, pa.Table)
    assert out.column_names == ["item", "cat", "dog"]
    assert out.column("item").to_pylist() == ["a", "c"]
    assert sorted((b.line, b.field) for b in model.bad_records_) == [(3, "label"), (4, "item")]
    assert isinstance(model.labels_, pa.Table)
