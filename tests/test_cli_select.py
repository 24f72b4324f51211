"""`labelloop select PREDICTIONS --k N --strategy NAME --out FILE`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from labelloop.active_learning import strategies as al
from labelloop.active_learning.predictions import write_predictions
from labelloop.cli import main

LABELS = ["a", "b", "c"]


def _predictions(path: Path, n: int = 50) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(0)
    ids = [f"gs://bucket/x/{i}.png" for i in range(n)]
    proba = rng.dirichlet(np.ones(3), size=n)
    write_predictions(str(path), ids, LABELS, proba)
    return ids, proba


def test_select_writes_the_import_file_and_summary(tmp_path: Path, capsys) -> None:
    pred = tmp_path / "pred.jsonl"
    ids, proba = _predictions(pred)
    with pred.open("a") as fh:
        fh.write('{"instance": {"content": "gs://bucket/bad.png"}, "prediction": {}}\n')
    out = tmp_path / "next.jsonl"
    rejects = tmp_path / "rejects.jsonl"
    args = ["select", str(pred), "--k", "5", "--strategy", "margin", "--out", str(out)]
    code = main([*args, "--rejects", str(rejects)])
    assert code == 0
    assert [json.loads(x) for x in rejects.read_text().splitlines()] == [
        {"source": str(pred), "line": 51, "field": "prediction.confidences",
         "reason": "missing or empty"}
    ]  # fmt: skip
    records = [json.loads(x) for x in out.read_text().splitlines()]
    expected = al.top_k(al.margin(proba), 5)
    assert [r["imageGcsUri"] for r in records] == [ids[i] for i in expected]
    summary = json.loads((tmp_path / "next.summary.json").read_text())
    assert summary["selected"] == 5
    assert summary["pool"] == 50
    assert summary["bad_records"] == 1
    assert summary["bad"] == [
        {
            "source": str(pred),
            "line": 51,
            "field": "prediction.confidences",
            "reason": "missing or empty",
        }
    ]
    assert sum(summary["predicted_class_mix"].values()) == 5
    printed = capsys.readouterr()
    assert "selected 5 of 50 (margin)" in printed.out
    # The bad line goes to stderr, once.
    assert printed.err.count(f"{pred}:51") == 1


def test_select_with_exclusions_and_text_task(tmp_path: Path) -> None:
    pred = tmp_path / "pred.jsonl"
    ids, proba = _predictions(pred)
    best = al.top_k(al.least_confidence(proba), 4)
    exclude = tmp_path / "done.txt"
    exclude.write_text(ids[best[0]] + "\n")
    out = tmp_path / "next.jsonl"
    code = main(
        [
            "select",
            str(pred),
            "--k",
            "3",
            "--strategy",
            "least_confidence",
            "--out",
            str(out),
            "--exclude",
            str(exclude),
            "--task-type",
            "text_classification",
            "--summary",
            str(tmp_path / "s.json"),
        ]
    )
    assert code == 0
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["textGcsUri"] for r in records] == [ids[i] for i in best[1:4]]
    assert json.loads((tmp_path / "s.json").read_text())["excluded"] == 1


def test_select_reports_bad_arguments_with_exit_code_2(tmp_path: Path, capsys) -> None:
    code = main(
        ["select", str(tmp_path / "missing.jsonl"), "--k", "3", "--out", str(tmp_path / "o.jsonl")]
    )
    assert code == 2
    assert "no predictions found" in capsys.readouterr().err
    pred = tmp_path / "pred.jsonl"
    _predictions(pred)
    assert main(["select", str(pred), "--k", "0", "--out", str(tmp_path / "o.jsonl")]) == 2


def test_select_runs_as_a_command(tmp_path: Path) -> None:
    pred = tmp_path / "pred.jsonl"
    _predictions(pred, n=20)
    out = tmp_path / "next.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "labelloop.cli",
            "select",
            str(pred),
            "--k",
            "4",
            "--strategy",
            "cluster_margin",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text().splitlines()) == 4


def test_select_counts_lines_outside_the_labels_and_refuses_an_all_bad_file(
    tmp_path: Path, capsys
) -> None:
    pred = tmp_path / "pred.jsonl"
    pred.write_text(
        '{"instance": {"content": "gs://b/1.png"}, "prediction": {"displayNames": ["a", "b"], '
        '"confidences": [0.5, 0.5]}}\n'
        '{"instance": {"content": "gs://b/2.png"}, "prediction": {"displayNames": ["a", "zebra"], '
        '"confidences": [0.5, 0.5]}}\n'
        '{"instance": {"content": "gs://b/3.png"}, "prediction": {"displayNames": ["a"], '
        '"confidences": [0.5, 0.5]}}\n'
        '{"instance": {"content": "gs://b/4.png"}, "prediction": {"confidences": ["0.5", 0.5]}}\n'
    )
    out = tmp_path / "next.jsonl"
    base = ["select", str(pred), "--k", "5", "--out", str(out), "--labels", "a,b,c"]
    assert main(base) == 0
    summary = json.loads((tmp_path / "next.summary.json").read_text())
    assert summary["pool"] == 1
    assert [(b["line"], b["field"], b["reason"]) for b in summary["bad"]] == [
        (2, "prediction.displayNames", "not in the labels: zebra"),
        (3, "prediction.displayNames", "1 names for 2 confidences"),
        (4, "prediction.confidences", "not all numbers"),
    ]
    pred.write_text("\n".join(pred.read_text().splitlines()[1:]) + "\n")
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "none.jsonl")]) == 2
    assert "no valid predictions" in capsys.readouterr().err
    assert not (tmp_path / "none.jsonl").exists()
