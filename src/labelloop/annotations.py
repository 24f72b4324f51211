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

import dataclasses
import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from labelloop import arrays, storage, tables
from labelloop.codes import CODE, ColumnCodes, encode_column, lookup
from labelloop.errors import BadRecord, InputError
from labelloop.schemas import (
    LEGACY_MODEL_PREFIXES,
    Annotation,
    AnnotationValue,
    AnnotatorKind,
    Box,
    Encoded,
    Shape,
    Span,
    TaskType,
    legacy_annotator_kind,
)

log = logging.getLogger(__name__)

#: crowd-kit's column names, accepted for ours.
CROWDKIT_NAMES = {"item": "task", "annotator": "worker"}
#: The column that says who answered (`schemas.AnnotatorKind`); optional on read.
KIND_COLUMN = "annotator_kind"
#: Separates the labels of a multi-label CSV cell (`cat|dog`).
MULTI_LABEL_SEPARATOR = "|"


@dataclasses.dataclass(frozen=True)
class ReadResult:
    """Valid annotations, in file order, and the rows that were rejected.

    `legacy_kinds` counts rows without `annotator_kind` (files written before it existed),
    whose kind the annotator's name decided (`schemas.legacy_annotator_kind`).
    """

    annotations: list[Annotation]
    bad: list[BadRecord]
    legacy_kinds: int = 0


_VALUE_COLUMNS = ("label", "labels", "boxes", "spans")


def _rows(
    uri: str, required: Sequence[str] = ("item", "annotator")
) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """Yield `(line, row, error)` for an annotations table (CSV/TSV, JSONL or Parquet).

    The columnar engine parses the file; rows it cannot split come first as `(line, None,
    reason)`, then every parsed row with JSON values (`labels`, `boxes`, `spans`) decoded.
    """
    optional = [c for c in ("item", "annotator", KIND_COLUMN, *_VALUE_COLUMNS) if c not in required]
    loaded = tables.load(
        uri, required, optional=optional, json_columns=_VALUE_COLUMNS, aliases=CROWDKIT_NAMES
    )
    decode = loaded.source.format not in ("csv", "tsv")
    for b in loaded.bad:
        yield b.line, None, b.reason
    rn = np.flatnonzero(loaded.valid)
    lines = loaded.line_numbers(rn).tolist()
    data = loaded.data.take(rn).to_pydict() if rn.size else {}
    names = list(loaded.columns)
    for k, line in enumerate(lines):
        row: dict[str, Any] = {}
        for name in names:
            value = data[name][k]
            if value is not None and decode and name in _VALUE_COLUMNS:
                value = json.loads(value)
            if value is None and not decode:
                value = ""  # CSV has no null: an empty cell
            if value is not None:
                row[name] = value
        yield int(line), row, None


