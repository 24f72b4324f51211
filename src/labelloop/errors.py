"""Errors and bad-record reporting.

Every error about user input names where it came from (file, line, field) so it can be fixed
without reading our code. Bad records in data files are not fatal: they are collected as
`BadRecord`s, counted in the step's outputs and written beside them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any


class LabelloopError(Exception):
    """Base class for every error labelloop raises on purpose."""


class InputError(LabelloopError, ValueError):
    """Bad user input: a file, a record in it, a config value or a parameter.

    Args:
        message: What is wrong and, where it helps, what would be right.
        source: The file or URI the input came from.
        line: 1-based line number in `source`.
        field: The field (column, key or dotted config path) that is wrong.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.field = field
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.source:
            where = self.source if self.line is None else f"{self.source}:{self.line}"
        parts = [p for p in (where, f"field '{self.field}'" if self.field else "") if p]
        prefix = ": ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message


class ConfigError(InputError):
    """A configuration file or override is wrong."""


class ProviderError(LabelloopError):
    """A labeling provider failed in a way a retry will not fix."""


@dataclasses.dataclass(frozen=True)
class BadRecord:
    """One record that was rejected, and why. Serialised to the step's `rejects` file."""

    source: str
    line: int
    field: str
    reason: str

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: field '{self.field}': {self.reason}"


def summarize_bad_records(bad: Iterable[BadRecord], *, limit: int = 5) -> str:
    """A short human summary: the count and the first `limit` records."""
    bad = list(bad)
    if not bad:
        return "no bad records"
    head = "; ".join(str(b) for b in bad[:limit])
    more = f" (+{len(bad) - limit} more)" if len(bad) > limit else ""
    return f"{len(bad)} bad record(s): {head}{more}"


def to_jsonable(value: Any) -> Any:
    """Turn dataclasses and tuples into plain JSON types (for step summaries)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value
