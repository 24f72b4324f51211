"""Read, validate and write long-format annotations (CSV or JSON Lines).

Formats (one row per item and annotator):

* classification: `item,annotator,label` (CSV) or `{"item", "annotator", "label"}` (JSONL);
* multi-label: `label` holds `a|b` in CSV, or `"labels": [...]` in JSONL;
* object detection (JSONL): `"boxes": [{"x_min", "y_min", "x_max", "y_max", "label"}]`,
  normalised to [0, 1];
* entity extraction (JSONL): `"spans": [{"start", "end", "label"}]`, character offsets.

Bad rows never stop a read and are never dropped silently: each one becomes a `BadRecord`
naming the file, line and field, and the caller counts and reports them.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from labelloop import storage
from labelloop.errors import BadRecord, InputError
from labelloop.schemas import Annotation, AnnotationValue, Box, Shape, Span, TaskType


@dataclasses.dataclass(frozen=True)
class ReadResult:
    """Valid annotations, in file order, and the rows that were rejected."""

    annotations: list[Annotation]
    bad: list[BadRecord]


def _rows(uri: str) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """Yield `(line, row, error)` for a CSV or JSONL file; `error` set for unparsable lines."""
    is_csv = uri.lower().endswith((".csv", ".tsv"))
    with storage.open_read(uri) as fh:
        if is_csv:
            delimiter = "\t" if uri.lower().endswith(".tsv") else ","
            reader = csv.DictReader(fh, delimiter=delimiter)
            if reader.fieldnames is None:
                return
            for row in reader:
                # DictReader counts physical lines; the header is line 1.
                yield reader.line_num, dict(row), None
            return
        for number, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, None, f"not valid JSON ({exc.msg})"
                continue
            if not isinstance(obj, dict):
                yield number, None, "expected a JSON object"
                continue
            yield number, obj, None


def _text_field(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _FieldError(name, "missing or empty")
    return str(value).strip()


class _FieldError(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _parse_value(
    row: Mapping[str, Any], task_type: TaskType, label_set: frozenset[str]
) -> AnnotationValue:
    def check_label(label: str, field: str) -> str:
        if label not in label_set:
            raise _FieldError(field, f"unknown label {label!r} (not in the label set)")
        return label

    if task_type.multi_label:
        raw = row.get("labels", row.get("label"))
        if isinstance(raw, str):
            values = [v.strip() for v in raw.split("|") if v.strip()]
        elif isinstance(raw, list):
            values = [str(v).strip() for v in raw]
        else:
            raise _FieldError("labels", "missing: expected a list or 'a|b'")
        return frozenset(check_label(v, "labels") for v in values)
    if task_type.shape is Shape.SINGLE:
        return check_label(_text_field(row, "label"), "label")
    if task_type.shape is Shape.BOXES:
        boxes = row.get("boxes")
        if not isinstance(boxes, list):
            raise _FieldError("boxes", "missing: expected a list of boxes")
        out_boxes = []
        for i, box in enumerate(boxes):
            field = f"boxes[{i}]"
            if not isinstance(box, dict):
                raise _FieldError(field, "expected an object")
            try:
                coords = [float(box[k]) for k in ("x_min", "y_min", "x_max", "y_max")]
            except (KeyError, TypeError, ValueError):
                raise _FieldError(field, "needs numeric x_min, y_min, x_max, y_max") from None
            if not all(math.isfinite(c) and 0.0 <= c <= 1.0 for c in coords):
                raise _FieldError(field, f"coordinates must lie in [0, 1], got {coords}")
            if coords[0] >= coords[2] or coords[1] >= coords[3]:
                raise _FieldError(field, "needs x_min < x_max and y_min < y_max")
            label = check_label(str(box.get("label", "")).strip(), f"{field}.label")
            x_min, y_min, x_max, y_max = coords
            out_boxes.append(Box(x_min, y_min, x_max, y_max, label))
        return tuple(out_boxes)
    spans = row.get("spans")
    if not isinstance(spans, list):
        raise _FieldError("spans", "missing: expected a list of spans")
    out_spans = []
    for i, span in enumerate(spans):
        field = f"spans[{i}]"
        if not isinstance(span, dict):
            raise _FieldError(field, "expected an object")
        try:
            start, end = int(span["start"]), int(span["end"])
        except (KeyError, TypeError, ValueError):
            raise _FieldError(field, "needs integer start and end") from None
        if not 0 <= start < end:
            raise _FieldError(field, f"needs 0 <= start < end, got [{start}, {end})")
        label = check_label(str(span.get("label", "")).strip(), f"{field}.label")
        out_spans.append(Span(start, end, label))
    return tuple(out_spans)


def parse_annotations(
    rows: Iterable[tuple[int, dict[str, Any] | None, str | None]],
    *,
    source: str,
    task_type: TaskType,
    labels: Sequence[str],
    text_lengths: Mapping[str, int] | None = None,
) -> ReadResult:
    """Validate rows into annotations; see `read_annotations`."""
    label_set = frozenset(labels)
    seen: set[tuple[str, str]] = set()
    good: list[Annotation] = []
    bad: list[BadRecord] = []
    for line, row, error in rows:
        if row is None:
            bad.append(BadRecord(source, line, "*", error or "unreadable"))
            continue
        try:
            item = _text_field(row, "item")
            annotator = _text_field(row, "annotator")
            value = _parse_value(row, task_type, label_set)
            if text_lengths is not None and isinstance(value, tuple):
                length = text_lengths.get(item)
                for i, part in enumerate(value):
                    if isinstance(part, Span) and length is not None and part.end > length:
                        raise _FieldError(
                            f"spans[{i}]", f"ends at {part.end}, past the text ({length} chars)"
                        )
        except _FieldError as exc:
            bad.append(BadRecord(source, line, exc.field, exc.reason))
            continue
        key = (item, annotator)
        if key in seen:
            bad.append(
                BadRecord(source, line, "annotator", f"duplicate row for ({item}, {annotator})")
            )
            continue
        seen.add(key)
        good.append(Annotation(item, annotator, value))
    return ReadResult(good, bad)


def read_annotations(
    uri: str,
    *,
    task_type: TaskType,
    labels: Sequence[str],
    text_lengths: Mapping[str, int] | None = None,
) -> ReadResult:
    """Read a CSV/TSV or JSONL annotations file and validate every row.

    Args:
        uri: Local path or `gs://` URI; `.csv`/`.tsv` read as delimited, anything else as JSONL.
        task_type: Decides which value field is read (`label`, `labels`, `boxes`, `spans`).
        labels: The label set; any other label makes the row bad.
        text_lengths: For entity extraction, each item's text length, to reject spans past it.

    Returns:
        The valid annotations (the first row wins for a repeated (item, annotator)) and the
        bad rows, each with file, line and field.

    Raises:
        InputError: The file does not exist.
    """
    if not storage.exists(uri):
        raise InputError("annotations file does not exist", source=uri)
    return parse_annotations(
        _rows(uri), source=uri, task_type=task_type, labels=labels, text_lengths=text_lengths
    )


def write_annotations(uri: str, annotations: Iterable[Annotation], task_type: TaskType) -> int:
    """Write annotations as JSONL; return the count."""
    return storage.write_jsonl(uri, (a.to_json(task_type) for a in annotations))


def write_bad_records(uri: str, bad: Iterable[BadRecord]) -> int:
    """Write rejected rows as JSONL (`source`, `line`, `field`, `reason`); return the count."""
    return storage.write_jsonl(uri, (dataclasses.asdict(b) for b in bad))


def read_gold(uri: str, *, labels: Sequence[str]) -> tuple[dict[str, str], list[BadRecord]]:
    """Read a gold table of known answers: `item,label` (CSV) or `{"item", "label"}` (JSONL).

    Returns:
        `{item: label}` and the bad rows (unknown label, missing field, repeated item with a
        different label).

    Raises:
        InputError: The file does not exist.
    """
    if not storage.exists(uri):
        raise InputError("gold file does not exist", source=uri)
    label_set = frozenset(labels)
    gold: dict[str, str] = {}
    bad: list[BadRecord] = []
    for line, row, error in _rows(uri):
        if row is None:
            bad.append(BadRecord(uri, line, "*", error or "unreadable"))
            continue
        try:
            item = _text_field(row, "item")
            label = _text_field(row, "label")
        except _FieldError as exc:
            bad.append(BadRecord(uri, line, exc.field, exc.reason))
            continue
        if label not in label_set:
            bad.append(
                BadRecord(uri, line, "label", f"unknown label {label!r} (not in the label set)")
            )
        elif gold.get(item, label) != label:
            bad.append(BadRecord(uri, line, "label", f"item {item} has two gold labels"))
        else:
            gold[item] = label
    return gold, bad


def infer_labels(uri: str) -> list[str]:
    """The sorted distinct `label` values of a single-label annotations file (for the CLI)."""
    if not storage.exists(uri):
        raise InputError("annotations file does not exist", source=uri)
    found = {
        str(row["label"]).strip()
        for _, row, _ in _rows(uri)
        if row is not None and row.get("label") is not None and str(row["label"]).strip()
    }
    if not found:
        raise InputError("no labels found: the table is empty or has no 'label' column", source=uri)
    return sorted(found)
