"""The Vertex AI pipeline: its compiled spec, its GCPC ops and gates, its compile-time checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labelloop.errors import ConfigError
from labelloop.vertex_config import TrainingSettings, check_cron, parse_vertex_settings


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from pipelines.vertex_compile import compile_vertex_template

    path = compile_vertex_template(
        tmp_path_factory.mktemp("vertex") / "vertex.json",
        image="europe-docker.pkg.dev/p/r/labelloop@sha256:" + "a" * 64,
    )
    return json.loads(Path(path).read_text())


def tasks_of(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every task in the DAG and its sub-DAGs, by task name."""
    found = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        found.update(component.get("dag", {}).get("tasks", {}))
    return found


def executor_of(spec: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    """The task's executor; empty for sub-DAGs (conditions)."""
    component = spec["components"][task["componentRef"]["name"]]
    label = component.get("executorLabel")
    return spec["deploymentSpec"]["executors"][label] if label else {}


def test_compiled_json_parses_into_the_pipeline_spec_proto(spec):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    proto = json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    assert proto.pipeline_info.name == "labelloop-vertex-labeling"
    assert "project" in proto.root.input_definitions.parameters
    assert len(proto.deployment_spec.fields["executors"].struct_value.fields) >= 20


def test_parameters_are_the_portable_ones_plus_the_vertex_ones(spec):
    from pipelines.labeling_pipeline import labeling_pipeline
    from pipelines.vertex_pipeline import VERTEX_PARAMETERS

    params = spec["root"]["inputDefinitions"]["parameters"]
    portable_params = set(labeling_pipeline.component_spec.inputs)
    # The Vertex pipeline scores the pool itself (ModelBatchPredictOp), so it takes no
    # predictions_uri parameter.
    assert set(params) == (portable_params - {"predictions_uri"}) | set(VERTEX_PARAMETERS)
    assert params["resource_labels"]["parameterType"] == "STRUCT"
    assert "defaultValue" not in params["project"]


def test_gcpc_ops_and_settings_per_branch(spec):
    tasks = tasks_of(spec)
    images = {
        name: executor_of(spec, t)["container"]["image"]
        for name, t in tasks.items()
        if "container" in executor_of(spec, t)
    }
    gcpc = {
        n
        for n, image in images.items()
        if image.startswith("gcr.io/ml-pipeline/google-cloud-pipeline-components:")
    }
    assert {
        "image-dataset-create",
        "image-dataset-create-2",
        "text-dataset-create",
        "automl-image-training-job",
        "automl-image-training-job-2",
        "model-batch-predict",
        "train-model",
    } <= gcpc

    def constant(task: str, name: str) -> Any:
        return tasks[task]["inputs"]["parameters"][name]["runtimeValue"]["constant"]

    assert constant("automl-image-training-job", "prediction_type") == "classification"
    assert constant("automl-image-training-job", "model_type") == "CLOUD"
    assert constant("automl-image-training-job", "budget_milli_node_hours") == 8000
    assert constant("automl-image-training-job-2", "prediction_type") == "object_detection"
    assert constant("automl-image-training-job-2", "model_type") == "CLOUD_HIGH_ACCURACY_1"
    assert constant("automl-image-training-job-2", "budget_milli_node_hours") == 20000
    assert constant("automl-image-training-job", "training_fraction_split") == pytest.approx(0.8)
    # multi_label and the import schema come from the task type at run time.
    multi = tasks["automl-image-training-job"]["inputs"]["parameters"]["multi_label"]
    assert multi["componentInputParameter"] == "pipelinechannel--vertex-task-plan-multi_label"
    schema = tasks["text-dataset-create"]["inputs"]["parameters"]["import_schema_uri"]
    assert (
        schema["componentInputParameter"] == "pipelinechannel--vertex-task-plan-import_schema_uri"
    )
    # The custom job's resource labels are the run's labels, not the label set.
    labels = tasks["train-model"]["inputs"]["parameters"]["labels"]
    assert labels["componentInputParameter"] == "pipelinechannel--resource_labels"
    assert tasks["train-model"]["inputs"]["parameters"]["label_set"][
        "componentInputParameter"
    ].endswith("labels")


def test_same_gates_as_the_portable_pipeline(spec):
    conditions = {
        name: task["triggerPolicy"]["condition"]
        for name, task in tasks_of(spec).items()
        if "condition" in task.get("triggerPolicy", {})
    }
    text = json.dumps(conditions)
    assert "decision" in text
    assert "automl_classification" in text
    assert "automl_object_detection" in text
    names = {t["taskInfo"]["name"] for t in tasks_of(spec).values()}
    assert {"gates-open", "gates-closed"} <= names
    assert {"score-pool-with-vertex-model", "no-vertex-model-yet"} <= names


def test_existing_model_comes_in_through_an_importer(spec):
    importers = [e for e in spec["deploymentSpec"]["executors"].values() if "importer" in e]
    (importer,) = importers
    assert importer["importer"]["typeSchema"]["schemaTitle"] == "google.VertexModel"
    assert importer["importer"]["metadata"]["resourceName"].startswith("{{$.inputs.parameters")


def test_image_is_pinned_everywhere_including_the_custom_job(spec):
    from components import IMAGE

    text = json.dumps(spec)
    assert IMAGE not in text
    pools = spec["components"]["comp-train-model"]["inputDefinitions"]["parameters"][
        "worker_pool_specs"
    ]
    (pool,) = pools["defaultValue"]
    assert pool["container_spec"]["image_uri"].endswith("@sha256:" + "a" * 64)
    assert pool["machine_spec"]["machine_type"] == "n1-standard-4"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        (
            {"classification_budget_milli_node_hours": 7999},
            "classification_budget_milli_node_hours",
        ),
        (
            {"object_detection_budget_milli_node_hours": 900_001},
            "object_detection_budget_milli_node_hours",
        ),
        ({"classification_model_type": "CLOUD_HIGH_ACCURACY_1"}, "classification_model_type"),
        ({"object_detection_model_type": "CLOUD"}, "object_detection_model_type"),
        (
            {
                "classification_model_type": "MOBILE_TF_VERSATILE_1",
                "classification_budget_milli_node_hours": 200_000,
            },
            "classification_budget_milli_node_hours",
        ),
        (
            {
                "object_detection_model_type": "CLOUD_LOW_LATENCY_1",
                "object_detection_budget_milli_node_hours": 8_000,
            },
            "object_detection_budget_milli_node_hours",
        ),
        ({"training_fraction_split": 0.5}, "test_fraction_split"),
        ({"validation_fraction_split": -0.1}, "validation_fraction_split"),
        ({"custom_job_machine_type": "big machine"}, "custom_job_machine_type"),
    ],
)
def test_bad_training_settings_are_refused_before_compile(changes, field):
    from pipelines.vertex_pipeline import build_vertex_pipeline

    with pytest.raises(ConfigError, match=f"vertex.training.{field}"):
        build_vertex_pipeline(TrainingSettings(**changes))


