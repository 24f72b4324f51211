"""Import annotations made elsewhere: Label Studio exports, Vertex dataset exports, long format.

The `import` provider labels nothing itself: `collect` reads a file of annotations somebody
already made (with Label Studio, a vendor, a Vertex AI dataset, a spreadsheet) and keeps the
rows for this job's items. Annotator ids can be mapped (`annotator_map`, e.g. vendor worker ids
to people, or two accounts of one person), item ids can be rewritten by prefix
(`item_prefix_map`, e.g. a bucket that moved). Unknown labels and items outside the job are
reported as bad records with file and line, never dropped silently.

Formats (`format`, default `auto`):

* `label_studio`: Label Studio's JSON export (a list of tasks with `annotations`), read with the
  same trust rules as the Label Studio provider;
* `vertex`: a Vertex AI dataset export (JSONL with `imageGcsUri`/`textContent`/`textGcsUri` and
  `classificationAnnotation(s)`, `boundingBoxAnnotations` or `textSegmentAnnotations`); the
  annotator is the annotation set name in `annotationResourceLabels`, else `vertex`;
* `csv` / `jsonl`: labelloop's long format (`item, annotator, label` ...).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from labelloop import storage
from labelloop.annotations import ReadResult, parse_annotations, read_annotations
from labelloop.errors import BadRecord, InputError
from labelloop.options import INPUT_FILE
from labelloop.providers.base import CollectResult, Job, LabelingTask, Progress, job_key
from labelloop.providers.label_studio_format import read_export
from labelloop.providers.registry import register
from labelloop.schemas import Annotation, Item, Shape, TaskType, text_item_id

log = logging.getLogger(__name__)

FORMATS = ("auto", "label_studio", "vertex", "csv", "jsonl")


def check_format(file_format: str, *, field: str) -> None:
    """Refuse a format name that is not one of `FORMATS`."""
    if file_format not in FORMATS:
        raise InputError(
            f"unknown format {file_format!r}; expected one of {', '.join(FORMATS)}", field=field
        )


ANNOTATION_SET_KEY = "aiplatform.googleapis.com/annotation_set_name"
VERTEX_ITEM_KEYS = ("imageGcsUri", "textGcsUri", "textContent")

Row = tuple[int, dict[str, Any] | None, str | None]


def detect_format(uri: str) -> str:
    """Guess the format from the name and the first record."""
    lower = uri.lower()
    if lower.endswith((".csv", ".tsv")):
        return "csv"
    text = storage.read_text(uri).lstrip()
    if text.startswith("["):
        return "label_studio"
    first = text.split("\n", 1)[0]
    try:
        record = json.loads(first) if first.strip() else {}
    except json.JSONDecodeError:
        return "jsonl"
    if isinstance(record, dict) and any(k in record for k in VERTEX_ITEM_KEYS):
        return "vertex"
    return "jsonl"


def _vertex_item(record: Mapping[str, Any]) -> str | None:
    if "imageGcsUri" in record:
        return str(record["imageGcsUri"])
    if "textGcsUri" in record:
        return str(record["textGcsUri"])
    text = record.get("textContent")
    return text_item_id(text) if isinstance(text, str) else None


def _annotator(annotation: Mapping[str, Any], default: str) -> str:
    labels = annotation.get("annotationResourceLabels") or {}
    return str(labels.get(ANNOTATION_SET_KEY) or default)


def vertex_rows(
    uri: str, task_type: TaskType, *, default_annotator: str = "vertex"
) -> Iterator[Row]:
    """A Vertex dataset export as long-format rows (one per item and annotation set)."""
    for number, record, reason in _jsonl_rows(uri):
        if record is None:
            yield number, None, reason
            continue
        item = _vertex_item(record)
        if item is None:
            yield number, None, "no imageGcsUri, textGcsUri or textContent"
            continue
        grouped: dict[str, dict[str, Any]] = {}

        def row(
            annotation: Mapping[str, Any],
            item: str = item,
            grouped: dict[str, dict[str, Any]] = grouped,
        ) -> dict[str, Any]:
            who = _annotator(annotation, default_annotator)
            return grouped.setdefault(who, {"item": item, "annotator": who})

        if task_type.is_classification:
            single = record.get("classificationAnnotation")
            many = record.get("classificationAnnotations") or ([single] if single else [])
            for ann in many:
                r = row(ann)
                if task_type.multi_label:
                    r.setdefault("labels", []).append(ann.get("displayName"))
                elif "label" in r:
                    # Two single labels from one annotation set: keep both so the duplicate
                    # is reported by the validator.
                    yield (
                        number,
                        {
                            "item": item,
                            "annotator": r["annotator"],
                            "label": ann.get("displayName"),
                        },
                        None,
                    )
                else:
                    r["label"] = ann.get("displayName")
        elif task_type.shape is Shape.BOXES:
            for ann in record.get("boundingBoxAnnotations") or []:
                row(ann).setdefault("boxes", []).append(
                    {
                        "x_min": ann.get("xMin"),
                        "y_min": ann.get("yMin"),
                        "x_max": ann.get("xMax"),
                        "y_max": ann.get("yMax"),
                        "label": ann.get("displayName"),
                    }
                )
        else:
            for ann in record.get("textSegmentAnnotations") or []:
                row(ann).setdefault("spans", []).append(
                    {
                        "start": ann.get("startOffset"),
                        "end": ann.get("endOffset"),
                        "label": ann.get("displayName"),
                    }
                )
        if not grouped:
            yield number, None, "record has no annotation for this task type"
        for r in grouped.values():
            yield number, r, None


def _map_rows(
    rows: Iterator[Row], mapping: Mapping[str, str], prefixes: Mapping[str, str]
) -> Iterator[Row]:
    for number, row, error in rows:
        if row is None:
            yield number, row, error
            continue
        out = dict(row)
        if "annotator" in out and str(out["annotator"]) in mapping:
            out["annotator"] = mapping[str(out["annotator"])]
        if "item" in out:
            out["item"] = map_prefix(str(out["item"]), prefixes)
        yield number, out, error


def map_prefix(item: str, prefixes: Mapping[str, str]) -> str:
    """Rewrite the longest matching prefix of an item id."""
    matches = [p for p in prefixes if item.startswith(p)]
    if not matches:
        return item
    best = max(matches, key=len)
    return prefixes[best] + item[len(best) :]


def read_any(
    uri: str,
    *,
    task_type: TaskType,
    labels: Sequence[str],
    file_format: str = "auto",
    annotator_map: Mapping[str, str] | None = None,
    item_prefix_map: Mapping[str, str] | None = None,
) -> tuple[ReadResult, int]:
    """Read annotations in any supported format; returns them and the skipped count."""
    check_format(file_format, field="provider_options.format")
    if not storage.exists(uri):
        raise InputError("annotations file does not exist", source=uri)
    mapping = dict(annotator_map or {})
    prefixes = dict(item_prefix_map or {})
    fmt = detect_format(uri) if file_format == "auto" else file_format
    log.info("importing %s as %s", uri, fmt)
    if fmt == "label_studio":
        try:
            tasks = json.loads(storage.read_text(uri))
        except json.JSONDecodeError as exc:
            raise InputError(
                f"not a Label Studio JSON export ({exc.msg})", source=uri, line=exc.lineno
            ) from None
        if not isinstance(tasks, list):
            raise InputError("a Label Studio JSON export is a list of tasks", source=uri)
        read = read_export(
            tasks,
            task_type=task_type,
            labels=labels,
            source=uri,
            annotator_name=lambda uid: mapping.get(uid, f"ls-user-{uid}"),
        )
        rows = [
            Annotation(map_prefix(a.item, prefixes), a.annotator, a.value, a.annotator_kind)
            for a in read.annotations
        ]
        return ReadResult(rows, read.bad), read.skipped
    if fmt == "vertex":
        source_rows = vertex_rows(uri, task_type)
        return (
            parse_annotations(
                _map_rows(source_rows, mapping, prefixes),
                source=uri,
                task_type=task_type,
                labels=labels,
            ),
            0,
        )
    if not mapping and not prefixes:
        return read_annotations(uri, task_type=task_type, labels=labels), 0
    return (
        parse_annotations(
            _map_rows(long_rows(uri), mapping, prefixes),
            source=uri,
            task_type=task_type,
            labels=labels,
        ),
        0,
    )


def long_rows(uri: str) -> Iterator[Row]:
    """Long-format rows of a CSV/TSV or JSONL file, with line numbers."""
    if uri.lower().endswith((".csv", ".tsv")):
        import csv

        text = storage.read_text(uri)
        delimiter = "\t" if uri.lower().endswith(".tsv") else ","
        reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
        for row in reader:
            yield reader.line_num, dict(row), None
        return
    yield from _jsonl_rows(uri)


def _jsonl_rows(uri: str) -> Iterator[Row]:
    """A JSONL file's objects and unreadable lines (with the reason), in line order."""
    rows, bad = storage.read_jsonl_objects(uri, required=None)
    events: list[Row] = [(n, obj, None) for n, obj in rows]
    events += [(b.line, None, b.reason) for b in bad]
    yield from sorted(events, key=lambda e: e[0])


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImportOptions:
    """`provider_options` of the import provider.

    Args:
        uri: The annotations file.
        format: One of `FORMATS` (`auto` guesses from the content).
        annotator_map: Source annotator id -> our annotator id.
        annotator_map_uri: The same as a CSV file with `source,annotator` columns.
        item_prefix_map: Item id prefix -> replacement (files labeled under other paths).
    """

    uri: str = dataclasses.field(metadata=INPUT_FILE)
    format: str = "auto"
    annotator_map: dict[str, str] = dataclasses.field(default_factory=dict)
    annotator_map_uri: str | None = dataclasses.field(default=None, metadata=INPUT_FILE)
    item_prefix_map: dict[str, str] = dataclasses.field(default_factory=dict)

    def validate(self, field: str) -> None:
        check_format(self.format, field=f"{field}.format")


