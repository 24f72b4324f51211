"""Importing annotations made elsewhere, and the labeling step's waiting and retries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labelloop import storage
from labelloop.providers import LabelingTask, get_provider
from labelloop.providers.importer import ImportProvider, detect_format
from labelloop.providers.label_studio_format import to_result
from labelloop.schemas import Box, Item, Span, TaskType, text_item_id
from labelloop.stages.run_labeling_job import run_labeling_job

LABELS = ("cat", "dog")
IMAGES = [f"gs://b/{n}.png" for n in ("one", "two", "three")]
ITEMS = [Item(u, uri=u) for u in IMAGES]
TASK = LabelingTask(TaskType.IMAGE_CLASSIFICATION, LABELS)


def _collect(path: Path, task: LabelingTask = TASK, items=ITEMS, **options):
    provider = get_provider("import", {"uri": str(path), **options})
    return provider.collect(provider.submit(items, task, labelers_per_item=2))


def test_label_studio_export_with_user_mapping(tmp_path: Path) -> None:
    export = [
        {
            "id": 10,
            "data": {"image": IMAGES[0]},
            "annotations": [
                {
                    "id": 1,
                    "completed_by": 7,
                    "result": to_result(TaskType.IMAGE_CLASSIFICATION, "cat"),
                },
                {
                    "id": 2,
                    "completed_by": 8,
                    "result": to_result(TaskType.IMAGE_CLASSIFICATION, "dog"),
                },
                {"id": 3, "completed_by": 9, "was_cancelled": True, "result": []},
            ],
        },
        {
            "id": 11,
            "data": {"image": "gs://b/unknown.png"},
            "annotations": [
                {
                    "id": 4,
                    "completed_by": 7,
                    "result": to_result(TaskType.IMAGE_CLASSIFICATION, "cat"),
                }
            ],
        },
        {
            "id": 12,
            "data": {"image": IMAGES[1]},
            "annotations": [
                {
                    "id": 5,
                    "completed_by": 7,
                    "result": to_result(TaskType.IMAGE_CLASSIFICATION, "horse"),
                }
            ],
        },
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    assert detect_format(str(path)) == "label_studio"
    got = _collect(path, annotator_map={"7": "alice"})
    assert sorted((a.item, a.annotator, a.value) for a in got.annotations) == [
        (IMAGES[0], "alice", "cat"),
        (IMAGES[0], "ls-user-8", "dog"),
    ]
    assert got.skipped == 1
    reasons = sorted(b.reason for b in got.bad)
    assert any("unknown label 'horse'" in r for r in reasons)
    assert any("gs://b/unknown.png: not an item of this job" in r for r in reasons)


def test_vertex_export_all_task_types(tmp_path: Path) -> None:
    set_key = "aiplatform.googleapis.com/annotation_set_name"
    rows = [
        {"imageGcsUri": IMAGES[0], "classificationAnnotation": {"displayName": "cat"}},
        {
            "imageGcsUri": IMAGES[1],
            "classificationAnnotation": {
                "displayName": "dog",
                "annotationResourceLabels": {set_key: "vendorA"},
            },
        },
        {"imageGcsUri": IMAGES[2], "classificationAnnotation": {"displayName": "bird"}},
    ]
    path = tmp_path / "vertex.jsonl"
    storage.write_jsonl(str(path), rows)
    assert detect_format(str(path)) == "vertex"
    got = _collect(path)
    assert sorted((a.item, a.annotator, a.value) for a in got.annotations) == [
        (IMAGES[0], "vertex", "cat"),
        (IMAGES[1], "vendorA", "dog"),
    ]
    assert [(b.line, b.field) for b in got.bad] == [(3, "label")]

    boxes = tmp_path / "boxes.jsonl"
    storage.write_jsonl(
        str(boxes),
        [
            {
                "imageGcsUri": IMAGES[0],
                "boundingBoxAnnotations": [
                    {"displayName": "dog", "xMin": 0.1, "xMax": 0.4, "yMin": 0.2, "yMax": 0.9}
                ],
            }
        ],
    )
    got = _collect(boxes, LabelingTask(TaskType.IMAGE_OBJECT_DETECTION, LABELS))
    assert got.annotations[0].value == (Box(0.1, 0.2, 0.4, 0.9, "dog"),)

    text = "Ada in London"
    spans = tmp_path / "spans.jsonl"
    storage.write_jsonl(
        str(spans),
        [
            {
                "textContent": text,
                "textSegmentAnnotations": [
                    {"startOffset": 7, "endOffset": 13, "displayName": "LOC"}
                ],
            }
        ],
    )
    got = _collect(
        spans,
        LabelingTask(TaskType.TEXT_ENTITY_EXTRACTION, ("PER", "LOC")),
        items=[Item(text_item_id(text), text=text)],
    )
    assert got.annotations[0].value == (Span(7, 13, "LOC"),)
    assert got.annotations[0].item == text_item_id(text)


def test_long_csv_with_annotator_map_file_and_prefix_map(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(
        "item,annotator,label\n"
        "gs://old/one.png,w1,cat\n"
        "gs://old/two.png,w2,dog\n"
        "gs://old/two.png,w3,dog\n"
        "gs://old/three.png,w1,\n"
    )
    mapping = tmp_path / "people.csv"
    mapping.write_text("source,annotator\nw1,alice\nw2,bob\nw3,bob\n")
    got = _collect(path, annotator_map_uri=str(mapping), item_prefix_map={"gs://old/": "gs://b/"})
    assert sorted((a.item, a.annotator) for a in got.annotations) == [
        (IMAGES[0], "alice"),
        (IMAGES[1], "bob"),
    ]
    # w2 and w3 are one person: the second row is a duplicate; the empty label is bad.
    assert sorted((b.line, b.field) for b in got.bad) == [(4, "annotator"), (5, "label")]


def test_import_needs_a_file() -> None:
    with pytest.raises(
        ValueError, match="required option 'uri' is missing: a string, the annotations file"
    ):
        get_provider("import", {})
    provider = ImportProvider("/nonexistent/x.csv")
    with pytest.raises(ValueError, match="does not exist"):
        provider.collect(provider.submit(ITEMS, TASK, labelers_per_item=1))


# -- the step: waiting up to a timeout, partial labels, retries --------------------------------


def _items_file(tmp_path: Path) -> str:
    uri = str(tmp_path / "items.jsonl")
    storage.write_jsonl(uri, [i.to_import_record(TaskType.IMAGE_CLASSIFICATION) for i in ITEMS])
    return uri


def _step(tmp_path: Path, name: str, options: dict, *, sleep=lambda s: None):
    return run_labeling_job(
        items_uri=_items_file(tmp_path),
        task_type="image_classification",
        labels="cat,dog",
        provider=options.pop("provider", "import"),
        provider_options=json.dumps(options),
        labelers_per_item=2,
        annotations_uri=str(tmp_path / f"{name}.jsonl"),
        job_uri=str(tmp_path / f"{name}-job.json"),
        rejects_uri=str(tmp_path / f"{name}-rej.jsonl"),
        sleep=sleep,
    )


def test_step_waits_until_the_labels_arrive(tmp_path: Path) -> None:
    labels = tmp_path / "incoming.csv"
    labels.write_text("item,annotator,label\n" + f"{IMAGES[0]},a,cat\n")
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:  # people finish while the step waits
            labels.write_text(
                "item,annotator,label\n"
                + "".join(f"{u},{w},cat\n" for u in IMAGES for w in ("a", "b"))
            )

    result = _step(
        tmp_path, "wait", {"uri": str(labels), "wait_seconds": 100, "poll_seconds": 30}, sleep=sleep
    )
    assert waits == [30, 30]
    assert result.complete
    assert result.annotations == 6
    assert result.waited_seconds == 60


def test_step_returns_partial_labels_at_the_timeout(tmp_path: Path) -> None:
    labels = tmp_path / "incoming.csv"
    labels.write_text("item,annotator,label\n" + f"{IMAGES[0]},a,cat\n{IMAGES[0]},b,dog\n")
    waits: list[float] = []
    result = _step(
        tmp_path,
        "partial",
        {"uri": str(labels), "wait_seconds": 50, "poll_seconds": 20},
        sleep=waits.append,
    )
    assert waits == [20, 20, 10]
    assert not result.complete
    assert (result.annotations, result.labeled_items) == (2, 1)
    record = json.loads((tmp_path / "partial-job.json").read_text())
    assert record["progress"] == {"labeled": 1, "total": 3}
    assert record["complete"] is False


def test_step_retry_gives_the_same_job_and_labels(tmp_path: Path) -> None:
    truth = tmp_path / "truth.csv"
    truth.write_text("item,label\n" + "".join(f"{u},dog\n" for u in IMAGES))
    options = {"provider": "simulated", "truth_uri": str(truth), "seed": 3}
    first = _step(tmp_path, "r1", dict(options))
    second = _step(tmp_path, "r2", dict(options))
    assert first == second
    assert (tmp_path / "r1.jsonl").read_text() == (tmp_path / "r2.jsonl").read_text()
    assert first.annotations == 6


def test_step_rejects_bad_wait_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="wait_seconds"):
        _step(tmp_path, "bad", {"uri": "x.csv", "wait_seconds": -1})
