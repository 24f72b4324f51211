"""Stage 1 component: list the source and write the Vertex import file."""

from typing import NamedTuple

from kfp import dsl

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def generate_import_file(
    source_uri: str,
    task_type: str,
    state_uri: str,
    import_file: dsl.Output[dsl.Dataset],
    rejects: dsl.Output[dsl.Dataset],
) -> NamedTuple(
    "ImportOutputs",
    [("listed", int), ("new_items", int), ("already_imported", int), ("bad_records", int)],
):
    """List `source_uri` and write a Vertex AI import JSONL of the items not imported before.

    Args:
        source_uri: `gs://bucket/prefix` or a local directory.
        task_type: A labelloop task type, e.g. `image_classification`.
        state_uri: The loop's state folder.

    Returns:
        import_file: The Vertex import JSONL (Dataset artifact; metadata `items`).
        rejects: Lines that could not be read (Dataset artifact, JSONL).
        listed: Files or text lines found under the source.
        new_items: Items written to the import file.
        already_imported: Items skipped because an earlier round imported them.
        bad_records: Count of rejected lines.
    """
    from labelloop.failures import recorded
    from labelloop.stages.generate_import_file import generate_import_file as step

    with recorded(import_file.uri):
        result = step(
            source_uri=source_uri,
            task_type=task_type,
            state_uri=state_uri,
            output_uri=import_file.path,
            rejects_uri=rejects.path,
        )
    import_file.metadata["items"] = result.new_items
    rejects.metadata["count"] = result.bad_records
    return (result.listed, result.new_items, result.already_imported, result.bad_records)