@register("import", options=ImportOptions)
class ImportProvider:
    """Annotations from a file, for the items of the job.

    Args:
        uri: The annotations file.
        file_format: One of `FORMATS`.
        annotator_map: Source annotator id -> our annotator id.
        item_prefix_map: Item id prefix -> replacement.
    """

    name = "import"

    def __init__(
        self,
        uri: str,
        *,
        file_format: str = "auto",
        annotator_map: Mapping[str, str] | None = None,
        item_prefix_map: Mapping[str, str] | None = None,
    ) -> None:
        self.uri = uri
        self.file_format = file_format
        self.annotator_map = dict(annotator_map or {})
        self.item_prefix_map = dict(item_prefix_map or {})
        self._jobs: dict[str, tuple[frozenset[str], LabelingTask]] = {}

    @classmethod
    def from_options(cls, options: ImportOptions) -> ImportProvider:
        """Build from checked options (see `ImportOptions`)."""
        mapping = dict(options.annotator_map)
        if options.annotator_map_uri:
            import csv

            map_uri = options.annotator_map_uri
            for number, row in enumerate(
                csv.DictReader(storage.read_text(map_uri).splitlines()), start=2
            ):
                if not row.get("source") or not row.get("annotator"):
                    raise InputError(
                        "needs 'source' and 'annotator' columns", source=map_uri, line=number
                    )
                mapping[row["source"]] = row["annotator"]
        return cls(
            options.uri,
            file_format=options.format,
            annotator_map=mapping,
            item_prefix_map=options.item_prefix_map,
        )

    def submit(
        self,
        items: Sequence[Item],
        task: LabelingTask,
        *,
        labelers_per_item: int,
        instructions: str = "",
    ) -> Job:
        key = job_key(self.name, items, task, labelers_per_item)
        self._jobs[key] = (frozenset(i.id for i in items), task)
        return Job(self.name, key, self.uri, len(items), labelers_per_item)

    def collect(self, job: Job) -> CollectResult:
        if job.key not in self._jobs:
            raise InputError(f"unknown job {job.key}; submit it first")
        wanted, task = self._jobs[job.key]
        read, skipped = read_any(
            self.uri,
            task_type=task.task_type,
            labels=task.labels,
            file_format=self.file_format,
            annotator_map=self.annotator_map,
            item_prefix_map=self.item_prefix_map,
        )
        kept: list[Annotation] = []
        bad = list(read.bad)
        seen: set[tuple[str, str]] = set()
        unknown: dict[str, int] = {}
        for a in read.annotations:
            if a.item not in wanted:
                unknown[a.item] = unknown.get(a.item, 0) + 1
                continue
            if (a.item, a.annotator) in seen:
                bad.append(
                    BadRecord(
                        self.uri,
                        0,
                        "annotator",
                        f"duplicate ({a.item}, {a.annotator}) after mapping",
                    )
                )
                continue
            seen.add((a.item, a.annotator))
            kept.append(a)
        for item, count in sorted(unknown.items()):
            bad.append(
                BadRecord(
                    self.uri, 0, "item", f"{item}: not an item of this job ({count} annotation(s))"
                )
            )
        if unknown:
            log.warning("%d unknown item(s) in %s", len(unknown), self.uri)
        return CollectResult(kept, bad, skipped=skipped)

    def progress(self, job: Job) -> Progress:
        got = self.collect(job)
        counts: dict[str, int] = {}
        for a in got.annotations:
            counts[a.item] = counts.get(a.item, 0) + 1
        return Progress(sum(1 for n in counts.values() if n >= job.labelers_per_item), job.items)

    def cancel(self, job: Job) -> None:
        self._jobs.pop(job.key, None)
