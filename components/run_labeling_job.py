"""Stage 4 component: the labeling job (several labelers per item) through a provider."""

from typing import NamedTuple

from kfp import dsl

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def run_labeling_job(
    dataset: dsl.Input[dsl.Dataset],
    task_type: str,
    labels: str,
    provider: str,
    provider_options: str,
    labelers_per_item: int,
    budget: str,
    state_uri: str,
    run_id: str,
    annotations: dsl.Output[dsl.Dataset],
    job: dsl.Output[dsl.Artifact],
    rejects: dsl.Output[dsl.Dataset],
) -> NamedTuple(
    "LabelingOutputs",
    [
        ("labeled_items", int),
        ("annotation_count", int),
        ("annotator_count", int),
        ("cost_usd", float),
        ("queued", int),
        ("open_jobs", int),
    ],
):
    """Queue the dataset's items at the labeling provider (in the open job where it can) and
    hand on every label collected so far.

    Args:
        dataset: The items to label (import JSONL).
        task_type: A labelloop task type.
        labels: The label set, comma-separated.
        provider: `simulated`, `label_studio`, `gemini`, `gemini_then_human` or `import`.
        provider_options: Provider options as JSON (never secrets).
        labelers_per_item: Different annotators per item.
        budget: Rates as JSON (they price the job).
        state_uri: The loop's state (the item ledger).
        run_id: This run's id.

    Returns:
        annotations: Long-format `(item, annotator, label)` rows: every annotation so far,
            with provenance (provider, job, round) (Dataset artifact, JSONL).
        job: The provider job record: provider, deterministic key, external id, progress and
            the ledger's counts (JSON artifact).
        rejects: Provider records that could not be used (Dataset artifact, JSONL).
        labeled_items: Items with at least one annotation so far.
        annotation_count: Their annotations.
        annotator_count: Distinct annotators.
        cost_usd: What the job cost, people and model (see the job record's `cost`).
        queued: Items waiting in open jobs (people label them between runs).
        open_jobs: Open labeling jobs.
    """
    from labelloop.failures import recorded
    from labelloop.stages.run_labeling_job import run_labeling_job as step

    with recorded(annotations.uri):
        result = step(
            items_uri=dataset.path,
            task_type=task_type,
            labels=labels,
            provider=provider,
            provider_options=provider_options,
            labelers_per_item=labelers_per_item,
            annotations_uri=annotations.path,
            job_uri=job.path,
            rejects_uri=rejects.path,
            budget=budget,
            state_uri=state_uri,
            run_id=run_id,
        )
    annotations.metadata["rows"] = result.annotations
    job.metadata["job_key"] = result.job_key
    # False when the provider was still labeling at the deadline: the count gate decides.
    job.metadata["complete"] = result.complete
    return (
        result.labeled_items,
        result.annotations,
        result.annotators,
        result.cost_usd,
        result.queued,
        result.open_jobs,
    )
