"""The typed `vertex:` section of a config file: where and how the pipeline runs on Vertex AI.

Everything here is checked before any API call or compile: a missing project or region, a
pipeline root that is not a `gs://` bucket URI, a bad cron line or time zone, an AutoML model type
that does not fit its prediction type, a node-hour budget out of range, splits that do not add up.
Nothing here imports kfp or a Google client, and nothing reads the environment.
"""

from __future__ import annotations

import dataclasses
import re
import typing
import zoneinfo
from collections.abc import Mapping
from typing import Any

from labelloop.config import build_section
from labelloop.errors import ConfigError

SECTION = "vertex"

# AutoML image model types by prediction type (google-cloud-aiplatform AutoMLImageTrainingJob).
CLASSIFICATION_MODEL_TYPES = (
    "CLOUD",
    "CLOUD_1",
    "MOBILE_TF_LOW_LATENCY_1",
    "MOBILE_TF_VERSATILE_1",
    "MOBILE_TF_HIGH_ACCURACY_1",
)
OBJECT_DETECTION_MODEL_TYPES = (
    "CLOUD_HIGH_ACCURACY_1",
    "CLOUD_LOW_LATENCY_1",
    "CLOUD_1",
    "MOBILE_TF_LOW_LATENCY_1",
    "MOBILE_TF_VERSATILE_1",
    "MOBILE_TF_HIGH_ACCURACY_1",
)
# Node-hour budgets the service accepts, in milli node hours (1,000 = one node hour), by model
# type (AutoMlImageClassificationInputs / AutoMlImageObjectDetectionInputs, v1 schema docs):
# cloud models 8,000-800,000 (classification) and 20,000-900,000 (object detection); the
# exportable mobile models 1,000-100,000 for both.
MOBILE_BUDGET = (1_000, 100_000)
CLOUD_BUDGETS = {"classification": (8_000, 800_000), "object_detection": (20_000, 900_000)}


def budget_range(prediction_type: str, model_type: str) -> tuple[int, int]:
    """The documented `budget_milli_node_hours` range of an AutoML image model type."""
    if model_type.startswith("MOBILE_"):
        return MOBILE_BUDGET
    return CLOUD_BUDGETS[prediction_type]


_BUCKET_URI = re.compile(r"^gs://([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])(/.*)?$")
_PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_REPOSITORY = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_MACHINE_TYPE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)+$")


def _fail(message: str, *, field: str, source: str | None, lines: Mapping[str, int]) -> ConfigError:
    return ConfigError(message, source=source, line=lines.get(field), field=field)


_CRON_FIELDS = ("minute", "hour", "day of month", "month", "day of week")


def check_cron(expression: str) -> None:
    """Check a five-field cron line (Vertex AI schedule syntax, no `TZ=` prefix) with croniter.

    Raises:
        ValueError: Saying what is wrong.
    """
    from croniter import croniter
    from croniter.croniter import CroniterError

    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
        )

    def valid(line: str) -> bool:
        try:
            croniter(line)
        except (CroniterError, ValueError, KeyError):
            return False
        return True

    if valid(expression):
        return
    # Name the field: croniter checks each alone (the others set to `*`).
    for index, name in enumerate(_CRON_FIELDS):
        alone = ["*"] * 5
        alone[index] = fields[index]
        if not valid(" ".join(alone)):
            raise ValueError(f"{name} field {fields[index]!r} is not valid")
    raise ValueError("the fields do not form a valid cron line")


