"""submit / schedule / upload / run-template with Google's real clients against loopback fakes.

google-cloud-aiplatform talks REST to tests/fakes/vertex_api.py; its pipeline-root bucket probe
goes to fake-gcs-server (STORAGE_EMULATOR_HOST); kfp's RegistryClient uploads to the same fake.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.server

PROJECT = "labelloop-test-proj"
REGION = "europe-west4"
SA = f"runner@{PROJECT}.iam.gserviceaccount.com"
NETWORK = "projects/123456/global/networks/labelloop-vpc"
KEY = f"projects/{PROJECT}/locations/{REGION}/keyRings/ring/cryptoKeys/key"
IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/labelloop/labelloop@sha256:" + "b" * 64


@pytest.fixture
def fake(gcs_emulator: str) -> Iterator[object]:
    """The fake Vertex API; fake-gcs-server answers the SDK's pipeline-root probe (404, then
    creates the bucket)."""
    from tests.fakes.vertex_api import FakeVertex

    server = FakeVertex().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipelines.vertex_compile import compile_vertex_template

    return compile_vertex_template(tmp_path_factory.mktemp("tpl") / "vertex.json")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No backoff sleeps, and no Resource Manager: a retried submit probes the (now existing)
    bucket again, and the SDK's owner check would retry cloudresourcemanager for ~50 s."""
    from google.cloud.aiplatform.utils import resource_manager_utils

    import pipelines.vertex_api as vs

    monkeypatch.setattr(vs, "RETRY_BASE_DELAY", 0.0)
    # The CLI runs the image `make image` pushed; here, one given the documented other way.
    monkeypatch.setenv("LABELLOOP_IMAGE", IMAGE)

    def no_resource_manager(*args: object, **kwargs: object) -> int:
        raise RuntimeError("Resource Manager is not faked in these tests")

    monkeypatch.setattr(resource_manager_utils, "get_project_number", no_resource_manager)


def write_config(tmp_path: Path, template: Path | None, **vertex_changes: object) -> Path:
    data = yaml.safe_load((ROOT / "configs" / "vertex.yaml").read_text())
    data["pipeline"]["source_uri"] = "gs://labelloop-test-bucket/raw"
    data["pipeline"]["state_uri"] = "gs://labelloop-test-bucket/state"
    data["vertex"].update(
        project=PROJECT,
        region=REGION,
        # A fresh bucket per test: the SDK's probe creates it (an existing bucket makes the
        # SDK check its owner through Resource Manager, which is not faked here).
        pipeline_root=f"gs://lt-{uuid.uuid4().hex[:12]}/root",
        service_account=SA,
        network=NETWORK,
        encryption_spec_key_name=KEY,
        labels={"team": "data", "env": "test"},
        template_path=str(template) if template else "",
    )
    for key, value in vertex_changes.items():
        section, _, name = key.partition("__")
        if name:
            data["vertex"][section].update({name: value})
        else:
            data["vertex"][key] = value
    path = tmp_path / "vertex.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def expected_spec(template: Path, *, caching: bool = False, image: str = "") -> dict:
    """The compiled JSON as the SDK sends it: every DAG task carries the run's caching choice,
    and the placeholder image is replaced by the run's."""
    from pipelines.compile import set_image

    spec = json.loads(template.read_text())
    if image:
        set_image(spec, image)
    for component in [spec["root"], *spec["components"].values()]:
        for task in component.get("dag", {}).get("tasks", {}).values():
            task["cachingOptions"] = {"enableCache": caching}
    return spec


def target_for(config: Path, fake: object, **needs: bool):
    from google.auth.credentials import AnonymousCredentials

    from pipelines.vertex_api import init_vertex
    from pipelines.vertex_runs import load_target

    target = load_target(str(config), **needs)
    init_vertex(target.vertex, api_endpoint=fake.endpoint, credentials=AnonymousCredentials())
    return target


