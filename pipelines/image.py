"""The component image's one source of truth: build -> push -> the digest every run uses.

`python -m pipelines image` (`make image`) builds and pushes the image with Cloud Build
(`cloudbuild.yaml`) and records what it pushed in `.labelloop/image.json`: the image by digest,
the package version, the commit, and a fingerprint of everything the image is built from
(Dockerfile, the dependency lock, pyproject.toml, src/). `submit`, `schedule` and `upload` run
exactly that digest: they refuse, with the command to run, when nothing was pushed for the
config's repository or when the image's sources changed since it was built. `--image`
(or `$LABELLOOP_IMAGE`) overrides the record.

The compiled templates in `compiled/` name the placeholder image the components are declared
with (`components.IMAGE`); `compiled/image.json` says which image that stands for.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labelloop import __version__
from labelloop.errors import ConfigError, LabelloopError
from labelloop.vertex_config import VertexSettings

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
RECORD = Path(".labelloop") / "image.json"
LOCK = Path("requirements") / "image.lock"
# What the Dockerfile copies into the image: a change to any of these needs a new image.
IMAGE_INPUTS = (
    "Dockerfile",
    str(LOCK),
    "requirements/build.lock",
    "pyproject.toml",
    "README.md",
    "src",
)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class ImageBuildError(LabelloopError):
    """Cloud Build failed or returned no digest."""


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """An image that was pushed: `repository@digest`, and what it was built from."""

    repository: str
    digest: str
    version: str
    commit: str
    fingerprint: str
    built_at: str

    @property
    def image(self) -> str:
        return f"{self.repository}@{self.digest}"


def image_repository(vertex: VertexSettings) -> str:
    """`{region}-docker.pkg.dev/{project}/{docker_repository}/labelloop`."""
    return f"{vertex.region}-docker.pkg.dev/{vertex.project}/{vertex.docker_repository}/labelloop"


def fingerprint(root: Path | None = None) -> str:
    """A hash of every file the image is built from (`IMAGE_INPUTS`), path and content."""
    root = root or ROOT
    digest = hashlib.sha256()
    for name in IMAGE_INPUTS:
        path = root / name
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            if not file.is_file() or "__pycache__" in file.parts or file.suffix == ".pyc":
                continue
            digest.update(file.relative_to(root).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def lock_sha256(root: Path | None = None) -> str:
    """The dependency lock's hash (compiled/image.json records it)."""
    root = root or ROOT
    path = root / LOCK
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def read_record(root: Path | None = None) -> ImageRecord | None:
    """The last pushed image, or None."""
    root = root or ROOT
    path = root / RECORD
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return ImageRecord(
        **{f.name: str(data.get(f.name, "")) for f in dataclasses.fields(ImageRecord)}
    )


def write_record(record: ImageRecord, root: Path | None = None) -> Path:
    root = root or ROOT
    path = root / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**dataclasses.asdict(record), "image": record.image}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def build_command(vertex: VertexSettings, *, commit: str) -> list[str]:
    """The `gcloud builds submit` that builds and pushes the image (printed in refusals)."""
    substitutions = ",".join(
        [
            f"_REGION={vertex.region}",
            f"_REPOSITORY={vertex.docker_repository}",
            f"_VERSION={__version__}",
            f"_GIT_SHA={commit}",
        ]
    )
    return [
        "gcloud",
        "builds",
        "submit",
        f"--project={vertex.project}",
        f"--region={vertex.region}",
        "--config=cloudbuild.yaml",
        f"--substitutions={substitutions}",
        # The build's log goes to Cloud Logging; stdout carries only the result (the digest).
        "--suppress-logs",
        "--format=json",
        ".",
    ]


