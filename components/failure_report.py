"""Exit-handler component: the failure report, run after every round whatever its outcome."""

from typing import NamedTuple

from kfp import dsl

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def write_failure_report(
    status: dsl.PipelineTaskFinalStatus,
    state_uri: str,
    run_id: str,
    report: dsl.Output[dsl.HTML],
) -> NamedTuple("FailureOutputs", [("final_state", str), ("failed_stage", str)]):
    """Say which stage failed, why, and what was left untouched (nothing to say on success).

    Args:
        status: The round's final status (set by KFP's exit handler).
        state_uri: The loop's state; a copy of the page goes to `failures/<run_id>.html`.
        run_id: The pipeline job id.

    Returns:
        report: The failure report (HTML artifact; one line on success).
        final_state: The round's final state (`SUCCEEDED`, `FAILED`, ...).
        failed_stage: The first stage that recorded a failure ("" if none).
    """
    from labelloop.stages.write_failure_report import write_failure_report as step

    result = step(
        final_state=status.state,
        error_message=status.error_message,
        run_id=run_id,
        state_uri=state_uri,
        report_uri=report.uri,
        pipeline_job=status.pipeline_job_resource_name,
    )
    return (result.state, result.stage)
