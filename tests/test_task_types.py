"""Task types: each is a modality and an annotation shape (`TaskType` in schemas.py), every
format dispatches on those, and each target trains exactly the task types the docs say."""

from __future__ import annotations

from pathlib import Path

import pytest

from labelloop.config import load_config
from labelloop.errors import ConfigError, InputError
from labelloop.providers.label_studio import _task_from_config
from labelloop.providers.label_studio_format import from_result, labeling_config, to_result
from labelloop.schemas import Annotation, Box, Modality, Shape, Span, TaskType
from labelloop.training.targets import PORTABLE, TARGETS, VERTEX, trainer
from tests.conftest import ROOT

LABELS = ("cat", "dog")
# One valid answer per shape.
ANSWERS = {
    Shape.SINGLE: "cat",
    Shape.MULTI: frozenset({"cat", "dog"}),
    Shape.BOXES: (Box(0.1, 0.2, 0.5, 0.6, "dog"),),
    Shape.SPANS: (Span(0, 3, "cat"),),
}
# Which target trains which task type: the table in docs/vertex.md and the README.
TRAINED = {
    TaskType.IMAGE_CLASSIFICATION: {PORTABLE: "scikit-learn", VERTEX: "automl_classification"},
    TaskType.IMAGE_MULTILABEL_CLASSIFICATION: {PORTABLE: None, VERTEX: "automl_classification"},
    TaskType.IMAGE_OBJECT_DETECTION: {PORTABLE: None, VERTEX: "automl_object_detection"},
    TaskType.TEXT_CLASSIFICATION: {PORTABLE: "scikit-learn", VERTEX: "custom_job"},
    TaskType.TEXT_ENTITY_EXTRACTION: {PORTABLE: None, VERTEX: None},
}


def test_each_task_type_is_one_modality_and_shape() -> None:
    pairs = [(t.modality, t.shape) for t in TaskType]
    assert len(set(pairs)) == len(pairs)
    for task in TaskType:
        assert TaskType.of(task.modality, task.shape) is task
        assert task.import_schema_uri.endswith(task.vertex_schema)
        assert task.value.startswith(task.modality.value)
    with pytest.raises(ValueError, match="no text task type with boxes"):
        TaskType.of(Modality.TEXT, Shape.BOXES)


@pytest.mark.parametrize("task", list(TaskType), ids=str)
def test_label_studio_config_and_results_follow_the_shape(task: TaskType) -> None:
    config = labeling_config(task, LABELS)
    # The task type read back from the project's config is the one it was written for.
    assert _task_from_config(config) == (task, LABELS)
    answer = ANSWERS[task.shape]
    assert from_result(task, to_result(task, answer, text="cat dog"), frozenset(LABELS)) == answer


@pytest.mark.parametrize("task", list(TaskType), ids=str)
def test_annotation_rows_round_trip_through_the_reader(task: TaskType, tmp_path: Path) -> None:
    import json

    from labelloop.annotations import read_annotations

    row = Annotation("item-1", "ann-1", ANSWERS[task.shape]).to_json(task)
    path = tmp_path / "annotations.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    read = read_annotations(str(path), task_type=task, labels=list(LABELS))
    assert read.bad == []
    assert [a.value for a in read.annotations] == [ANSWERS[task.shape]]


@pytest.mark.parametrize("task", list(TaskType), ids=str)
@pytest.mark.parametrize("target", TARGETS)
def test_config_refuses_a_task_type_the_target_cannot_train(
    task: TaskType, target: str, tmp_path: Path
) -> None:
    text = (
        f"pipeline:\n  source_uri: gs://bkt/raw\n  task_type: {task.value}\n  labels: [a, b]\n"
        "  provider_options: {truth_uri: gs://bkt/truth.csv}\n"
    )
    path = str(tmp_path / "c.yaml")
    assert trainer(task, target=target) == TRAINED[task][target]
    if TRAINED[task][target] is not None:
        assert load_config(path, text=text, target=target).pipeline.task_type == task.value
        return
    with pytest.raises(ConfigError) as caught:
        load_config(path, text=text, target=target)
    message = str(caught.value)
    assert "line 3" in message or ":3:" in message
    assert "pipeline.task_type" in message
    assert f"cannot train {task.value}" in message
    # Without a target (a config only read, e.g. for the report) nothing is refused.
    assert load_config(path, text=text).pipeline.task_type == task.value


def test_vertex_plan_stops_a_task_type_nothing_trains() -> None:
    from components.vertex import vertex_task_plan

    plan = vertex_task_plan.python_func
    assert plan(task_type="image_object_detection")[0] == "automl_object_detection"
    with pytest.raises(InputError, match="cannot train text_entity_extraction"):
        plan(task_type="text_entity_extraction")


def test_the_training_stage_refuses_what_it_cannot_learn(tmp_path: Path) -> None:
    from labelloop.stages.train_model import train_model

    with pytest.raises(InputError, match="not image_multilabel_classification"):
        train_model(
            consolidated_uri=str(tmp_path / "none.jsonl"),
            items_uri=str(tmp_path / "none.jsonl"),
            task_type="image_multilabel_classification",
            labels="a,b",
            state_uri=str(tmp_path / "state"),
            holdout_fraction=0.2,
            seed=0,
            model_uri=str(tmp_path / "model"),
        )


def test_docs_say_which_target_trains_which_task_type() -> None:
    text = (ROOT / "docs" / "vertex.md").read_text(encoding="utf-8")
    section = text.split("## Which target trains which task type", 1)[1].split("\n## ", 1)[0]
    rows = {
        line.split("|")[1].strip(" `"): [c.strip() for c in line.split("|")[2:4]]
        for line in section.splitlines()
        if line.startswith("| `")
    }
    assert set(rows) == {t.value for t in TaskType}
    for task, cells in rows.items():
        for cell, target in zip(cells, (PORTABLE, VERTEX), strict=True):
            trains = TRAINED[TaskType(task)][target] is not None
            assert cell.startswith("refused") != trains, (task, target, cell)
