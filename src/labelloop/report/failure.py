"""The failure report: one small page saying which stage failed, why, and what was left as it was.

Rendered from `templates/failure.html.j2` (autoescaped: messages quote user data).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jinja2

from labelloop.failures import Failure


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("labelloop.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


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
        _environment()
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
