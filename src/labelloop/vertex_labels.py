"""Files the Vertex AI target of the pipeline hands to Google's services.

- A *labeled* Vertex import file (consolidated labels as `classificationAnnotation`,
  `boundingBoxAnnotations` or `textSegmentAnnotations`) for `ImageDatasetCreateOp` /
  `TextDatasetCreateOp`, so AutoML trains on the labels our quality gate accepted.
- Batch prediction instances (`{"content": gs://..., "mimeType": ...}`) for `ModelBatchPredictOp`.
- The state record of the last Vertex model, so the next round scores its pool with it.

Plain Python: no kfp, no Google client beyond `labelloop.storage`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import mimetypes
from typing import Any

from labelloop import lineage, state, storage
from labelloop.annotations import write_bad_records
from labelloop.errors import BadRecord, InputError
from labelloop.schemas import ML_USE_KEY, Item, Shape, TaskType, ml_use_for
from labelloop.stages.generate_import_file import read_import_file

log = logging.getLogger(__name__)

VERTEX_MODEL_RECORD = "models/vertex/latest.json"


@dataclasses.dataclass(frozen=True)
class LabeledImportResult:
    """What went into the labeled import file."""

    items: int
    untrainable: int
    bad_records: int
    labels: tuple[str, ...]


def _annotation(row: dict[str, Any], task: TaskType) -> dict[str, Any]:
    """The Vertex annotation fields of one consolidated row; KeyError/TypeError if malformed."""
    if task.shape is Shape.SINGLE:
        label = row["label"]
        if not isinstance(label, str) or not label:
            raise TypeError("label must be a non-empty string")
        return {"classificationAnnotation": {"displayName": label}}
    if task.shape is Shape.MULTI:
        labels = row["label"]
        if not isinstance(labels, list) or not labels:
            raise TypeError("label must be a non-empty list")
        return {"classificationAnnotations": [{"displayName": str(v)} for v in sorted(labels)]}
    if task.shape is Shape.BOXES:
        boxes = [
            {
                "displayName": str(b["label"]),
                "xMin": float(b["x_min"]),
                "yMin": float(b["y_min"]),
                "xMax": float(b["x_max"]),
                "yMax": float(b["y_max"]),
            }
            for b in row["boxes"]
        ]
        return {"boundingBoxAnnotations": boxes}
    spans = [
        {"displayName": str(s["label"]), "startOffset": int(s["start"]), "endOffset": int(s["end"])}
        for s in row["spans"]
    ]
    return {"textSegmentAnnotations": spans}


def _attach(annotation: dict[str, Any], labels: dict[str, str]) -> None:
    """Put `annotationResourceLabels` on every annotation object of an import record."""
    for value in annotation.values():
        for obj in value if isinstance(value, list) else [value]:
            if isinstance(obj, dict):
                obj["annotationResourceLabels"] = dict(labels)


def _labels_of(annotation: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for value in annotation.values():
        for entry in value if isinstance(value, list) else [value]:
            found.add(str(entry["displayName"]))
    return found


def write_labeled_import_file(
    *,
    consolidated_uri: str,
    items_uri: str,
    task_type: str,
    state_uri: str,
    output_uri: str,
    rejects_uri: str,
) -> LabeledImportResult:
    """Write every trainable consolidated label so far as a Vertex AI labeled import file.

    Labels from earlier rounds come from the state folder; this round's consolidated rows win
    over an earlier row for the same item. Untrainable rows (ties, low confidence) are left out
    and counted; malformed rows and inline texts whose text is no longer known are bad records.

    Args:
        consolidated_uri: This round's consolidated labels (JSONL).
        items_uri: This round's items (import JSONL), the source of inline texts.
        task_type: A `TaskType` value.
        state_uri: The loop's state folder (earlier rounds' labels), may be empty.
        output_uri: Where the labeled import JSONL goes.
        rejects_uri: Where rejected rows go (JSONL, possibly empty).

    Raises:
        InputError: Nothing trainable to write.
    """
    task = TaskType.parse(task_type)
    rows: dict[str, tuple[str, int, dict[str, Any]]] = {}
    for number, row in enumerate(state.labeled_rows(state_uri), start=1):
        rows[str(row.get("item"))] = (state.path(state_uri, state.LABELS), number, row)
    this_round, bad = storage.read_jsonl_objects(consolidated_uri)
    for number, row in this_round:
        rows[str(row["item"])] = (consolidated_uri, number, row)
    items, item_bad = read_import_file(items_uri)
    bad.extend(item_bad)
    from labelloop.ledger import item_records

    # Earlier rounds' items from the ledger (inline text is kept only there), then this round's.
    inline = {k: Item.from_import_record(r) for k, r in item_records(state_uri).items()}
    inline.update({item.id: item for item in items})
    origins = lineage.latest_by_item(state_uri) if state_uri else {}
    records: list[dict[str, Any]] = []
    untrainable = 0
    seen_labels: set[str] = set()
    for item_id in sorted(rows):
        source, number, row = rows[item_id]
        if not row.get("trainable", True):
            untrainable += 1
            continue
        try:
            annotation = _annotation(row, task)
        except (KeyError, TypeError, ValueError) as exc:
            bad.append(BadRecord(source, number, "label|boxes|spans", f"malformed: {exc}"))
            continue
        item = inline.get(item_id)
        if item is None and item_id.startswith("text:"):
            bad.append(BadRecord(source, number, "item", "inline text not in this round's items"))
            continue
        item = item or Item(id=item_id, uri=item_id, ml_use=ml_use_for(item_id))
        record = item.to_import_record(task)
        if item_id in origins:
            # Where the label came from travels with it into the Vertex dataset.
            _attach(annotation, lineage.resource_labels(origins[item_id]))
        record.update(annotation)
        record["dataItemResourceLabels"] = {ML_USE_KEY: item.ml_use}
        seen_labels |= _labels_of(annotation)
        records.append(record)
    if not records:
        raise InputError(
            f"no trainable labels to import ({untrainable} untrainable, {len(bad)} bad)",
            source=consolidated_uri,
        )
    storage.write_jsonl(output_uri, records)
    write_bad_records(rejects_uri, bad)
    result = LabeledImportResult(
        items=len(records),
        untrainable=untrainable,
        bad_records=len(bad),
        labels=tuple(sorted(seen_labels)),
    )
    log.info("labeled import file: %s", result)
    return result


def write_batch_prediction_instances(*, import_uri: str, output_uri: str) -> tuple[int, int]:
    """Write `ModelBatchPredictOp` JSONL instances for the image items of an import file.

    Returns:
        (instances written, bad records in the import file).
    """
    items, bad = read_import_file(import_uri)
    rows = []
    for item in items:
        if item.uri is None:
            continue
        mime = mimetypes.guess_type(item.uri)[0] or "application/octet-stream"
        rows.append({"content": item.uri, "mimeType": mime})
    return storage.write_jsonl(output_uri, rows), len(bad)


def record_vertex_model(state_uri: str, *, resource_name: str, uri: str, task_type: str) -> None:
    """Remember the last Vertex model so the next round scores its pool with it."""
    if not resource_name:
        raise InputError("the trained model has no resourceName", field="model")
    record = {"resourceName": resource_name, "uri": uri, "task_type": task_type}
    storage.write_text(
        state.path(state_uri, VERTEX_MODEL_RECORD), json.dumps(record, sort_keys=True)
    )


def latest_vertex_model(
    state_uri: str, *, override: str = "", location: str = ""
) -> tuple[str, str]:
    """The model to score the pool with: `override`, else the last recorded one, else none.

    Returns:
        `(resource_name, artifact_uri)`; both empty when there is no model yet. The artifact
        URI is the model's REST URL, which is what `dsl.importer` and GCPC expect for a
        `VertexModel`.
    """
    name = override
    if not name and state_uri:
        record_uri = state.path(state_uri, VERTEX_MODEL_RECORD)
        if storage.exists(record_uri):
            name = str(json.loads(storage.read_text(record_uri)).get("resourceName", ""))
    if not name:
        return "", ""
    region = location or name.split("/")[3]
    return name, f"https://{region}-aiplatform.googleapis.com/v1/{name}"
