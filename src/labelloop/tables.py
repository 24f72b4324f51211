"""The columnar data path: every tabular input and output goes through one engine (DuckDB).

Formats follow the extension (`.csv`, `.tsv`, `.jsonl`/`.ndjson`/`.json`, `.parquet`, each
optionally `.gz`/`.zst`); the first bytes are checked too: gzip/zstd is read whatever the name,
bzip2/xz/zip and UTF-16/32 are refused saying what to do, a UTF-8 BOM is skipped, non-UTF-8 is
refused naming the first bad line. Reads give Arrow columns plus the rows the engine could not
parse as `BadRecord`s; `Loaded.line_numbers` maps row positions to file lines (lazily, only for
rows someone reports). Local and `/gcs/` FUSE paths are read in place; `gs://` objects are
downloaded to a temporary file (the engine's GCS extension needs HMAC keys and a run-time
download, which a pipeline container has neither of) and outputs uploaded after the write.
Writes are atomic, follow the umask, and turn an OS error into one line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from labelloop import lines, storage
from labelloop.arrays import (
    filled,
    strings,
    to_numpy,  # noqa: F401 - where readers have long found it
)
from labelloop.errors import BadRecord, InputError, LabelloopError

#: A readable local copy of an input and how to read it (defined beside the line readers).
Source = lines.Source

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

#: Extensions (after removing a compression suffix) and the format each names.
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
COMPRESSIONS = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd"}
_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"PK\x03\x04", "zip"),
    (b"PAR1", "parquet"),
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
#: Values that mean "no value" in exported tables; never a label, item or annotator.
MISSING_SPELLINGS = ("", "na", "n/a", "nan", "null", "none", "nil", "-", "?", "#n/a", "<na>")


class WriteError(LabelloopError):
    """An output could not be written (disk full, no permission, ...); nothing was left behind."""


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A private in-memory engine connection (one per read: no state shared between steps)."""
    import duckdb

    con = duckdb.connect(":memory:")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def format_of(uri: str, *, default: str | None = None) -> tuple[str, str | None]:
    """`(format, compression)` named by a file's extension.

    Raises:
        InputError: The extension names no supported format and there is no `default`.
    """
    name = storage.basename(uri).lower()
    compression = None
    for suffix, kind in COMPRESSIONS.items():
        if name.endswith(suffix):
            compression, name = kind, name.removesuffix(suffix)
            break
    for suffix, kind in FORMATS.items():
        if name.endswith(suffix):
            return kind, compression
    if default is not None:
        return default, compression
    raise InputError(
        f"cannot tell the format from the name; use one of {', '.join(sorted(FORMATS))}"
        " (optionally .gz or .zst)",
        source=uri,
    )


def _sniff(uri: str, path: str, fmt: str, compression: str | None) -> Source:
    """Check the file's first bytes against what its name says; refuse what cannot be read."""
    with open(path, "rb") as fh:
        head = fh.read(8)
        if fmt == "auto":
            start = fh.read(4096).lstrip() if not head.strip() else (head + fh.read(4096)).lstrip()
            fmt = "jsonl" if not start or start.startswith((b"{", b"\xef\xbb\xbf{")) else "csv"
    found = next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)
    if found in ("gzip", "zstd"):
        compression = found
    elif found == "parquet":
        fmt, compression = "parquet", None
    elif found in ("bzip2", "xz", "zip"):
        raise InputError(
            f"the file is {found}-compressed, which is not supported: decompress it, or "
            "recompress with gzip (.gz) or zstd (.zst)",
            source=uri,
        )
    elif found in ("UTF-16", "UTF-32"):
        raise InputError(
            f"the file is {found}-encoded; save it as UTF-8 (e.g. iconv -f {found} -t UTF-8)",
            source=uri,
        )
    elif compression is not None and head:
        compression = None  # named .gz but stored plain: read what is there
    return Source(uri, path, fmt, compression)


