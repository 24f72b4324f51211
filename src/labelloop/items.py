"""Read a Vertex AI import file (JSONL) back into items: below the stages, for every reader.

Import files and the stages' item lists share this format. The columnar engine parses the file
(plain, gzip or zstd; local, `/gcs/` or `gs://`); each record is then checked field by field.
A record that cannot become an item is a `BadRecord` naming file, line and field, never dropped.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from labelloop import arrays, tables
from labelloop.errors import BadRecord
from labelloop.schemas import ATTEMPT_KEY, ML_USE_KEY, Item

#: The record fields an item is read from, in the order they are tried.
SOURCE_FIELDS = ("imageGcsUri", "textGcsUri", "textContent")
RESOURCE_FIELD = "dataItemResourceLabels"


class _Bad(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _describe(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {json.dumps(value)[:40]}"


def _item(row: dict[str, Any]) -> Item:
    """One record's item, or `_Bad` naming the field at fault."""
    record: dict[str, Any] = {}
    for field in SOURCE_FIELDS:
        if row.get(field) is None:
            continue
        value = json.loads(row[field])
        if not isinstance(value, str) or not value.strip():
            raise _Bad(field, f"expected a non-empty string, got {_describe(value)}")
        record[field] = value
        break
    else:
        raise _Bad("|".join(SOURCE_FIELDS), "missing: the record names no image, text file or text")
    if row.get(RESOURCE_FIELD) is not None:
        resource = json.loads(row[RESOURCE_FIELD])
        if not isinstance(resource, dict):
            raise _Bad(RESOURCE_FIELD, f"expected an object, got {_describe(resource)}")
        if not isinstance(resource.get(ML_USE_KEY, ""), str):
            raise _Bad(f"{RESOURCE_FIELD}.{ML_USE_KEY}", "expected a string")
        try:
            if int(resource.get(ATTEMPT_KEY, 0)) < 0:
                raise ValueError
        except (TypeError, ValueError):
            raise _Bad(
                f"{RESOURCE_FIELD}.{ATTEMPT_KEY}",
                f"expected a count, got {_describe(resource.get(ATTEMPT_KEY))}",
            ) from None
        record[RESOURCE_FIELD] = resource
    return Item.from_import_record(record)


def read_import_file(uri: str) -> tuple[list[Item], list[BadRecord]]:
    """Read a Vertex import JSONL (or an item list) back into items.

    Returns:
        The items in file order, and the records that are not items (not JSON, not an object,
        no image/text field, a field of the wrong type), each with file, line and field.

    Raises:
        InputError: The file is missing or cannot be read at all (compression, encoding).
    """
    loaded = tables.load(
        uri,
        (),
        optional=(*SOURCE_FIELDS, RESOURCE_FIELD),
        json_columns=(*SOURCE_FIELDS, RESOURCE_FIELD),
        default_format="jsonl",
    )
    bad = list(loaded.bad)
    items: list[Item] = []
    rn = np.flatnonzero(loaded.valid)
    if rn.size:
        lines = loaded.line_numbers(rn).tolist()
        data = loaded.data.take(arrays.arrow(rn)).to_pylist()
        for line, row in zip(lines, data, strict=True):
            try:
                items.append(_item(row))
            except _Bad as exc:
                bad.append(BadRecord(uri, int(line), exc.field, exc.reason))
    bad.sort(key=lambda b: b.line)
    return items, bad
