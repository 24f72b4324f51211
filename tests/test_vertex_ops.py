# ruff: noqa: F811 - the fixtures are imported from test_vertex_submit
"""Schedules that reset fields, labels added by CI, and the image's one source of truth,
with the real aiplatform client against the loopback fake (tests/fakes/vertex_api.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from labelloop.errors import ConfigError
from tests.test_vertex_submit import (  # noqa: F401 - fixtures
    IMAGE,
    NETWORK,
    PROJECT,
    REGION,
    _offline,
    fake,
    target_for,
    template,
    write_config,
)

pytestmark = pytest.mark.server


def _schedule(fake, config: Path, *sets: str) -> int:
    from pipelines.__main__ import main

    argv = ["schedule", "--config", str(config), "--api-endpoint", fake.endpoint]
    for value in sets:
        argv += ["--set", value]
    return main(argv)


def test_the_fake_refuses_an_update_that_unsets_a_field(fake, template, tmp_path):
    """The v1 rule the replacement exists for: a PATCH cannot unset a non-empty field."""
    from google.protobuf import field_mask_pb2

    from pipelines.vertex_schedules import find_schedule

    config = write_config(tmp_path, template, schedule__max_run_count=5)
    assert _schedule(fake, config) == 0
    existing = find_schedule(target_for(config, fake, need_schedule=True), "labelloop-nightly")
    resource = existing._gca_resource
    resource.max_run_count = 0
    with pytest.raises(Exception, match="cannot be unset"):
        existing.api_client.update_schedule(
            schedule=resource, update_mask=field_mask_pb2.FieldMask(paths=["max_run_count"])
        )


def test_schedule_update_that_resets_fields_replaces_it_and_keeps_it_paused(
    fake, template, tmp_path
):
    config = write_config(
        tmp_path, template, schedule__max_run_count=5, schedule__allow_queueing=True
    )
    assert _schedule(fake, config) == 0
    (first,) = fake.schedules
    assert fake.schedules[first]["createPipelineJobRequest"]["pipelineJob"]["network"] == NETWORK
    plain = (
        "vertex.schedule={display_name: labelloop-nightly, cron: '0 5 * * *', "
        "time_zone: Europe/Paris, max_run_count: 5, allow_queueing: true}"
    )
    assert _schedule(fake, config, plain) == 0  # a plain update
    assert len(fake.calls("PATCH", r"/schedules/")) == 1
    from pipelines.__main__ import main

    base = ["schedule", "--config", str(config), "--api-endpoint", fake.endpoint]
    assert main([*base, "--pause"]) == 0

    # Back to no run limit, no queueing, no network: the update call cannot express that.
    resets = (
        "vertex.schedule={display_name: labelloop-nightly, cron: '0 5 * * *', "
        "time_zone: Europe/Paris, max_run_count: 0, allow_queueing: false}",
        "vertex.network=",
    )
    assert _schedule(fake, config, *resets) == 0
    assert len(fake.calls("PATCH", r"/schedules/")) == 1  # no second PATCH
    assert len(fake.calls("DELETE", r"/schedules/")) == 1
    (name,) = fake.schedules
    assert name != first
    stored = fake.schedules[name]
    assert "maxRunCount" not in stored
    assert not stored.get("allowQueueing")
    assert "network" not in stored["createPipelineJobRequest"]["pipelineJob"]
    assert stored["cron"] == "TZ=Europe/Paris 0 5 * * *"
    assert stored["state"] == "PAUSED"


def test_labels_from_the_command_line_add_to_the_configs(fake, template, tmp_path):
    from pipelines.__main__ import main

    config = write_config(tmp_path, template)
    argv = ["submit", "--config", str(config), "--api-endpoint", fake.endpoint]
    assert main([*argv, "--label", "trigger=ci", "--label", "commit=g1234567"]) == 0
    (request,) = fake.calls("POST", r"/pipelineJobs$")
    labels = request.body["labels"]
    assert {"team": "data", "env": "test", "trigger": "ci", "commit": "g1234567"}.items() <= (
        labels.items()
    )
    assert labels["team"] == "data"
    assert labels["trigger"] == "ci"
    # Everything the run creates carries them too.
    values = request.body["runtimeConfig"]["parameterValues"]
    assert values["resource_labels"] == {
        "team": "data",
        "env": "test",
        "trigger": "ci",
        "commit": "g1234567",
    }
    # The submitted spec runs the given image, not the placeholder.
    assert "labelloop:" not in json.dumps(request.body["pipelineSpec"]["deploymentSpec"])
    assert IMAGE in json.dumps(request.body["pipelineSpec"]["deploymentSpec"])
    assert main([*argv, "--label", "Bad Key=x"]) == 2


# ---- the image: build -> push -> the digest every run uses ---------------------------------


def _checkout(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    (root / "src" / "labelloop").mkdir(parents=True)
    (root / "requirements").mkdir()
    for name, text in {
        "Dockerfile": "FROM python\n",
        "requirements/image.lock": "kfp==2.17.3 --hash=sha256:00\n",
        "pyproject.toml": "[project]\n",
        "README.md": "readme\n",
        "src/labelloop/__init__.py": "x = 1\n",
    }.items():
        (root / name).write_text(text)
    return root


class _CloudBuild:
    """Stands in for `gcloud` (no Cloud Build here): answers `builds submit --format=json`
    the way Cloud Build reports a pushed image; `git` runs for real."""

    def __init__(self, digest: str) -> None:
        self.digest = digest
        self.commands: list[list[str]] = []

    def __call__(self, command: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        if command[0] != "gcloud":
            return subprocess.run(command, **kwargs)  # type: ignore[call-overload]  # noqa: PLW1510
        self.commands.append(command)
        repo = f"{REGION}-docker.pkg.dev/{PROJECT}/labelloop/labelloop"
        result = {"results": {"images": [{"name": f"{repo}:0.1.0-x", "digest": self.digest}]}}
        return subprocess.CompletedProcess(command, 0, json.dumps(result), "")


def test_make_image_records_the_digest_that_runs_then_use(tmp_path, template):
    from pipelines.image import build_image, read_record, resolve_image
    from pipelines.vertex_runs import load_target

    root = _checkout(tmp_path)
    vertex = load_target(str(write_config(tmp_path, template))).vertex
    with pytest.raises(ConfigError, match=r"no image has been pushed.*make image"):
        resolve_image(vertex, root=root)
    digest = "sha256:" + "c" * 64
    gcloud = _CloudBuild(digest)
    record = build_image(vertex, root=root, run=gcloud)
    (command,) = gcloud.commands
    assert command[:3] == ["gcloud", "builds", "submit"]
    assert f"--project={PROJECT}" in command
    assert "--config=cloudbuild.yaml" in command
    assert any(c.startswith("--substitutions=") and "_REPOSITORY=labelloop" in c for c in command)
    assert record.digest == digest
    assert read_record(root) == record
    image = resolve_image(vertex, root=root)
    assert image == f"{REGION}-docker.pkg.dev/{PROJECT}/labelloop/labelloop@{digest}"
    # An explicit image wins.
    assert resolve_image(vertex, explicit="x/y@sha256:" + "d" * 64, root=root).startswith("x/y")
    # The sources changed since the push: refuse, with the command that builds it.
    (root / "src" / "labelloop" / "__init__.py").write_text("x = 2\n")
    with pytest.raises(ConfigError, match=r"changed since.*gcloud builds submit"):
        resolve_image(vertex, root=root)
    # Another project's image is not this config's.
    other = load_target(
        str(write_config(tmp_path, template)), overrides=("vertex.project=other-project-1",)
    ).vertex
    (root / "src" / "labelloop" / "__init__.py").write_text("x = 1\n")
    with pytest.raises(ConfigError, match="not in this config's repository"):
        resolve_image(other, root=root)


def test_submit_without_a_pushed_image_refuses_with_the_build_command(
    fake, template, tmp_path, monkeypatch
):
    import pipelines.image as image_module
    from pipelines.__main__ import main

    monkeypatch.delenv("LABELLOOP_IMAGE")
    monkeypatch.setattr(image_module, "ROOT", tmp_path)
    config = write_config(tmp_path, template)
    assert main(["submit", "--config", str(config), "--api-endpoint", fake.endpoint]) == 2
    assert fake.requests == []


def test_gcloudignore_uploads_only_the_image_inputs():
    import pathspec

    from tests.conftest import ROOT

    spec = pathspec.GitIgnoreSpec.from_lines((ROOT / ".gcloudignore").read_text().splitlines())
    for ignored in (
        "gha-creds-1a2b3c.json",
        "tests/test_x.py",
        ".venv/bin/python",
        "configs/x.yaml",
    ):
        assert spec.match_file(ignored), ignored
    for kept in (
        "Dockerfile",
        "requirements/image.lock",
        "src/labelloop/__init__.py",
        "cloudbuild.yaml",
    ):
        assert not spec.match_file(kept), kept
    assert "gha-creds-*.json" in (ROOT / ".gitignore").read_text()


def test_the_lock_pins_every_dependency_with_hashes():
    """requirements/image.lock satisfies pyproject.toml's ranges (else: `make lock`)."""
    import tomllib

    from packaging.requirements import Requirement

    from tests.conftest import ROOT

    text = (ROOT / "requirements" / "image.lock").read_text()
    pins: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith((" ", "#")):
            name, _, rest = line.partition("==")
            pins[name.strip().lower().replace("_", "-")] = rest.split()[0].rstrip(";")
    assert text.count("--hash=sha256:") >= len(pins)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dep in project["dependencies"]:
        req = Requirement(dep)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in requirements/image.lock: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} is outside {req.specifier}: run `make lock`"
        )


def test_caching_on_caches_only_the_pure_stages(fake, template, tmp_path):
    from pipelines.__main__ import main
    from pipelines.stage_settings import CACHEABLE

    config = write_config(tmp_path, template)
    assert (
        main(["submit", "--config", str(config), "--api-endpoint", fake.endpoint, "--cache"]) == 0
    )
    (request,) = fake.calls("POST", r"/pipelineJobs$")
    spec = request.body["pipelineSpec"]
    seen = set()
    for component in [spec["root"], *spec["components"].values()]:
        for task in component.get("dag", {}).get("tasks", {}).values():
            name = task["componentRef"]["name"].removeprefix("comp-").rstrip("-0123456789")
            if name.startswith("condition"):
                continue
            seen.add(name)
            cached = task.get("cachingOptions", {}).get("enableCache", False)
            assert cached == (name in CACHEABLE), name
    assert {"quality-gate", "run-labeling-job", "join-outcome"} <= seen