@contextlib.contextmanager
def local_source(uri: str, *, default_format: str | None = None) -> Iterator[Source]:
    """A local path for `uri` (a `gs://` object is downloaded to a temporary file first).

    Raises:
        InputError: The file does not exist, or its format cannot be read.
    """
    # An unnamed file (a pipeline artifact path has no extension): its first bytes decide.
    fmt, compression = format_of(uri, default=default_format or "auto")
    if not storage.is_gcs(uri):
        path = str(storage.local_path(uri))
        if not os.path.isfile(path):
            raise InputError("file does not exist", source=uri)
        yield _sniff(uri, path, fmt, compression)
        return
    if not storage.exists(uri):
        raise InputError("file does not exist", source=uri)
    bucket, name = storage.split_gcs(uri)
    suffix = "".join(Path(name).suffixes[-2:])
    fd, tmp = tempfile.mkstemp(prefix="labelloop-", suffix=suffix)
    os.close(fd)
    try:
        storage.gcs_client().bucket(bucket).blob(name).download_to_filename(tmp)
        yield _sniff(uri, tmp, fmt, compression)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _engine_error(exc: Exception, source: str) -> InputError:
    """The engine's error as one line naming the file."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for prefix in ("Invalid Input Error: ", "Conversion Error: ", "IO Error: "):
        text = text.removeprefix(prefix)
    return InputError(f"cannot read the file: {text}", source=source)


@dataclasses.dataclass
class Loaded:
    """A file read by the engine: `data` (Arrow, one row per parsed row, in file order).

    `valid[i]` is false for a row the engine nulled (a JSON line that is not an object); those
    are already in `bad`. Row `i` of `data` sits on file line `line_numbers([i])[0]`.
    """

    data: pa.Table
    source: Source
    bad: list[BadRecord]
    valid: np.ndarray
    _rejected_lines: list[int] = dataclasses.field(default_factory=list)
    _line_map: np.ndarray | None = None
    #: Rows parsed when `data` was streamed (not kept); -1: `data` holds every row.
    n_rows: int = -1

    @property
    def rows(self) -> int:
        """Rows parsed (bad ones included)."""
        return self.n_rows if self.n_rows >= 0 else int(self.data.num_rows)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.data.column_names)

    def line_numbers(self, rn: np.ndarray) -> np.ndarray:
        """The 1-based file line of each 0-based row position `rn`."""
        rn = np.asarray(rn, dtype=np.int64)
        if self.source.format in ("parquet", "memory"):
            return rn + 1
        if self._line_map is None:
            is_csv = self.source.format in ("csv", "tsv")
            line_map = lines.data_lines(self.source, header=is_csv)
            rejected = np.asarray(self._rejected_lines, dtype=np.int64)
            if is_csv:
                line_map = np.setdiff1d(line_map, rejected)
                if line_map.shape[0] != self.rows:  # a quoted field spans lines: count records
                    line_map = lines.csv_record_lines(self.source, rejected)
            self._line_map = line_map
        line_map = self._line_map
        if not line_map.shape[0]:
            return np.full(rn.shape, -1, dtype=np.int64)
        inside = rn < line_map.shape[0]
        return np.where(inside, line_map[np.minimum(rn, line_map.shape[0] - 1)], -1)

    def raw_line(self, line: int) -> bytes:
        """The bytes of one physical line (for a precise reason on a row the engine nulled)."""
        return self.raw_lines([line]).get(line, b"")

    def raw_lines(self, numbers: Sequence[int]) -> dict[int, bytes]:
        """The bytes of some physical lines, read in one pass over the file."""
        wanted = set(numbers)
        found: dict[int, bytes] = {}
        if not wanted:
            return found
        last = max(wanted)
        with lines.open_plain(self.source) as fh:
            for number, raw in enumerate(fh, start=1):
                if number in wanted:
                    found[number] = bytes(raw)
                if number >= last:
                    break
        return found


def from_arrow(data: pa.Table, *, name: str = "<table>") -> Loaded:
    """An in-memory table as if read from a file (row `i` is "line" `i + 1` of `name`)."""
    return Loaded(data, Source(name, "", "memory", None), [], np.ones(data.num_rows, dtype=bool))


def load(
    uri: str,
    columns: Sequence[str],
    *,
    json_columns: Sequence[str] = (),
    optional: Sequence[str] = (),
    aliases: Mapping[str, str] | None = None,
    default_format: str | None = None,
) -> Loaded:
    """Read `columns` of a table file as Arrow strings (`json_columns` as JSON text).

    `optional` columns are read when the file has them (always for JSONL, as nulls when
    absent). `aliases` maps a column to another name it may go by (crowd-kit's `task` for
    `item`). Values are not trimmed (callers trim the distinct values, which is cheaper).

    Rows the engine cannot split into fields (too many or too few columns, a line that is not a
    JSON object) become bad records. Missing columns in a CSV header are an error up front.
    For large files prefer `stream`, which never holds the whole table.

    Raises:
        InputError: The file is missing, unreadable, not UTF-8, or lacks a required column.
    """
    import pyarrow as pa

    with stream(
        uri,
        columns,
        json_columns=json_columns,
        optional=optional,
        aliases=aliases,
        default_format=default_format,
    ) as scan:
        data = pa.Table.from_batches(list(scan), schema=scan.schema)
        return scan.finish(data)


class Stream:
    """Record batches of a file being read (iterate once), then `finish` for its bad records.

    Batches come in file order; `finish()` must be called after the last batch: only then does
    the engine know which lines it rejected.
    """

    def __init__(
        self, con: duckdb.DuckDBPyConnection, src: Source, reader: pa.RecordBatchReader
    ) -> None:
        self.source = src
        self.schema = reader.schema
        self.rows = 0
        self._con = con
        self._reader = reader
        self._nulled: list[np.ndarray] = []  # JSONL rows the engine nulled (not an object)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        import duckdb

        try:
            for batch in self._reader:
                if self.source.format == "jsonl" and batch.num_rows:
                    nulled = lines.all_null(batch)
                    if nulled.any():
                        self._nulled.append(self.rows + np.flatnonzero(nulled))
                self.rows += batch.num_rows
                yield batch
        except duckdb.Error as exc:  # the engine's own errors: one line naming the file
            raise _engine_error(exc, self.source.uri) from None

    def finish(self, data: pa.Table | None = None) -> Loaded:
        """The read's `Loaded` (with `data`, or an empty table of the schema when streamed)."""
        import duckdb
        import pyarrow as pa

        bad: list[BadRecord] = []
        rejected: list[int] = []
        if self.source.format in ("csv", "tsv"):
            try:
                rejected, bad = lines.csv_rejects(self._con, self.source)
            except duckdb.Error as exc:
                raise _engine_error(exc, self.source.uri) from None
        if data is None:
            data = pa.Table.from_batches([], schema=self.schema)
        loaded = Loaded(data, self.source, bad, np.ones(self.rows, dtype=bool), rejected)
        loaded.n_rows = self.rows
        if self._nulled:
            lines.json_unparsed(loaded, np.concatenate(self._nulled))
        if storage.is_gcs(self.source.uri) and self.source.compression != "zstd":
            loaded.line_numbers(np.zeros(0, dtype=np.int64))  # before the local copy goes
        return loaded


