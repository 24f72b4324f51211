"""Run the pipeline on Vertex AI: submit, schedule, upload a template, launch from a template.

This is the edge that talks to Google: every check that can run offline (config, cron, bucket
URIs, parameter names against the template) runs first, then the API calls, with transient
errors (429, 500, 503, 504, timeouts) retried and the others (403, 404, ...) turned into an
actionable `VertexApiError`. Nothing here reads the environment; `pipelines/__main__.py` does.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from labelloop import __version__
from labelloop.config import Config, PipelineParams, line_map, load_config
from labelloop.errors import ConfigError, LabelloopError
from labelloop.vertex_config import VertexSettings, parse_vertex_settings

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from google.cloud.aiplatform import PipelineJob

log = logging.getLogger(__name__)
T = TypeVar("T")

_BUCKET_URI = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$")
RETRY_ATTEMPTS = 4
# Seconds before the first retry; doubles each time (tests set it to 0).
RETRY_BASE_DELAY = 1.0


class VertexApiError(LabelloopError):
    """A Vertex AI / Cloud Storage / Artifact Registry call failed in a way a retry will not fix."""


@dataclasses.dataclass(frozen=True)
class Target:
    """Where a run goes: the loaded config and its validated `vertex:` section."""

    config: Config
    vertex: VertexSettings


def load_target(
    path: str,
    *,
    overrides: tuple[str, ...] = (),
    need_registry: bool = False,
    need_schedule: bool = False,
) -> Target:
    """Load a config file and validate its `vertex:` section and the URIs a cloud run needs.

    Raises:
        ConfigError: Anything wrong, naming file, line and field; no API has been called.
    """
    config = load_config(path, overrides=overrides, target="vertex")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        text = ""
    lines = line_map(text)
    # A value given with --set did not come from the file: no file line for it (or below it).
    for override in overrides:
        key = override.partition("=")[0].strip()
        lines = {k: v for k, v in lines.items() if k != key and not k.startswith(key + ".")}
    vertex = parse_vertex_settings(config.vertex, source=path, lines=lines)
    vertex.validate(
        source=path, lines=lines, need_registry=need_registry, need_schedule=need_schedule
    )
    if not _BUCKET_URI.match(config.pipeline.source_uri):
        raise ConfigError(
            "on Vertex AI the source must be a gs://bucket/prefix URI, "
            f"got {config.pipeline.source_uri!r}",
            source=path,
            line=lines.get("pipeline.source_uri"),
            field="pipeline.source_uri",
        )
    state_uri = config.pipeline.state_uri
    if state_uri and not _BUCKET_URI.match(state_uri):
        raise ConfigError(
            f"on Vertex AI the state folder must be a gs://bucket/prefix URI, got {state_uri!r}",
            source=path,
            line=lines.get("pipeline.state_uri"),
            field="pipeline.state_uri",
        )
    if not state_uri:
        config = config.with_pipeline(state_uri=vertex.pipeline_root.rstrip("/") + "/state")
    return Target(config=config, vertex=vertex)


def template_parameters(spec: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """`(all parameter names, required ones)` of a compiled pipeline spec."""
    params = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    required = {
        name
        for name, definition in params.items()
        if "defaultValue" not in definition and not definition.get("isOptional")
    }
    return set(params), required


def parameter_values(target: Target, spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The run's parameter values: the `pipeline:` section plus the `vertex:` section's.

    With `spec`, every name must be a parameter of that template and every required parameter
    must have a value. A `pipeline:` parameter left at its default that the template does not
    take (e.g. the portable pipeline's `predictions_uri`: the Vertex one scores the pool
    itself) is dropped; set to anything else, it is an error.

    Raises:
        ConfigError: An unknown or a missing parameter.
    """
    values = target.config.pipeline.as_parameter_values()
    values.update(target.vertex.pipeline_parameters())
    if spec is None:
        return values
    known, required = template_parameters(spec)
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(PipelineParams)
        if f.default is not dataclasses.MISSING
    }
    values = {
        k: v for k, v in values.items() if k in known or k not in defaults or v != defaults[k]
    }
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown parameter {unknown[0]!r} for this template; "
            f"it takes {', '.join(sorted(known))}",
            source=target.config.source,
            field=unknown[0],
        )
    missing = sorted(required - {k for k, v in values.items() if v not in ("", None)})
    if missing:
        raise ConfigError(
            f"the template needs a value for {missing[0]!r}",
            source=target.config.source,
            field=missing[0],
        )
    return values


