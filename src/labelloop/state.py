"""The loop's state between rounds, kept under `state_uri` (a local folder or `gs://` prefix).

Layout (each file is written whole, under a deterministic name, so a retried step overwrites
instead of duplicating):

    ledger/                        every item's lifecycle: pool -> queued -> labeled, the open
                                   jobs, every collected annotation (see `labelloop.ledger`)
    labels/<job-key>.jsonl         consolidated labels of each labeling job (quality_gate)
    models/latest/                 the last trained model (train_model), used for selection
    rounds/<run-key>.json          one outcome per round (write_report), for the across-rounds plot
"""

from __future__ import annotations

import json
import logging
from typing import Any

from labelloop import storage

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


def labeled_rows(state_uri: str, *, exclude: str | None = None) -> list[dict[str, Any]]:
    """Consolidated label rows from every earlier job (optionally excluding one job file)."""
    if not state_uri:
        return []
    folder = path(state_uri, LABELS)
    if not storage.is_gcs(folder) and not storage.local_path(folder).is_dir():
        return []
    rows: list[dict[str, Any]] = []
    for file_uri in storage.iter_files(folder, suffixes=(".jsonl",)):
        if exclude is not None and storage.basename(file_uri) == exclude:
            continue
        got, bad = storage.read_jsonl_objects(file_uri, required=None)
        for record in bad:  # our own atomic writes: a bad line means the file was damaged
            log.warning("label file line skipped: %s", record)
        rows.extend(row for _, row in got)
    return rows


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
