"""Recurring runs: create the schedule named in the config, update it in place, or replace it.

Schedules are found by display name, so a second `schedule` never duplicates. The v1
`UpdateSchedule` call cannot unset a field that is set ("the non-empty fields cannot be unset"):
a change that resets one (a run limit back to 0 = none, queueing turned off, the network or the
service account removed) is made by deleting the schedule and creating it again, paused if it
was paused. Everything else is one PATCH with an update mask.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from labelloop.errors import ConfigError
from pipelines.vertex_api import VertexApiError, call_api
from pipelines.vertex_runs import Target, make_job, resolved_template

log = logging.getLogger(__name__)

# The fields `schedule` manages; everything else on the schedule is left alone.
UPDATE_MASK = (
    "cron",
    "max_concurrent_run_count",
    "allow_queueing",
    "max_run_count",
    "create_pipeline_job_request",
)


def find_schedule(target: Target, display_name: str) -> Any | None:
    """The schedule with this display name, or None. Several with the same name is an error."""
    from google.cloud import aiplatform

    vertex = target.vertex
    found = call_api(
        lambda: aiplatform.PipelineJobSchedule.list(
            filter=f'display_name="{display_name}"', project=vertex.project, location=vertex.region
        ),
        action="list schedules",
        vertex=vertex,
    )
    matches = [s for s in found if s.display_name == display_name]
    if len(matches) > 1:
        names = ", ".join(s.resource_name for s in matches)
        raise VertexApiError(
            f"{len(matches)} schedules are named {display_name!r} ({names}); delete all but one"
        )
    return matches[0] if matches else None


def unset_fields(old: Any, new: Any, paths: Sequence[str]) -> list[str]:
    """Top-level fields in `paths` (or fields inside them) set on `old` and empty on `new`.

    Singular sub-messages are compared field by field; scalars, lists, maps and Struct values
    (the pipeline spec) count as unset when `new` leaves them empty.
    """
    found: list[str] = []

    def walk(a: Any, b: Any, prefix: str, names: Sequence[str] | None = None) -> None:
        set_on_b = {field.name for field, _ in b.ListFields()}
        for field, value in a.ListFields():
            if names is not None and field.name not in names:
                continue
            name = prefix + field.name
            if field.name not in set_on_b:
                found.append(name)
            elif (
                field.message_type is not None
                and not field.is_repeated
                and field.message_type.full_name != "google.protobuf.Struct"
            ):
                walk(value, getattr(b, field.name), name + ".")

    walk(getattr(old, "_pb", old), getattr(new, "_pb", new), "", list(paths))
    return found


def apply_schedule(target: Target, *, template: str | None = None) -> tuple[str, str]:
    """Create the schedule, update the one with the same display name, or replace it.

    Returns:
        `(action, resource name)`: action is `created`, `updated` or `replaced` (deleted and
        created again because the change unsets a field the update call cannot unset).
    """
    from google.cloud import aiplatform
    from google.protobuf import field_mask_pb2

    vertex = target.vertex
    schedule = vertex.schedule
    with resolved_template(target, template=template) as (template_path, spec):
        job = make_job(
            target, template_path=template_path, spec=spec, display_name=schedule.display_name
        )

        def create() -> str:
            created = call_api(
                lambda: job.create_schedule(
                    cron=schedule.cron_with_time_zone,
                    display_name=schedule.display_name,
                    allow_queueing=schedule.allow_queueing,
                    max_run_count=schedule.max_run_count or None,
                    max_concurrent_run_count=schedule.max_concurrent_run_count,
                    service_account=vertex.service_account or None,
                    network=vertex.network or None,
                ),
                action="create the schedule",
                vertex=vertex,
            )
            return str(created.resource_name)

        existing = find_schedule(target, schedule.display_name)
        if existing is None:
            return "created", create()
        # Build the new run request the way create_schedule would, then patch it in.
        fresh = aiplatform.PipelineJobSchedule(pipeline_job=job, display_name=schedule.display_name)
        request = fresh._gca_resource.create_pipeline_job_request
        if vertex.service_account:
            request.pipeline_job.service_account = vertex.service_account
        if vertex.network:
            request.pipeline_job.network = vertex.network
        current = existing._gca_resource
        wanted = type(current)()
        type(current).copy_from(wanted, current)
        wanted.cron = schedule.cron_with_time_zone
        wanted.max_concurrent_run_count = schedule.max_concurrent_run_count
        wanted.allow_queueing = schedule.allow_queueing
        wanted.max_run_count = schedule.max_run_count
        wanted.create_pipeline_job_request = request
        resets = unset_fields(current, wanted, UPDATE_MASK)
        if resets:
            was_paused = current.state == current.State.PAUSED
            log.info(
                "schedule %s: %s cannot be unset by an update; deleting and creating it again",
                existing.resource_name,
                ", ".join(resets),
            )
            call_api(existing.delete, action="delete the schedule to replace it", vertex=vertex)
            name = create()
            if was_paused:
                replacement = aiplatform.PipelineJobSchedule.get(
                    name, project=vertex.project, location=vertex.region
                )
                call_api(replacement.pause, action="pause the new schedule", vertex=vertex)
            return "replaced", name
        call_api(
            lambda: existing.api_client.update_schedule(
                schedule=wanted, update_mask=field_mask_pb2.FieldMask(paths=list(UPDATE_MASK))
            ),
            action="update the schedule",
            vertex=vertex,
        )
        return "updated", str(existing.resource_name)


def change_schedule(target: Target, action: str) -> str:
    """Pause, resume or delete the schedule named in the config; return its resource name."""
    vertex = target.vertex
    name = vertex.schedule.display_name
    existing = find_schedule(target, name)
    if existing is None:
        raise VertexApiError(
            f"no schedule named {name!r} in project {vertex.project!r}, region {vertex.region!r}; "
            "create it with `python -m pipelines schedule`"
        )
    operations: dict[str, Callable[[], Any]] = {
        "pause": existing.pause,
        "resume": existing.resume,
        "delete": existing.delete,
    }
    if action not in operations:
        raise ConfigError(f"unknown schedule action {action!r}; expected pause, resume or delete")
    resource_name = str(existing.resource_name)
    call_api(operations[action], action=f"{action} the schedule", vertex=vertex)
    return resource_name