def run_labels(vertex: VertexSettings) -> dict[str, str]:
    """Resource labels of the run: the config's plus the package version."""
    labels = {"labelloop-version": re.sub(r"[^a-z0-9_-]", "-", __version__.lower())}
    labels.update(vertex.labels)
    return labels


def api_error(exc: Exception, *, action: str, vertex: VertexSettings) -> VertexApiError:
    """Turn a Google API exception into a message that says what to do."""
    from google.api_core import exceptions as gexc

    where = f"project {vertex.project!r}, region {vertex.region!r}"
    if isinstance(exc, gexc.Forbidden | gexc.PermissionDenied | gexc.Unauthorized):
        hint = (
            f"permission denied while trying to {action} ({where}). The caller needs "
            "roles/aiplatform.user on the project"
        )
        if vertex.service_account:
            hint += (
                f" and roles/iam.serviceAccountUser on {vertex.service_account}; that service "
                "account needs roles/aiplatform.user and roles/storage.objectAdmin on the "
                "pipeline root bucket"
            )
        hint += ". Check `gcloud auth list` and that the Vertex AI API is enabled (docs/vertex.md)."
        return VertexApiError(f"{hint} [{exc}]")
    if isinstance(exc, gexc.NotFound):
        return VertexApiError(
            f"not found while trying to {action} ({where}): check the project id and region, "
            "that aiplatform.googleapis.com is enabled, and that the resource or template "
            f"exists [{exc}]"
        )
    if isinstance(exc, gexc.TooManyRequests | gexc.ResourceExhausted):
        return VertexApiError(
            f"quota exceeded while trying to {action} ({where}) after {RETRY_ATTEMPTS} attempts: "
            "wait and retry, or request a quota increase under IAM & Admin > Quotas "
            f"(aiplatform.googleapis.com) [{exc}]"
        )
    if isinstance(exc, gexc.InvalidArgument | gexc.BadRequest | gexc.FailedPrecondition):
        return VertexApiError(f"Vertex AI rejected the request to {action}: {exc}")
    return VertexApiError(f"failed to {action} ({where}): {exc}")


def _is_transient(exc: Exception) -> bool:
    from google.api_core import exceptions as gexc

    return isinstance(
        exc,
        gexc.TooManyRequests
        | gexc.ResourceExhausted
        | gexc.InternalServerError
        | gexc.BadGateway
        | gexc.ServiceUnavailable
        | gexc.GatewayTimeout
        | gexc.DeadlineExceeded,
    )


