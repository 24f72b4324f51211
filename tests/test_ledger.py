"""The item ledger and the lease: local folders and gs:// (fake-gcs-server) alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labelloop import atomic, lease, ledger, storage
from labelloop.ledger import LABELED, POOL, QUEUED, ConcurrentWriter, Ledger, LedgerError


@pytest.fixture(params=["local", "gcs"])
def state_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "state")
    bucket = request.getfixturevalue("gcs_bucket")
    return f"{bucket}/state"


def _queue(led: Ledger, key: str, items: list[str], run: str = "r1") -> None:
    led.append(
        "queue",
        run=run,
        job=key,
        provider="simulated",
        options={},
        task_type="image_classification",
        labels=["a", "b"],
        labelers_per_item=2,
        items=[{"id": i, "record": {"imageGcsUri": i}} for i in items],
    )


def _collect(led: Ledger, key: str, rows: list[dict], labeled: list[str], run: str = "r1") -> None:
    merged = led.merge_annotations(key, rows)
    led.append(
        "collect",
        run=run,
        job=key,
        labeled=labeled,
        annotations=len(merged),
        annotation_keys=ledger.annotation_keys_digest(merged),
        progress={"labeled": len(labeled), "total": 3},
    )


def _row(item: str, annotator: str, label: str = "a") -> dict:
    return {"item": item, "annotator": annotator, "label": label, "job": "j1", "provider": "sim"}


def test_lifecycle_survives_reload_and_compaction(state_uri: str) -> None:
    led = Ledger.load(state_uri)
    _queue(led, "j1", ["x", "y", "z"])
    _collect(led, "j1", [_row("x", "p"), _row("x", "q"), _row("y", "p")], ["x"])
    led.compact()
    led.append("close", run="r2", job="j1", reason="expired", returned=["z"])
    # Reload: snapshot + the event after it.
    again = Ledger.load(state_uri)
    assert again.seq == 3
    assert {i: e["state"] for i, e in again.state.items.items()} == {
        "x": LABELED,
        "y": QUEUED,
        "z": POOL,
    }
    assert again.state.items["z"]["reason"] == "expired"
    assert again.state.returned == {"expired": 1}
    assert again.state.jobs["j1"]["status"] == "closed"
    # y was still queued when the job closed without it being returned: check names it.
    problems = ledger.check(state_uri)
    assert problems == ["item y is queued but its job j1 is not open"]


def test_check_passes_on_a_consistent_ledger_and_names_a_lost_annotation(state_uri: str) -> None:
    led = Ledger.load(state_uri)
    _queue(led, "j1", ["x", "y"])
    _collect(led, "j1", [_row("x", "p"), _row("x", "q")], ["x"])
    led.append("close", run="r1", job="j1", reason="done", returned=["y"])
    led.compact()
    assert ledger.check(state_uri) == []
    assert ledger.excluded_ids(state_uri) == {"x"}
    # Lose an annotation behind the ledger's back.
    uri = led.annotations_uri("j1")
    rows = storage.read_text(uri).splitlines()[:1]
    storage.write_text(uri, "\n".join(rows) + "\n")
    problems = ledger.check(state_uri)
    assert problems
    assert "j1" in problems[0]
    assert "annotation" in problems[0]


def test_an_event_that_does_not_fit_is_refused_before_it_is_written(state_uri: str) -> None:
    led = Ledger.load(state_uri)
    _queue(led, "j1", ["x"])
    with pytest.raises(LedgerError, match="x is queued, expected pool"):
        _queue(led, "j2", ["x"])
    assert Ledger.load(state_uri).seq == 1
    assert "j2" not in Ledger.load(state_uri).state.jobs


def test_two_writers_cannot_both_append_the_same_event(state_uri: str) -> None:
    first, second = Ledger.load(state_uri), Ledger.load(state_uri)
    _queue(first, "j1", ["x"])
    with pytest.raises(ConcurrentWriter, match="another run appended event 1"):
        _queue(second, "j2", ["y"])
    assert ledger.check(state_uri) == []
    assert set(Ledger.load(state_uri).state.jobs) == {"j1"}


def test_return_items_sends_labeled_items_back_for_relabeling(state_uri: str) -> None:
    led = Ledger.load(state_uri)
    _queue(led, "j1", ["x", "y"])
    _collect(
        led, "j1", [_row("x", "p"), _row("x", "q"), _row("y", "p"), _row("y", "q")], ["x", "y"]
    )
    assert ledger.return_items(state_uri, ["x", "nope"], reason="relabel") == 1
    state = Ledger.load(state_uri).state
    assert state.items["x"]["state"] == POOL
    assert state.items["x"]["reason"] == "relabel"
    assert state.returned == {"relabel": 1}
    assert ledger.check(state_uri) == []
    # Its annotations are kept, but no longer used.
    assert len(Ledger.load(state_uri).read_annotations("j1")) == 4
    assert {r["item"] for r in Ledger.load(state_uri).collected_annotations()} == {"y"}


def test_merge_keeps_every_annotation_and_takes_an_annotators_edit() -> None:
    led = Ledger.load("")
    led.merge_annotations("j", [_row("x", "p", "a")])
    out = led.merge_annotations("j", [_row("x", "q", "b")])
    assert len(out) == 2  # a collection that no longer returns p's answer loses nothing
    out = led.merge_annotations("j", [_row("x", "p", "b")])
    assert {(r["annotator"], r["label"]) for r in out} == {("p", "b"), ("q", "b")}


def test_atomic_create_and_replace_honour_preconditions(state_uri: str) -> None:
    uri = storage.join(state_uri, "obj.json")
    assert atomic.create(uri, b"1")
    assert not atomic.create(uri, b"2")
    data, generation = atomic.read(uri) or (b"", 0)
    assert data == b"1"
    atomic.replace(uri, b"3", generation=generation)
    with pytest.raises(atomic.PreconditionFailed):
        atomic.replace(uri, b"4", generation=generation)
    assert (atomic.read(uri) or (b"",))[0] == b"3"


# -- the lease -------------------------------------------------------------------------------


def test_lease_is_exclusive_reentrant_and_released(state_uri: str) -> None:
    me = lease.Holder("run-a", "host-a", os.getpid())
    other = lease.Holder("run-b", "host-b", 1)
    lease.acquire(state_uri, me)
    lease.acquire(state_uri, lease.Holder("run-a", "pod-2", 7))  # a later step of run-a
    with pytest.raises(lease.LeaseHeld, match="in use by run run-a"):
        lease.acquire(state_uri, other)
    slept: list[float] = []
    with pytest.raises(lease.LeaseHeld):
        lease.acquire(state_uri, other, wait_seconds=5, poll_seconds=2, sleep=slept.append)
    assert sum(slept) == pytest.approx(5)
    assert not lease.release(state_uri, other)
    assert lease.release(state_uri, me)
    lease.acquire(state_uri, other)
    assert (lease.read(state_uri) or {})["run"] == "run-b"


def test_an_expired_lease_is_taken_over(state_uri: str) -> None:
    lease.acquire(state_uri, lease.Holder("old", "elsewhere", 1), ttl_seconds=-1)
    lease.acquire(state_uri, lease.Holder("new", "here", os.getpid()))
    assert (lease.read(state_uri) or {})["run"] == "new"


def test_a_dead_local_holder_does_not_block(tmp_path: Path) -> None:
    state_uri = str(tmp_path / "state")
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(proc.stdout)
    here = lease.Holder.here("me")
    lease.acquire(state_uri, lease.Holder("killed", here.host, dead))
    lease.acquire(state_uri, here)
    assert json.loads(storage.read_text(storage.join(state_uri, lease.LEASE)))["run"] == "me"


def test_a_failed_runs_exit_handler_gives_back_its_own_lease_only(
    state_uri: str, tmp_path: Path
) -> None:
    from labelloop.stages.write_failure_report import write_failure_report

    report = str(tmp_path / "run" / "write-failure-report" / "report")
    # A Vertex run's steps hold the lease under the pipeline job id (another pod each).
    lease.acquire(state_uri, lease.Holder("job-1", "pod-reconcile", 1))
    write_failure_report(
        final_state="FAILED", error_message="", run_id="job-1", state_uri=state_uri,
        report_uri=report,
    )  # fmt: skip
    assert lease.read(state_uri) is None
    # Another run's lease (taken over after ours expired) is left alone.
    lease.acquire(state_uri, lease.Holder("job-2", "pod-other", 1))
    write_failure_report(
        final_state="CANCELLED", error_message="", run_id="job-1", state_uri=state_uri,
        report_uri=report,
    )  # fmt: skip
    assert (lease.read(state_uri) or {})["run"] == "job-2"


def test_break_lease_names_the_holder_asks_and_removes_only_what_it_showed(
    state_uri: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from labelloop.cli import main

    assert main(["state", state_uri, "--break-lease"]) == 0
    assert "the lease is free" in capsys.readouterr().out
    lease.acquire(state_uri, lease.Holder("job-7", "pod-x", 1))
    # No terminal and no --yes: refused, nothing removed.
    assert main(["state", state_uri, "--break-lease"]) == 5
    got = capsys.readouterr()
    assert "held by run job-7 (pid 1 on pod-x)" in got.out
    assert ", for 0 min" in got.out
    assert "confirm with --yes" in got.err
    assert (lease.read(state_uri) or {})["run"] == "job-7"
    # Asked on a terminal: "n" keeps it, "y" breaks it.
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert main(["state", state_uri, "--break-lease"]) == 5
    assert lease.read(state_uri) is not None
    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    assert main(["state", state_uri, "--break-lease"]) == 0
    assert "lease broken" in capsys.readouterr().out
    assert lease.read(state_uri) is None
    # A lease that changed between reading and breaking stays (generation match).
    lease.acquire(state_uri, lease.Holder("job-8", "pod-y", 1))
    shown = lease.read(state_uri) or {}
    lease.release(state_uri, lease.Holder("job-8", "pod-y", 1))
    lease.acquire(state_uri, lease.Holder("job-9", "pod-z", 1))
    assert not lease.break_lease(state_uri, shown)
    assert (lease.read(state_uri) or {})["run"] == "job-9"
    assert main(["state", state_uri, "--break-lease", "--yes"]) == 0
    assert lease.read(state_uri) is None


# -- consolidated labels kept in the state ------------------------------------------------------


def _label_files(state_uri: str) -> list[str]:
    from labelloop import state

    folder = state.path(state_uri, state.LABELS)
    if not storage.is_gcs(folder) and not Path(folder).is_dir():
        return []
    return [storage.basename(u) for u in storage.iter_files(folder, suffixes=(".jsonl",))]


def test_labels_are_written_once_per_content_and_never_lost(state_uri: str) -> None:
    from labelloop import state

    def lab(item: str, label: str) -> dict:
        return {"item": item, "label": label, "confidence": 0.9, "trainable": True}

    # A file of the old layout (one per round) is folded in, not lost.
    storage.write_text(state.path(state_uri, state.LABELS, "0123abcd.jsonl"),
                       json.dumps(lab("legacy", "b")) + "\n")  # fmt: skip
    first = state.record_labels(state_uri, [lab("i1", "a"), lab("i2", "b")])
    assert _label_files(state_uri) == [storage.basename(first)]
    generation = atomic.read(first)
    # The same labels again (a retried step, a run with nothing new): not written again.
    assert state.record_labels(state_uri, [lab("i2", "b"), lab("i1", "a")]) == first
    assert atomic.read(first) == generation
    # The next round's consolidation lacks i1 (sent back for relabeling) and changes i2.
    second = state.record_labels(state_uri, [lab("i2", "a"), lab("i3", "c")])
    assert _label_files(state_uri) == [storage.basename(second)]  # no pile of files
    rows = {r["item"]: r["label"] for r in state.labeled_rows(state_uri)}
    assert rows == {"legacy": "b", "i1": "a", "i2": "a", "i3": "c"}
    # Killed between writing the new file and removing the old one: both are read, the
    # newer wins, and the next round folds them into one again.
    stale = state.path(state_uri, state.LABELS, "20000101T000000000000Z-0000000000000000.jsonl")
    storage.write_text(stale, json.dumps(lab("i2", "z")) + "\n")
    assert {r["item"]: r["label"] for r in state.labeled_rows(state_uri)}["i2"] == "a"
    third = state.record_labels(state_uri, [lab("i4", "d")])
    assert _label_files(state_uri) == [storage.basename(third)]
    rows = {r["item"]: r["label"] for r in state.labeled_rows(state_uri)}
    assert rows == {"legacy": "b", "i1": "a", "i2": "a", "i3": "c", "i4": "d"}
