"""Annotation and gold table validation: every bad row is reported with file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labelloop.annotations import infer_labels, read_annotations, read_gold
from labelloop.errors import InputError
from labelloop.schemas import Box, Span, TaskType


def jsonl(path: Path, rows: list[object]) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def test_classification_rows_duplicates_and_unknown_labels(tmp_path: Path) -> None:
    uri = jsonl(
        tmp_path / "a.jsonl",
        [
            {"item": "i1", "annotator": "x", "label": "cat"},
            {"item": "i1", "annotator": "x", "label": "dog"},
            {"item": "i2", "annotator": "x", "label": "wolf"},
            {"item": "i3", "annotator": "", "label": "cat"},
            "{not json",
            [1, 2],
        ],
    )
    read = read_annotations(uri, task_type=TaskType.IMAGE_CLASSIFICATION, labels=["cat", "dog"])
    assert [a.value for a in read.annotations] == ["cat"]
    found = {(b.line, b.field) for b in read.bad}
    assert found == {(2, "annotator"), (3, "label"), (4, "annotator"), (5, "*"), (6, "*")}
    assert all(b.source == uri for b in read.bad)
    assert "duplicate" in next(b.reason for b in read.bad if b.line == 2)


def test_csv_lines_count_the_header(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("item,annotator,label\ni1,x,cat\ni1,y,bird\n")
    read = read_annotations(str(path), task_type=TaskType.TEXT_CLASSIFICATION, labels=["cat"])
    assert len(read.annotations) == 1
    assert [(b.line, b.field) for b in read.bad] == [(3, "label")]


def test_multilabel_csv_and_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("item,annotator,label\ni1,x,cat|dog\ni1,y,\n")
    read = read_annotations(
        str(path), task_type=TaskType.IMAGE_MULTILABEL_CLASSIFICATION, labels=["cat", "dog"]
    )
    assert [a.value for a in read.annotations] == [frozenset({"cat", "dog"}), frozenset()]


@pytest.mark.parametrize(
    ("box", "reason"),
    [
        ({"x_min": 0.5, "y_min": 0.1, "x_max": 0.5, "y_max": 0.4, "label": "cat"}, "x_min < x_max"),
        ({"x_min": 0.1, "y_min": 0.1, "x_max": 1.2, "y_max": 0.4, "label": "cat"}, "[0, 1]"),
        ({"x_min": 0.1, "y_min": 0.1, "x_max": "wide", "y_max": 0.4, "label": "cat"}, "numeric"),
        ({"x_min": 0.1, "y_min": 0.1, "x_max": 0.3, "y_max": 0.4, "label": "owl"}, "unknown"),
    ],
)
def test_bad_boxes(tmp_path: Path, box: dict[str, object], reason: str) -> None:
    good = {"x_min": 0.1, "y_min": 0.1, "x_max": 0.3, "y_max": 0.4, "label": "cat"}
    uri = jsonl(tmp_path / "b.jsonl", [{"item": "i", "annotator": "x", "boxes": [good, box]}])
    read = read_annotations(uri, task_type=TaskType.IMAGE_OBJECT_DETECTION, labels=["cat"])
    assert read.annotations == []
    [bad] = read.bad
    assert bad.field.startswith("boxes[1]")
    assert reason in bad.reason


def test_good_boxes_and_spans_parse(tmp_path: Path) -> None:
    box = {"x_min": 0.1, "y_min": 0.1, "x_max": 0.3, "y_max": 0.4, "label": "cat"}
    uri = jsonl(tmp_path / "b.jsonl", [{"item": "i", "annotator": "x", "boxes": [box]}])
    read = read_annotations(uri, task_type=TaskType.IMAGE_OBJECT_DETECTION, labels=["cat"])
    assert read.annotations[0].value == (Box(0.1, 0.1, 0.3, 0.4, "cat"),)
    span = {"start": 2, "end": 6, "label": "cat"}
    uri = jsonl(tmp_path / "s.jsonl", [{"item": "t", "annotator": "x", "spans": [span]}])
    read = read_annotations(uri, task_type=TaskType.TEXT_ENTITY_EXTRACTION, labels=["cat"])
    assert read.annotations[0].value == (Span(2, 6, "cat"),)


def test_spans_past_the_text_and_reversed(tmp_path: Path) -> None:
    uri = jsonl(
        tmp_path / "s.jsonl",
        [
            {"item": "t", "annotator": "x", "spans": [{"start": 2, "end": 12, "label": "cat"}]},
            {"item": "t", "annotator": "y", "spans": [{"start": 5, "end": 5, "label": "cat"}]},
            {"item": "t", "annotator": "z", "spans": [{"start": 0, "end": 10, "label": "cat"}]},
        ],
    )
    read = read_annotations(
        uri, task_type=TaskType.TEXT_ENTITY_EXTRACTION, labels=["cat"], text_lengths={"t": 10}
    )
    assert [a.annotator for a in read.annotations] == ["z"]
    reasons = {b.line: b.reason for b in read.bad}
    assert "past the text" in reasons[1]
    assert "start < end" in reasons[2]


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_annotations(
            str(tmp_path / "nope.csv"), task_type=TaskType.IMAGE_CLASSIFICATION, labels=["a"]
        )


def test_gold_table(tmp_path: Path) -> None:
    path = tmp_path / "gold.csv"
    path.write_text("item,label\ni1,cat\ni2,owl\ni1,dog\ni3,\ni1,cat\n")
    gold, bad = read_gold(str(path), labels=["cat", "dog"])
    assert gold == {"i1": "cat"}
    assert [(b.line, b.field) for b in bad] == [(3, "label"), (4, "label"), (5, "label")]


def test_infer_labels(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("item,annotator,label\ni1,x,dog\ni1,y,cat\ni2,x,dog\n")
    assert infer_labels(str(path)) == ["cat", "dog"]
    empty = tmp_path / "e.csv"
    empty.write_text("item,annotator,label\n")
    with pytest.raises(InputError, match="empty"):
        infer_labels(str(empty))