@pytest.mark.parametrize(
    "changes",
    [
        # The documented mobile range, 1,000-100,000 milli node hours, for both prediction types.
        {
            "classification_model_type": "MOBILE_TF_LOW_LATENCY_1",
            "classification_budget_milli_node_hours": 1_000,
        },
        {
            "object_detection_model_type": "MOBILE_TF_HIGH_ACCURACY_1",
            "object_detection_budget_milli_node_hours": 100_000,
        },
        {"classification_budget_milli_node_hours": 800_000},
        {"object_detection_budget_milli_node_hours": 900_000},
    ],
)
def test_documented_budgets_per_model_type_are_accepted(changes):
    TrainingSettings(**changes).validate()


@pytest.mark.parametrize(
    "cron", ["0 3 * * *", "*/15 * * * *", "30 4 1,15 * mon-fri", "0 0 * jan-mar 0"]
)
def test_good_cron_lines(cron):
    check_cron(cron)


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 3 * *", "expected 5 fields"),
        ("60 3 * * *", "minute field '60'"),
        ("0 24 * * *", "hour"),
        ("0 3 0 * *", "day of month"),
        ("0 3 * 13 *", "month"),
        ("0 3 * * 8", "day of week"),
        ("*/0 * * * *", "minute"),
        ("0 3 * * funday", "day of week field 'funday'"),
    ],
)
def test_bad_cron_lines(cron, message):
    with pytest.raises(ValueError, match=message):
        check_cron(cron)