def test_submit_sends_the_compiled_spec_parameters_identity_and_labels(fake, template, tmp_path):
    from pipelines.vertex_runs import submit

    target = target_for(write_config(tmp_path, template), fake)
    name = submit(target)

    (request,) = fake.calls("POST", r"/pipelineJobs$")
    body = request.body
    assert (
        name
        == f"projects/{PROJECT}/locations/{REGION}/pipelineJobs/{request.query['pipelineJobId'][0]}"
    )
    assert body["pipelineSpec"] == expected_spec(template)
    assert body["serviceAccount"] == SA
    assert body["network"] == NETWORK
    assert body["labels"] == {
        "team": "data",
        "env": "test",
        "labelloop-version": body["labels"]["labelloop-version"],
    }
    assert body["encryptionSpec"] == {"kmsKeyName": KEY}
    runtime = body["runtimeConfig"]
    assert runtime["gcsOutputDirectory"] == target.vertex.pipeline_root
    values = runtime["parameterValues"]
    assert values["project"] == PROJECT
    assert values["location"] == REGION
    assert values["source_uri"] == "gs://labelloop-test-bucket/raw"
    assert values["labels"] == "0,1,2,3,4,5,6,7,8,9"
    assert values["resource_labels"] == {"team": "data", "env": "test"}
    assert values["encryption_spec_key_name"] == KEY
    assert values["selection_size"] == 300
    assert values["min_agreement"] == pytest.approx(0.4)
    # Caching is off in the config, and the spec sent is the whole DAG.
    sent = body["pipelineSpec"]
    tasks = sent["root"]["dag"]["tasks"]
    # The stages run inside the exit handler whose final task writes the failure report.
    assert {"exit-handler-1", "write-failure-report"} == set(tasks)
    handled = sent["components"][tasks["exit-handler-1"]["componentRef"]["name"]]["dag"]["tasks"]
    assert {"generate-import-file", "quality-gate", "write-report"} <= set(handled)
    everything = [*tasks.values(), *handled.values()]
    assert all(t["cachingOptions"] == {"enableCache": False} for t in everything)


def test_submit_compiles_from_the_config_when_no_template_is_given(fake, template, tmp_path):
    from pipelines.vertex_runs import submit

    config = write_config(tmp_path, None, training__custom_job_machine_type="n1-highmem-8")
    submit(target_for(config, fake))
    (request,) = fake.calls("POST", r"/pipelineJobs$")
    text = json.dumps(request.body["pipelineSpec"])
    assert '"machine_type": "n1-highmem-8"' in text
    assert request.body["pipelineSpec"]["pipelineInfo"]["name"] == "labelloop-vertex-labeling"


def test_transient_errors_are_retried_with_the_same_job_id(fake, template, tmp_path):
    from pipelines.vertex_runs import submit

    fake.fail_next("POST", r"/pipelineJobs$", 503)
    fake.fail_next("POST", r"/pipelineJobs$", 429)
    name = submit(target_for(write_config(tmp_path, template), fake))
    calls = fake.calls("POST", r"/pipelineJobs$")
    assert len(calls) == 3
    assert len({c.query["pipelineJobId"][0] for c in calls}) == 1
    assert list(fake.pipeline_jobs) == [name]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (403, "roles/aiplatform.user"),
        (404, "aiplatform.googleapis.com is enabled"),
        (429, "quota"),
    ],
)
def test_api_errors_are_actionable(fake, template, tmp_path, status, expected):
    from pipelines.vertex_api import RETRY_ATTEMPTS, VertexApiError
    from pipelines.vertex_runs import submit

    fake.fail_next("POST", r"/pipelineJobs$", status, times=RETRY_ATTEMPTS)
    with pytest.raises(VertexApiError, match=expected) as info:
        submit(target_for(write_config(tmp_path, template), fake))
    calls = fake.calls("POST", r"/pipelineJobs$")
    # 429 is retried until the attempts run out; 403 and 404 are not retried.
    assert len(calls) == (RETRY_ATTEMPTS if status == 429 else 1)
    if status == 403:
        assert SA in str(info.value)
    assert not fake.pipeline_jobs


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"project": ""}, "vertex.project"),
        ({"region": ""}, "vertex.region"),
        ({"pipeline_root": "s3://bucket/root"}, "vertex.pipeline_root"),
        ({"pipeline_root": "gs://Bad_Bucket/root"}, "vertex.pipeline_root"),
        ({"schedule__cron": "0 25 * * *"}, "vertex.schedule.cron"),
        ({"schedule__cron": "0 3 * *"}, "vertex.schedule.cron"),
        ({"schedule__time_zone": "Mars/Olympus"}, "vertex.schedule.time_zone"),
        ({"training__classification_budget_milli_node_hours": 1000}, "budget_milli_node_hours"),
        ({"training__object_detection_model_type": "CLOUD"}, "object_detection_model_type"),
        ({"training__test_fraction_split": 0.3}, "test_fraction_split"),
        ({"colour": "blue"}, "vertex.colour"),
    ],
)
def test_bad_config_fails_before_any_api_call(fake, template, tmp_path, change, field):
    from labelloop.errors import ConfigError
    from pipelines.__main__ import main

    config = write_config(tmp_path, template, **change)
    verbs = ("schedule",) if "schedule" in field else ("submit", "schedule")
    for verb in verbs:
        assert main([verb, "--config", str(config), "--api-endpoint", fake.endpoint]) == 2
    from pipelines.vertex_runs import load_target

    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_target(str(config), need_schedule=True)
    assert fake.requests == []