def is_missing(value: Any) -> bool:
    """Whether a value is absent or spelled as missing (`NA`, `null`, `-`, ...): never a class."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in tables.MISSING_SPELLINGS


def _text_field(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name)
    if is_missing(value):
        raise _FieldError(name, f"missing value ({value!r})" if value else "missing or empty")
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
        if isinstance(raw, str) and not raw.strip():
            values = []  # an empty cell: no label applies
        elif isinstance(raw, str) and raw.strip() in label_set:
            values = [raw.strip()]  # a label that contains the separator is one label
        elif isinstance(raw, str) and not is_missing(raw):
            values = [v.strip() for v in raw.split(MULTI_LABEL_SEPARATOR)]
            if any(is_missing(v) for v in values):
                raise _FieldError("labels", f"an empty or missing label in {raw!r}")
        elif isinstance(raw, list):
            values = [str(v).strip() for v in raw]
            if any(is_missing(v) for v in raw):
                raise _FieldError("labels", f"a missing value in {raw!r}")
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


def _kind(row: Mapping[str, Any], annotator: str) -> tuple[AnnotatorKind, bool]:
    """The row's annotator kind, and whether the legacy name prefix decided it (no field)."""
    value = row.get(KIND_COLUMN)
    if is_missing(value) or (isinstance(value, str) and not value.strip()):
        return legacy_annotator_kind(annotator), True
    try:
        return AnnotatorKind(str(value).strip().lower()), False
    except ValueError:
        kinds = ", ".join(k.value for k in AnnotatorKind)
        raise _FieldError(KIND_COLUMN, f"unknown kind {value!r} (expected {kinds})") from None


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
    legacy = 0
    for line, row, error in rows:
        if row is None:
            bad.append(BadRecord(source, line, "*", error or "unreadable"))
            continue
        try:
            item = _text_field(row, "item")
            annotator = _text_field(row, "annotator")
            kind, from_name = _kind(row, annotator)
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
        legacy += from_name
        good.append(Annotation(item, annotator, value, kind))
    if legacy:
        models = sum(1 for a in good if a.is_model)
        log.info(
            "%s: %d annotation(s) without %s (written before it existed): %d recognised as "
            "model answers by their annotator name (%s)",
            source, legacy, KIND_COLUMN, models, ", ".join(LEGACY_MODEL_PREFIXES),
        )  # fmt: skip
    return ReadResult(good, bad, legacy)


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
    for line, row, error in _rows(uri, ("item", "label")):
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
    """The sorted distinct `label` values of a single-label annotations file (for the CLI).

    Missing-value spellings (`NA`, `null`, ...) are not labels.
    """
    found = ColumnCodes()
    with tables.stream(uri, ("item", "annotator", "label")) as scan:
        for batch in scan:
            found.add(batch.column("label"))
        scan.finish()
    values = found.finish().values()
    if not values:
        raise InputError("no labels found: the table is empty or has no 'label' column", source=uri)
    return values


#: The columns of a single-label table, in order.
LABEL_TABLE_COLUMNS = ("item", "annotator", "label")


@dataclasses.dataclass
class LabelTable:
    """Single-label annotations read straight into encoded columns (no per-row objects).

    `encoded` indexes into `encoded.items` / `encoded.annotators` (Arrow string arrays, sorted)
    and `encoded.labels`; `bad` are the rejected rows (file, line, field); `rows` the rows read.
    """

    encoded: Encoded
    bad: list[BadRecord]
    rows: int
    source: str


