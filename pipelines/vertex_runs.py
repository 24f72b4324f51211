"""One-off runs on Vertex AI Pipelines: load and check the target, build the job, submit it.

Every check that can run offline (config, bucket URIs, parameter names against the template,
the image) runs first, then the API call (`vertex_api.call_api`: retries and actionable errors).
Schedules live in `vertex_schedules`, registry templates in `vertex_registry`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labelloop import __version__
from labelloop.config import Config, PipelineParams, line_map, load_config
from labelloop.errors import ConfigError
from labelloop.vertex_config import VertexSettings, parse_vertex_settings
from pipelines.vertex_api import call_api

if TYPE_CHECKING:
    from google.cloud.aiplatform import PipelineJob

log = logging.getLogger(__name__)

_BUCKET_URI = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$")
_LABEL = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


@dataclasses.dataclass(frozen=True)
class Target:
    """Where a run goes: the loaded config, its validated `vertex:` section, and the image.

    Attributes:
        config: The whole config.
        vertex: Its `vertex:` section, validated.
        image: The component image (`repository@sha256:...`) runs use; "" = not resolved yet
            (a registry template already pins its image).
        extra_labels: Labels added on top of `vertex.labels` (`--label`, e.g. CI's trigger).
    """

    config: Config
    vertex: VertexSettings
    image: str = ""
    extra_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)


def load_target(
    path: str,
    *,
    overrides: tuple[str, ...] = (),
    need_registry: bool = False,
    need_schedule: bool = False,
    extra_labels: Mapping[str, str] | None = None,
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
    labels = dict(extra_labels or {})
    for key, value in labels.items():
        if not _LABEL.match(key) or not _LABEL_VALUE.match(value):
            raise ConfigError(
                f"label {key}={value!r}: labels take lowercase letters, digits, _ and - "
                "(keys start with a letter, at most 63 characters)",
                field="--label",
            )
    return Target(config=config, vertex=vertex, extra_labels=labels)


def parse_labels_option(items: list[str] | None) -> dict[str, str]:
    """`["key=value", ...]` (the `--label` option) as a dict.

    Raises:
        ConfigError: An item without `=`.
    """
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected KEY=VALUE, got {item!r}", field="--label")
        out[key.strip()] = value.strip()
    return out


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
    values["resource_labels"] = run_labels(target, with_version=False)
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


def run_labels(target: Target, *, with_version: bool = True) -> dict[str, str]:
    """Resource labels: the config's, plus `--label` ones on top, plus the package version.

    CI adds `trigger`/`commit` this way: the config's own labels (team, cost centre, ...) stay.
    """
    labels: dict[str, str] = {}
    if with_version:
        labels["labelloop-version"] = re.sub(r"[^a-z0-9_-]", "-", __version__.lower())
    labels.update(target.vertex.labels)
    labels.update(target.extra_labels)
    return labels


@contextmanager
def resolved_template(target: Target, *, template: str | None) -> Iterator[tuple[str, Any]]:
    """The template a run uses, and its spec when it is readable offline.

    `--template` (a local JSON/YAML or a registry URI) wins, then `vertex.template_path` if the
    file exists; otherwise the Vertex pipeline is compiled from the config's training settings.
    A local template runs `target.image`: the placeholder image the components are declared
    with is replaced by it (a registry template already pins its image at upload).

    Raises:
        ConfigError: A missing template file.
    """
    from pipelines.compile import set_image
    from pipelines.vertex_compile import compile_vertex_template

    with tempfile.TemporaryDirectory(prefix="labelloop-vertex-") as tmp:
        chosen = template or ""
        if (
            not chosen
            and target.vertex.template_path
            and Path(target.vertex.template_path).is_file()
        ):
            chosen = target.vertex.template_path
        if not chosen:
            out = Path(tmp) / "vertex_labeling_pipeline.json"
            compile_vertex_template(
                out,
                training=target.vertex.training,
                resources=target.vertex.resources,
                retries=target.vertex.stage_retries,
                image=target.image or None,
            )
            chosen = str(out)
        if chosen.startswith("https://"):
            yield chosen, None
            return
        path = Path(chosen)
        if not path.is_file():
            raise ConfigError(f"template file does not exist: {chosen}", field="template")
        import yaml

        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        inner = spec.get("pipelineSpec", spec)
        if target.image and set_image(inner, target.image):
            path = Path(tmp) / f"pinned-{path.stem}.json"
            path.write_text(json.dumps(spec, indent=2, sort_keys=True), encoding="utf-8")
        yield str(path), inner


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
    wanted = vertex.enable_caching if enable_caching is None else enable_caching
    # On: the template's per-stage choice (only the pure stages cache, see stage_settings);
    # off: nothing is cached. PipelineJob's True would force caching on every stage.
    caching = None if wanted else False
    return aiplatform.PipelineJob(
        display_name=display_name or vertex.display_name,
        template_path=template_path,
        job_id=job_id(vertex.display_name),
        pipeline_root=vertex.pipeline_root,
        parameter_values=parameter_values(target, spec),
        enable_caching=caching,
        labels=run_labels(target),
        encryption_spec_key_name=vertex.encryption_spec_key_name or None,
        project=vertex.project,
        location=vertex.region,
    )


def submit(
    target: Target,
    *,
    template: str | None = None,
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
    with resolved_template(target, template=template) as (template_path, spec):
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


def describe(target: Target) -> str:
    """A one-line summary of where runs go (for CLI output)."""
    vertex = target.vertex
    return json.dumps(
        {"project": vertex.project, "region": vertex.region, "pipeline_root": vertex.pipeline_root},
        sort_keys=True,
    )
