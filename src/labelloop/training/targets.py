"""Which target trains which task type: the one table the config check, the training step and
the Vertex pipeline's branch plan all read.

- Single-label classification (image or text): the portable pipeline trains it with our
  scikit-learn trainer (`stages/train_model.py`); on Vertex AI images train with AutoML and
  text with the same trainer run as a custom job.
- Multi-label image classification and image object detection: AutoML on Vertex AI only.
- Text entity extraction: no target trains it (AutoML Text is retired), so both refuse it.
"""

from __future__ import annotations

from labelloop.schemas import Shape, TaskType

PORTABLE = "portable"
VERTEX = "vertex"
TARGETS = (PORTABLE, VERTEX)
# What our own trainer (scikit-learn on image pixels or text n-grams) learns: one label per item.
LOCAL_SHAPES = frozenset({Shape.SINGLE})


def trainer(task: TaskType, *, target: str) -> str | None:
    """The trainer that trains `task` on `target`, or None when that target cannot.

    Vertex trainers are the branch names of `vertex_task_plan`: `automl_classification`,
    `automl_object_detection` or `custom_job` (our trainer as a Vertex custom job).

    Raises:
        ValueError: An unknown target.
    """
    if target == PORTABLE:
        return "scikit-learn" if task.shape in LOCAL_SHAPES else None
    if target == VERTEX:
        if task.is_image and task.is_classification:
            return "automl_classification"
        if task.is_image and task.shape is Shape.BOXES:
            return "automl_object_detection"
        return "custom_job" if task.shape in LOCAL_SHAPES else None
    raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")


def untrainable_reason(task: TaskType, *, target: str) -> str | None:
    """Why `target` cannot train `task` and where it can; None when `target` trains it."""
    if trainer(task, target=target) is not None:
        return None
    where = [t for t in TARGETS if trainer(task, target=t) is not None]
    if where:
        elsewhere = f"; the {' or '.join(where)} pipeline trains it"
    else:
        elsewhere = "; no target trains it yet"
    return (
        f"the {target} pipeline cannot train {task.value} (it trains {trained(target)}){elsewhere}"
    )


def trained(target: str) -> str:
    """The task types `target` trains, comma-separated."""
    return ", ".join(t.value for t in TaskType if trainer(t, target=target) is not None)
