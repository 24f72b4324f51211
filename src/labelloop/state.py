"""The loop's state between rounds, kept under `state_uri` (a local folder or `gs://` prefix).

Layout (each file is written whole, under a deterministic name, so a retried step overwrites
instead of duplicating):

    ledger/                        every item's lifecycle: pool -> queued -> labeled, the open
                                   jobs, every collected annotation (see `labelloop.ledger`)
    labels/<time>-<digest>.jsonl   every consolidated label so far, one file (quality_gate):
                                   written once per content, then older files are removed
    models/latest/                 the last trained model (train_model), used for selection
    rounds/<run-key>.json          one outcome per round (write_report), for the across-rounds plot
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from typing import Any

from labelloop import atomic, storage

log = logging.getLogger(__name__)

LABELS = "labels"
MODELS_LATEST = "models/latest"
ROUNDS = "rounds"


def path(state_uri: str, *parts: str) -> str:
    """A path inside the state folder."""
    return storage.join(state_uri, *parts)


def imported_ids(state_uri: str) -> set[str]:
    """Ids of every item queued in an open job or labeled (the ledger's view); items returned
    to the pool are not in it, so they can be selected again."""
    from labelloop.ledger import excluded_ids

    return excluded_ids(state_uri)


# `<UTC time>-<content digest>.jsonl`: names sort by time, so the newest file is read last.
_LABELS_FILE = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{16}\.jsonl$")


def _label_files(state_uri: str, folder_name: str = LABELS) -> list[str]:
    """The files of a one-file folder (`keep_one_file`), oldest first: files of earlier
    layouts (any other name) before the time-named ones, so a later file's row for an item wins."""
    folder = path(state_uri, folder_name)
    if not storage.is_gcs(folder) and not storage.local_path(folder).is_dir():
        return []
    files = list(storage.iter_files(folder, suffixes=(".jsonl",)))
    return sorted(files, key=lambda u: (bool(_LABELS_FILE.match(storage.basename(u))), u))


def _read_rows(file_uri: str) -> list[dict[str, Any]]:
    got, bad = storage.read_jsonl_objects(file_uri, required=None)
    for record in bad:  # our own atomic writes: a bad line means the file was damaged
        log.warning("label file line skipped: %s", record)
    return [row for _, row in got]


def labeled_rows(state_uri: str, *, exclude: str | None = None) -> list[dict[str, Any]]:
    """Consolidated label rows from every earlier round, oldest file first (optionally
    excluding one file by name)."""
    if not state_uri:
        return []
    rows: list[dict[str, Any]] = []
    for file_uri in _label_files(state_uri):
        if exclude is not None and storage.basename(file_uri) == exclude:
            continue
        rows.extend(_read_rows(file_uri))
    return rows


def record_labels(state_uri: str, rows: list[dict[str, Any]]) -> str:
    """Keep every consolidated label so far in one file; returns its URI.

    The file holds `rows` (this round's consolidation) and, for items not in it, the latest
    earlier label (an item returned to the pool for relabeling keeps its label until it is
    labeled again): no label is ever lost. It is named by its content, so the same labels are
    written once, never rewritten; the files it replaces are removed only after it exists (a
    run killed in between leaves both, and the next run folds them the same way).
    """
    latest = latest_labels(state_uri)
    latest.update({str(r["item"]): r for r in rows})
    target = keep_one_file(state_uri, LABELS, latest)
    log.info("%d consolidated label(s) kept in %s", len(latest), target)
    return target


def keep_one_file(state_uri: str, folder_name: str, rows: dict[str, dict[str, Any]]) -> str:
    """Write `rows` (by item) as the folder's one file, `<time>-<content digest>.jsonl`, then
    remove the files it replaces; returns its URI. The same content is written once, never
    rewritten, and a run killed between the write and the removals leaves both files, which
    the next call folds the same way: nothing piles up and nothing is lost."""
    files = _label_files(state_uri, folder_name)
    text = "".join(json.dumps(rows[k], sort_keys=True) + "\n" for k in sorted(rows))
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    same = [u for u in files if storage.basename(u).endswith(f"-{digest}.jsonl")]
    if same:
        target = same[-1]
    else:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = path(state_uri, folder_name, f"{stamp}-{digest}.jsonl")
        atomic.create(target, text.encode("utf-8"))
    for old in files:
        if old != target:
            atomic.delete(old)
    return target


def latest_labels(state_uri: str) -> dict[str, dict[str, Any]]:
    """The latest consolidated row of every labeled item (an item consolidated again, e.g.
    after review or relabeling, has its newest row: by `consolidated_at`, rows without one
    being the oldest)."""
    latest: dict[str, dict[str, Any]] = {}
    for row in labeled_rows(state_uri):
        item = str(row.get("item"))
        if item not in latest or str(row.get("consolidated_at", "")) >= str(
            latest[item].get("consolidated_at", "")
        ):
            latest[item] = row
    return latest


def round_outcomes(state_uri: str) -> list[dict[str, Any]]:
    """Every recorded round outcome, oldest first (by `finished_at`)."""
    if not state_uri:
        return []
    folder = path(state_uri, ROUNDS)
    if not storage.is_gcs(folder) and not storage.local_path(folder).is_dir():
        return []
    rows = [
        json.loads(storage.read_text(u)) for u in storage.iter_files(folder, suffixes=(".json",))
    ]
    return sorted(rows, key=lambda r: str(r.get("finished_at", "")))