@dataclasses.dataclass(frozen=True)
class ScheduleSettings:
    """A recurring run: `schedule` creates it or updates the one with the same display name."""

    display_name: str = "labelloop-nightly"
    cron: str = "0 3 * * *"
    time_zone: str = "Etc/UTC"
    max_concurrent_run_count: int = 1
    max_run_count: int = 0
    allow_queueing: bool = False

    @property
    def cron_with_time_zone(self) -> str:
        """The cron line as Vertex AI takes it: `TZ=Area/City m h dom mon dow`."""
        return f"TZ={self.time_zone} {self.cron}"


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """How the Vertex pipeline trains; fixed at compile time, so it is checked before compile.

    Image classification and object detection train with AutoML; text tasks run our own
    training component as a Vertex custom job on `custom_job_machine_type`.
    """

    classification_model_type: str = "CLOUD"
    object_detection_model_type: str = "CLOUD_HIGH_ACCURACY_1"
    classification_budget_milli_node_hours: int = 8_000
    object_detection_budget_milli_node_hours: int = 20_000
    disable_early_stopping: bool = False
    training_fraction_split: float = 0.8
    validation_fraction_split: float = 0.1
    test_fraction_split: float = 0.1
    custom_job_machine_type: str = "n1-standard-4"
    batch_predict_machine_type: str = ""

    def model_type(self, prediction_type: str) -> str:
        """The AutoML model type for `classification` or `object_detection`."""
        if prediction_type == "object_detection":
            return self.object_detection_model_type
        return self.classification_model_type

    def budget_milli_node_hours(self, prediction_type: str) -> int:
        """The AutoML node-hour budget for `classification` or `object_detection`."""
        if prediction_type == "object_detection":
            return self.object_detection_budget_milli_node_hours
        return self.classification_budget_milli_node_hours

    def validate(
        self, *, source: str | None = None, lines: Mapping[str, int] | None = None
    ) -> None:
        """Raise `ConfigError` naming the first bad field."""
        lines = lines or {}
        prefix = f"{SECTION}.training."

        def fail(name: str, message: str) -> typing.NoReturn:
            field = prefix + name
            raise _fail(
                f"{message} (got {getattr(self, name)!r})", field=field, source=source, lines=lines
            )

        if self.classification_model_type not in CLASSIFICATION_MODEL_TYPES:
            fail(
                "classification_model_type",
                "not an AutoML image classification model type; one of "
                + ", ".join(CLASSIFICATION_MODEL_TYPES),
            )
        if self.object_detection_model_type not in OBJECT_DETECTION_MODEL_TYPES:
            fail(
                "object_detection_model_type",
                "not an AutoML object detection model type; one of "
                + ", ".join(OBJECT_DETECTION_MODEL_TYPES),
            )
        for prediction_type, what in (
            ("classification", "image classification"),
            ("object_detection", "object detection"),
        ):
            model_type = self.model_type(prediction_type)
            lo, hi = budget_range(prediction_type, model_type)
            if not lo <= self.budget_milli_node_hours(prediction_type) <= hi:
                fail(
                    f"{prediction_type}_budget_milli_node_hours",
                    f"AutoML {what} with model type {model_type} takes {lo:,}-{hi:,} "
                    "milli node hours",
                )
        splits = ("training_fraction_split", "validation_fraction_split", "test_fraction_split")
        for name in splits:
            if not 0.0 <= getattr(self, name) <= 1.0:
                fail(name, "must lie in [0, 1]")
        if self.training_fraction_split <= 0.0:
            fail("training_fraction_split", "must be more than 0")
        total = sum(getattr(self, name) for name in splits)
        if abs(total - 1.0) > 1e-6:
            fail(
                "test_fraction_split",
                f"the three splits must add up to 1, they add up to {total:g}",
            )
        if not _MACHINE_TYPE.match(self.custom_job_machine_type):
            fail(
                "custom_job_machine_type", "not a Compute Engine machine type such as n1-standard-4"
            )
        if self.batch_predict_machine_type and not _MACHINE_TYPE.match(
            self.batch_predict_machine_type
        ):
            fail("batch_predict_machine_type", "not a Compute Engine machine type")


_CPU = re.compile(r"^([0-9]+(\.[0-9]+)?|[0-9]+m)$")
_MEMORY = re.compile(r"^[0-9]+(\.[0-9]+)?(K|M|G|T|Ki|Mi|Gi|Ti)?$")


@dataclasses.dataclass(frozen=True)
class StageResources:
    """CPU and memory limits of one stage (`""` = Vertex AI's default machine).

    Attributes:
        cpu: vCPUs, e.g. `"8"` or `"500m"`.
        memory: Memory, e.g. `"32G"` or `"4Gi"`.
    """

    cpu: str = ""
    memory: str = ""


def _sized(cpu: str, memory: str) -> typing.Callable[[], StageResources]:
    return lambda: StageResources(cpu=cpu, memory=memory)


