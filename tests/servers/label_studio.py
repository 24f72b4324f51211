"""A real Label Studio 1.23 (Community) server on loopback, for the provider tests.

Label Studio is installed once into its own virtualenv under `.cache/label-studio/venv`
(its pins clash with the project's; the project itself only needs `label-studio-sdk`). The
database is migrated once into a template data dir, with an admin and three annotators whose
legacy API tokens are fixed; each test session copies the template and starts a server on a
free port (a few seconds). Anything that cannot be installed makes the tests skip with the
reason; a server that is installed but fails to start is an error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "label-studio"
VENV = CACHE / "venv"
TEMPLATE = CACHE / "template-1.23"
REQUIREMENT = "label-studio>=1.23,<1.24"
PASSWORD = "labelloop-test-pass"

# Legacy tokens are 40 hex characters; fixed so the template carries them.
ADMIN = ("admin@example.com", "a0" * 20)
ANNOTATORS = {
    "ann1@example.com": "b1" * 20,
    "ann2@example.com": "c2" * 20,
    "ann3@example.com": "d3" * 20,
}


class Unavailable(Exception):
    """Label Studio cannot be installed here (the reason is the test's skip reason)."""


def _bin(name: str) -> Path:
    return VENV / "bin" / name


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """One installer at a time across parallel pytest processes."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _base_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO", "DJANGO"))}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        DJANGO_DB="sqlite",
        # No calls out: version checks and error reporting stay off.
        LATEST_VERSION_CHECK="false",
        COLLECT_ANALYTICS="false",
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
    )
    return env


def ensure_installed() -> None:
    """Install Label Studio into its own virtualenv once (about 2 minutes)."""
    with _lock():
        if _bin("label-studio").exists():
            return
        try:
            subprocess.run(
                [sys.executable, "-m", "venv", "--clear", str(VENV)],
                check=True,
                capture_output=True,
                timeout=300,
            )
            subprocess.run(
                [str(_bin("pip")), "install", "--quiet", REQUIREMENT],
                check=True,
                capture_output=True,
                timeout=1200,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            shutil.rmtree(VENV, ignore_errors=True)
            detail = getattr(exc, "stderr", b"") or b""
            raise Unavailable(
                f"could not install {REQUIREMENT}: {exc}; {detail.decode(errors='replace')[-300:]}"
            ) from exc


def _init_user(data_dir: Path, email: str, token: str, *, first: bool) -> None:
    args = [
        str(_bin("label-studio")),
        "init",
        "--data-dir",
        str(data_dir),
        "--username",
        email,
        "--password",
        PASSWORD,
        "--user-token",
        token,
        "-q",
    ]
    if first:
        # Token auth (the SDK's legacy mode) is off by default in 1.23; on for the org here.
        args.append("--enable-legacy-api-token")
    subprocess.run(args, env=_base_env(data_dir), check=True, capture_output=True, timeout=600)


def ensure_template() -> Path:
    """A migrated data dir with the admin and annotators (built once, about a minute)."""
    ensure_installed()
    with _lock():
        marker = TEMPLATE / "labelloop-users.json"
        if marker.exists():
            return TEMPLATE
        building = TEMPLATE.with_name(TEMPLATE.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        _init_user(building, *ADMIN, first=True)
        for email, token in ANNOTATORS.items():
            _init_user(building, email, token, first=False)
        (building / "labelloop-users.json").write_text(
            json.dumps({"admin": ADMIN, "annotators": ANNOTATORS})
        )
        shutil.rmtree(TEMPLATE, ignore_errors=True)
        building.rename(TEMPLATE)
        return TEMPLATE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class LabelStudioServer:
    """A running server: its URL, tokens and the local files root it serves."""

    url: str
    admin_token: str
    annotator_tokens: dict[str, str]
    files_root: Path
    process: subprocess.Popen
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def start(workdir: Path, *, timeout: float = 120.0) -> LabelStudioServer:
    """Copy the template into `workdir` and start a server on a free loopback port."""
    template = ensure_template()
    data_dir = workdir / "data"
    files_root = workdir / "files"
    shutil.copytree(template, data_dir)
    files_root.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = _base_env(data_dir)
    env.update(
        LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
        LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(files_root),
    )
    log_path = workdir / "label-studio.log"
    log = open(log_path, "wb")  # noqa: SIM115 - the server writes to it until stop()
    process = subprocess.Popen(
        [
            str(_bin("label-studio")),
            "start",
            "--no-browser",
            "--internal-host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    server = LabelStudioServer(url, ADMIN[1], dict(ANNOTATORS), files_root, process, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    server.stop()
    tail = log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"Label Studio did not start on {url}:\n{tail}")