def test_unknown_parameter_for_the_template_fails_before_any_api_call(fake, tmp_path):
    from labelloop.errors import ConfigError
    from pipelines.compile import compile_pipeline
    from pipelines.labeling_pipeline import labeling_pipeline
    from pipelines.vertex_runs import submit

    portable = compile_pipeline(labeling_pipeline, tmp_path / "portable.json")
    target = target_for(write_config(tmp_path, portable), fake)
    with pytest.raises(ConfigError, match="unknown parameter 'encryption_spec_key_name'"):
        submit(target)
    assert fake.requests == []


def test_bad_source_bucket_uri_fails_before_any_api_call(fake, template, tmp_path):
    from labelloop.errors import ConfigError
    from pipelines.vertex_runs import load_target

    config = write_config(tmp_path, template)
    with pytest.raises(ConfigError, match=r"pipeline\.source_uri"):
        load_target(str(config), overrides=("pipeline.source_uri=/local/folder",))
    assert fake.requests == []


def test_schedule_creates_then_updates_by_display_name(fake, template, tmp_path):
    from pipelines.__main__ import main

    config = write_config(tmp_path, template)
    assert main(["schedule", "--config", str(config), "--api-endpoint", fake.endpoint]) == 0
    (created,) = fake.calls("POST", r"/schedules$")
    body = created.body
    assert body["displayName"] == "labelloop-nightly"
    assert body["cron"] == "TZ=Europe/Paris 0 3 * * *"
    assert int(body["maxConcurrentRunCount"]) == 1
    job = body["createPipelineJobRequest"]["pipelineJob"]
    assert job["pipelineSpec"] == expected_spec(template, image=IMAGE)
    assert job["serviceAccount"] == SA
    assert job["network"] == NETWORK
    assert job["runtimeConfig"]["parameterValues"]["project"] == PROJECT

    # A second `schedule` with a new cron, concurrency and parameter updates the same schedule.
    argv = [
        "schedule",
        "--config",
        str(config),
        "--api-endpoint",
        fake.endpoint,
        "--set",
        "vertex.schedule={display_name: labelloop-nightly, cron: '30 4 * * 1-5', "
        "time_zone: America/New_York, max_concurrent_run_count: 2}",
        "--set",
        "pipeline.selection_size=50",
    ]
    assert main(argv) == 0
    assert len(fake.calls("POST", r"/schedules$")) == 1
    (patch,) = fake.calls("PATCH", r"/schedules/")
    assert "cron" in patch.query["updateMask"][0]
    assert len(fake.schedules) == 1
    (stored,) = fake.schedules.values()
    assert stored["cron"] == "TZ=America/New_York 30 4 * * 1-5"
    assert int(stored["maxConcurrentRunCount"]) == 2
    params = stored["createPipelineJobRequest"]["pipelineJob"]["runtimeConfig"]["parameterValues"]
    assert params["selection_size"] == 50


