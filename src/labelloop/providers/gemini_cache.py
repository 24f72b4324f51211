"""Gemini's answers and their cache file: written as the answers arrive, read back on a retry."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from labelloop import storage

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Gemini's answer for one item: a label from the set (or None) and its confidence."""

    item: str
    label: str | None
    confidence: float
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def read_cache(uri: str | None) -> dict[str, Prediction]:
    """Cached predictions from a JSONL file (missing file: empty)."""
    if not uri or not storage.exists(uri):
        return {}
    out: dict[str, Prediction] = {}
    rows, bad = storage.read_jsonl_objects(uri)
    for record in bad:
        # A line cut short when a step was killed mid-write: that answer is asked again;
        # every complete line before it is kept.
        log.warning("%s: incomplete cache line skipped", record)
    for _, row in rows:
        out[row["item"]] = Prediction(
            row["item"], row.get("label"), float(row["confidence"]), row.get("error", "")
        )
    return out


class CacheWriter:
    """Writes answers to the cache file as they arrive.

    A local file is appended to and flushed per answer (a killed step keeps every answer it
    received). A `gs://` object cannot be appended to: it is rewritten whole at most every
    `interval` seconds and on `close()` (which also runs when the step fails).
    """

    def __init__(self, uri: str, cache: Mapping[str, Prediction], *, interval: float = 5.0):
        self.uri = uri
        self.cache = cache
        self.interval = interval
        self._last = time.monotonic()
        self._dirty = False
        self._local: Any = None
        if not storage.is_gcs(uri):
            path = storage.local_path(uri)
            path.parent.mkdir(parents=True, exist_ok=True)
            # Start from what is known (earlier answers), then append.
            storage.write_jsonl(uri, (p.to_json() for p in cache.values()))
            self._local = path.open("a", encoding="utf-8")

    def add(self, prediction: Prediction) -> None:
        if self._local is not None:
            self._local.write(json.dumps(prediction.to_json()) + "\n")
            self._local.flush()
            return
        self._dirty = True
        if time.monotonic() - self._last >= self.interval:
            self.flush()

    def flush(self) -> None:
        if self._local is None and self._dirty:
            storage.write_jsonl(self.uri, (p.to_json() for p in self.cache.values()))
            self._dirty = False
            self._last = time.monotonic()

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
            self._local = None
            # One line per item: later answers for an item replace earlier ones.
            storage.write_jsonl(self.uri, (p.to_json() for p in self.cache.values()))
            return
        self.flush()
