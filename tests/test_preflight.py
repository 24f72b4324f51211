"""Pre-flight: a run that would fail for a reason known before it starts is refused before it
starts, with the config's file, line and field (or the command that fixes it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from labelloop.config import load_config
from labelloop.errors import ConfigError, CredentialsError
from labelloop.failures import Failure, failure_uri, recorded, task_name
from labelloop.preflight import preflight
from labelloop.stages.write_failure_report import write_failure_report
from tests.conftest import ROOT

NO_ADC = {"GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/adc.json"}


def _config(tmp_path: Path, **pipeline: object):
    base: dict[str, object] = {"source_uri": str(tmp_path)}
    base.update(pipeline)
    text = "pipeline:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in base.items())
    return load_config(str(tmp_path / "c.yaml"), text=text)


def _truth(tmp_path: Path) -> str:
    path = tmp_path / "truth.csv"
    path.write_text("item,label\na,0\n")
    return str(path)


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _refused(config, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        preflight(config, env=kwargs.pop("env", {}), **kwargs)
    return info.value


def test_a_good_local_config_passes(tmp_path: Path) -> None:
    config = _config(tmp_path, provider_options={"truth_uri": _truth(tmp_path)})
    preflight(config, target="local", env={})
    preflight(load_config("configs/local.yaml"), target="local", env={})


def test_missing_local_source_and_files_name_the_line(tmp_path: Path) -> None:
    truth = _truth(tmp_path)
    err = _refused(
        _config(tmp_path, source_uri=str(tmp_path / "nope"), provider_options={"truth_uri": truth}),
        target="local",
    )
    assert (err.line, err.field) == (2, "pipeline.source_uri")
    assert "the source folder does not exist" in str(err)
    err = _refused(
        _config(tmp_path, provider_options={"truth_uri": truth}, gold_uri=str(tmp_path / "g.csv")),
        target="local",
    )
    assert (err.line, err.field) == (4, "pipeline.gold_uri")
    err = _refused(
        _config(tmp_path, provider_options={"truth_uri": str(tmp_path / "t.csv")}), target="local"
    )
    assert err.field == "pipeline.provider_options.truth_uri"
    assert f"file does not exist: {tmp_path / 't.csv'}" in str(err)


def test_nested_input_files_are_checked(tmp_path: Path) -> None:
    options = {
        "gemini": {"base_url": "http://127.0.0.1:9"},
        "human": {"provider": "import", "options": {"uri": str(tmp_path / "a.csv")}},
    }
    err = _refused(
        _config(tmp_path, provider="gemini_then_human", provider_options=options), target="local"
    )
    assert err.field == "pipeline.provider_options.human.options.uri"


def test_vertex_runs_refuse_local_files(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        source_uri="gs://bkt/raw",
        provider_options={"truth_uri": _truth(tmp_path)},
    )
    err = _refused(config, target="vertex", check_credentials=False)
    assert err.field == "pipeline.provider_options.truth_uri"
    assert "on Vertex AI every file must be a gs:// URI" in str(err)


def test_label_studio_needs_a_url_and_a_key(tmp_path: Path) -> None:
    config = _config(tmp_path, provider="label_studio")
    err = _refused(config, target="local")
    assert err.field == "pipeline.provider_options.url"
    assert "LABEL_STUDIO_URL" in str(err)
    # Given both, a URL nothing answers at is refused before the run (a live server passes:
    # test_provider_label_studio).
    port = _closed_port()
    err = _refused(
        config,
        target="local",
        env={"LABEL_STUDIO_URL": f"http://127.0.0.1:{port}", "LABEL_STUDIO_API_KEY": "k"},
    )
    assert err.field == "pipeline.provider_options.url"
    assert f"Label Studio at http://127.0.0.1:{port} (from LABEL_STUDIO_URL) cannot be reached" in (
        str(err)
    )
    config = _config(tmp_path, provider="label_studio", provider_options={"url": "http://ls"})
    err = _refused(config, target="local")
    assert err.field == "pipeline.provider_options.api_key_secret"
    assert "LABEL_STUDIO_API_KEY" in str(err)
    # On Vertex AI this machine's environment does not reach the run: Secret Manager only.
    err = _refused(
        _config(
            tmp_path,
            source_uri="gs://bkt/r",
            provider="label_studio",
            provider_options={"url": "http://ls"},
        ),
        target="vertex",
        env={"LABEL_STUDIO_API_KEY": "k"},
        check_credentials=False,
    )
    assert "Secret Manager" in str(err)


def test_missing_google_credentials_say_which_command_fixes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", NO_ADC["GOOGLE_APPLICATION_CREDENTIALS"])
    config = _config(
        tmp_path, state_uri="gs://bkt/state", provider_options={"truth_uri": _truth(tmp_path)}
    )
    with pytest.raises(CredentialsError, match="gcloud auth application-default login"):
        preflight(config, target="local", env={})
    # The GCS emulator needs none.
    preflight(config, target="local", env={"STORAGE_EMULATOR_HOST": "http://127.0.0.1:1"})


def test_run_local_refuses_before_starting_with_one_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", **NO_ADC}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines",
            "run-local",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--set",
            "pipeline.state_uri=gs://bkt/state",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 4
    assert done.stderr.strip().splitlines() == [
        "error: no Google credentials found: run `gcloud auth application-default login` "
        "(or set GOOGLE_APPLICATION_CREDENTIALS to a service account key file)"
    ]
    assert not (tmp_path / "runs").exists()  # nothing started


def test_a_failed_step_records_its_reason_for_the_report(tmp_path: Path) -> None:
    run_dir = tmp_path / "root" / "labelloop-labeling-1"
    output = str(run_dir / "run-labeling-job" / "annotations")
    assert task_name(output) == "run-labeling-job"
    assert task_name("gs://b/root/123/job-1/run-labeling-job_42/annotations") == "run-labeling-job"
    with pytest.raises(ValueError, match="answered 400"), recorded(output):
        raise ValueError("Label Studio answered 400:\nlocal files are not served\nfix the root")
    record = json.loads(Path(failure_uri(str(run_dir), "run-labeling-job")).read_text())
    failure = Failure(**record)
    assert failure.headline() == ("ValueError: Label Studio answered 400:\n... fix the root")
    report = run_dir / "write-failure-report" / "report"
    result = write_failure_report(
        final_state="FAILED",
        error_message="Task exit-handler-1 failed.",
        run_id="run-7",
        state_uri=str(tmp_path / "state"),
        report_uri=str(report),
    )
    assert result.stage == "run-labeling-job"
    html = report.read_text()
    assert "Round failed in <code>run-labeling-job</code>" in html
    # Earlier stages' work is not listed as untouched; this stage's and later ones' are.
    assert "no labels were collected or recorded" in html
    assert "the list of imported items was not extended" not in html
    assert (tmp_path / "state" / "failures" / "run-7.html").read_text() == html
    write_failure_report(
        final_state="FAILED",
        error_message="",
        run_id="run-8",
        state_uri="",
        report_uri=str(report),
        pipeline_job="projects/p1/locations/europe-west4/pipelineJobs/labelloop-123",
    )
    assert (
        "https://console.cloud.google.com/vertex-ai/locations/europe-west4/pipelines/runs/"
        "labelloop-123?project=p1"
    ) in report.read_text()
    ok = write_failure_report(
        final_state="SUCCEEDED", error_message="", run_id="r", state_uri="", report_uri=str(report)
    )
    assert ok.stage == ""


def test_failure_report_escapes_what_it_quotes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError), recorded(str(run_dir / "quality-gate" / "q")):
        raise RuntimeError("<script>alert(1)</script>")
    report = run_dir / "write-failure-report" / "report"
    write_failure_report(
        final_state="FAILED", error_message="", run_id="r", state_uri="", report_uri=str(report)
    )
    assert "<script>" not in report.read_text()
    assert "&lt;script&gt;" in report.read_text()


def test_the_report_never_reads_an_item_path_that_is_not_in_the_dataset(tmp_path: Path) -> None:
    from labelloop.report.thumbnails import preview
    from labelloop.schemas import Item

    secret = tmp_path / "secret.txt"
    secret.write_text("the canary says hello")
    inside = tmp_path / "data" / "a.txt"
    inside.parent.mkdir()
    inside.write_text("a real item")
    items = {str(inside): Item(str(inside), uri=str(inside))}
    # A review row naming a path that is not one of the round's items: refused, not read.
    shown = preview(str(secret), items)
    assert shown.snippet is None or "canary" not in shown.snippet
    assert "not read" in (shown.note or "")
    assert "a real item" in (preview(str(inside), items).snippet or "")