@contextlib.contextmanager
def stream(
    uri: str,
    columns: Sequence[str],
    *,
    json_columns: Sequence[str] = (),
    optional: Sequence[str] = (),
    aliases: Mapping[str, str] | None = None,
    default_format: str | None = None,
    batch_rows: int = 1 << 20,
) -> Iterator[Stream]:
    """`load`, batch by batch: memory stays near one batch whatever the file's size.

    Raises:
        InputError: The file is missing, unreadable, not UTF-8, or lacks a required column.
    """
    import duckdb

    con = connect()
    try:
        with local_source(uri, default_format=default_format) as src:
            try:
                query = _query(
                    con,
                    src,
                    columns,
                    json_columns=json_columns,
                    optional=optional,
                    aliases=dict(aliases or {}),
                )
                reader = con.sql(query).to_arrow_reader(batch_rows)
            except duckdb.Error as exc:  # the engine's own errors: one line naming the file
                raise _engine_error(exc, uri) from None
            yield Stream(con, src, reader)
    finally:
        con.close()


def _query(
    con: duckdb.DuckDBPyConnection,
    src: Source,
    columns: Sequence[str],
    *,
    json_columns: Sequence[str],
    optional: Sequence[str],
    aliases: dict[str, str],
) -> str:
    """The engine's query reading `columns` of `src` (see `load`)."""
    path = _sql_str(src.path)
    comp = f", compression={_sql_str(src.compression)}" if src.compression else ""
    names = list(columns)
    if src.format in ("csv", "tsv"):
        header = _header(con, src)
        names = _resolve(names, header, aliases, src)
        names += [c for c in optional if c in header]
        delim = "\\t" if src.format == "tsv" else ","
        return (
            f"SELECT {_select(names)} FROM read_csv({path}, header=true, "
            f"all_varchar=true, delim=E'{delim}', quote='\"', escape='\"', "
            f"store_rejects=true{comp})"
        )
    if src.format == "jsonl":
        names += list(optional)
        read = [*names, *(a for a in aliases.values() if a not in names)]
        spec = ", ".join(f"'{c}': '{'JSON' if c in json_columns else 'VARCHAR'}'" for c in read)
        picked = ", ".join(
            f'coalesce("{c}", "{aliases[c]}") AS "{c}"' if c in aliases else f'"{c}"' for c in names
        )
        return (
            f"SELECT {picked} FROM read_json({path}, "
            f"format='newline_delimited', ignore_errors=true, columns={{{spec}}}{comp})"
        )
    described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({path})").fetchall()
    found = [str(r[0]) for r in described]
    names = _resolve(names, found, aliases, src)
    names += [c for c in optional if c in found]
    return f"SELECT {_select(names, json_columns)} FROM read_parquet({path})"


def _select(names: Sequence[str], cast_json: Sequence[str] | None = None) -> str:
    """SQL select list of column names or `"alias" AS "name"` expressions; with `cast_json`
    (Parquet), typed columns become text, or JSON text for those named."""
    out = []
    for entry in names:
        expr, name = _split_select(entry)
        if cast_json is None:
            out.append(f'{expr} AS "{name}"')
        elif name in cast_json:
            out.append(f'to_json({expr}) AS "{name}"')
        else:
            out.append(f'CAST({expr} AS VARCHAR) AS "{name}"')
    return ", ".join(out)


