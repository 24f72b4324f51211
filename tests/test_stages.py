"""Step functions of the stages the skeleton owns: import file, dataset, training, gate reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labelloop import state, storage
from labelloop.errors import InputError
from labelloop.gates import GatePolicy, closed_reason, decide
from labelloop.schemas import ML_USE_KEY, Item, TaskType
from labelloop.stages.create_dataset import create_dataset
from labelloop.stages.generate_import_file import generate_import_file, read_import_file
from labelloop.stages.train_model import train_model


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_import_file_lists_images_and_writes_vertex_records(digits_sample, tmp_path: Path) -> None:
    out, rejects = tmp_path / "import.jsonl", tmp_path / "rejects.jsonl"
    result = generate_import_file(
        source_uri=digits_sample.source_uri,
        task_type="image_classification",
        state_uri=str(tmp_path / "state"),
        output_uri=str(out),
        rejects_uri=str(rejects),
    )
    records = _lines(out)
    assert result.listed == result.new_items == len(records) == digits_sample.count
    assert result.already_imported == 0
    first = records[0]
    assert first["imageGcsUri"].endswith("digit-00000.png")
    assert first["dataItemResourceLabels"][ML_USE_KEY] in {"training", "validation", "test"}
    # The truth file sits outside the listed prefix.
    assert not any("truth" in r["imageGcsUri"] for r in records)


def test_import_file_skips_items_queued_or_labeled_not_merely_selected(
    digits_sample, tmp_path: Path
) -> None:
    """Creating a dataset consumes nothing; queuing the items at a provider does."""
    import json as _json

    from labelloop.stages.run_labeling_job import run_labeling_job

    state_uri = str(tmp_path / "state")
    first = tmp_path / "first.jsonl"
    generate_import_file(
        source_uri=digits_sample.source_uri,
        task_type="image_classification",
        state_uri=state_uri,
        output_uri=str(first),
        rejects_uri=str(tmp_path / "r1.jsonl"),
    )
    selected = tmp_path / "selected.jsonl"
    selected.write_text("".join(line + "\n" for line in first.read_text().splitlines()[:25]))
    create_dataset(
        import_uri=str(selected),
        task_type="image_classification",
        display_name="t",
        state_uri=state_uri,
        manifest_uri=str(tmp_path / "manifest.json"),
        items_uri=str(tmp_path / "items.jsonl"),
        rejects_uri=str(tmp_path / "r2.jsonl"),
    )
    assert state.imported_ids(state_uri) == set()
    run_labeling_job(
        items_uri=str(tmp_path / "items.jsonl"),
        task_type="image_classification",
        labels="0,1,2,3,4,5,6,7,8,9",
        provider="simulated",
        provider_options=_json.dumps({"truth_uri": digits_sample.truth_uri, "pace": 0.5}),
        labelers_per_item=3,
        annotations_uri=str(tmp_path / "ann.jsonl"),
        job_uri=str(tmp_path / "job.json"),
        rejects_uri=str(tmp_path / "r4.jsonl"),
        state_uri=state_uri,
        run_id="run-1",
    )
    result = generate_import_file(
        source_uri=digits_sample.source_uri,
        task_type="image_classification",
        state_uri=state_uri,
        output_uri=str(tmp_path / "second.jsonl"),
        rejects_uri=str(tmp_path / "r3.jsonl"),
    )
    assert result.already_imported == 25
    assert result.new_items == digits_sample.count - 25
    assert len(state.imported_ids(state_uri)) == 25


def test_text_source_reads_txt_files_and_jsonl_lines_and_reports_bad_lines(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a whole file")
    (src / "image.png").write_bytes(b"not kept for text tasks")
    (src / "lines.jsonl").write_text('{"text": "one"}\nnot json\n{"text": ""}\n{"text": "two"}\n')
    out, rejects = tmp_path / "import.jsonl", tmp_path / "rejects.jsonl"
    result = generate_import_file(
        source_uri=str(src),
        task_type="text_classification",
        state_uri="",
        output_uri=str(out),
        rejects_uri=str(rejects),
    )
    records = _lines(out)
    assert result.new_items == 3
    assert {r.get("textContent") for r in records} == {None, "one", "two"}
    assert any(r.get("textGcsUri", "").endswith("a.txt") for r in records)
    bad = _lines(rejects)
    assert result.bad_records == 2
    assert [(b["line"], b["field"]) for b in bad] == [(2, "*"), (3, "text")]
    assert all(b["source"].endswith("lines.jsonl") for b in bad)


def test_missing_source_prefix_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="source directory does not exist") as info:
        generate_import_file(
            source_uri=str(tmp_path / "nope"),
            task_type="image_classification",
            state_uri="",
            output_uri=str(tmp_path / "o.jsonl"),
            rejects_uri=str(tmp_path / "r.jsonl"),
        )
    assert info.value.field == "source_uri"


def test_empty_prefix_gives_an_empty_import_file(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = generate_import_file(
        source_uri=str(tmp_path / "empty"),
        task_type="image_classification",
        state_uri="",
        output_uri=str(tmp_path / "o.jsonl"),
        rejects_uri=str(tmp_path / "r.jsonl"),
    )
    assert result.new_items == 0
    assert (tmp_path / "o.jsonl").read_text() == ""


def test_create_dataset_validates_and_writes_manifest(tmp_path: Path) -> None:
    selected = tmp_path / "selected.jsonl"
    selected.write_text(
        '{"textContent": "hello"}\n{"nothing": 1}\n{"textGcsUri": "gs://b/x.txt"}\n'
    )
    result = create_dataset(
        import_uri=str(selected),
        task_type="text_classification",
        display_name="ds",
        state_uri="",
        manifest_uri=str(tmp_path / "manifest.json"),
        items_uri=str(tmp_path / "items.jsonl"),
        rejects_uri=str(tmp_path / "rejects.jsonl"),
    )
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert result.items == 2
    assert result.bad_records == 1
    assert manifest["import_schema_uri"].endswith(
        "text_classification_single_label_io_format_1.0.0.yaml"
    )
    assert manifest["items"] == 2
    assert _lines(tmp_path / "rejects.jsonl")[0]["line"] == 2
    items, bad = read_import_file(str(tmp_path / "items.jsonl"))
    assert [i.text for i in items] == ["hello", None]
    assert not bad


def _consolidated(path: Path, truth: dict[str, str], *, flip: int = 0) -> None:
    rows = []
    for i, (item, label) in enumerate(sorted(truth.items())):
        wrong = str((int(label) + 1) % 10)
        rows.append(
            {
                "item": item,
                "label": wrong if i < flip else label,
                "confidence": 1.0,
                "trainable": True,
            }
        )
    storage.write_jsonl(str(path), rows)


def test_train_model_learns_digits_and_saves_for_next_round(digits_sample, tmp_path: Path) -> None:
    from labelloop.sample_data import read_truth
    from labelloop.training.model import LocalModel

    truth = read_truth(digits_sample.truth_uri)
    consolidated = tmp_path / "consolidated.jsonl"
    _consolidated(consolidated, truth)
    items = tmp_path / "items.jsonl"
    storage.write_jsonl(
        str(items),
        (Item(id=k, uri=k).to_import_record(TaskType.IMAGE_CLASSIFICATION) for k in truth),
    )
    state_uri = str(tmp_path / "state")
    result = train_model(
        consolidated_uri=str(consolidated),
        items_uri=str(items),
        task_type="image_classification",
        labels="0,1,2,3,4,5,6,7,8,9",
        state_uri=state_uri,
        holdout_fraction=0.25,
        seed=0,
        model_uri=str(tmp_path / "model"),
    )
    assert result.train_items + result.test_items == len(truth)
    assert result.accuracy > 0.85
    assert sum(map(sum, result.confusion_matrix)) == result.test_items
    model = LocalModel.load(state.path(state_uri, state.MODELS_LATEST))
    proba = model.predict_proba([Item(id=k, uri=k) for k in list(truth)[:5]])
    assert proba.shape == (5, 10)
    assert proba.sum(axis=1) == pytest.approx(1.0)


def test_train_model_uses_only_trainable_rows(digits_sample, tmp_path: Path) -> None:
    from labelloop.sample_data import read_truth

    truth = read_truth(digits_sample.truth_uri)
    rows = [
        {"item": k, "label": v, "confidence": 1.0, "trainable": i % 2 == 0}
        for i, (k, v) in enumerate(sorted(truth.items()))
    ]
    storage.write_jsonl(str(tmp_path / "c.jsonl"), rows)
    (tmp_path / "items.jsonl").write_text("")
    result = train_model(
        consolidated_uri=str(tmp_path / "c.jsonl"),
        items_uri=str(tmp_path / "items.jsonl"),
        task_type="image_classification",
        labels="0,1,2,3,4,5,6,7,8,9",
        state_uri="",
        holdout_fraction=0.2,
        seed=0,
        model_uri=str(tmp_path / "model"),
    )
    assert result.train_items + result.test_items == sum(r["trainable"] for r in rows)


def test_train_model_needs_two_classes(tmp_path: Path) -> None:
    storage.write_jsonl(
        str(tmp_path / "c.jsonl"),
        [{"item": "a", "label": "1", "confidence": 1.0, "trainable": True}],
    )
    (tmp_path / "items.jsonl").write_text("")
    with pytest.raises(InputError, match="at least two classes"):
        train_model(
            consolidated_uri=str(tmp_path / "c.jsonl"),
            items_uri=str(tmp_path / "items.jsonl"),
            task_type="image_classification",
            labels="0,1",
            state_uri="",
            holdout_fraction=0.2,
            seed=0,
            model_uri=str(tmp_path / "model"),
        )


def test_closed_gate_reasons_read_like_sentences() -> None:
    assert closed_reason(gate="label_count", value=312, threshold=500, metric="label_count") == (
        "312 of 500 labels"
    )
    assert closed_reason(
        gate="agreement", value=0.41, threshold=0.6, metric="krippendorff_alpha"
    ) == ("krippendorff_alpha 0.410 < 0.600")
    decision = decide(
        label_count=0,
        agreement=0.9,
        metric="krippendorff_alpha",
        policy=GatePolicy(min_labeled_count=10, min_agreement=0.6),
    )
    assert json.loads(decision.outcome()) == {
        "trained": False,
        "gate": "label_count",
        "rule": "label_count",
        "reason": "0 of 10 labels",
        "value": 0,
        "threshold": 10,
        "metric": "label_count",
    }


def test_read_jsonl_objects_reports_bad_lines_with_numbers(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"item": "a", "label": "1"}\n\nnot json\n{"label": "2"}\n[1]\n{"item": "b"}\n')
    rows, bad = storage.read_jsonl_objects(str(path))
    assert [(n, r["item"]) for n, r in rows] == [(1, "a"), (6, "b")]
    assert [(b.line, b.field, b.reason) for b in bad] == [
        (3, "*", "not valid JSON (Expecting value)"),
        (4, "item", "missing"),
        (5, "*", "expected a JSON object"),
    ]
    assert storage.read_jsonl_objects(str(tmp_path / "absent.jsonl")) == ([], [])
    # Without a required key: every object, with its line.
    rows, bad = storage.read_jsonl_objects(str(path), required=None)
    assert [n for n, _ in rows] == [1, 4, 6]
    assert [b.line for b in bad] == [3, 5]


def test_files_that_are_not_images_are_bad_records_at_import(digits_sample, tmp_path: Path) -> None:
    import shutil

    src = tmp_path / "src"
    shutil.copytree(digits_sample.source_uri, src)
    (src / "fake.png").write_text("this is not a png")
    (src / "empty.jpg").write_bytes(b"")
    out = tmp_path / "import.jsonl"
    rejects = tmp_path / "rejects.jsonl"
    result = generate_import_file(
        source_uri=str(src),
        task_type="image_classification",
        state_uri=str(tmp_path / "state"),
        output_uri=str(out),
        rejects_uri=str(rejects),
    )
    assert result.bad_records == 2
    listed = out.read_text()
    assert "fake.png" not in listed
    assert "empty.jpg" not in listed
    reasons = {json.loads(line)["source"].rsplit("/", 1)[-1]: json.loads(line)["reason"]
               for line in rejects.read_text().splitlines()}  # fmt: skip
    assert reasons == {"fake.png": "not an image file (its content is no image format PIL reads)",
                       "empty.jpg": "empty file"}  # fmt: skip
