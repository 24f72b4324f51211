"""Pipeline templates in an Artifact Registry KFP repository: upload per build, run by version.

Each upload is tagged with its own version, `v<package version>-g<commit>` (never moved by a
later build), plus `latest`. `run-template` launches a version: `--version`, else
`vertex.template_tag`, else the version this checkout uploaded last (`.labelloop/template.json`).
`latest` is used only when asked for by name.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import pipelines.vertex_api as api
from labelloop import __version__
from labelloop.errors import ConfigError
from labelloop.vertex_config import VertexSettings
from pipelines.vertex_api import VertexApiError
from pipelines.vertex_runs import Target, parameter_values, submit

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
RECORD = Path(".labelloop") / "template.json"


def version_tag(version: str, commit: str) -> str:
    """The immutable tag of one build's template: `v0.1.0-g3f2a1bc`."""
    tag = f"v{version}-g{commit}" if commit else f"v{version}"
    return re.sub(r"[^a-z0-9._-]", "-", tag.lower())


def upload(
    target: Target,
    template_file: str,
    *,
    version: str = __version__,
    commit: str = "",
    host: str | None = None,
    auth: Any = None,
    root: Path = ROOT,
) -> tuple[str, str, str]:
    """Upload a compiled template, tagged with this build's version and `latest`.

    The placeholder image in the template is replaced by `target.image` first, so the
    registry's copy runs exactly the pushed digest.

    Returns:
        `(package name, registry version digest, version tag)`.
    """
    import requests
    from kfp.registry import RegistryClient

    from pipelines.compile import set_image

    vertex = target.vertex
    if not Path(template_file).is_file():
        raise ConfigError(f"template file does not exist: {template_file}; run `make compile`")
    tag = version_tag(version, commit)
    tags = [tag, "latest"]
    client = RegistryClient(host=host or vertex.registry_host, auth=auth)
    attempt_errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="labelloop-upload-") as tmp:
        spec = json.loads(Path(template_file).read_text(encoding="utf-8"))
        if target.image:
            set_image(spec.get("pipelineSpec", spec), target.image)
        pinned = Path(tmp) / Path(template_file).name
        pinned.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        for attempt in range(1, api.RETRY_ATTEMPTS + 1):
            try:
                package, digest = client.upload_pipeline(
                    file_name=str(pinned),
                    tags=tags,
                    extra_headers={
                        "description": f"labelloop {tag} Vertex labeling pipeline"
                        + (f" ({target.image})" if target.image else "")
                    },
                )
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else 0
                if status in (429, 500, 502, 503, 504) and attempt < api.RETRY_ATTEMPTS:
                    attempt_errors.append(str(status))
                    time.sleep(api.RETRY_BASE_DELAY * 2 ** (attempt - 1))
                    continue
                raise _registry_error(status, vertex, exc) from exc
            log.info("uploaded %s %s tags %s", package, digest, tags)
            record = root / RECORD
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(
                json.dumps(
                    {"host": host or vertex.registry_host, "package": package, "tag": tag},
                    indent=2,
                    sort_keys=True,
                )
                + "\n",
                encoding="utf-8",
            )
            return package, digest, tag
    raise VertexApiError(f"upload failed after retries: {attempt_errors}")


def _registry_error(status: int, vertex: VertexSettings, exc: Exception) -> VertexApiError:
    repo = vertex.registry_host
    if status in (401, 403):
        return VertexApiError(
            f"permission denied on {repo}: uploading needs roles/artifactregistry.writer on "
            "the repository, launching a template needs roles/artifactregistry.reader for you "
            "and for the Vertex AI service agent (docs/vertex.md) [" + str(exc) + "]"
        )
    if status == 404:
        return VertexApiError(
            f"repository {repo} or the template version was not found: create the repository "
            f"with `gcloud artifacts repositories create {vertex.registry_repository} "
            f"--repository-format=KFP --location={vertex.region}`, upload with `make upload` "
            f"[{exc}]"
        )
    if status == 429:
        return VertexApiError(
            f"Artifact Registry quota exceeded uploading to {repo}; retry later [{exc}]"
        )
    return VertexApiError(f"Artifact Registry call to {repo} failed: {exc}")


def download_template(
    target: Target, template_uri: str, *, work_dir: Path, auth: Any = None
) -> Path:
    """Download a registry template (`{host}/{package}/{tag-or-version}`) to read its parameters."""
    import requests
    from kfp.registry import RegistryClient

    host, package, ref = template_uri.rstrip("/").rsplit("/", 2)
    client = RegistryClient(host=host, auth=auth)
    out = work_dir / "template.yaml"
    try:
        if ref.startswith("sha256:"):
            client.download_pipeline(package_name=package, version=ref, file_name=str(out))
        else:
            client.download_pipeline(package_name=package, tag=ref, file_name=str(out))
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        raise _registry_error(status, target.vertex, exc) from exc
    return out


def template_uri(
    target: Target, *, version: str | None = None, host: str | None = None, root: Path = ROOT
) -> str:
    """The registry URI `run-template` launches (see the module docstring for the order).

    Raises:
        ConfigError: No version given, configured or uploaded from this checkout.
    """
    vertex = target.vertex
    base = f"{host or vertex.registry_host}/{vertex.template_package}"
    if version:
        return f"{base}/{version}"
    if vertex.template_tag:
        return f"{base}/{vertex.template_tag}"
    record = root / RECORD
    if record.is_file():
        data = json.loads(record.read_text(encoding="utf-8"))
        if data.get("package") == vertex.template_package and data.get("host") == (
            host or vertex.registry_host
        ):
            return f"{base}/{data['tag']}"
    raise ConfigError(
        "which template version? pass --version v<version>-g<commit> (as `make upload` "
        "printed it), set vertex.template_tag, or --version latest for the newest upload",
        field="vertex.template_tag",
    )


def run_template(
    target: Target,
    template: str | None = None,
    *,
    version: str | None = None,
    enable_caching: bool | None = None,
    auth: Any = None,
    host: str | None = None,
    root: Path = ROOT,
) -> str:
    """Launch a run from a registry template version.

    The template is downloaded first so the parameter names are checked before the run is made.
    """
    uri = template or template_uri(target, version=version, host=host, root=root)
    with tempfile.TemporaryDirectory(prefix="labelloop-template-") as tmp:
        local = download_template(target, uri, work_dir=Path(tmp), auth=auth)
        import yaml

        spec = yaml.safe_load(local.read_text(encoding="utf-8"))
        parameter_values(target, spec.get("pipelineSpec", spec))
        # Vertex records templateUri only for registry URLs; anything else runs the local copy.
        path = uri if re.match(r"^https://[\w-]+-kfp\.pkg\.dev/", uri) else str(local)
        return submit(target, template=path, enable_caching=enable_caching)
