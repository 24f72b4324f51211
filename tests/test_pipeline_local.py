"""The whole pipeline on kfp.local: training runs, count gate closed, agreement gate closed."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from labelloop.config import load_config
from pipelines.run_local import run_local
from tests.conftest import STAGE_TASKS

pytestmark = pytest.mark.slow


def _config(digits_sample, tmp_path: Path, **pipeline: object):
    base = {
        "source_uri": digits_sample.source_uri,
        "labels": ",".join(digits_sample.labels),
        "selection_size": 150,
        "labelers_per_item": 3,
        "provider": "simulated",
        "provider_options": json.dumps(
            {"truth_uri": digits_sample.truth_uri, "workforce": "mixed"}
        ),
        "min_labeled_count": 100,
        "min_agreement": 0.3,
        "min_confidence": 0.5,
        "seed": 1,
    }
    base.update(pipeline)
    text = "pipeline:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in base.items())
    return load_config(str(tmp_path / "test.yaml"), text=text)


def _run(config, tmp_path: Path, rounds: int = 1):
    console = io.StringIO()
    run_root, rows = run_local(
        config,
        rounds=rounds,
        runs_dir=tmp_path / "runs",
        cache_dir=tmp_path / "cache",
        console=console,
    )
    return run_root, rows, console.getvalue()


def test_training_runs_when_both_gates_open(digits_sample, tmp_path: Path) -> None:
    run_root, rows, console = _run(_config(digits_sample, tmp_path), tmp_path)
    (row,) = rows
    assert row.status == "ok"
    # The batch, plus the fixed evaluation set (labeled once, with the first batch).
    assert (row.imported, row.selected, row.labeled) == (digits_sample.count, 200, 200)
    assert row.count_gate == row.agreement_gate == "open"
    assert row.model_accuracy is not None
    assert row.model_accuracy > 0.6
    assert row.consolidated_accuracy is not None
    assert row.consolidated_accuracy > 0.85  # best annotator 0.95, mean ~0.73
    assert row.reason.startswith("trained on")
    # The model is also measured on the fixed evaluation set (random items, never trained on).
    assert row.eval_accuracy is not None
    assert row.eval_accuracy > 0.6
    # One readable line per stage on the console, the verbose kfp output in the log file.
    for stage in STAGE_TASKS:
        assert f"ok   {stage}" in console
    assert "Executing task" not in console
    assert "Executing task" in (run_root / "kfp.log").read_text()
    assert Path(row.report).is_file()
    summary = json.loads((run_root / "summary.json").read_text())
    assert summary[0]["model_accuracy"] == row.model_accuracy
    # The model landed in the state for the next round.
    assert (run_root / "state" / "models" / "latest" / "model.json").is_file()


def test_count_gate_closed_records_why(digits_sample, tmp_path: Path) -> None:
    config = _config(digits_sample, tmp_path, selection_size=40, min_labeled_count=100)
    _, (row,), console = _run(config, tmp_path)
    assert row.status == "ok"
    assert row.count_gate == "closed"
    assert row.model_accuracy is None
    assert row.reason.endswith("of 100 labels")
    assert int(row.reason.split()[0]) <= 40
    assert "train-model" not in console


def test_agreement_gate_closed_with_near_random_workforce(digits_sample, tmp_path: Path) -> None:
    options = json.dumps({"truth_uri": digits_sample.truth_uri, "workforce": "random"})
    # Near-random annotators rarely form a majority: a low count bar isolates the agreement gate.
    config = _config(
        digits_sample, tmp_path, provider_options=options, min_confidence=0.0, min_labeled_count=10
    )
    _, (row,), _ = _run(config, tmp_path)
    assert row.count_gate == "open"
    assert row.agreement_gate == "closed"
    assert row.agreement is not None
    assert row.agreement < 0.3
    assert row.reason.startswith("krippendorff_alpha ")
    assert row.model_accuracy is None


def test_empty_source_completes_with_count_gate_closed(digits_sample, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    config = _config(digits_sample, tmp_path, source_uri=str(empty))
    _, (row,), _ = _run(config, tmp_path)
    assert row.status == "ok"
    assert row.imported == 0
    assert row.count_gate == "closed"
    assert row.reason == "0 of 100 labels"


def test_second_round_selects_with_the_first_rounds_model(digits_sample, tmp_path: Path) -> None:
    run_root, rows, _ = _run(_config(digits_sample, tmp_path), tmp_path, rounds=2)
    first, second = rows
    # Round 1's items (batch and evaluation set) are not offered again.
    assert second.imported == first.imported - 200
    assert second.labels_used is not None
    assert first.labels_used is not None
    assert second.labels_used > first.labels_used
    selection = json.loads(
        next((Path(second.run_dir) / "select-for-labeling").glob("summary")).read_text()
    )
    assert selection["cold_start"] is False
    rounds = sorted((run_root / "state" / "rounds").glob("*.json"))
    assert len(rounds) == 2


def test_missing_source_fails_the_round_with_the_reason(digits_sample, tmp_path: Path) -> None:
    config = _config(digits_sample, tmp_path, source_uri=str(tmp_path / "does-not-exist"))
    run_root, rows, console = _run(config, tmp_path)
    assert rows[0].status.startswith("failed")
    assert "FAIL generate-import-file" in console
    # The step's own reason is on the console, right under the failed stage, not only in the log.
    fail_line = console.index("FAIL generate-import-file")
    reason = console[fail_line:].splitlines()[1]
    assert "source directory does not exist" in reason
    assert str(tmp_path / "does-not-exist") in reason
    assert f"full log: {run_root / 'kfp.log'}" in console
    # The exit handler ran after the failure and wrote the failure report, named on the console.
    page = Path(rows[0].failure_report)
    assert f"failure report: {page}" in console
    html = page.read_text()
    assert "Round failed in <code>generate-import-file</code>" in html
    assert "source directory does not exist" in html
    assert "the current model stayed as it was" in html
    # ... and a copy with a JSON record in the loop's state.
    (record,) = (run_root / "state" / "failures").glob("*.json")
    assert json.loads(record.read_text())["stage"] == "generate-import-file"


def test_run_leaves_the_process_temp_dir_as_it_found_it(digits_sample, tmp_path: Path) -> None:
    import os
    import tempfile

    before = (os.environ.get("TMPDIR"), tempfile.tempdir)
    config = _config(digits_sample, tmp_path, selection_size=20, min_labeled_count=1000)
    run_root, _, _ = _run(config, tmp_path)
    assert (os.environ.get("TMPDIR"), tempfile.tempdir) == before
    # kfp.local's per-task scratch folders went to the run folder, not the system's.
    assert any((run_root / "tmp").iterdir())
