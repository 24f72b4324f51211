"""The stage-5 step end to end on files, for every task type: contract artifacts and counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from labelloop.errors import InputError
from labelloop.gates import GatePolicy
from labelloop.stages.quality_gate import quality_gate

QUALITY_KEYS = {
    "label_count", "labeled_items", "annotations", "annotators", "agreement", "agreement_metric",
    "agreement_ci", "all_agree_rate", "ties", "review_items", "bad_records", "min_confidence",
    "consolidation_method", "task_type", "labels", "metrics", "per_class_agreement", "pairwise",
    "annotator_table",
}  # fmt: skip
ANNOTATOR_KEYS = {
    "annotator", "annotations", "accuracy", "gold_accuracy", "gold_items", "flagged",
    "flag_reason", "confusion",
}  # fmt: skip


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run(tmp_path: Path, rows: list[dict[str, Any]], **options: Any) -> tuple[Any, dict[str, Any]]:
    kwargs: dict[str, Any] = {
        "task_type": "image_classification",
        "labels": "cat,dog,fox",
        "consolidation_method": "ds",
        "agreement_metric": "krippendorff_alpha",
        "min_confidence": 0.0,
        "state_uri": str(tmp_path / "state"),
        "policy": GatePolicy(min_labeled_count=1, min_agreement=0.0),
        **options,
    }
    result = quality_gate(
        annotations_uri=write_jsonl(tmp_path / "ann.jsonl", rows),
        consolidated_uri=str(tmp_path / "consolidated.jsonl"),
        review_uri=str(tmp_path / "review.jsonl"),
        metrics_uri=str(tmp_path / "quality.json"),
        rejects_uri=str(tmp_path / "rejects.jsonl"),
        **kwargs,
    )
    return result, json.loads((tmp_path / "quality.json").read_text())


def crowd(n_items: int = 60, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    labels = ["cat", "dog", "fox"]
    skill = {"good1": 0.95, "good2": 0.9, "good3": 0.85, "bad": 0.2}
    rows = []
    for i in range(n_items):
        truth = int(rng.integers(0, 3))
        for name, p in skill.items():
            answer = truth if rng.random() < p else int((truth + rng.integers(1, 3)) % 3)
            rows.append({"item": f"gs://b/{i}.png", "annotator": name, "label": labels[answer]})
    return rows


@pytest.mark.parametrize("method", ["mv", "ds"])
def test_classification_artifacts(tmp_path: Path, method: str) -> None:
    rows = crowd()
    rows.append({"item": "gs://b/0.png", "annotator": "good1", "label": "cat"})  # duplicate
    rows.append({"item": "gs://b/1.png", "annotator": "zed", "label": "wolf"})  # unknown label
    result, quality = run(tmp_path, rows, consolidation_method=method)
    assert set(quality) >= QUALITY_KEYS
    assert quality["bad_records"] == result.bad_records == 2
    assert len(read_jsonl(tmp_path / "rejects.jsonl")) == 2
    assert result.labeled_items == 60
    assert result.annotators == 4
    assert quality["agreement_metric"] == "krippendorff_alpha"
    assert quality["agreement"] == pytest.approx(quality["metrics"]["krippendorff_alpha"])
    low, high = quality["agreement_ci"]
    assert low <= quality["agreement"] <= high
    assert set(quality["metrics"]) >= {"fleiss_kappa", "percent_agreement", "all_agree_rate"}
    table = {r["annotator"]: r for r in quality["annotator_table"]}
    assert set(table["bad"]) == ANNOTATOR_KEYS
    assert table["bad"]["flagged"]
    assert not table["good1"]["flagged"]
    assert table["good1"]["accuracy"] > table["bad"]["accuracy"]
    assert len(table["good1"]["confusion"]) == 3
    assert quality["pairwise"]["annotators"] == ["bad", "good1", "good2", "good3"]
    assert quality["pairwise"]["cohen_kappa"][1][2] > 0.5
    consolidated = read_jsonl(tmp_path / "consolidated.jsonl")
    assert {"item", "label", "confidence", "votes", "trainable"} <= set(consolidated[0])
    assert result.label_count == sum(r["trainable"] for r in consolidated)
    review = read_jsonl(tmp_path / "review.jsonl")
    for row in review:
        assert {"item", "reason", "votes", "annotations", "confidence"} <= set(row)
    assert list((tmp_path / "state" / "labels").iterdir())


def test_ties_go_to_review_and_are_not_trainable(tmp_path: Path) -> None:
    rows = [
        {"item": "a", "annotator": "x", "label": "cat"},
        {"item": "a", "annotator": "y", "label": "dog"},
        {"item": "b", "annotator": "x", "label": "fox"},
        {"item": "b", "annotator": "y", "label": "fox"},
    ]
    result, quality = run(tmp_path, rows, consolidation_method="mv")
    assert result.ties == 1
    assert result.label_count == 1
    by_item = {r["item"]: r for r in read_jsonl(tmp_path / "consolidated.jsonl")}
    assert by_item["a"]["label"] is None
    assert not by_item["a"]["trainable"]
    assert by_item["b"] == {**by_item["b"], "label": "fox", "trainable": True, "confidence": 1.0}
    review = read_jsonl(tmp_path / "review.jsonl")
    assert [r["item"] for r in review] == ["a"]
    assert review[0]["reason"] == "tie"
    assert sorted(a["label"] for a in review[0]["annotations"]) == ["cat", "dog"]
    assert quality["ties"] == 1


def test_min_confidence_sets_label_count(tmp_path: Path) -> None:
    rows = crowd(seed=3)
    loose, _ = run(tmp_path, rows, consolidation_method="mv", min_confidence=0.0)
    strict, _ = run(tmp_path, rows, consolidation_method="mv", min_confidence=1.0)
    assert strict.label_count < loose.label_count
    unanimous = {
        r["item"] for r in read_jsonl(tmp_path / "consolidated.jsonl") if r["confidence"] == 1.0
    }
    assert strict.label_count == len(unanimous)


def test_gold_is_clamped_and_scored(tmp_path: Path) -> None:
    rows = crowd(seed=5)
    gold = tmp_path / "gold.csv"
    gold.write_text("item,label\ngs://b/0.png,fox\ngs://b/1.png,fox\ngs://b/2.png,wolf\n")
    _, quality = run(tmp_path, rows, gold_uri=str(gold))
    by_item = {r["item"]: r for r in read_jsonl(tmp_path / "consolidated.jsonl")}
    assert by_item["gs://b/0.png"]["label"] == "fox"
    assert quality["bad_records"] == 1  # the unknown gold label
    table = {r["annotator"]: r for r in quality["annotator_table"]}
    assert table["good1"]["gold_items"] == 2
    assert table["good1"]["gold_accuracy"] is not None


def test_agreement_metric_is_configurable(tmp_path: Path) -> None:
    result, quality = run(tmp_path, crowd(), agreement_metric="fleiss_kappa")
    assert result.agreement_metric == "fleiss_kappa"
    assert result.agreement == pytest.approx(quality["metrics"]["fleiss_kappa"], abs=1e-6)
    with pytest.raises(InputError, match="agreement_metric"):
        run(tmp_path, crowd(), agreement_metric="vibes")


def test_no_valid_annotation_gives_zero_labels_and_rejects_are_written(tmp_path: Path) -> None:
    result, quality = run(tmp_path, [{"item": "a", "annotator": "x", "label": "wolf"}])
    assert result.label_count == 0
    assert result.bad_records == 1
    assert quality["agreement"] is None
    assert quality["annotator_table"] == []
    assert read_jsonl(tmp_path / "consolidated.jsonl") == []
    (reject,) = read_jsonl(tmp_path / "rejects.jsonl")
    assert reject["line"] == 1
    assert reject["field"] == "label"


def test_multilabel(tmp_path: Path) -> None:
    rows = [
        {"item": "i1", "annotator": "x", "labels": ["cat", "dog"]},
        {"item": "i1", "annotator": "y", "labels": ["cat", "dog"]},
        {"item": "i1", "annotator": "z", "labels": ["cat"]},
        {"item": "i2", "annotator": "x", "labels": ["fox"]},
        {"item": "i2", "annotator": "y", "labels": ["fox"]},
        {"item": "i2", "annotator": "z", "labels": []},
    ]
    result, quality = run(
        tmp_path, rows, task_type="image_multilabel_classification", consolidation_method="mv"
    )
    by_item = {r["item"]: r for r in read_jsonl(tmp_path / "consolidated.jsonl")}
    assert by_item["i1"]["label"] == ["cat", "dog"]
    assert by_item["i2"]["label"] == ["fox"]
    assert by_item["i1"]["votes"] == {"cat": 3, "dog": 2}
    assert result.label_count == 2
    assert set(quality["per_class_agreement"]) == {"cat", "dog", "fox"}
    assert quality["metrics"]["krippendorff_alpha"] is not None


def test_object_detection(tmp_path: Path) -> None:
    box = {"x_min": 0.1, "y_min": 0.1, "x_max": 0.5, "y_max": 0.5, "label": "cat"}
    near = {**box, "x_max": 0.52}
    stray = {"x_min": 0.7, "y_min": 0.7, "x_max": 0.9, "y_max": 0.9, "label": "dog"}
    rows = [
        {"item": "img1", "annotator": "x", "boxes": [box]},
        {"item": "img1", "annotator": "y", "boxes": [near, stray]},
        {"item": "img1", "annotator": "z", "boxes": [box]},
        {"item": "img2", "annotator": "x", "boxes": []},
        {"item": "img2", "annotator": "y", "boxes": []},
        {"item": "img2", "annotator": "z", "boxes": [{**box, "x_min": 0.6}]},  # bad box
    ]
    result, quality = run(
        tmp_path, rows, task_type="image_object_detection", agreement_metric="krippendorff_alpha"
    )
    assert result.agreement_metric == "f1"  # alpha does not apply to boxes
    assert quality["bad_records"] == 1
    assert set(quality["metrics"]) >= {"mean_iou", "f1"}
    assert 0.0 < quality["metrics"]["mean_iou"] <= 1.0
    by_item = {r["item"]: r for r in read_jsonl(tmp_path / "consolidated.jsonl")}
    [merged] = by_item["img1"]["boxes"]
    assert merged["label"] == "cat"
    assert 0.5 < merged["x_max"] < 0.52
    assert by_item["img2"]["boxes"] == []
    table = {r["annotator"]: r for r in quality["annotator_table"]}
    assert table["x"]["accuracy"] > table["y"]["accuracy"]


def test_entity_extraction(tmp_path: Path) -> None:
    rows = [
        {"item": "t1", "annotator": "x", "spans": [{"start": 0, "end": 5, "label": "cat"}]},
        {"item": "t1", "annotator": "y", "spans": [{"start": 0, "end": 5, "label": "cat"}]},
        {"item": "t1", "annotator": "z", "spans": [{"start": 1, "end": 5, "label": "cat"}]},
        {"item": "t2", "annotator": "x", "spans": [{"start": 4, "end": 2, "label": "cat"}]},
    ]
    result, quality = run(
        tmp_path, rows, task_type="text_entity_extraction", agreement_metric="span_f1"
    )
    assert result.bad_records == 1
    metrics = quality["metrics"]
    assert metrics["span_f1_exact"] == pytest.approx(
        2 * 1 / 6
    )  # 1 exact match in 3 pairs of 2 spans
    assert metrics["span_f1_overlap"] == pytest.approx(1.0)
    consolidated = read_jsonl(tmp_path / "consolidated.jsonl")
    assert consolidated[0]["spans"][0] == {"start": 0, "end": 5, "label": "cat", "confidence": 1.0}


def test_spans_past_the_text_file_are_rejected(tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("a cat sat")  # 9 characters
    rows = [
        {"item": str(doc), "annotator": "x", "spans": [{"start": 2, "end": 5, "label": "cat"}]},
        {"item": str(doc), "annotator": "y", "spans": [{"start": 2, "end": 12, "label": "cat"}]},
    ]
    result, _ = run(tmp_path, rows, task_type="text_entity_extraction", agreement_metric="span_f1")
    assert result.bad_records == 1
    [bad] = read_jsonl(tmp_path / "rejects.jsonl")
    assert "past the text" in bad["reason"]
    assert bad["line"] == 2