def _split_select(entry: str) -> tuple[str, str]:
    """`'"a" AS "b"'` -> (`'"a"'`, `b`); `'"a"'` or `a` -> (`'"a"'`, `a`)."""
    if " AS " in entry:
        expr, name = entry.split(" AS ", 1)
        return expr, name.strip('"')
    name = entry.strip('"')
    return f'"{name}"', name


def _header(con: duckdb.DuckDBPyConnection, src: Source) -> list[str]:
    delim = "\\t" if src.format == "tsv" else ","
    comp = f", compression={_sql_str(src.compression)}" if src.compression else ""
    cursor = con.execute(
        f"SELECT * FROM read_csv({_sql_str(src.path)}, header=true, all_varchar=true, "
        f"delim=E'{delim}', store_rejects=true, rejects_table='hdr_rejects', "
        f"rejects_scan='hdr_scans'{comp}) LIMIT 0"
    )
    names = [str(d[0]).strip() for d in cursor.description or ()]
    cursor.fetchall()
    return names


def _resolve(
    columns: Sequence[str], found: Sequence[str], aliases: Mapping[str, str], src: Source
) -> list[str]:
    """The select list for `columns`: each by its name, or by its alias (renamed back)."""
    out: list[str] = []
    missing: list[str] = []
    for c in columns:
        if c in found:
            out.append(f'"{c}"')
        elif c in aliases and aliases[c] in found:
            out.append(f'"{aliases[c]}" AS "{c}"')
        else:
            missing.append(c)
    if missing:
        raise InputError(
            f"the header lacks column(s) {', '.join(missing)}; found {', '.join(found)}",
            source=src.uri,
            line=1,
        )
    return out


def missing_mask(values: pa.Array) -> np.ndarray:
    """Boolean mask: null, or (trimmed, any case) one of `MISSING_SPELLINGS`."""
    import pyarrow.compute as pc

    spelled = pc.is_in(pc.utf8_lower(pc.utf8_trim_whitespace(values)), strings(MISSING_SPELLINGS))
    return filled(spelled, 1).astype(bool) | filled(pc.is_null(values), 1).astype(bool)


# --------------------------------------------------------------------------- writing


def output_format(uri: str) -> tuple[str, str | None]:
    """The format an output's extension names.

    Raises:
        InputError: The extension names no format we write (the output is refused, not guessed).
    """
    try:
        return format_of(uri)
    except InputError:
        raise InputError(
            "cannot tell which format to write: name the output .csv, .tsv, .jsonl or .parquet",
            source=uri,
        ) from None


@contextlib.contextmanager
def atomic_path(uri: str) -> Iterator[str]:
    """A temporary local path to write `uri` to; it becomes `uri` only if the block succeeds.

    Raises:
        WriteError: The file could not be written or moved into place (one line, no leftovers).
    """
    if storage.is_gcs(uri):
        fd, tmp = tempfile.mkstemp(prefix="labelloop-out-")
        os.close(fd)
        try:
            yield tmp
            bucket, name = storage.split_gcs(uri)
            storage.gcs_client().bucket(bucket).blob(name).upload_from_filename(tmp)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return
    import duckdb

    path = storage.local_path(uri)
    tmp = ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        yield tmp
        storage.chmod_like_new(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise WriteError(f"cannot write {uri}: {exc.strerror or exc}") from None
    except duckdb.IOException as exc:
        raise WriteError(f"cannot write {uri}: {str(exc).splitlines()[0]}") from None
    finally:
        if tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def write_table(
    uri: str, table: pa.Table | str, *, con: duckdb.DuckDBPyConnection | None = None
) -> int:
    """Write an Arrow table (or an engine query/table name, with `con`) in the format `uri` names.

    CSV/TSV get a header; JSONL one object per line; Parquet zstd-compressed. Returns the row count.

    Raises:
        InputError: The extension names no supported format.
        WriteError: The write failed (nothing is left at `uri`, or the old file stays whole).
    """
    fmt, compression = output_format(uri)
    con = con if con is not None else connect()
    if isinstance(table, str):
        query = table
    else:
        con.register("_out", table)
        query = "SELECT * FROM _out"
    options = {
        "csv": "FORMAT csv, HEADER true",
        "tsv": "FORMAT csv, HEADER true, DELIMITER E'\\t'",
        "jsonl": "FORMAT json",
        "parquet": "FORMAT parquet, COMPRESSION zstd",
    }[fmt]
    if compression and fmt != "parquet":
        options += f", COMPRESSION {compression}"
    with atomic_path(uri) as tmp:
        (count,) = con.execute(f"COPY ({query}) TO {_sql_str(tmp)} ({options})").fetchall()[0]
    return int(count)
