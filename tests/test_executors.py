"""The compiled specs executed stage by stage as the container runs them.

For each task the DAG reaches, the executor's own `command` and `args` from `compiled/*.json`
run in a subprocess with an ExecutorInput (the `{{$}}` placeholder), the way the KFP launcher
starts the image: `sh -ec ...`, `python3` from the environment on PATH (CI's is made from
requirements/image.lock; `LABELLOOP_EXECUTOR_BIN` names another, e.g. a fresh venv built from the
lock the way the Dockerfile does), as a non-root user (nobody) when the tests run as root and that
user can run the interpreter, and without a network (a fresh network namespace) where the machine
allows one. `Runner.as_nobody` / `Runner.offline` say which applied. Inputs are wired from the
spec (component inputs, upstream outputs, constants), `dsl.If` conditions are evaluated from
their CEL text, and `dsl.OneOf` outputs take the branch that ran: both pipelines, end to end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
COMPILED = ROOT / "compiled"
NOBODY = 65534


def _works(argv: list[str], env: dict[str, str]) -> bool:
    try:
        done = subprocess.run(argv, env=env, capture_output=True, check=False)
    except OSError:
        return False
    return done.returncode == 0


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Path]:
    """A folder every user can write (pytest's own tmp folder is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="labelloop-executors-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Runner:
    """Runs a compiled pipeline spec task by task, each executor as its container would."""

    def __init__(self, spec: dict[str, Any], work: Path) -> None:
        self.spec = spec
        self.work = work
        self.executed: list[str] = []
        bin_dir = os.environ.get("LABELLOOP_EXECUTOR_BIN") or str(Path(sys.executable).parent)
        self.env = {
            "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self._dir("home")),
            "TMPDIR": str(self._dir("tmp")),
            "MPLCONFIGDIR": str(self._dir("mpl")),
            "PYTHONPATH": "",
        }
        probe = ["sh", "-ec", "python3 -c 'import kfp.dsl.executor_main, labelloop'"]
        nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        # As root, switch to nobody if nobody can run this interpreter (a venv whose python
        # lives in root's home cannot be): else the run stays as the current user.
        self.as_nobody = os.geteuid() == 0 and _works([*nobody, *probe], self.env)
        self.offline = _works(["unshare", "-n", "true"], self.env)

    def _dir(self, name: str) -> Path:
        path = self.work / name
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)
        return path

    # ---- one executor ------------------------------------------------------------------

    def execute(
        self, task: str, component: dict[str, Any], params: dict[str, Any], artifacts: dict
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        executor = self.spec["deploymentSpec"]["executors"][component["executorLabel"]]
        container = executor.get("container")
        from components import IMAGE

        assert container, f"{task}: not a container executor"
        assert container["image"] == IMAGE, f"{task}: not our image, cannot run here"
        out_dir = self._dir(f"tasks/{task}")
        # The KFP driver hands each parameter over as its declared type (JSON has one number).
        kinds = component.get("inputDefinitions", {}).get("parameters", {})
        casts = {"NUMBER_INTEGER": int, "NUMBER_DOUBLE": float, "BOOLEAN": bool}
        params = {
            k: casts.get(kinds.get(k, {}).get("parameterType", ""), lambda v: v)(v)
            for k, v in params.items()
        }
        outputs = component.get("outputDefinitions", {})
        out_artifacts = {
            name: {
                "artifacts": [
                    {
                        "name": name,
                        "type": {"schemaTitle": d["artifactType"]["schemaTitle"]},
                        "uri": str(out_dir / name),
                        "metadata": {},
                    }
                ]
            }
            for name, d in outputs.get("artifacts", {}).items()
        }
        executor_input = {
            "inputs": {
                "parameterValues": params,
                "artifacts": {
                    name: {"artifacts": [artifact]} for name, artifact in artifacts.items()
                },
            },
            "outputs": {
                "parameters": {
                    name: {"outputFile": str(out_dir / f"param-{name}")}
                    for name in outputs.get("parameters", {})
                },
                "artifacts": out_artifacts,
                "outputFile": str(out_dir / "executor_output.json"),
            },
        }
        payload = json.dumps(executor_input)
        args = [payload if a == "{{$}}" else a for a in container.get("args", [])]
        argv = [*container["command"], *args]
        if self.as_nobody:
            argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]
        if self.offline:
            argv = ["unshare", "-n", *argv]
        done = subprocess.run(
            argv, env=self.env, cwd=out_dir, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, f"{task} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        self.executed.append(task)
        produced = json.loads((out_dir / "executor_output.json").read_text())
        out_params = dict(produced.get("parameterValues", {}))
        results = {}
        for name, entry in out_artifacts.items():
            artifact = dict(entry["artifacts"][0])
            written = produced.get("artifacts", {}).get(name, {}).get("artifacts", [{}])[0]
            artifact["metadata"] = written.get("metadata", {})
            artifact["uri"] = written.get("uri", artifact["uri"])
            results[name] = artifact
        return out_params, results

    # ---- the DAG -------------------------------------------------------------------------

    def run(
        self, component: dict[str, Any], params: dict[str, Any], artifacts: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Run a DAG component; return its outputs (parameters, artifacts)."""
        dag = component["dag"]
        tasks = dag["tasks"]
        done: dict[str, tuple[dict[str, Any], dict[str, Any]] | None] = {}
        pending = dict(tasks)
        while pending:
            ready = [
                name
                for name, t in pending.items()
                if all(dep in done for dep in t.get("dependentTasks", []))
                and all(p in done for p in _producers(t))
            ]
            assert ready, f"no task can run: {sorted(pending)}"
            for name in sorted(ready):
                task = pending.pop(name)
                done[name] = self._task(name, task, params, artifacts, done)
        return self._outputs(dag, done)

    def _task(self, name, task, params, artifacts, done):
        if any(done.get(dep) is None for dep in task.get("dependentTasks", []) if dep in done):
            upstream_skipped = [d for d in task.get("dependentTasks", []) if done.get(d) is None]
            if upstream_skipped:
                return None
        in_params: dict[str, Any] = {}
        for key, source in task.get("inputs", {}).get("parameters", {}).items():
            value = _resolve_param(source, params, done)
            if value is not _MISSING:
                in_params[key] = value
        in_artifacts: dict[str, Any] = {}
        for key, source in task.get("inputs", {}).get("artifacts", {}).items():
            if "componentInputArtifact" in source:
                in_artifacts[key] = artifacts[source["componentInputArtifact"]]
            else:
                ref = source["taskOutputArtifact"]
                in_artifacts[key] = done[ref["producerTask"]][1][ref["outputArtifactKey"]]
        policy = task.get("triggerPolicy", {}).get("condition")
        if policy and not _condition(policy, in_params):
            return None
        component = self.spec["components"][task["componentRef"]["name"]]
        if "dag" in component:
            return self.run(component, in_params, in_artifacts)
        return self.execute(name, component, in_params, in_artifacts)

    @staticmethod
    def _outputs(dag, done):
        params: dict[str, Any] = {}
        artifacts: dict[str, Any] = {}
        for name, source in dag.get("outputs", {}).get("parameters", {}).items():
            selectors = (
                source["valueFromOneof"]["parameterSelectors"]
                if "valueFromOneof" in source
                else [source["valueFromParameter"]]
            )
            for selector in selectors:
                ran = done.get(selector["producerSubtask"])
                if ran is not None and selector["outputParameterKey"] in ran[0]:
                    params[name] = ran[0][selector["outputParameterKey"]]
                    break
        for name, source in dag.get("outputs", {}).get("artifacts", {}).items():
            for selector in source.get("artifactSelectors", []):
                ran = done.get(selector["producerSubtask"])
                if ran is not None and selector["outputArtifactKey"] in ran[1]:
                    artifacts[name] = ran[1][selector["outputArtifactKey"]]
                    break
        return params, artifacts


_MISSING = object()


def _producers(task: dict[str, Any]) -> set[str]:
    found = set()
    inputs = task.get("inputs", {})
    for source in inputs.get("parameters", {}).values():
        if "taskOutputParameter" in source:
            found.add(source["taskOutputParameter"]["producerTask"])
    for source in inputs.get("artifacts", {}).values():
        if "taskOutputArtifact" in source:
            found.add(source["taskOutputArtifact"]["producerTask"])
    return found


def _resolve_param(source: dict[str, Any], params: dict[str, Any], done: dict) -> Any:
    if "componentInputParameter" in source:
        return params.get(source["componentInputParameter"], _MISSING)
    if "taskOutputParameter" in source:
        ref = source["taskOutputParameter"]
        ran = done.get(ref["producerTask"])
        return _MISSING if ran is None else ran[0].get(ref["outputParameterKey"], _MISSING)
    if "taskFinalStatus" in source:
        # What the backend hands an exit handler's task: the round's final status.
        return {
            "state": "SUCCEEDED",
            "pipelineJobResourceName": "projects/p/locations/l/pipelineJobs/run-executors-test",
            "pipelineTaskName": source["taskFinalStatus"]["producerTask"],
            "error": {},
        }
    constant = source["runtimeValue"]["constant"]
    return "run-executors-test" if constant == "{{$.pipeline_job_uuid}}" else constant


def _condition(text: str, params: dict[str, Any]) -> bool:
    """Evaluate the CEL that KFP compiles `dsl.If` into (comparisons, !, &&, ||, int())."""
    python = text.replace("!(", "not (").replace("&&", " and ").replace("||", " or ")
    scope = {"int": int, "double": float, "inputs": SimpleNamespace(parameter_values=params)}
    return bool(eval(python, {"__builtins__": {}}, scope))  # the spec's own condition text


def _defaults(spec: dict[str, Any]) -> dict[str, Any]:
    params = spec["root"]["inputDefinitions"]["parameters"]
    return {k: v["defaultValue"] for k, v in params.items() if "defaultValue" in v}


@pytest.fixture(scope="module")
def data(sandbox: Path) -> Any:
    from labelloop.sample_data import materialize_digits

    sample = materialize_digits(sandbox / "cache", limit=120)
    for path in [sandbox / "cache", *(sandbox / "cache").rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    return sample


def _run(spec_name: str, sandbox: Path, data: Any, **changes: Any) -> Runner:
    spec = json.loads((COMPILED / spec_name).read_text())
    work = sandbox / spec_name.removesuffix(".json")
    work.mkdir()
    work.chmod(0o777)
    state = work / "state"
    state.mkdir()
    state.chmod(0o777)
    params = _defaults(spec)
    params.update(
        source_uri=data.source_uri,
        state_uri=str(state),
        labels=",".join(data.labels),
        selection_size=40,
        provider_options=json.dumps({"truth_uri": data.truth_uri, "workforce": "expert"}),
        min_labeled_count=10,
        min_agreement=0.0,
        consolidation_method="mv",
    )
    params.update(changes)
    runner = Runner(spec, work)
    runner.run(spec["root"], params, {})
    return runner


def test_portable_pipeline_runs_executor_by_executor(sandbox, data):
    runner = _run("labeling_pipeline.json", sandbox, data)
    assert runner.executed[0] == "generate-import-file"
    for stage in (
        "select-for-labeling",
        "create-dataset",
        "run-labeling-job",
        "quality-gate",
        "train-model",
        "write-report",
    ):
        assert stage in runner.executed, stage
    assert "record-gate-decision" not in runner.executed
    report = runner.work / "tasks" / "write-report"
    assert any(report.rglob("*.html")) or any(report.rglob("*")), "the report wrote nothing"


def test_vertex_pipeline_runs_executor_by_executor_up_to_the_gates(sandbox, data):
    """Our stages of the Vertex template; the count gate closes, so no GCPC op is reached
    (they run Google's image and call Vertex AI, which is not here)."""
    runner = _run(
        "vertex_labeling_pipeline.json",
        sandbox,
        data,
        project="labelloop-test-proj",
        min_labeled_count=10_000,
    )
    for stage in (
        "vertex-task-plan",
        "generate-import-file",
        "latest-vertex-model",
        "no-predictions",
        "select-for-labeling",
        "run-labeling-job",
        "quality-gate",
        "record-gate-decision",
        "write-report",
    ):
        assert stage in runner.executed, stage
    assert "model-batch-predict" not in runner.executed