@dataclasses.dataclass(frozen=True)
class ResourceSettings:
    """Per-stage limits, compiled into the template (`pipelines/stage_settings.py` applies them).

    Selection and the quality gate read every prediction or annotation row of a round
    (millions at scale): they get 8 vCPUs and 32 GB; the other stages run on the default
    machine. A stage not listed here runs on the default machine.
    """

    generate_import_file: StageResources = dataclasses.field(default_factory=StageResources)
    select_for_labeling: StageResources = dataclasses.field(default_factory=_sized("8", "32G"))
    create_dataset: StageResources = dataclasses.field(default_factory=StageResources)
    run_labeling_job: StageResources = dataclasses.field(default_factory=StageResources)
    quality_gate: StageResources = dataclasses.field(default_factory=_sized("8", "32G"))
    train_model: StageResources = dataclasses.field(default_factory=_sized("4", "16G"))
    write_report: StageResources = dataclasses.field(default_factory=StageResources)

    def for_stage(self, name: str) -> StageResources:
        """The limits of stage `name` (a component function name)."""
        value = getattr(self, name, None)
        return value if isinstance(value, StageResources) else StageResources()

    def validate(
        self, *, source: str | None = None, lines: Mapping[str, int] | None = None
    ) -> None:
        """Raise `ConfigError` on a CPU or memory value Kubernetes / Vertex would refuse."""
        lines = lines or {}
        for field in dataclasses.fields(self):
            size = getattr(self, field.name)
            path = f"{SECTION}.resources.{field.name}"
            if size.cpu and not _CPU.match(size.cpu):
                raise _fail(
                    f"cpu must be a number of vCPUs such as 8 or 500m (got {size.cpu!r})",
                    field=f"{path}.cpu",
                    source=source,
                    lines=lines,
                )
            if size.memory and not _MEMORY.match(size.memory):
                raise _fail(
                    f"memory must look like 32G or 4Gi (got {size.memory!r})",
                    field=f"{path}.memory",
                    source=source,
                    lines=lines,
                )


