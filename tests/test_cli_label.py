"""`labelloop label status|collect` and `labelloop import-annotations`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labelloop import storage
from labelloop.cli import main
from labelloop.cli_label import progress_bar
from labelloop.providers.base import Progress
from labelloop.providers.label_studio_format import to_result
from labelloop.schemas import Item, TaskType

IMAGES = [f"gs://b/{i}.png" for i in range(4)]


@pytest.fixture
def items_file(tmp_path: Path) -> str:
    uri = str(tmp_path / "items.jsonl")
    storage.write_jsonl(
        uri, [Item(u, uri=u).to_import_record(TaskType.IMAGE_CLASSIFICATION) for u in IMAGES]
    )
    return uri


def test_progress_bar() -> None:
    assert progress_bar(Progress(3, 12), width=8) == "[##......] 3/12 items (25%)"
    assert progress_bar(Progress(0, 0), width=4) == "[....] 0/0 items (0%)"


def test_import_annotations_converts_a_label_studio_export(
    tmp_path: Path, items_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    export = [
        {
            "id": i,
            "data": {"image": u},
            "annotations": [
                {
                    "id": 10 + i,
                    "completed_by": 1,
                    "result": to_result(TaskType.IMAGE_CLASSIFICATION, "cat"),
                }
            ],
        }
        for i, u in enumerate([*IMAGES[:2], "gs://b/stray.png"])
    ]
    src = tmp_path / "export.json"
    src.write_text(json.dumps(export))
    people = tmp_path / "people.csv"
    people.write_text("source,annotator\n1,alice\n")
    out = tmp_path / "out.jsonl"
    code = main(
        [
            "import-annotations",
            str(src),
            "--task-type",
            "image_classification",
            "--labels",
            "cat,dog",
            "--annotator-map",
            str(people),
            "--items",
            items_file,
            "--out",
            str(out),
            "--rejects",
            str(tmp_path / "rej.jsonl"),
        ]
    )
    assert code == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert rows == [
        {"item": u, "annotator": "alice", "annotator_kind": "human", "label": "cat"}
        for u in IMAGES[:2]
    ]
    assert "2 annotation(s) written" in capsys.readouterr().out
    rejects = [json.loads(x) for x in (tmp_path / "rej.jsonl").read_text().splitlines()]
    assert [r["field"] for r in rejects] == ["item"]


def test_label_collect_and_status_with_the_simulated_workforce(
    tmp_path: Path, items_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = tmp_path / "truth.csv"
    truth.write_text("item,label\n" + "".join(f"{u},dog\n" for u in IMAGES))
    common = [
        "--provider",
        "simulated",
        "--options",
        json.dumps({"truth_uri": str(truth)}),
        "--items",
        items_file,
        "--task-type",
        "image_classification",
        "--labels",
        "cat,dog",
        "--labelers-per-item",
        "2",
    ]
    out = tmp_path / "ann.jsonl"
    assert main(["label", "collect", *common, "--out", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 8
    assert {r["item"] for r in rows} == set(IMAGES)
    captured = capsys.readouterr()
    assert "8 annotation(s) for 4 item(s)" in captured.out
    assert "4/4 items" in captured.err  # the progress bar goes to stderr

    assert main(["label", "status", *common, "--watch", "--timeout", "0"]) == 0
    captured = capsys.readouterr()
    status = json.loads(captured.out)
    assert (status["labeled"], status["total"], status["done"]) == (4, 4, True)
    assert "[" in captured.err


def test_status_from_a_job_record_of_another_provider_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = tmp_path / "job.json"
    record.write_text(
        json.dumps(
            {
                "provider": "label_studio",
                "key": "k",
                "external_id": "1",
                "items": 1,
                "labelers_per_item": 1,
            }
        )
    )
    truth = tmp_path / "t.csv"
    truth.write_text("item,label\n")
    code = main(
        [
            "label",
            "status",
            "--provider",
            "simulated",
            "--options",
            json.dumps({"truth_uri": str(truth)}),
            "--job",
            str(record),
        ]
    )
    assert code == 2
    assert "job record is for provider 'label_studio'" in capsys.readouterr().err