def test_vertex_section_types_and_names_are_checked():
    with pytest.raises(ConfigError, match=r"vertex\.regoin.*did you mean 'region'"):
        parse_vertex_settings({"regoin": "us-central1"})
    with pytest.raises(ConfigError, match=r"vertex\.schedule\.max_concurrent_run_count"):
        parse_vertex_settings({"schedule": {"max_concurrent_run_count": "two"}})
    settings = parse_vertex_settings(
        {
            "project": "my-proj-1",
            "region": "us-central1",
            "pipeline_root": "gs://b-1/root",
            "labels": {"Team": "x"},
        }
    )
    with pytest.raises(ConfigError, match=r"vertex\.labels\.Team"):
        settings.validate()
    ok = parse_vertex_settings(
        {
            "project": "my-proj-1",
            "region": "us-central1",
            "pipeline_root": "gs://b-1/root",
            "registry_repository": "kfp",
        }
    )
    ok.validate(need_registry=True, need_schedule=True)
    assert (
        ok.template_uri("v1")
        == "https://us-central1-kfp.pkg.dev/my-proj-1/kfp/labelloop-vertex-labeling/v1"
    )


def test_stage_resources_retries_and_caching(spec):
    from pipelines.stage_settings import CACHEABLE

    tasks = tasks_of(spec)
    ours = {
        name: task
        for name, task in tasks.items()
        if executor_of(spec, task).get("container", {}).get("image", "").endswith("a" * 64)
    }
    assert {"select-for-labeling", "quality-gate", "run-labeling-job", "write-report"} <= set(ours)
    for name, task in tasks.items():
        if "componentRef" not in task or name.startswith("condition"):
            continue
        component = task["componentRef"]["name"].removeprefix("comp-")
        cached = task.get("cachingOptions", {}).get("enableCache", False)
        # Only the pure stages may be cached; everything touching state or a service is not.
        assert cached == (component.rstrip("-0123456789") in CACHEABLE), name
        retried = task.get("retryPolicy", {}).get("maxRetryCount", 0)
        assert retried == (2 if name in ours and not cached else 0), name
    for stage in ("select-for-labeling", "quality-gate"):
        resources = executor_of(spec, tasks[stage])["container"]["resources"]
        assert resources["resourceCpuLimit"] == "8"
        assert resources["resourceMemoryLimit"] == "32G"
    assert "resources" not in executor_of(spec, tasks["run-labeling-job"])["container"]
    backoff = tasks["run-labeling-job"]["retryPolicy"]
    assert backoff["backoffDuration"] == "30s"
    assert backoff["backoffFactor"] == 2


def test_resources_come_from_the_config(tmp_path):
    from labelloop.vertex_config import ResourceSettings, StageResources
    from pipelines.vertex_compile import compile_vertex_template

    sized = ResourceSettings(run_labeling_job=StageResources(cpu="2", memory="4Gi"))
    path = compile_vertex_template(tmp_path / "v.json", resources=sized, retries=0)
    compiled = json.loads(path.read_text())
    tasks = tasks_of(compiled)
    resources = executor_of(compiled, tasks["run-labeling-job"])["container"]["resources"]
    assert resources["resourceMemoryLimit"] == "4Gi"
    assert not any("retryPolicy" in t for t in tasks.values())
    with pytest.raises(ConfigError, match=r"vertex\.resources\.quality_gate\.memory"):
        compile_vertex_template(
            tmp_path / "bad.json",
            resources=ResourceSettings(quality_gate=StageResources(memory="lots")),
        )
