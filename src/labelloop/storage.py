"""One file API for local paths and `gs://` URIs.

Step functions take URIs and never care where they point. Local writes are atomic (write to a
temporary file, then rename) so a retried step never leaves a half-written file behind. The GCS
client is created lazily and honours `STORAGE_EMULATOR_HOST`, which the tests use.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from labelloop.errors import BadRecord, InputError

if TYPE_CHECKING:
    from google.cloud.storage import Client

GCS_PREFIX = "gs://"


def is_gcs(uri: str) -> bool:
    """Whether `uri` is a `gs://` URI."""
    return uri.startswith(GCS_PREFIX)


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
# Bucket names: 3-63 characters of lowercase letters, digits, '-', '_' and '.', starting and
# ending with a letter or digit (dotted names may reach 222; such buckets are rare).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


def check_uri(uri: str, *, field: str, schemes: Iterable[str] = ()) -> None:
    """Refuse a URI that is neither a well-formed `gs://bucket/path` nor a local path.

    Args:
        uri: The value to check.
        field: The dotted config field, named in the error.
        schemes: Other schemes accepted here (e.g. `sample`), written without `://`.

    Raises:
        InputError: `gs:/x` or `gs:x` (which would silently become a local folder named `gs:`),
            a `gs://` URI without a valid bucket, or another scheme (`s3://`, `http://`).
    """
    match = _SCHEME.match(uri)
    if match is None or len(match.group(1)) == 1:  # a plain path (or a Windows drive letter)
        return
    scheme = match.group(1).lower()
    if scheme == "gs":
        if not uri.startswith(GCS_PREFIX):
            raise InputError(f"malformed URI {uri!r}: expected gs://bucket/path", field=field)
        bucket = uri[len(GCS_PREFIX) :].partition("/")[0]
        if not _BUCKET.match(bucket):
            raise InputError(
                f"malformed URI {uri!r}: {bucket!r} is not a bucket name (3-63 characters: "
                "lowercase letters, digits, '-', '_', '.')",
                field=field,
            )
        return
    if scheme == "file" or scheme in set(schemes):
        return
    accepted = ", ".join(["gs://bucket/path", "a local path", *(f"{s}://" for s in schemes)])
    raise InputError(f"unsupported URI {uri!r}: expected {accepted}", field=field)


def split_gcs(uri: str) -> tuple[str, str]:
    """Split `gs://bucket/name` into `(bucket, name)`; raise `InputError` for anything else."""
    if not is_gcs(uri):
        raise InputError(f"not a gs:// URI: {uri!r}")
    rest = uri[len(GCS_PREFIX) :]
    bucket, _, name = rest.partition("/")
    if not bucket:
        raise InputError(f"gs:// URI without a bucket: {uri!r}")
    return bucket, name


def local_path(uri: str) -> Path:
    """The filesystem path of a local URI (`file://` prefix allowed)."""
    if is_gcs(uri):
        raise InputError(f"expected a local path, got {uri!r}")
    return Path(uri.removeprefix("file://"))


def join(base: str, *parts: str) -> str:
    """Join URI parts with `/`, for local paths and `gs://` alike."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def basename(uri: str) -> str:
    """The last path component of a URI."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


@functools.cache
def gcs_client() -> Client:
    """The process-wide GCS client (honours `STORAGE_EMULATOR_HOST`)."""
    from google.cloud import storage

    return storage.Client()


def exists(uri: str) -> bool:
    """Whether a file exists at `uri`."""
    if is_gcs(uri):
        bucket, name = split_gcs(uri)
        return bool(gcs_client().bucket(bucket).blob(name).exists())
    return local_path(uri).is_file()


def is_dir(uri: str) -> bool:
    """Whether `uri` is a local directory or a `gs://` prefix with at least one object."""
    if is_gcs(uri):
        return next(iter_files(uri), None) is not None
    return local_path(uri).is_dir()


def iter_files(
    prefix: str,
    *,
    suffixes: Iterable[str] | None = None,
    page_size: int = 1000,
) -> Iterator[str]:
    """Yield the URIs of all files under `prefix`, in lexicographic order.

    Args:
        prefix: A local directory or a `gs://bucket/prefix` (treated as a folder).
        suffixes: Keep only names ending with one of these (case-insensitive), e.g. `(".png",)`.
        page_size: Objects per GCS list request; listing follows every page.

    Raises:
        InputError: The local directory does not exist.
    """
    wanted = tuple(s.lower() for s in suffixes) if suffixes is not None else None

    def keep(name: str) -> bool:
        return wanted is None or name.lower().endswith(wanted)

    if is_gcs(prefix):
        bucket, name = split_gcs(prefix)
        folder = name.rstrip("/") + "/" if name else ""
        blobs = gcs_client().list_blobs(bucket, prefix=folder, page_size=page_size)
        for blob in blobs:
            if not blob.name.endswith("/") and keep(blob.name):
                yield f"{GCS_PREFIX}{bucket}/{blob.name}"
        return
    root = local_path(prefix)
    if not root.is_dir():
        raise InputError(f"source directory does not exist: {prefix}", field="source_uri")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and keep(p.name))
    for path in paths:
        yield str(path)


def read_bytes(uri: str) -> bytes:
    """Read a whole file."""
    if is_gcs(uri):
        bucket, name = split_gcs(uri)
        data: bytes = gcs_client().bucket(bucket).blob(name).download_as_bytes()
        return data
    return local_path(uri).read_bytes()


def read_head(uri: str, size: int) -> bytes:
    """The first `size` bytes of a file (one ranged request on GCS)."""
    if is_gcs(uri):
        bucket, name = split_gcs(uri)
        head: bytes = (
            gcs_client().bucket(bucket).blob(name).download_as_bytes(start=0, end=size - 1)
        )
        return head
    with local_path(uri).open("rb") as fh:
        return fh.read(size)


def read_text(uri: str) -> str:
    """Read a whole UTF-8 text file."""
    return read_bytes(uri).decode("utf-8")


@contextlib.contextmanager
def open_read(uri: str) -> Iterator[IO[str]]:
    """Open a text file for streaming reads (GCS objects stream in chunks)."""
    if is_gcs(uri):
        bucket, name = split_gcs(uri)
        with gcs_client().bucket(bucket).blob(name).open("r", encoding="utf-8") as fh:
            yield fh
        return
    with local_path(uri).open("r", encoding="utf-8", newline="") as fh:
        yield fh


@contextlib.contextmanager
def open_write(uri: str) -> Iterator[IO[str]]:
    """Open a text file for writing; the file appears whole or not at all."""
    if is_gcs(uri):
        buffer = io.StringIO()
        yield buffer
        bucket, name = split_gcs(uri)
        gcs_client().bucket(bucket).blob(name).upload_from_string(
            buffer.getvalue(), content_type="text/plain; charset=utf-8"
        )
        return
    path = local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            yield fh
        chmod_like_new(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


_UMASK_LOCK = threading.Lock()


def chmod_like_new(path: str) -> None:
    """Give a temporary file the mode a newly created file gets (0666 less the umask), not
    `mkstemp`'s 0600."""
    with _UMASK_LOCK:
        mask = os.umask(0)
        os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole file atomically."""
    if is_gcs(uri):
        bucket, name = split_gcs(uri)
        gcs_client().bucket(bucket).blob(name).upload_from_string(data)
        return
    path = local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        chmod_like_new(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(uri: str, text: str) -> None:
    """Write a whole UTF-8 text file atomically."""
    write_bytes(uri, text.encode("utf-8"))


def read_jsonl_objects(
    uri: str, *, required: str | None = "item"
) -> tuple[list[tuple[int, dict[str, Any]]], list[BadRecord]]:
    """Read a JSONL file of objects (each with a `required` key, if named) with line numbers.

    The project's one line-by-line JSONL reader for small files (state, caches, exports; large
    tables go through `labelloop.tables`). A missing file reads as empty. Blank lines are
    skipped; a line that is not JSON, not an object, or lacks `required` becomes a bad record
    (file, line, field, reason): counted by the caller, never silently dropped.
    """
    if not uri or not exists(uri):
        return [], []
    with open_read(uri) as fh:
        return parse_jsonl_objects(fh, source=uri, required=required)


def parse_jsonl_objects(
    lines: Iterable[str | bytes], *, source: str, required: str | None = "item"
) -> tuple[list[tuple[int, dict[str, Any]]], list[BadRecord]]:
    """`read_jsonl_objects` of lines already in hand (e.g. bytes read with a generation)."""
    import json

    rows: list[tuple[int, dict[str, Any]]] = []
    bad: list[BadRecord] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "msg", "not UTF-8")
            bad.append(BadRecord(source, number, "*", f"not valid JSON ({reason})"))
            continue
        if not isinstance(row, dict):
            bad.append(BadRecord(source, number, "*", "expected a JSON object"))
            continue
        if required is not None and required not in row:
            bad.append(BadRecord(source, number, required, "missing"))
            continue
        rows.append((number, row))
    return rows, bad


def write_jsonl(uri: str, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows as JSON Lines; return how many were written."""
    import json

    count = 0
    with open_write(uri) as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True, ensure_ascii=False))
            fh.write("\n")
            count += 1
    return count


def inside(uri: str, roots: Iterable[str]) -> bool:
    """Whether `uri` lies inside one of `roots`: the one test every item path read from an
    input (predictions, imports, annotations, review files) must pass before it is read.

    Local paths are compared after resolving `..` and symbolic links (a link inside the source
    that points out of it is outside). A `gs://` URI must be in a root's bucket, under its
    prefix on a `/` boundary, and have no `.` or `..` segment (GCS would not resolve them, but
    a tool downstream might). A local path is never inside a `gs://` root, nor the reverse.
    """
    for root in roots:
        if not root:
            continue
        if is_gcs(uri) or is_gcs(root):
            if not (is_gcs(uri) and is_gcs(root)):
                continue
            segments = uri[len(GCS_PREFIX) :].split("/")
            if any(s in (".", "..") for s in segments):
                return False
            prefix = root.rstrip("/") + "/"
            if uri.startswith(prefix):
                return True
            continue
        try:
            path = local_path(uri).resolve()
            base = local_path(root).resolve()
        except (OSError, RuntimeError):  # a symlink loop, an unreadable folder
            continue
        if path == base or base in path.parents:
            return True
    return False
