"""Read a Vertex AI import file (JSONL) back into items: below the stages, for every reader."""

from __future__ import annotations

import json

from labelloop import storage
from labelloop.errors import BadRecord
from labelloop.schemas import Item


def read_import_file(uri: str) -> tuple[list[Item], list[BadRecord]]:
    """Read a Vertex import JSONL back into items; malformed lines become bad records."""
    items: list[Item] = []
    bad: list[BadRecord] = []
    with storage.open_read(uri) as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
                items.append(Item.from_import_record(record))
            except json.JSONDecodeError:
                bad.append(BadRecord(uri, number, "*", "not valid JSON"))
            except (KeyError, TypeError, AttributeError):
                bad.append(BadRecord(uri, number, "imageGcsUri|textGcsUri|textContent", "missing"))
    return items, bad