def test_schedule_pause_resume_delete(fake, template, tmp_path):
    from pipelines.__main__ import main

    config = write_config(tmp_path, template)
    base = ["schedule", "--config", str(config), "--api-endpoint", fake.endpoint]
    assert main(base) == 0
    (name,) = fake.schedules
    assert main([*base, "--pause"]) == 0
    assert fake.schedules[name]["state"] == "PAUSED"
    assert main([*base, "--resume"]) == 0
    assert fake.schedules[name]["state"] == "ACTIVE"
    assert main([*base, "--delete"]) == 0
    assert fake.schedules == {}
    # Nothing left to pause: a clear error, exit code 2.
    assert main([*base, "--pause"]) == 2


def test_upload_tags_the_build_version_pins_the_image_then_run_template_by_version(
    fake, template, tmp_path
):
    import dataclasses

    from labelloop import __version__
    from labelloop.errors import ConfigError
    from pipelines.vertex_registry import run_template, upload

    config = write_config(tmp_path, template)
    target = target_for(config, fake, need_registry=True)
    with pytest.raises(ConfigError, match="which template version"):
        run_template(target, host=fake.registry_host, root=tmp_path)
    pinned = dataclasses.replace(target, image=IMAGE)
    package, version, tag = upload(
        pinned, str(template), commit="abc1234", host=fake.registry_host, root=tmp_path
    )
    (request,) = fake.calls("POST", r"^/registry/")
    assert tag == f"v{__version__}-gabc1234"
    assert request.body["tags"] == f"{tag},latest"
    # The registry's copy is the template with the pushed digest instead of the placeholder.
    from pipelines.compile import set_image

    wanted = json.loads(template.read_text())
    set_image(wanted, IMAGE)
    assert request.body["content"] == wanted
    assert "labelloop:" not in json.dumps(request.body["content"])
    assert tag in request.body["description"]
    assert package == "labelloop-vertex-labeling"
    assert version.startswith("sha256:")

    # A later build's upload moves `latest`, never this version's tag.
    upload(pinned, str(template), commit="def5678", host=fake.registry_host, root=tmp_path)
    assert set(fake.packages[package]["tags"]) == {tag, f"v{__version__}-gdef5678", "latest"}

    # Without a version: the one this checkout uploaded last; or by name.
    name = run_template(target, host=fake.registry_host, root=tmp_path)
    name2 = run_template(target, version=tag, host=fake.registry_host, root=tmp_path)
    jobs = fake.calls("POST", r"/pipelineJobs$")
    assert len(jobs) == 2
    assert jobs[1].body["runtimeConfig"]["parameterValues"]["project"] == PROJECT
    assert name.endswith(jobs[0].query["pipelineJobId"][0])
    assert name2.endswith(jobs[1].query["pipelineJobId"][0])


def test_upload_to_a_missing_repository_says_how_to_create_it(fake, template, tmp_path):
    from pipelines.vertex_api import VertexApiError
    from pipelines.vertex_registry import upload

    target = target_for(write_config(tmp_path, template), fake, need_registry=True)
    with pytest.raises(VertexApiError, match="repository-format=KFP"):
        upload(target, str(template), host=f"{fake.endpoint}/registry/proj/missing")


def test_portable_only_parameters_at_their_default_are_not_sent_to_the_vertex_template():
    from labelloop.errors import ConfigError
    from pipelines.vertex_runs import load_target, parameter_values
    from tests.conftest import ROOT

    spec = json.loads((ROOT / "compiled" / "vertex_labeling_pipeline.json").read_text())
    target = load_target("configs/vertex.yaml")
    values = parameter_values(target, spec)
    assert "predictions_uri" not in values
    assert values["selection_strategy"] == target.config.pipeline.selection_strategy
    changed = load_target("configs/vertex.yaml", overrides=("pipeline.predictions_uri=gs://bkt/p",))
    with pytest.raises(ConfigError, match="unknown parameter 'predictions_uri'"):
        parameter_values(changed, spec)
