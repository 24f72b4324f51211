"""Fault injection on the real runner (`python -m pipelines run-local`), as a user runs it.

The runner and every task it started are SIGKILLed (the whole process group: a machine that
dies) at each stage boundary and in the middle of the stages that write state (selection,
labeling, quality gate, training), one run after another on one state.
After each kill `labelloop state --check` passes, no collected annotation is lost, and no item
was sent in a second job. Then two runs started at once on one state: one stops, naming the
other, and the ledger stays valid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from labelloop.ledger import Ledger
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def _config(digits_sample, tmp_path: Path) -> Path:
    pipeline = {
        "source_uri": digits_sample.source_uri,
        "state_uri": str(tmp_path / "state"),
        "labels": ",".join(digits_sample.labels),
        "selection_size": 30,
        "queue_size": 45,
        "selection_strategy": "random",
        "labelers_per_item": 3,
        "provider": "simulated",
        "provider_options": json.dumps({"truth_uri": digits_sample.truth_uri, "pace": 0.5}),
        "min_labeled_count": 10,
        "min_agreement": 0.0,
        "seed": 1,
    }
    path = tmp_path / "faults.yaml"
    path.write_text(
        "pipeline:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in pipeline.items())
    )
    return path


def _start(config: Path, tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines", "run-local", "--config", str(config),
         "--runs-dir", str(tmp_path / "runs"), *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip


def _kill(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _annotations(state_uri: str) -> set[tuple[str, str, str]]:
    led = Ledger.load(state_uri)
    return {
        (r["job"], r["item"], r["annotator"])
        for k in led.state.jobs
        for r in led.read_annotations(k)
    }


def _events(state_uri: str) -> list[dict]:
    folder = Path(state_uri) / "ledger" / "events"
    if not folder.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


# Mid-stage points: the state files each stage writes; the run is killed as soon as one of
# them is created or replaced (the stage has begun changing the state and not finished).
DURING = {
    "during:select-for-labeling": ("arms/*.jsonl", "eval/*.jsonl"),
    "during:quality-gate": ("labels/*.jsonl", "relabel/*"),
    "during:train-model": ("models/latest/*",),
}


def _files(state_uri: str, patterns: tuple[str, ...]) -> dict[str, int]:
    root = Path(state_uri)
    return {str(f): f.stat().st_mtime_ns for pat in patterns for f in root.glob(pat) if f.is_file()}


def _run_until(config: Path, tmp_path: Path, state_uri: str, point: str) -> str:
    """Start a run and SIGKILL it at `point`: `after:<task>`, `queue` (mid labeling step) or
    `during:<task>` (once that task has written one of its state files)."""
    watched = DURING.get(point, ())
    before = _files(state_uri, watched)
    proc = _start(config, tmp_path)
    seen = len(_events(state_uri))
    lines: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if point.startswith("after:") and f"ok   {point[6:]} " in line:
                _kill(proc)
                break
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 240
    while not done.is_set() and time.monotonic() < deadline:
        if point == "queue" and any(e["kind"] == "queue" for e in _events(state_uri)[seen:]):
            _kill(proc)  # the items are queued in the ledger; the provider call is under way
            break
        if watched and _files(state_uri, watched).items() - before.items():
            _kill(proc)  # the stage has written part of its state
            break
        time.sleep(0.005)
    _kill(proc)
    reader.join(timeout=10)
    return "".join(lines)


def _check(state_uri: str) -> dict:
    cli = subprocess.run(
        [sys.executable, "-m", "labelloop.cli", "state", state_uri, "--json", "--check"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stdout + cli.stderr
    return dict(json.loads(cli.stdout))


def test_killed_at_every_stage_boundary_and_mid_stage(digits_sample, tmp_path: Path) -> None:
    config = _config(digits_sample, tmp_path)
    state_uri = str(tmp_path / "state")
    kept: set[tuple[str, str, str]] = set()
    points = (
        "after:reconcile-jobs",
        "during:select-for-labeling",
        "after:select-for-labeling",
        "queue",
        "after:create-dataset",
        "after:run-labeling-job",
        "during:quality-gate",
        "after:quality-gate",
        "during:train-model",
        "after:train-model",
    )
    for point in points:
        out = _run_until(config, tmp_path, state_uri, point)
        if point.startswith("during:"):
            # Killed inside the stage: it had started and had not finished.
            assert f"ok   {point[7:]} " not in out, out
        doc = _check(state_uri)
        now = _annotations(state_uri)
        assert kept <= now, f"annotations lost after a kill at {point}"
        kept = now
        led = Ledger.load(state_uri)
        sent = [i for j in led.state.jobs.values() for i in j["items"]]
        assert len(sent) == len(set(sent)), f"an item was sent twice after a kill at {point}"
        assert doc["items"]["queued"] + doc["items"]["labeled"] == len(set(sent))
    # The killed runs' leases do not block: a whole run completes and collects what is left.
    proc = _start(config, tmp_path)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    doc = _check(state_uri)
    assert kept <= _annotations(state_uri)
    assert doc["items"]["labeled"] > 0
    assert doc["lease"] is None
    assert len(doc["runs"]) >= 3
    # The consolidated labels: one file, every labeled item in it (none lost to a kill).
    labels = list((Path(state_uri) / "labels").glob("*.jsonl"))
    assert len(labels) == 1
    kept_items = {json.loads(line)["item"] for line in labels[0].read_text().splitlines()}
    labeled = {i for i, e in Ledger.load(state_uri).state.items.items() if e["state"] == "labeled"}
    assert labeled <= kept_items


def test_two_runs_at_once_one_stops_naming_the_other(digits_sample, tmp_path: Path) -> None:
    config = _config(digits_sample, tmp_path)
    state_uri = str(tmp_path / "state")
    first, second = _start(config, tmp_path), _start(config, tmp_path)
    outputs = [p.communicate(timeout=300)[0] for p in (first, second)]
    codes = sorted(p.returncode for p in (first, second))
    assert codes == [0, 2], outputs
    stopped = outputs[[first.returncode, second.returncode].index(2)]
    assert "is in use by run local-" in stopped
    assert "Traceback" not in stopped
    _check(state_uri)
