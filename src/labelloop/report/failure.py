"""The failure report: one small page saying which stage failed, why, and what was left as it was.

Rendered from `templates/failure.html.j2` with the run report's template environment
(autoescaped: messages quote user data).
"""

from __future__ import annotations

from collections.abc import Sequence

from labelloop.failures import Failure
from labelloop.report.page import environment


def failure_page(
    *,
    run_id: str,
    state: str,
    time: str,
    failures: Sequence[Failure],
    error_message: str,
    untouched: Sequence[str],
    where: str,
) -> str:
    """The HTML of the failure report."""
    return (
        environment()
        .get_template("failure.html.j2")
        .render(
            run_id=run_id,
            state=state,
            time=time,
            stage=failures[0].stage if failures else "",
            failures=[
                {
                    "stage": f.stage,
                    "headline": f.headline(),
                    "error_type": f.error_type,
                    "traceback": f.traceback,
                }
                for f in failures
            ],
            error_message=error_message,
            untouched=list(untouched),
            where=where,
        )
    )
