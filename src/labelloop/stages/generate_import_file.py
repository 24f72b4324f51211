"""Stage 1: list a source prefix and write a Vertex AI import file of the items not yet imported."""

from __future__ import annotations

import dataclasses
import io
import logging

from labelloop import state, storage
from labelloop.annotations import write_bad_records
from labelloop.errors import BadRecord, InputError
from labelloop.items import read_import_file

__all__ = ["generate_import_file", "list_items", "read_import_file"]
from labelloop.schemas import Item, TaskType, ml_use_for, text_item_id

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ImportFileResult:
    """What stage 1 wrote and counted."""

    listed: int
    new_items: int
    already_imported: int
    bad_records: int


#: Bytes read to verify an image: its header (PIL identifies the format and size from it).
IMAGE_HEAD_BYTES = 64 << 10


def image_problem(uri: str) -> str | None:
    """Why a listed image file cannot be used, or None: verified at import (its header must
    open as an image) so that no later stage meets a file that is not one."""
    from PIL import Image, UnidentifiedImageError

    try:
        head = storage.read_head(uri, IMAGE_HEAD_BYTES)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not head:
        return "empty file"
    try:
        with Image.open(io.BytesIO(head)) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return "not an image file (its content is no image format PIL reads)"
    if width < 1 or height < 1:
        return f"image of size {width}x{height}"
    return None


def list_items(source_uri: str, task_type: TaskType) -> tuple[list[Item], list[BadRecord]]:
    """List the items under `source_uri` for this task type.

    Image tasks keep image files whose header opens as an image (others are bad records,
    counted at import instead of failing a later stage). Text tasks keep `.txt` files (one item
    each, by URI) and read `.jsonl` files whose lines are `{"text": ...}` objects (one inline
    item per line).
    """
    items: list[Item] = []
    bad: list[BadRecord] = []
    suffixes = task_type.file_suffixes + ((".jsonl",) if task_type.is_text else ())
    for uri in storage.iter_files(source_uri, suffixes=suffixes):
        if not storage.inside(uri, [source_uri]):
            # A symbolic link out of the source: refused and counted, never read.
            bad.append(BadRecord(uri, 0, "path", "links outside the source: refused, never read"))
            continue
        if not uri.lower().endswith(".jsonl"):
            problem = image_problem(uri) if task_type.is_image else None
            if problem is not None:
                bad.append(BadRecord(uri, 0, "image", problem))
                continue
            items.append(Item(id=uri, uri=uri, ml_use=ml_use_for(uri)))
            continue
        rows, unread = storage.read_jsonl_objects(uri, required="text")
        bad += unread
        for number, row in rows:
            text = row["text"]
            if not isinstance(text, str) or not text.strip():
                bad.append(BadRecord(uri, number, "text", "missing or empty text"))
                continue
            item_id = text_item_id(text)
            items.append(Item(id=item_id, text=text, ml_use=ml_use_for(item_id)))
    return items, bad


def generate_import_file(
    *,
    source_uri: str,
    task_type: str,
    state_uri: str,
    output_uri: str,
    rejects_uri: str,
) -> ImportFileResult:
    """List `source_uri`, skip items imported in earlier rounds, write the import JSONL.

    Args:
        source_uri: `gs://bucket/prefix` or a local directory.
        task_type: A `TaskType` value; decides which files are kept and the record fields.
        state_uri: The loop's state folder (items registered in earlier rounds are skipped).
        output_uri: Where to write the Vertex import JSONL.
        rejects_uri: Where to write the rejected records (JSONL, possibly empty).

    Raises:
        InputError: The source does not exist.
    """
    task = TaskType.parse(task_type)
    if not source_uri:
        raise InputError("source prefix is empty", field="source_uri")
    items, bad = list_items(source_uri, task)
    seen = state.imported_ids(state_uri)
    new = [item for item in items if item.id not in seen]
    unique: dict[str, Item] = {}
    for item in new:
        unique.setdefault(item.id, item)
    storage.write_jsonl(output_uri, (i.to_import_record(task) for i in unique.values()))
    write_bad_records(rejects_uri, bad)
    result = ImportFileResult(
        listed=len(items),
        new_items=len(unique),
        already_imported=len(items) - len(new),
        bad_records=len(bad),
    )
    log.info("import file: %s", result)
    return result
