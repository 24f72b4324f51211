"""`labelloop consolidate` and `labelloop agreement` through the real command entry point."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from labelloop.cli import main


def crowd_csv(path: Path, *, n_items: int = 80, seed: int = 0) -> dict[str, str]:
    """Three careful annotators and two careless ones; returns the truth per item."""
    rng = np.random.default_rng(seed)
    labels = ["neg", "pos"]
    skill = {"a": 0.9, "b": 0.85, "c": 0.8, "d": 0.55, "e": 0.55}
    truth = {}
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["item", "annotator", "label"])
        for i in range(n_items):
            t = int(rng.integers(0, 2))
            truth[f"doc{i}"] = labels[t]
            for name, p in skill.items():
                writer.writerow([f"doc{i}", name, labels[t if rng.random() < p else 1 - t]])
    return truth


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("method", ["mv", "ds"])
def test_consolidate_writes_item_label_confidence(tmp_path: Path, method: str) -> None:
    truth = crowd_csv(tmp_path / "ann.csv")
    out = tmp_path / "out.csv"
    code = main(["consolidate", str(tmp_path / "ann.csv"), "--out", str(out), "--method", method])
    assert code == 0
    rows = read_csv(out)
    assert list(rows[0]) == ["item", "label", "confidence"]
    assert len(rows) == 80
    accuracy = np.mean([r["label"] == truth[r["item"]] for r in rows])
    assert accuracy >= 0.8
    assert all(0.0 <= float(r["confidence"]) <= 1.0 for r in rows)


def test_dawid_skene_is_at_least_as_accurate_as_majority_vote(tmp_path: Path) -> None:
    truth = crowd_csv(tmp_path / "ann.csv", n_items=200, seed=1)
    accuracy = {}
    for method in ("mv", "ds"):
        out = tmp_path / f"{method}.csv"
        assert (
            main(["consolidate", str(tmp_path / "ann.csv"), "--out", str(out), "--method", method])
            == 0
        )
        accuracy[method] = np.mean([r["label"] == truth[r["item"]] for r in read_csv(out)])
    assert accuracy["ds"] >= accuracy["mv"]


def test_default_method_is_dawid_skene_and_gold_is_used(tmp_path: Path) -> None:
    crowd_csv(tmp_path / "ann.csv")
    gold = tmp_path / "gold.csv"
    gold.write_text("item,label\ndoc0,neg\ndoc1,neg\n")
    out = tmp_path / "out.jsonl"
    code = main(["consolidate", str(tmp_path / "ann.csv"), "--out", str(out), "--gold", str(gold)])
    assert code == 0
    rows = {r["item"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["doc0"]["label"] == "neg"
    assert rows["doc1"]["label"] == "neg"
    assert rows["doc0"]["confidence"] == 1.0  # clamped: only Dawid-Skene clamps gold


def test_jsonl_input_and_rejects(tmp_path: Path) -> None:
    ann = tmp_path / "ann.jsonl"
    ann.write_text(
        '{"item": "i", "annotator": "x", "label": "cat"}\n'
        '{"item": "i", "annotator": "y", "label": "cat"}\n'
        '{"item": "i", "annotator": "y", "label": "dog"}\n'
        '{"item": "j", "annotator": "x", "label": "owl"}\n'
    )
    out = tmp_path / "out.csv"
    rejects = tmp_path / "rejects.jsonl"
    args = ["consolidate", str(ann), "--out", str(out), "--labels", "cat,dog"]
    assert main([*args, "--rejects", str(rejects)]) == 0
    assert [r["item"] for r in read_csv(out)] == ["i"]
    bad = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(b["line"], b["field"]) for b in bad] == [(3, "annotator"), (4, "label")]


def test_agreement_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    crowd_csv(tmp_path / "ann.csv")
    assert main(["agreement", str(tmp_path / "ann.csv"), "--n-boot", "50"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["items"] == 80
    assert report["annotators"] == 5
    assert report["annotations"] == 400
    assert set(report["metrics"]) == {
        "krippendorff_alpha",
        "fleiss_kappa",
        "percent_agreement",
        "all_agree_rate",
    }
    low, high = report["ci95"]["krippendorff_alpha"]
    assert low <= report["metrics"]["krippendorff_alpha"] <= high
    assert set(report["per_class_agreement"]) == {"neg", "pos"}


def test_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agreement", str(tmp_path / "missing.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
