"""Line numbers and bad records of a table read (each bad record names file, line and field).

The engine reports row positions; these map them to lines, reading the file once, only when
some row has to be reported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from labelloop.arrays import to_numpy
from labelloop.errors import BadRecord, InputError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa


@dataclasses.dataclass(frozen=True)
class Source:
    """A readable local copy of an input and how to read it."""

    uri: str
    path: str
    format: str
    compression: str | None


class Loaded(Protocol):
    """What `json_unparsed` needs of a file the engine read (`labelloop.tables.Loaded`)."""

    source: Source
    bad: list[BadRecord]
    valid: np.ndarray

    def line_numbers(self, rn: np.ndarray) -> np.ndarray: ...
    def raw_lines(self, numbers: Sequence[int]) -> dict[int, bytes]: ...


_BLOCK = 16 << 20


@contextlib.contextmanager
def open_plain(source: Source) -> Iterator[Any]:
    if source.compression == "gzip":
        with gzip.open(source.path, "rb") as fh:
            yield fh
    elif source.compression == "zstd":
        raise InputError("line numbers of zstd files need the file decompressed", source=source.uri)
    else:
        with open(source.path, "rb") as fh:
            yield fh


def data_lines(source: Source, *, header: bool) -> np.ndarray:
    """1-based numbers of the non-blank lines (after the header), in file order."""
    out: list[np.ndarray] = []
    base = 0  # lines completed before this block
    carry = 0  # non-space bytes seen on the unfinished line
    with open_plain(source) as fh:
        while block := fh.read(_BLOCK):
            buf = np.frombuffer(block, dtype=np.uint8)
            ends = np.flatnonzero(buf == 10)
            seen = np.cumsum(~np.isin(buf, (9, 10, 13, 32)), dtype=np.int64)
            if not ends.size:
                carry += int(seen[-1])
                continue
            per_line = np.diff(np.r_[0, seen[ends]])
            per_line[0] += carry
            out.append(base + 1 + np.flatnonzero(per_line > 0))
            base += int(ends.size)
            carry = int(seen[-1] - seen[ends[-1]])
    if carry:
        out.append(np.asarray([base + 1], dtype=np.int64))
    lines = np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
    return lines[1:] if header and lines.size else lines


def csv_record_lines(source: Source, rejected: np.ndarray) -> np.ndarray:
    """First physical line of each data record, counted as the engine counts records."""
    import csv
    import io

    out: list[int] = []
    skip = set(rejected.tolist())
    with open_plain(source) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8-sig", newline="")
        reader = csv.reader(text, delimiter="\t" if source.format == "tsv" else ",")
        previous = 0
        for record, row in enumerate(reader, start=1):
            start = previous + 1
            previous = reader.line_num
            if record > 1 and record not in skip and any(v.strip() for v in row):
                out.append(start)
    return np.asarray(out, dtype=np.int64)


def csv_rejects(con: duckdb.DuckDBPyConnection, src: Source) -> tuple[list[int], list[BadRecord]]:
    """The CSV lines the engine rejected: blank lines are skipped, the rest are bad records."""
    rows = con.execute(
        "SELECT line, any_value(column_name), any_value(error_type), any_value(csv_line) "
        "FROM reject_errors GROUP BY line ORDER BY line"
    ).fetchall()
    rejected: list[int] = []
    bad: list[BadRecord] = []
    for line, column, kind, text in rows:
        rejected.append(int(line))
        if not str(text or "").strip():
            continue  # a whitespace-only line: nothing was on it
        if kind == "INVALID ENCODING":
            raise InputError(
                "the file is not UTF-8 encoded; save it as UTF-8 (e.g. iconv -f latin1 -t UTF-8)",
                source=src.uri,
                line=int(line),
            )
        reason = {
            "MISSING COLUMNS": "too few fields on the line",
            "TOO MANY COLUMNS": "too many fields on the line (an unquoted separator?)",
            "UNQUOTED VALUE": "a quote inside an unquoted value",
        }.get(str(kind), str(kind).lower())
        bad.append(BadRecord(src.uri, int(line), str(column or "*"), reason))
    return rejected, bad


def all_null(batch: pa.RecordBatch) -> np.ndarray:
    """Rows of a batch whose every column is null (a JSON line the engine could not use)."""
    import pyarrow.compute as pc

    nulled = np.ones(batch.num_rows, dtype=bool)
    for column in batch.columns:
        nulled &= to_numpy(pc.is_null(column)).astype(bool)
    return nulled


def json_unparsed(loaded: Loaded, rn: np.ndarray) -> None:
    """JSON lines the engine nulled (not an object, not JSON): bad records with the reason."""
    import json

    loaded.valid[rn] = False
    lines = [int(n) for n in loaded.line_numbers(rn).tolist()]
    raws = loaded.raw_lines(lines)
    for line in lines:
        raw = raws.get(line, b"")
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            reason = f"not valid JSON ({getattr(exc, 'msg', 'not UTF-8')})"
        else:
            reason = "expected a JSON object" if not isinstance(obj, dict) else "no known field"
        loaded.bad.append(BadRecord(loaded.source.uri, int(line), "*", reason))