def _commit(root: Path, run: Callable[..., Any]) -> str:
    """The short commit, `-dirty` when the image's inputs have uncommitted changes."""
    try:
        sha = run(
            ["git", "rev-parse", "--short=7", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = run(
            ["git", "status", "--porcelain", "--", *IMAGE_INPUTS],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "nogit"
    return f"{sha}-dirty" if dirty else sha


def build_image(
    vertex: VertexSettings,
    *,
    root: Path | None = None,
    run: Callable[..., Any] = subprocess.run,
) -> ImageRecord:
    """Build and push the image with Cloud Build, record its digest, and return the record.

    Raises:
        ConfigError: No dependency lock (run `make lock`).
        ImageBuildError: `gcloud` missing, the build failing, or no digest in its result.
    """
    root = root or ROOT
    if not (root / LOCK).is_file():
        raise ConfigError(f"{LOCK} is missing: run `make lock` first", field="lock")
    commit = _commit(root, run)
    inputs = fingerprint(root)
    command = build_command(vertex, commit=commit)
    log.info("building the image: %s", " ".join(command))
    try:
        done = run(command, cwd=root, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise ImageBuildError(
            "gcloud is not installed: https://cloud.google.com/sdk/docs/install"
        ) from exc
    if done.returncode != 0:
        tail = "\n".join((done.stderr or "").strip().splitlines()[-5:])
        raise ImageBuildError(f"Cloud Build failed (exit {done.returncode}):\n{tail}")
    repository = image_repository(vertex)
    try:
        result = json.loads(done.stdout)
        images = result.get("results", {}).get("images", [])
        digest = next(
            str(i["digest"]) for i in images if str(i.get("name", "")).startswith(repository)
        )
    except (ValueError, StopIteration, KeyError, AttributeError) as exc:
        raise ImageBuildError(f"Cloud Build returned no digest for {repository}") from exc
    if not _DIGEST.match(digest):
        raise ImageBuildError(f"Cloud Build returned a malformed digest {digest!r}")
    record = ImageRecord(
        repository=repository,
        digest=digest,
        version=__version__,
        commit=commit,
        fingerprint=inputs,
        built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    path = write_record(record, root)
    log.info("pushed %s (recorded in %s)", record.image, path)
    return record


def resolve_image(
    vertex: VertexSettings, *, explicit: str | None = None, root: Path | None = None
) -> str:
    """The image a run uses: `explicit`, else the last pushed one for this config.

    Raises:
        ConfigError: Nothing pushed for the config's repository, or the image's sources
            changed since the push; the message gives the command that builds it.
    """
    if explicit:
        return explicit
    root = root or ROOT
    repository = image_repository(vertex)
    how = (
        "build and push it with `make image VERTEX_CONFIG=<config>` (runs "
        f"`{' '.join(build_command(vertex, commit='<commit>'))}`), or pass "
        f"--image {repository}@sha256:<digest>"
    )
    record = read_record(root)
    if record is None:
        raise ConfigError(f"no image has been pushed from this checkout: {how}", field="image")
    if record.repository != repository:
        raise ConfigError(
            f"the last pushed image is {record.image}, not in this config's repository "
            f"{repository}: {how}",
            field="image",
        )
    if record.fingerprint != fingerprint(root):
        raise ConfigError(
            f"the last pushed image {record.image} (commit {record.commit}) was built from "
            f"other sources: {', '.join(IMAGE_INPUTS)} changed since; {how}",
            field="image",
        )
    return record.image


def manifest() -> dict[str, Any]:
    """`compiled/image.json`: the image the compiled templates expect."""
    from components import IMAGE

    return {
        "placeholder": IMAGE,
        "built_from": [
            "Dockerfile",
            "requirements/build.lock",
            str(LOCK),
            "pyproject.toml",
            "src/",
        ],
        "lock_sha256": lock_sha256(),
        "version": __version__,
        "resolved_by": (
            "submit, schedule and upload replace the placeholder with the digest `make image` "
            "pushed (.labelloop/image.json) or --image; on another Kubeflow Pipelines cluster "
            "compile with `python -m pipelines compile --image <registry>/labelloop@sha256:...`"
        ),
    }