@dataclasses.dataclass(frozen=True)
class VertexSettings:
    """The `vertex:` section: project, region, identity, network, encryption and templates.

    Attributes:
        project: Google Cloud project id.
        region: Vertex AI region, e.g. `europe-west4`.
        pipeline_root: `gs://bucket/prefix` where runs write their artifacts.
        service_account: The identity runs execute as (email); empty = Compute default SA.
        network: VPC to peer with, `projects/<number>/global/networks/<name>`; empty = none.
        encryption_spec_key_name: Cloud KMS key (CMEK) for jobs, datasets and models.
        labels: Resource labels put on the run and on everything it creates.
        enable_caching: Reuse results of unchanged steps.
        experiment: Vertex AI Experiment to attach runs to; empty = none.
        display_name: The run's display name prefix.
        template_path: Compiled pipeline `submit` and `schedule` send (local JSON or registry URI).
        docker_repository: Artifact Registry repository (format DOCKER) `make image` pushes
            the component image to (as `labelloop`).
        registry_repository: Artifact Registry repository (format KFP) `upload` writes to.
        template_package: Package (template) name inside that repository.
        template_tag: Template version `run-template` launches (`v<version>-g<commit>`, or
            `latest`); empty = the version this checkout uploaded last.
        stage_retries: Retries (with backoff) of the stages that call external services.
        model_resource_name: An existing Vertex model (`projects/.../models/ID`) to score the
            pool with; empty = the model the last round trained, if any.
        schedule: The recurring run.
        training: AutoML and custom-job settings (compile time).
        resources: CPU and memory per stage (compile time).
    """

    project: str = ""
    region: str = ""
    pipeline_root: str = ""
    service_account: str = ""
    network: str = ""
    encryption_spec_key_name: str = ""
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    enable_caching: bool = False
    experiment: str = ""
    display_name: str = "labelloop"
    template_path: str = "compiled/vertex_labeling_pipeline.json"
    docker_repository: str = "labelloop"
    registry_repository: str = ""
    template_package: str = "labelloop-vertex-labeling"
    template_tag: str = ""
    stage_retries: int = 2
    model_resource_name: str = ""
    schedule: ScheduleSettings = dataclasses.field(default_factory=ScheduleSettings)
    training: TrainingSettings = dataclasses.field(default_factory=TrainingSettings)
    resources: ResourceSettings = dataclasses.field(default_factory=ResourceSettings)

    @property
    def registry_host(self) -> str:
        """`https://{region}-kfp.pkg.dev/{project}/{repository}`."""
        return f"https://{self.region}-kfp.pkg.dev/{self.project}/{self.registry_repository}"

    def template_uri(self, tag: str | None = None) -> str:
        """The registry URI of the template at `tag` (default: `template_tag`)."""
        return f"{self.registry_host}/{self.template_package}/{tag or self.template_tag}"

    def validate(
        self,
        *,
        source: str | None = None,
        lines: Mapping[str, int] | None = None,
        need_registry: bool = False,
        need_schedule: bool = False,
    ) -> None:
        """Every check that can run without the network; raise `ConfigError` on the first miss."""
        lines = lines or {}

        def fail(name: str, message: str) -> typing.NoReturn:
            raise _fail(message, field=f"{SECTION}.{name}", source=source, lines=lines)

        if not self.project:
            fail("project", "required: the Google Cloud project id")
        if not _PROJECT_ID.match(self.project):
            fail(
                "project",
                f"not a project id (6-30 lowercase letters, digits, dashes): {self.project!r}",
            )
        if not self.region:
            fail("region", "required: the Vertex AI region, e.g. us-central1")
        if not _REGION.match(self.region):
            fail("region", f"not a region such as us-central1: {self.region!r}")
        if not self.pipeline_root:
            fail("pipeline_root", "required: a gs://bucket/prefix for run artifacts")
        if not _BUCKET_URI.match(self.pipeline_root):
            fail("pipeline_root", f"not a gs://bucket/prefix URI: {self.pipeline_root!r}")
        if self.service_account and not self.service_account.endswith(".gserviceaccount.com"):
            fail("service_account", f"expected a service account email: {self.service_account!r}")
        if self.network and not re.match(r"^projects/[^/]+/global/networks/[^/]+$", self.network):
            fail("network", "expected projects/<project-number>/global/networks/<name>")
        if self.encryption_spec_key_name and not re.match(
            r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$",
            self.encryption_spec_key_name,
        ):
            fail(
                "encryption_spec_key_name",
                "expected projects/<p>/locations/<l>/keyRings/<ring>/cryptoKeys/<key>",
            )
        for key, value in self.labels.items():
            if not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
                fail(
                    f"labels.{key}",
                    "labels take lowercase letters, digits, _ and - (keys start with a letter)",
                )
        if self.model_resource_name and not re.match(
            r"^projects/[^/]+/locations/[^/]+/models/[^/]+$", self.model_resource_name
        ):
            fail("model_resource_name", "expected projects/<p>/locations/<l>/models/<id>")
        if need_registry and not self.registry_repository:
            fail("registry_repository", "required: the Artifact Registry KFP repository name")
        if self.registry_repository and not _REPOSITORY.match(self.registry_repository):
            fail("registry_repository", f"not a repository name: {self.registry_repository!r}")
        if self.docker_repository and not _REPOSITORY.match(self.docker_repository):
            fail("docker_repository", f"not a repository name: {self.docker_repository!r}")
        if not 0 <= self.stage_retries <= 10:
            fail("stage_retries", f"must lie in 0-10, got {self.stage_retries}")
        if need_schedule:
            self._validate_schedule(fail)
        self.training.validate(source=source, lines=lines)
        self.resources.validate(source=source, lines=lines)

    def _validate_schedule(self, fail: typing.Callable[[str, str], typing.NoReturn]) -> None:
        schedule = self.schedule
        if not schedule.display_name:
            fail("schedule.display_name", "required: schedules are found by display name")
        if schedule.cron.startswith("TZ=") or schedule.cron.startswith("CRON_TZ="):
            fail("schedule.cron", "put the time zone in schedule.time_zone, not in the cron line")
        try:
            check_cron(schedule.cron)
        except ValueError as exc:
            fail("schedule.cron", f"bad cron {schedule.cron!r}: {exc}")
        try:
            zoneinfo.ZoneInfo(schedule.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            fail(
                "schedule.time_zone",
                f"not an IANA time zone such as Europe/Paris: {schedule.time_zone!r}",
            )
        if schedule.max_concurrent_run_count < 1:
            fail("schedule.max_concurrent_run_count", "must be at least 1")
        if schedule.max_run_count < 0:
            fail("schedule.max_run_count", "must be 0 (no limit) or more")

    def pipeline_parameters(self) -> dict[str, Any]:
        """The Vertex-only pipeline parameters this section supplies."""
        return {
            "project": self.project,
            "location": self.region,
            "service_account": self.service_account,
            "network": self.network,
            "encryption_spec_key_name": self.encryption_spec_key_name,
            "resource_labels": dict(self.labels),
            "model_resource_name": self.model_resource_name,
        }


def parse_vertex_settings(
    data: Mapping[str, Any] | None,
    *,
    source: str | None = None,
    lines: Mapping[str, int] | None = None,
) -> VertexSettings:
    """Build `VertexSettings` from the config's `vertex:` mapping (types checked, not values).

    Call `validate()` on the result before using it.

    Raises:
        ConfigError: An unknown field (with a close-match hint) or a value of the wrong type.
    """
    return typing.cast(
        VertexSettings,
        build_section(
            VertexSettings, dict(data or {}), section=SECTION, source=source, lines=lines or {}
        ),
    )
