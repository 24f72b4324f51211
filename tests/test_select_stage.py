"""Stage 2 step: cold start, local-model selection, predictions input, exclusions, summary."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from labelloop import state
from labelloop.active_learning import strategies as al
from labelloop.active_learning.predictions import write_predictions
from labelloop.errors import InputError
from labelloop.schemas import TaskType
from labelloop.stages.generate_import_file import generate_import_file, read_import_file
from labelloop.stages.select_for_labeling import select_for_labeling

DIGITS = ",".join(str(d) for d in range(10))
SUMMARY_KEYS = {
    "strategy",
    "cold_start",
    "pool",
    "selected",
    "bad_records",
    "items",
    "score_histogram",
    "predicted_class_mix",
}


@pytest.fixture
def pool(digits_sample, tmp_path: Path) -> tuple[str, str]:
    """The import file of the 400 sample digits and an empty state folder."""
    state_uri = str(tmp_path / "state")
    import_uri = str(tmp_path / "import.jsonl")
    generate_import_file(
        source_uri=digits_sample.source_uri,
        task_type="image_classification",
        state_uri=state_uri,
        output_uri=import_uri,
        rejects_uri=str(tmp_path / "rejects.jsonl"),
    )
    return import_uri, state_uri


def _run(tmp_path: Path, import_uri: str, state_uri: str, strategy: str, **kw) -> tuple:
    out, summary = tmp_path / f"{strategy}.jsonl", tmp_path / f"{strategy}.json"
    result = select_for_labeling(
        import_uri=import_uri,
        state_uri=state_uri,
        task_type="image_classification",
        labels=DIGITS,
        strategy=strategy,
        k=kw.pop("k", 20),
        seed=kw.pop("seed", 0),
        output_uri=str(out),
        summary_uri=str(summary),
        **kw,
    )
    records = [json.loads(x) for x in out.read_text().splitlines()]
    return result, records, json.loads(summary.read_text())


def _train_model(digits_sample, state_uri: str, n: int = 60) -> None:
    """A real LocalModel on the first `n` digits, saved where stage 2 looks for it."""
    from sklearn.linear_model import LogisticRegression

    from labelloop.schemas import Item
    from labelloop.training.features import featurize
    from labelloop.training.model import LocalModel

    with open(digits_sample.truth_uri, newline="") as fh:
        truth = list(csv.DictReader(fh))
    key = next(k for k in truth[0] if k != "label")
    rows = truth[:n]
    items = [Item(id=r[key], uri=r[key]) for r in rows]
    x = featurize(items, TaskType.IMAGE_CLASSIFICATION)
    est = LogisticRegression(max_iter=500).fit(x, [r["label"] for r in rows])
    LocalModel(TaskType.IMAGE_CLASSIFICATION, DIGITS.split(","), est).save(
        state.path(state_uri, state.MODELS_LATEST)
    )


def test_cold_start_is_a_seeded_random_sample_with_the_contract_summary(pool, tmp_path) -> None:
    import_uri, state_uri = pool
    result, records, summary = _run(tmp_path, import_uri, state_uri, "margin")
    assert result.cold_start
    assert result.strategy == "random"
    assert len(records) == result.selected == 20
    assert set(summary) >= SUMMARY_KEYS
    assert summary["pool"] == 400
    assert summary["selected"] == 20
    assert sum(summary["score_histogram"]["counts"]) == 20
    items, _ = read_import_file(import_uri)
    expected = [items[i].id for i in al.random_sample(400, 20, seed=0)]
    assert [r["imageGcsUri"] for r in records] == expected
    again = _run(tmp_path, import_uri, state_uri, "margin")[1]
    assert again == records


def test_k_center_cold_start_is_diversity_sampling(pool, tmp_path) -> None:
    import_uri, state_uri = pool
    result, records, summary = _run(tmp_path, import_uri, state_uri, "k_center", k=10)
    assert result.cold_start
    assert summary["strategy"] == "k_center"
    assert len({r["imageGcsUri"] for r in records}) == 10


def test_local_model_margin_picks_the_smallest_margins_and_skips_labeled(
    digits_sample, pool, tmp_path
) -> None:
    import_uri, state_uri = pool
    _train_model(digits_sample, state_uri)
    from labelloop.training.model import LocalModel

    items, _ = read_import_file(import_uri)
    proba = LocalModel.load(state.path(state_uri, state.MODELS_LATEST)).predict_proba(items)
    best = al.top_k(al.margin(proba), 30)
    # The 10 most uncertain items were labeled in an earlier round: never selected again.
    labeled = [items[i].id for i in best[:10]]
    Path(state.path(state_uri, state.LABELS)).mkdir(parents=True)
    Path(state.path(state_uri, state.LABELS, "job-1.jsonl")).write_text(
        "".join(json.dumps({"item": i, "label": "0"}) + "\n" for i in labeled)
    )
    result, records, summary = _run(tmp_path, import_uri, state_uri, "margin")
    assert not result.cold_start
    assert result.strategy == "margin"
    assert [r["imageGcsUri"] for r in records] == [items[i].id for i in best[10:30]]
    assert summary["excluded"] == 10
    assert summary["pool"] == 390
    np.testing.assert_allclose(
        [x["score"] for x in summary["items"]], al.margin(proba)[best[10:30]]
    )
    assert sum(summary["predicted_class_mix"].values()) == 20
    assert summary["items"][0]["predicted"] == str(proba[best[10]].argmax())


@pytest.mark.parametrize("strategy", ["cluster_margin", "k_center", "entropy"])
def test_local_model_every_strategy_selects_k_distinct_items(
    digits_sample, pool, tmp_path, strategy
) -> None:
    import_uri, state_uri = pool
    _train_model(digits_sample, state_uri)
    result, records, summary = _run(tmp_path, import_uri, state_uri, strategy, k=15)
    assert result.strategy == strategy
    assert not result.cold_start
    assert len({r["imageGcsUri"] for r in records}) == 15
    assert summary["strategy"] == strategy


def test_class_balance_spreads_over_predicted_digits(digits_sample, pool, tmp_path) -> None:
    import_uri, state_uri = pool
    _train_model(digits_sample, state_uri)
    _, _, summary = _run(tmp_path, import_uri, state_uri, "margin", k=20, class_balance=True)
    counts = [c for c in summary["predicted_class_mix"].values() if c]
    assert max(counts) - min(counts) <= 1 or len(counts) < 10


def test_predictions_uri_replaces_the_local_model(pool, tmp_path) -> None:
    import_uri, state_uri = pool
    items, _ = read_import_file(import_uri)
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(10), size=len(items))
    folder = tmp_path / "vertex-out"
    folder.mkdir()
    write_predictions(
        str(folder / "prediction.results-00000-of-00001"),
        [i.id for i in items],
        DIGITS.split(","),
        proba,
    )
    result, records, summary = _run(
        tmp_path, import_uri, state_uri, "entropy", k=12, predictions_uri=str(folder)
    )
    expected = al.top_k(al.entropy(proba), 12)
    assert [r["imageGcsUri"] for r in records] == [items[i].id for i in expected]
    assert summary["source"] == str(folder)
    assert not result.cold_start
    assert (
        records[0]["dataItemResourceLabels"]
        == items[expected[0]].to_import_record(TaskType.IMAGE_CLASSIFICATION)[
            "dataItemResourceLabels"
        ]
    )


def test_unknown_strategy_is_an_input_error(pool, tmp_path) -> None:
    import_uri, state_uri = pool
    with pytest.raises(InputError, match="unknown strategy"):
        _run(tmp_path, import_uri, state_uri, "bald")


_OPENED: list[str] = []


def _audit(event: str, args: tuple) -> None:
    if event == "open" and args and isinstance(args[0], str | bytes):
        _OPENED.append(str(args[0]))


def test_predicted_paths_outside_the_source_are_refused_and_never_read(
    pool, digits_sample, tmp_path
) -> None:
    import sys

    import_uri, state_uri = pool
    items, _ = read_import_file(import_uri)
    canary = tmp_path / "outside" / "secret.png"
    canary.parent.mkdir()
    canary.write_bytes(b"not yours")
    escape = f"{digits_sample.source_uri}/../outside/secret.png"
    outsiders = ["/etc/passwd", str(canary), escape]
    ids = [i.id for i in items[:30]] + outsiders
    proba = np.full((len(ids), 10), 0.01)
    proba[:30, 0] = 0.91  # confident on the pool ...
    proba[30:] = 0.1  # ... and most unsure of the paths outside it: entropy ranks them first
    write_predictions(str(tmp_path / "p.jsonl"), ids, DIGITS.split(","), proba)
    sys.addaudithook(_audit)
    _OPENED.clear()
    _result, records, summary = _run(
        tmp_path,
        import_uri,
        state_uri,
        "entropy",
        k=5,
        predictions_uri=str(tmp_path / "p.jsonl"),
        source_uri=digits_sample.source_uri,
        rejects_uri=str(tmp_path / "selection-rejects.jsonl"),
    )
    opened = list(_OPENED)
    _OPENED.clear()
    chosen = [r["imageGcsUri"] for r in records]
    assert len(chosen) == 5
    assert not set(chosen) & set(outsiders)
    assert all(c in {i.id for i in items} for c in chosen)
    # Refused, counted with the file they came from, and never opened.
    assert summary["bad_records"] == 3
    refused = [b for b in summary["bad"] if "outside the source" in b["reason"]]
    assert sorted(b["reason"].split(":")[0] for b in refused) == sorted(outsiders)
    assert {b["source"] for b in refused} == {str(tmp_path / "p.jsonl")}
    # Every bad record also lands in the step's rejects file.
    rejects = (tmp_path / "selection-rejects.jsonl").read_text().splitlines()
    assert sorted(json.loads(r)["reason"] for r in rejects) == sorted(b["reason"] for b in refused)
    assert not [p for p in opened if "passwd" in p or "secret.png" in p]