def read_label_table(
    uri: str,
    *,
    labels: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> LabelTable:
    """Read single-label `item, annotator, label` rows (CSV/TSV, JSONL, Parquet) as codes.

    The engine parses and hands over record batches, each dictionary-encoded as it arrives (the
    file is never held as strings); validation works on whole code columns: missing values (any
    spelling in `tables.MISSING_SPELLINGS`) in any column, labels outside `labels` and repeated
    (item, annotator) rows after the first become bad records naming file, line and field.

    Args:
        uri: Local path, `/gcs/` path or `gs://` URI.
        labels: The label set (its order is the label index); default: the labels seen, sorted.
        progress: Called with a short message now and then (for a terminal's progress).

    Raises:
        InputError: The file is missing or unreadable, or every row is bad.
    """
    say = progress or (lambda _msg: None)
    say(f"reading {uri}")
    cols = {c: ColumnCodes() for c in LABEL_TABLE_COLUMNS}
    shown = 0
    with tables.stream(uri, LABEL_TABLE_COLUMNS, aliases=CROWDKIT_NAMES) as scan:
        for batch in scan:
            for name, codes in cols.items():
                codes.add(batch.column(name))
            if scan.rows - shown >= 5_000_000:
                shown = scan.rows
                say(f"read {shown} rows")
        loaded = scan.finish()
    say(f"encoding {loaded.rows} rows")
    return _encode(loaded, {c: codes.finish() for c, codes in cols.items()}, labels)


def encode_loaded(loaded: tables.Loaded, *, labels: Sequence[str] | None = None) -> LabelTable:
    """Validate and encode `item, annotator, label` columns already read (see `read_label_table`).

    Raises:
        InputError: Every row is bad.
    """
    cols = {c: encode_column(loaded.data.column(c)) for c in LABEL_TABLE_COLUMNS}
    return _encode(loaded, cols, labels)


def _encode(
    loaded: tables.Loaded, cols: dict[str, ColumnCodes], labels: Sequence[str] | None
) -> LabelTable:
    import pyarrow.compute as pc

    uri = loaded.source.uri
    label_col = cols["label"]
    label_list = list(labels) if labels is not None else label_col.values()
    to_label = pc.index_in(label_col.sorted, value_set=arrays.strings(label_list))
    label: np.ndarray = lookup(arrays.filled(to_label, -1).astype(CODE), label_col.codes)
    item: np.ndarray = cols["item"].codes
    annotator: np.ndarray = cols["annotator"].codes
    ok = loaded.valid.copy()
    shown = ", ".join(label_list[:10]) + (", ..." if len(label_list) > 10 else "")
    problems: list[tuple[np.ndarray, str, Callable[[Any], str]]] = [
        (item < 0, "item", _missing_reason),
        (annotator < 0, "annotator", _missing_reason),
        (label_col.codes < 0, "label", _missing_reason),
        (label < 0, "label", lambda v: f"unknown label {v!r} (not in the label set: {shown})"),
    ]
    flagged: list[tuple[np.ndarray, str, Callable[[Any], str]]] = []
    for mask, field, reason in problems:
        hit = np.flatnonzero(mask & ok)
        if hit.size:
            ok[hit] = False
            flagged.append((hit, field, reason))
    del problems
    n_annotators = len(cols["annotator"].sorted)
    good = None if ok.all() else np.flatnonzero(ok)
    repeated = _repeated(item, annotator, good, n_annotators=n_annotators)
    if repeated.size:
        hit = repeated if good is None else good[repeated]
        ok[hit] = False
        flagged.append((hit, "annotator", lambda _v: "repeated (item, annotator); first kept"))
    bad = list(loaded.bad)
    for hit, field, reason in flagged:
        lines = loaded.line_numbers(hit).tolist()
        bad += [
            BadRecord(uri, int(n), field, reason(v))
            for n, v in zip(lines, cols[field].raw(hit), strict=True)
        ]
    bad.sort(key=lambda b: b.line)
    if not ok.any():
        raise InputError(
            f"no valid annotations: all {loaded.rows + len(loaded.bad)} row(s) were "
            f"rejected; first: {bad[0] if bad else 'the file has no rows'}",
            source=uri,
        )
    if not ok.all():
        good = np.flatnonzero(ok)
        item, annotator, label = item[good], annotator[good], label[good]
    items, item = _used(cols["item"].sorted, item)
    annotators, annotator = _used(cols["annotator"].sorted, annotator)
    encoded = Encoded(items, annotators, tuple(label_list), item, annotator, label)
    return LabelTable(encoded, bad, loaded.rows + len(loaded.bad), uri)


def _repeated(
    item: np.ndarray, annotator: np.ndarray, rows: np.ndarray | None, *, n_annotators: int
) -> np.ndarray:
    """Positions (into `rows`, or all rows) of repeats of an earlier (item, annotator) pair."""

    def keys() -> np.ndarray:
        key = (annotator if rows is None else annotator[rows]).astype(np.int64)
        key += (item if rows is None else item[rows]).astype(np.int64) * max(n_annotators, 1)
        return key

    ordered = keys()
    ordered.sort()  # a sort finds repeats faster than a hash here (keys are mostly in order)
    if ordered.shape[0] < 2 or not bool((ordered[1:] == ordered[:-1]).any()):
        return np.zeros(0, dtype=np.int64)
    del ordered
    key = keys()
    _, first = np.unique(key, return_index=True)
    return np.setdiff1d(np.arange(key.shape[0]), first)


def _missing_reason(value: Any) -> str:
    return (
        "missing value" if value is None or not str(value).strip() else f"missing value ({value!r})"
    )


def _used(values: Any, codes: np.ndarray) -> tuple[Any, np.ndarray]:
    """Drop the distinct values no valid row uses, and renumber the codes."""
    used = np.bincount(codes, minlength=len(values)) > 0
    if used.all():
        return values, codes

    renumber = (np.cumsum(used) - 1).astype(CODE)
    return values.filter(arrays.arrow(used)), renumber[codes]