def call_api(
    fn: Callable[[], T],
    *,
    action: str,
    vertex: VertexSettings,
    attempts: int = RETRY_ATTEMPTS,
    base_delay: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `fn`, retrying transient API errors with exponential backoff.

    Raises:
        VertexApiError: A permanent error, or a transient one that outlasted the retries.
    """
    from google.api_core import exceptions as gexc

    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except gexc.GoogleAPICallError as exc:
            if not _is_transient(exc) or attempt == attempts:
                raise api_error(exc, action=action, vertex=vertex) from exc
            delay = (RETRY_BASE_DELAY if base_delay is None else base_delay) * 2 ** (attempt - 1)
            log.warning("%s: %s; retry %d/%d in %.1fs", action, exc, attempt, attempts - 1, delay)
            sleep(delay)
    raise VertexApiError(f"failed to {action}")  # unreachable: the loop returns or raises


def init_vertex(
    vertex: VertexSettings,
    *,
    api_endpoint: str | None = None,
    credentials: Credentials | None = None,
) -> None:
    """Point the Vertex AI SDK at the project, region and (for tests) an API endpoint."""
    from google.cloud import aiplatform

    kwargs: dict[str, Any] = {
        "project": vertex.project,
        "location": vertex.region,
        "staging_bucket": vertex.pipeline_root,
    }
    if vertex.encryption_spec_key_name:
        kwargs["encryption_spec_key_name"] = vertex.encryption_spec_key_name
    if vertex.service_account:
        kwargs["service_account"] = vertex.service_account
    if credentials is not None:
        kwargs["credentials"] = credentials
    if api_endpoint:
        kwargs["api_endpoint"] = api_endpoint
        kwargs["api_transport"] = "rest"
    aiplatform.init(**kwargs)


def resolve_template(
    target: Target, *, template: str | None, image: str | None, work_dir: Path
) -> tuple[str, dict[str, Any] | None]:
    """The template a run uses, and its spec when it is readable offline.

    `--template` (a local JSON/YAML or a registry URI) wins, then `vertex.template_path` if the
    file exists; otherwise the Vertex pipeline is compiled from the config's training settings.
    """
    from pipelines.vertex_compile import compile_vertex_template

    chosen = template or ""
    if not chosen and target.vertex.template_path and Path(target.vertex.template_path).is_file():
        chosen = target.vertex.template_path
    if not chosen:
        out = work_dir / "vertex_labeling_pipeline.json"
        compile_vertex_template(out, training=target.vertex.training, image=image)
        chosen = str(out)
    if chosen.startswith("https://"):
        return chosen, None
    path = Path(chosen)
    if not path.is_file():
        raise ConfigError(f"template file does not exist: {chosen}", field="template")
    import yaml

    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    return chosen, spec.get("pipelineSpec", spec)


def job_id(prefix: str = "labelloop") -> str:
    """A unique, valid pipeline job id (lowercase, digits, dashes), fixed before the first try."""
    import uuid

    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"


def make_job(
    target: Target,
    *,
    template_path: str,
    spec: Mapping[str, Any] | None,
    enable_caching: bool | None = None,
    display_name: str | None = None,
) -> PipelineJob:
    """A `PipelineJob` for the target (no API call yet)."""
    from google.cloud import aiplatform

    vertex = target.vertex
    caching = vertex.enable_caching if enable_caching is None else enable_caching
    return aiplatform.PipelineJob(
        display_name=display_name or vertex.display_name,
        template_path=template_path,
        job_id=job_id(vertex.display_name),
        pipeline_root=vertex.pipeline_root,
        parameter_values=parameter_values(target, spec),
        enable_caching=caching,
        labels=run_labels(vertex),
        encryption_spec_key_name=vertex.encryption_spec_key_name or None,
        project=vertex.project,
        location=vertex.region,
    )


def submit(
    target: Target,
    *,
    template: str | None = None,
    image: str | None = None,
    enable_caching: bool | None = None,
    experiment: str | None = None,
) -> str:
    """Submit one run; return its resource name.

    Raises:
        ConfigError: Bad config or parameters (before any API call).
        VertexApiError: The API refused.
    """
    from google.api_core import exceptions as gexc

    vertex = target.vertex
    with tempfile.TemporaryDirectory(prefix="labelloop-vertex-") as tmp:
        template_path, spec = resolve_template(
            target, template=template, image=image, work_dir=Path(tmp)
        )
        job = make_job(
            target, template_path=template_path, spec=spec, enable_caching=enable_caching
        )

        def create() -> None:
            try:
                job.submit(
                    service_account=vertex.service_account or None,
                    network=vertex.network or None,
                    experiment=(experiment or vertex.experiment) or None,
                )
            except gexc.AlreadyExists:
                # A retried create whose first attempt landed: the job id is fixed, so it is ours.
                log.info("pipeline job %s already exists", job.job_id)

        call_api(create, action="create the pipeline job", vertex=vertex)
    name = str(job.resource_name)
    log.info("submitted %s", name)
    return name


def find_schedule(target: Target, display_name: str) -> Any | None:
    """The schedule with this display name, or None. Several with the same name is an error."""
    from google.cloud import aiplatform

    vertex = target.vertex
    found = call_api(
        lambda: aiplatform.PipelineJobSchedule.list(
            filter=f'display_name="{display_name}"', project=vertex.project, location=vertex.region
        ),
        action="list schedules",
        vertex=vertex,
    )
    matches = [s for s in found if s.display_name == display_name]
    if len(matches) > 1:
        names = ", ".join(s.resource_name for s in matches)
        raise VertexApiError(
            f"{len(matches)} schedules are named {display_name!r} ({names}); delete all but one"
        )
    return matches[0] if matches else None


def apply_schedule(
    target: Target, *, template: str | None = None, image: str | None = None
) -> tuple[str, str]:
    """Create the schedule, or update the one with the same display name; `(action, name)`.

    The update replaces the cron, the concurrency and the run it launches (template and
    parameter values), so a second `schedule` never duplicates.
    """
    from google.cloud import aiplatform
    from google.protobuf import field_mask_pb2

    vertex = target.vertex
    schedule = vertex.schedule
    with tempfile.TemporaryDirectory(prefix="labelloop-vertex-") as tmp:
        template_path, spec = resolve_template(
            target, template=template, image=image, work_dir=Path(tmp)
        )
        job = make_job(
            target, template_path=template_path, spec=spec, display_name=schedule.display_name
        )
        existing = find_schedule(target, schedule.display_name)
        if existing is None:
            created = call_api(
                lambda: job.create_schedule(
                    cron=schedule.cron_with_time_zone,
                    display_name=schedule.display_name,
                    allow_queueing=schedule.allow_queueing,
                    max_run_count=schedule.max_run_count or None,
                    max_concurrent_run_count=schedule.max_concurrent_run_count,
                    service_account=vertex.service_account or None,
                    network=vertex.network or None,
                ),
                action="create the schedule",
                vertex=vertex,
            )
            return "created", str(created.resource_name)
        # Build the new run request the way create_schedule would, then patch it in.
        fresh = aiplatform.PipelineJobSchedule(pipeline_job=job, display_name=schedule.display_name)
        request = fresh._gca_resource.create_pipeline_job_request
        if vertex.service_account:
            request.pipeline_job.service_account = vertex.service_account
        if vertex.network:
            request.pipeline_job.network = vertex.network
        resource = existing._gca_resource
        resource.cron = schedule.cron_with_time_zone
        resource.max_concurrent_run_count = schedule.max_concurrent_run_count
        resource.allow_queueing = schedule.allow_queueing
        resource.max_run_count = schedule.max_run_count
        resource.create_pipeline_job_request = request
        paths = [
            "cron",
            "max_concurrent_run_count",
            "allow_queueing",
            "max_run_count",
            "create_pipeline_job_request",
        ]
        call_api(
            lambda: existing.api_client.update_schedule(
                schedule=resource, update_mask=field_mask_pb2.FieldMask(paths=paths)
            ),
            action="update the schedule",
            vertex=vertex,
        )
        return "updated", str(existing.resource_name)


def change_schedule(target: Target, action: str) -> str:
    """Pause, resume or delete the schedule named in the config; return its resource name."""
    vertex = target.vertex
    name = vertex.schedule.display_name
    existing = find_schedule(target, name)
    if existing is None:
        raise VertexApiError(
            f"no schedule named {name!r} in project {vertex.project!r}, region {vertex.region!r}; "
            "create it with `python -m pipelines schedule`"
        )
    operations: dict[str, Callable[[], Any]] = {
        "pause": existing.pause,
        "resume": existing.resume,
        "delete": existing.delete,
    }
    if action not in operations:
        raise ConfigError(f"unknown schedule action {action!r}; expected pause, resume or delete")
    resource_name = str(existing.resource_name)
    call_api(operations[action], action=f"{action} the schedule", vertex=vertex)
    return resource_name


def upload(
    target: Target,
    template_file: str,
    *,
    version: str = __version__,
    host: str | None = None,
    auth: Any = None,
) -> tuple[str, str]:
    """Upload a compiled template to the Artifact Registry KFP repository, tagged version + latest.

    Returns:
        `(package name, version digest)` as the registry reports them.
    """
    import requests
    from kfp.registry import RegistryClient

    vertex = target.vertex
    if not Path(template_file).is_file():
        raise ConfigError(f"template file does not exist: {template_file}; run `make compile`")
    tags = [re.sub(r"[^a-z0-9._-]", "-", f"v{version}".lower()), "latest"]
    client = RegistryClient(host=host or vertex.registry_host, auth=auth)
    attempt_errors: list[str] = []
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        try:
            package, digest = client.upload_pipeline(
                file_name=template_file,
                tags=tags,
                extra_headers={"description": f"labelloop {version} Vertex labeling pipeline"},
            )
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status in (429, 500, 502, 503, 504) and attempt < RETRY_ATTEMPTS:
                attempt_errors.append(str(status))
                time.sleep(RETRY_BASE_DELAY * 2 ** (attempt - 1))
                continue
            raise _registry_error(status, vertex, exc) from exc
        log.info("uploaded %s %s tags %s", package, digest, tags)
        return package, digest
    raise VertexApiError(f"upload failed after retries: {attempt_errors}")


def _registry_error(status: int, vertex: VertexSettings, exc: Exception) -> VertexApiError:
    repo = vertex.registry_host
    if status in (401, 403):
        return VertexApiError(
            f"permission denied uploading to {repo}: the caller needs "
            f"roles/artifactregistry.writer on the repository [{exc}]"
        )
    if status == 404:
        return VertexApiError(
            f"repository {repo} not found: create it with `gcloud artifacts repositories create "
            f"{vertex.registry_repository} --repository-format=KFP "
            f"--location={vertex.region}` [{exc}]"
        )
    if status == 429:
        return VertexApiError(
            f"Artifact Registry quota exceeded uploading to {repo}; retry later [{exc}]"
        )
    return VertexApiError(f"upload to {repo} failed: {exc}")


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


def run_template(
    target: Target,
    template_uri: str | None = None,
    *,
    enable_caching: bool | None = None,
    auth: Any = None,
) -> str:
    """Launch a run from a registry template (default: the config's package at its tag).

    The template is downloaded first so the parameter names are checked before the run is made.
    """
    vertex = target.vertex
    uri = template_uri or vertex.template_uri()
    with tempfile.TemporaryDirectory(prefix="labelloop-template-") as tmp:
        local = download_template(target, uri, work_dir=Path(tmp), auth=auth)
        import yaml

        spec = yaml.safe_load(local.read_text(encoding="utf-8"))
        parameter_values(target, spec.get("pipelineSpec", spec))
        # Vertex records templateUri only for registry URLs; anything else runs the local copy.
        path = uri if re.match(r"^https://[\w-]+-kfp\.pkg\.dev/", uri) else str(local)
        return submit(target, template=path, enable_caching=enable_caching)


def describe(target: Target) -> str:
    """A one-line summary of where runs go (for CLI output)."""
    vertex = target.vertex
    return json.dumps(
        {"project": vertex.project, "region": vertex.region, "pipeline_root": vertex.pipeline_root},
        sort_keys=True,
    )
