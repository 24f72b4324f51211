"""Small components the Vertex AI target needs around Google's GCPC ops.

They turn our artifacts into the `gs://` URIs and files GCPC ops take, decide which training
branch a task type runs, and carry the Vertex model from one round to the next. Each is a thin
wrapper over `labelloop.vertex_labels` or the stage functions.
"""

from typing import NamedTuple

from kfp import dsl

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def vertex_task_plan(
    task_type: str,
) -> NamedTuple("TaskPlan", [("trainer", str), ("import_schema_uri", str), ("multi_label", bool)]):
    """Which training branch a task type takes on Vertex AI, and its dataset import schema.

    Args:
        task_type: A labelloop task type.

    Returns:
        trainer: `automl_classification`, `automl_object_detection` or `custom_job`.
        import_schema_uri: The Vertex AI import schema of the task type.
        multi_label: Whether AutoML trains a multi-label classifier.
    """
    from labelloop.errors import InputError
    from labelloop.schemas import TaskType
    from labelloop.training.targets import VERTEX, trainer, untrainable_reason

    task = TaskType.parse(task_type)
    branch = trainer(task, target=VERTEX)
    if branch is None:
        # The first step of the run: a task type nothing trains stops it before labeling.
        raise InputError(str(untrainable_reason(task, target=VERTEX)), field="task_type")
    return (branch, task.import_schema_uri, task.multi_label)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def latest_vertex_model(state_uri: str, model_resource_name: str, location: str) -> NamedTuple(
    "PriorModel", [("resource_name", str), ("artifact_uri", str)]
):
    """The Vertex model to score the pool with: the given one, else the last round's, else none.

    Args:
        state_uri: The loop's state (holds the last trained Vertex model's name).
        model_resource_name: An existing model to use instead; empty = the last round's.
        location: The model's region.

    Returns:
        resource_name: `projects/.../models/ID`, empty when there is no model yet.
        artifact_uri: The model's REST URL (what `dsl.importer` takes for a VertexModel).
    """
    from labelloop.vertex_labels import latest_vertex_model as step

    name, uri = step(state_uri, override=model_resource_name, location=location)
    return (name, uri)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def batch_predict_instances(
    pool: dsl.Input[dsl.Dataset],
    instances: dsl.Output[dsl.Dataset],
) -> NamedTuple("Instances", [("source_uris", list), ("output_prefix", str), ("count", int)]):
    """Write the pool as `ModelBatchPredictOp` JSONL instances.

    Args:
        pool: The import file of candidate items.

    Returns:
        instances: `{"content": gs://..., "mimeType": ...}` per image (Dataset artifact).
        source_uris: `[instances.uri]`, the op's `gcs_source_uris`.
        output_prefix: A folder beside the instances for the predictions.
        count: Instances written.
    """
    from labelloop.vertex_labels import write_batch_prediction_instances

    count, _ = write_batch_prediction_instances(import_uri=pool.path, output_uri=instances.path)
    instances.metadata["count"] = count
    return ([instances.uri], instances.uri.rsplit("/", 1)[0] + "/predictions", count)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def artifact_uri(artifact: dsl.Input[dsl.Artifact]) -> str:
    """An artifact's URI (`gs://...` on Vertex AI), e.g. a batch prediction output folder.

    Args:
        artifact: Any artifact.

    Returns:
        Output: Its URI.
    """
    return artifact.uri


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def no_predictions() -> str:
    """The predictions URI of a round without a Vertex model: empty (selection falls back).

    Returns:
        Output: An empty string.
    """
    return ""


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def labeled_import_file(
    consolidated: dsl.Input[dsl.Dataset],
    dataset: dsl.Input[dsl.Dataset],
    task_type: str,
    state_uri: str,
    labeled: dsl.Output[dsl.Dataset],
    rejects: dsl.Output[dsl.Dataset],
) -> NamedTuple("LabeledImport", [("gcs_uri", str), ("items", int), ("bad_records", int)]):
    """Write every trainable label so far as a Vertex AI labeled import file.

    Args:
        consolidated: This round's consolidated labels.
        dataset: This round's items (inline texts).
        task_type: A labelloop task type.
        state_uri: The loop's state (earlier rounds' labels).

    Returns:
        labeled: The labeled import JSONL (Dataset artifact).
        rejects: Rows left out as malformed (Dataset artifact, JSONL).
        gcs_uri: `labeled.uri`, the `gcs_source` of the dataset create op.
        items: Labeled items written.
        bad_records: Rows rejected.
    """
    from labelloop.schemas import TaskType
    from labelloop.vertex_labels import write_labeled_import_file

    result = write_labeled_import_file(
        consolidated_uri=consolidated.path,
        items_uri=dataset.path,
        task_type=task_type,
        state_uri=state_uri,
        output_uri=labeled.path,
        rejects_uri=rejects.path,
    )
    labeled.metadata["items"] = result.items
    labeled.metadata["import_schema_uri"] = TaskType(task_type).import_schema_uri
    return (labeled.uri, result.items, result.bad_records)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def record_vertex_model(
    model: dsl.Input[dsl.Artifact], state_uri: str, task_type: str, train_items: int
) -> str:
    """Remember the AutoML model for the next round's pool scoring; return the round's outcome.

    Args:
        model: The trained `google.VertexModel` (metadata `resourceName`).
        state_uri: The loop's state.
        task_type: A labelloop task type.
        train_items: Labeled items the model was trained on.

    Returns:
        Output: JSON outcome `{trained, gate, reason, train_items, model}` for the report.
    """
    from labelloop.gates import trained_outcome
    from labelloop.vertex_labels import record_vertex_model as step

    name = str(model.metadata.get("resourceName", ""))
    step(state_uri, resource_name=name, uri=model.uri, task_type=task_type)
    return trained_outcome(
        reason=f"AutoML trained on {train_items} labeled items", train_items=train_items, model=name
    )
