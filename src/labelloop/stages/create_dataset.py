"""Stage 3 (local target): validate the selected items and register them as a dataset.

The Vertex target replaces this stage with GCPC's `ImageDatasetCreateOp` / `TextDatasetCreateOp`;
this stand-in writes the same facts (schema, item count, the import file) to a manifest. It
may be empty: when the open queue is full, selection tops up nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging

from labelloop import storage
from labelloop.annotations import write_bad_records
from labelloop.schemas import TaskType
from labelloop.stages.generate_import_file import read_import_file

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DatasetResult:
    """The registered dataset."""

    dataset_key: str
    items: int
    bad_records: int


def dataset_key(item_ids: list[str]) -> str:
    """A deterministic key for a set of items: the same selection gives the same dataset."""
    digest = hashlib.sha256("\n".join(sorted(item_ids)).encode("utf-8")).hexdigest()
    return digest[:16]


def create_dataset(
    *,
    import_uri: str,
    task_type: str,
    display_name: str,
    state_uri: str,
    manifest_uri: str,
    items_uri: str,
    rejects_uri: str,
) -> DatasetResult:
    """Validate `import_uri` and write the dataset manifest and items.

    Args:
        import_uri: The selected items (Vertex import JSONL).
        task_type: A `TaskType` value; decides the import schema recorded in the manifest.
        display_name: The dataset's display name.
        state_uri: The loop's state. Nothing is recorded there: the items enter the ledger
            when the labeling step queues them, so a failed step never consumes the pool.
        manifest_uri: Where to write the manifest (JSON).
        items_uri: Where to write the validated items (Vertex import JSONL).
        rejects_uri: Where to write the rejected lines (JSONL).
    """
    task = TaskType.parse(task_type)
    items, bad = read_import_file(import_uri)
    key = dataset_key([i.id for i in items])
    storage.write_jsonl(items_uri, (i.to_import_record(task) for i in items))
    write_bad_records(rejects_uri, bad)
    manifest = {
        "display_name": display_name,
        "dataset_key": key,
        "task_type": task.value,
        "import_schema_uri": task.import_schema_uri,
        "items": len(items),
        "bad_records": len(bad),
        "items_uri": items_uri,
        "ml_use": {
            use: sum(1 for i in items if i.ml_use == use)
            for use in ("training", "validation", "test")
        },
    }
    storage.write_text(manifest_uri, json.dumps(manifest, indent=2, sort_keys=True))
    result = DatasetResult(dataset_key=key, items=len(items), bad_records=len(bad))
    log.info("dataset: %s", result)
    return result
