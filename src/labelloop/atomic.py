"""Conditional writes for the loop's state: create-if-absent and replace-if-unchanged.

Local files: a temporary file in the same folder, then `os.link` (create: fails if the name
exists) or `os.replace` (replace), so a reader sees a whole file or none. `gs://` objects:
generation-match preconditions (`if_generation_match=0` creates only when absent; the object's
generation replaces or deletes only the version that was read). fake-gcs-server enforces both
on the simple uploads used here (checked in tests/test_ledger.py), not on streaming uploads.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from labelloop import storage


class PreconditionFailed(Exception):
    """The object changed (or appeared) since it was read: someone else wrote it."""


def _tmp_beside(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return tmp


def _local_generation(path: Path) -> int:
    stat = path.stat()
    return stat.st_mtime_ns ^ (stat.st_ino << 1) ^ stat.st_size


def read(uri: str) -> tuple[bytes, int] | None:
    """The object's bytes and generation, or None when it does not exist."""
    if storage.is_gcs(uri):
        from google.api_core import exceptions

        bucket, name = storage.split_gcs(uri)
        blob = storage.gcs_client().bucket(bucket).get_blob(name)
        if blob is None:
            return None
        try:
            data = blob.download_as_bytes(if_generation_match=blob.generation)
        except (exceptions.NotFound, exceptions.PreconditionFailed):
            return read(uri)  # replaced or deleted between the two calls: read again
        return bytes(data), int(blob.generation or 0)
    path = storage.local_path(uri)
    try:
        generation = _local_generation(path)
        return path.read_bytes(), generation
    except FileNotFoundError:
        return None


def create(uri: str, data: bytes) -> bool:
    """Write `data` at `uri` only if nothing is there; False when the name is taken."""
    if storage.is_gcs(uri):
        from google.api_core import exceptions

        bucket, name = storage.split_gcs(uri)
        blob = storage.gcs_client().bucket(bucket).blob(name)
        try:
            blob.upload_from_string(data, if_generation_match=0)
        except exceptions.PreconditionFailed:
            return False
        return True
    path = storage.local_path(uri)
    tmp = _tmp_beside(path, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    return True


def replace(uri: str, data: bytes, *, generation: int | None) -> None:
    """Write `data` at `uri` if it is still at `generation` (None: only if absent).

    Raises:
        PreconditionFailed: Someone else wrote or removed the object since it was read.
    """
    if generation is None:
        if not create(uri, data):
            raise PreconditionFailed(uri)
        return
    if storage.is_gcs(uri):
        from google.api_core import exceptions

        bucket, name = storage.split_gcs(uri)
        blob = storage.gcs_client().bucket(bucket).blob(name)
        try:
            blob.upload_from_string(data, if_generation_match=generation)
        except exceptions.PreconditionFailed:
            raise PreconditionFailed(uri) from None
        return
    path = storage.local_path(uri)
    tmp = _tmp_beside(path, data)
    try:
        # Compare, then rename: the lease keeps a second writer out of this window.
        if not path.exists() or _local_generation(path) != generation:
            raise PreconditionFailed(uri)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def delete(uri: str, *, generation: int | None = None) -> bool:
    """Remove the object (only at `generation` when given); False when it was not there."""
    if storage.is_gcs(uri):
        from google.api_core import exceptions

        bucket, name = storage.split_gcs(uri)
        blob = storage.gcs_client().bucket(bucket).blob(name)
        try:
            blob.delete(if_generation_match=generation)
        except exceptions.NotFound:
            return False
        except exceptions.PreconditionFailed:
            raise PreconditionFailed(uri) from None
        return True
    path = storage.local_path(uri)
    try:
        if generation is not None and _local_generation(path) != generation:
            raise PreconditionFailed(uri)
        path.unlink()
    except FileNotFoundError:
        return False
    return True
