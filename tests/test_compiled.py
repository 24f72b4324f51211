"""compiled/ is generated: it must match what `make compile` writes, and hold the whole DAG."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, STAGE_TASKS

COMPILED = ROOT / "compiled"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Compile in a subprocess with an empty environment: compiling must need none."""
    out = tmp_path_factory.mktemp("compiled")
    env = {"PATH": os.defpath, "HOME": str(out)}
    subprocess.run(
        [sys.executable, "-m", "pipelines", "compile", "--out-dir", str(out)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    return out


def test_compiled_dir_is_up_to_date(fresh: Path) -> None:
    generated = sorted(p.name for p in fresh.glob("*.json"))
    committed = sorted(p.name for p in COMPILED.glob("*.json"))
    assert generated == committed, "run `make compile` and commit compiled/"
    for name in generated:
        assert (fresh / name).read_text() == (COMPILED / name).read_text(), (
            f"compiled/{name} is stale: run `make compile` and commit it"
        )


def _spec() -> dict:
    return json.loads((COMPILED / "labeling_pipeline.json").read_text())


def _all_tasks(component: dict, spec: dict) -> dict[str, dict]:
    tasks: dict[str, dict] = {}
    for name, task in component.get("dag", {}).get("tasks", {}).items():
        tasks[name] = task
        ref = task["componentRef"]["name"]
        tasks.update(_all_tasks(spec["components"][ref], spec))
    return tasks


def test_portable_pipeline_has_six_stages_both_gates_and_a_report() -> None:
    spec = _spec()
    tasks = _all_tasks(spec["root"], spec)
    for stage in STAGE_TASKS:
        assert stage in tasks, stage
    conditions = [
        t["triggerPolicy"].get("condition", "") for t in tasks.values() if "triggerPolicy" in t
    ]
    # The quality gate applies the rule (labelloop.gates) with both thresholds; the DAG
    # compares its recorded decision.
    assert any("decision" in c and "'train'" in c for c in conditions), conditions
    gate_inputs = tasks["quality-gate"]["inputs"]["parameters"]
    assert {"min_labeled_count", "min_agreement"} <= set(gate_inputs)
    # Display names say what each task does.
    assert tasks["train-model"]["taskInfo"]["name"] == "Train model"


def test_every_executor_runs_the_project_image_without_pip() -> None:
    from components import IMAGE

    executors = _spec()["deploymentSpec"]["executors"]
    assert executors
    for name, executor in executors.items():
        container = executor["container"]
        assert container["image"] == IMAGE, name
        command = " ".join(container["command"])
        assert "pip install" not in command, name


def test_no_secrets_in_the_compiled_pipeline() -> None:
    text = (COMPILED / "labeling_pipeline.json").read_text().lower()
    params = _spec()["root"]["inputDefinitions"]["parameters"]
    for word in ("api_key", "apikey", "password", "secret", "token"):
        assert not any(word in p for p in params), word
    assert "bearer " not in text


def test_image_can_be_pinned_at_compile_time(tmp_path: Path) -> None:
    from components import IMAGE
    from pipelines.compile import compile_all

    digest = "us-docker.pkg.dev/p/r/labelloop@sha256:" + "0" * 64
    for path in compile_all(tmp_path, image=digest):
        text = path.read_text()
        # Every reference moved: executors and the custom job's worker pools alike.
        assert IMAGE not in text, path.name
        assert digest in text, path.name
    executors = json.loads((tmp_path / "labeling_pipeline.json").read_text())["deploymentSpec"]
    assert {e["container"]["image"] for e in executors["executors"].values()} == {digest}


@pytest.mark.parametrize("name", ["labeling_pipeline.json", "vertex_labeling_pipeline.json"])
def test_both_pipelines_run_the_failure_report_in_an_exit_handler(name: str) -> None:
    spec = json.loads((ROOT / "compiled" / name).read_text())
    root_tasks = spec["root"]["dag"]["tasks"]
    exit_task = root_tasks["write-failure-report"]
    # Runs whatever the round's outcome, and receives its final status.
    assert exit_task["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert exit_task["dependentTasks"] == ["exit-handler-1"]
    status = exit_task["inputs"]["parameters"]["status"]
    assert status["taskFinalStatus"]["producerTask"] == "exit-handler-1"
    # Every stage lives inside the handled group.
    inside = _all_tasks(
        spec["components"][root_tasks["exit-handler-1"]["componentRef"]["name"]], spec
    )
    assert {"generate-import-file", "run-labeling-job", "quality-gate", "write-report"} <= set(
        inside
    )
