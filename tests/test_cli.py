"""The `labelloop` command as a person meets it: help, output naming, errors, pipes, exit codes."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labelloop.cli import EXIT_BROKEN_PIPE, build_parser, main
from labelloop.cli_select import summary_path


def _commands(
    parser: argparse.ArgumentParser, prefix: str = ""
) -> dict[str, argparse.ArgumentParser]:
    out: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out[f"{prefix}{name}"] = sub
                out |= _commands(sub, f"{prefix}{name} ")
    return out


def test_every_command_is_described_and_shows_its_defaults() -> None:
    from pipelines.__main__ import build_parser as pipelines_parser

    commands = _commands(build_parser())
    assert {"consolidate", "agreement", "select", "label status", "label collect"} <= set(commands)
    assert "import-annotations" in commands
    pipelines = _commands(pipelines_parser(), "pipelines ")
    assert {"pipelines compile", "pipelines run-local", "pipelines submit"} <= set(pipelines)
    commands |= pipelines
    for name, parser in commands.items():
        assert parser.description, name
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings[0]} has no help"
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            default = action.default
            absent = default is None or default is False or default in ("", argparse.SUPPRESS)
            if action.option_strings and not absent:
                assert f"(default: {default})" in text, f"{name} {action.option_strings[0]}"
    status = " ".join(commands["label status"].format_help().split())
    assert "--timeout TIMEOUT" in status
    assert "(exit 1)" in status
    assert "(default: 3600.0)" in status


def test_select_names_its_summary_the_same_for_any_extension() -> None:
    assert summary_path("out/next.jsonl") == "out/next.summary.json"
    assert summary_path("out/next.csv") == "out/next.summary.json"
    assert summary_path("next") == "next.summary.json"
    assert summary_path("gs://b/run/next.jsonl") == "gs://b/run/next.summary.json"


def _top_commands(parser: argparse.ArgumentParser) -> set[str]:
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(found[0].choices)


def test_a_command_starts_without_the_other_commands_or_pandas(tmp_path: Path) -> None:
    """`consolidate` registers only the modules up to its own, and its whole run imports
    neither pandas nor the providers (start-up is a share of every command's time)."""
    assert "label" not in _top_commands(build_parser("consolidate"))
    assert {"consolidate", "label", "state"} <= _top_commands(build_parser())
    _crowd(tmp_path / "ann.csv", n=20)
    script = (
        "import sys; from labelloop.cli import main; "
        f"code = main(['consolidate', {str(tmp_path / 'ann.csv')!r}, '--out', "
        f"{str(tmp_path / 'out.csv')!r}]); "
        "print(code, 'pandas' in sys.modules, 'labelloop.providers' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert proc.stdout.split() == ["0", "False", "False"]
    version = subprocess.run(
        [sys.executable, "-m", "labelloop.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert version.stdout.startswith("labelloop ")


def _crowd(path: Path, n: int = 400) -> None:
    rows = ["item,annotator,label"]
    rows += [f"i{i},a{j},{'pos' if (i + j) % 3 else 'neg'}" for i in range(n) for j in range(3)]
    path.write_text("\n".join(rows) + "\n")


def test_a_closed_pipe_is_not_a_traceback(tmp_path: Path) -> None:
    """`labelloop ... | head` where head has gone: exit 141, nothing on stderr."""
    _crowd(tmp_path / "ann.csv")
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "labelloop.cli", "agreement", str(tmp_path / "ann.csv"), "-h"][
                :-1
            ],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            timeout=120,
        )
    finally:
        os.close(write)
    assert proc.returncode == EXIT_BROKEN_PIPE, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "BrokenPipeError" not in proc.stderr


@pytest.mark.parametrize("where", ["local", "gcs"])
def test_state_json_into_a_closed_pipe_is_quiet(
    where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`labelloop state URI --json | head`: exit 141, nothing on stderr (not "cannot reach")."""
    from labelloop.ledger import Ledger

    state_uri = str(tmp_path / "state")
    if where == "gcs":
        state_uri = request.getfixturevalue("gcs_bucket") + "/state"
    led = Ledger.load(state_uri)
    led.append(
        "queue", run="r1", job="j1", provider="simulated", task_type="image_classification",
        labels=["a", "b"], labelers_per_item=1, items=[{"id": f"i{n}"} for n in range(50)],
    )  # fmt: skip
    led.compact()
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "labelloop.cli", "state", state_uri, "--json"],
            stdout=write, stderr=subprocess.PIPE, text=True, check=False, timeout=120,
        )  # fmt: skip
    finally:
        os.close(write)
    assert proc.returncode == EXIT_BROKEN_PIPE, proc.stderr
    assert proc.stderr == ""


def test_bad_lines_are_reported_once_on_stderr(tmp_path: Path) -> None:
    pred = tmp_path / "pred.jsonl"
    good = {
        "instance": {"content": "gs://b/1.png"},
        "prediction": {"ids": ["0", "1"], "displayNames": ["a", "b"], "confidences": [0.6, 0.4]},
    }
    pred.write_text(json.dumps(good) + "\n{broken\n")
    out = str(tmp_path / "next.csv")
    proc = subprocess.run(
        [sys.executable, "-m", "labelloop.cli", "select", str(pred), "--k", "1", "--out", out],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("pred.jsonl:2:") == 1, proc.stderr
    assert "pred.jsonl:2:" not in proc.stdout
    assert (tmp_path / "next.summary.json").is_file()


def test_gemini_job_status_comes_from_its_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gemini labels within the step: its record is final, no credentials are needed."""
    for name in ("GOOGLE_CLOUD_PROJECT", "GOOGLE_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    record = {
        "provider": "gemini",
        "key": "k1",
        "external_id": "gemini-k1",
        "items": 20,
        "labelers_per_item": 1,
        "progress": {"labeled": 18, "total": 20},
        "complete": True,
    }
    job = tmp_path / "job.json"
    job.write_text(json.dumps(record))
    assert main(["label", "status", "--provider", "gemini", "--job", str(job)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["labeled"], status["total"], status["key"]) == (18, 20, "k1")
    assert main(["label", "status", "--provider", "label_studio", "--job", str(job)]) == 2
    assert capsys.readouterr().err.count("error:") == 1
