"""Stage 0 component: reconcile the ledger with the labeling providers before anything else."""

from typing import NamedTuple

from kfp import dsl

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def reconcile_jobs(
    state_uri: str,
    provider: str,
    provider_options: str,
    max_job_age_hours: float,
    run_id: str,
    summary: dsl.Output[dsl.Artifact],
    rejects: dsl.Output[dsl.Dataset],
) -> NamedTuple(
    "ReconcileOutputs",
    [
        ("open_jobs", int),
        ("collected", int),
        ("returned", int),
        ("unreachable", int),
        ("queued", int),
    ],
):
    """Collect from every open labeling job; close finished, cancelled and expired ones.

    Takes the state's lease for this run (a second run on the same state stops here, naming
    the run that holds it).

    Args:
        state_uri: The loop's state (the item ledger).
        provider: This run's labeling provider.
        provider_options: Its options as JSON (never secrets).
        max_job_age_hours: Jobs open longer are closed; unanswered items go back (0 = never).
        run_id: This run's id.

    Returns:
        summary: What was collected, closed and returned; unreachable providers (JSON artifact).
        rejects: Provider records that could not be used (Dataset artifact, JSONL).
        open_jobs: Jobs still open.
        collected: Annotations collected now.
        returned: Items returned to the pool now.
        unreachable: Open jobs whose provider could not be reached (they stay open).
        queued: Items queued in open jobs.
    """
    from labelloop.failures import recorded
    from labelloop.stages.reconcile import reconcile as step

    with recorded(summary.uri):
        result = step(
            state_uri=state_uri,
            provider=provider,
            provider_options=provider_options,
            max_job_age_hours=max_job_age_hours,
            run_id=run_id,
            summary_uri=summary.path,
            rejects_uri=rejects.path,
        )
    return (
        result.open_jobs,
        result.collected,
        result.returned,
        result.unreachable,
        result.queued,
    )
