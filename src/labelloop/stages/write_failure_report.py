"""The exit handler's step: on a failed round, a report of which stage failed, why, and what the
loop's state kept as it was.

It runs after every round (KFP's `dsl.ExitHandler`, on kfp.local and Vertex AI alike). On
success it only notes that; on failure it reads the reasons the failed steps recorded (see
`labelloop.failures`) from the run folder, writes the page to its artifact and, when the state
folder is known, a copy to `failures/<run_id>.html` there, beside a JSON record.

Whatever the outcome it gives back the state's lease if this run still holds it (a failed or
cancelled round never reaches the report step that releases it on success), so the next run
does not wait for the lease to expire.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re

from labelloop import lease, state, storage
from labelloop.failures import left_untouched, read_failures, run_folder
from labelloop.report.failure import failure_page

log = logging.getLogger(__name__)

FAILED_ROUNDS = "failures"
SUCCEEDED = "SUCCEEDED"


@dataclasses.dataclass(frozen=True)
class FailureReportResult:
    """What the step found: the final state, the failed stage ("" if none) and the page's URIs."""

    state: str
    stage: str
    report_uri: str
    state_copy_uri: str


_JOB = re.compile(r"^projects/([^/]+)/locations/([^/]+)/pipelineJobs/([^/]+)$")


def _where(pipeline_job: str, run_dir: str) -> str:
    """Where the full logs are: the run's Vertex AI console page, or the local run's log."""
    match = _JOB.match(pipeline_job)
    if match:
        project, location, job = match.groups()
        url = (
            f"https://console.cloud.google.com/vertex-ai/locations/{location}/pipelines/runs/"
            f"{job}?project={project}"
        )
        return (
            f"Each step's full log: open the run in the Vertex AI console ({url}), then the step."
        )
    return (
        "Each step's full log is in the run's log (kfp.log locally); "
        f"its outputs are under {run_dir}."
    )


def write_failure_report(
    *,
    final_state: str,
    error_message: str,
    run_id: str,
    state_uri: str,
    report_uri: str,
    pipeline_job: str = "",
) -> FailureReportResult:
    """Write the failure report of a round that did not succeed.

    Args:
        final_state: The round's final state (`SUCCEEDED`, `FAILED`, `CANCELLED`, ...).
        error_message: What the orchestrator said about the failure.
        run_id: The pipeline job's id.
        state_uri: The loop's state folder ("" to write no copy there).
        report_uri: Where the page goes (this step's HTML artifact).
        pipeline_job: The run's resource name on Vertex AI (the page links its console page).

    Returns:
        The final state, the first failed stage and where the page was written.
    """
    if state_uri and lease.release(state_uri, lease.Holder.here(run_id)):
        log.info("lease on %s released by the %s run %s", state_uri, final_state, run_id)
    if final_state == SUCCEEDED:
        storage.write_text(report_uri, "<!doctype html><p>The round succeeded.</p>\n")
        return FailureReportResult(final_state, "", report_uri, "")
    run_dir = run_folder(report_uri)
    failures = read_failures(run_dir)
    stage = failures[0].stage if failures else ""
    untouched = (
        left_untouched(stage)
        if stage
        else ["the step that failed recorded no reason: check the run's logs for what ran"]
    )
    when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    page = failure_page(
        run_id=run_id,
        state=final_state,
        time=when,
        failures=failures,
        error_message=error_message,
        untouched=untouched,
        where=_where(pipeline_job, run_dir),
    )
    storage.write_text(report_uri, page)
    copy = ""
    if state_uri:
        copy = state.path(state_uri, FAILED_ROUNDS, f"{run_id}.html")
        storage.write_text(copy, page)
        record = {
            "run_id": run_id,
            "state": final_state,
            "stage": stage,
            "reason": failures[0].headline() if failures else error_message,
            "untouched": untouched,
            "time": when,
        }
        storage.write_text(
            state.path(state_uri, FAILED_ROUNDS, f"{run_id}.json"),
            json.dumps(record, indent=2, sort_keys=True),
        )
    log.error("round %s %s%s", run_id, final_state, f" in {stage}" if stage else "")
    return FailureReportResult(final_state, stage, report_uri, copy)
