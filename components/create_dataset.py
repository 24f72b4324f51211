"""Stage 3 component (local target): register the selected items as a dataset."""

from typing import NamedTuple

from kfp import dsl

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def create_dataset(
    selected: dsl.Input[dsl.Dataset],
    task_type: str,
    display_name: str,
    state_uri: str,
    dataset: dsl.Output[dsl.Dataset],
    manifest: dsl.Output[dsl.Artifact],
    rejects: dsl.Output[dsl.Dataset],
) -> NamedTuple("DatasetOutputs", [("dataset_items", int), ("dataset_key", str)]):
    """Validate the selected items and write the dataset (the local stand-in for Vertex datasets).

    Args:
        selected: The items to label (Vertex import JSONL).
        task_type: A labelloop task type.
        display_name: Dataset display name.
        state_uri: The loop's state (the items are recorded as imported).

    Returns:
        dataset: The validated items (Dataset artifact, import JSONL; metadata `import_schema_uri`).
        manifest: Dataset facts: schema, counts, ml_use split (JSON artifact).
        rejects: Lines that failed validation (Dataset artifact, JSONL).
        dataset_items: Items in the dataset.
        dataset_key: Deterministic key of the item set.
    """
    from labelloop.failures import recorded
    from labelloop.schemas import TaskType
    from labelloop.stages.create_dataset import create_dataset as step

    with recorded(dataset.uri):
        result = step(
            import_uri=selected.path,
            task_type=task_type,
            display_name=display_name,
            state_uri=state_uri,
            manifest_uri=manifest.path,
            items_uri=dataset.path,
            rejects_uri=rejects.path,
        )
    dataset.metadata["import_schema_uri"] = TaskType(task_type).import_schema_uri
    dataset.metadata["items"] = result.items
    return (result.items, result.dataset_key)
