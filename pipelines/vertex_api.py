"""The edge that talks to Google's APIs: client set-up, retries and actionable errors.

Transient errors (429, 500, 502, 503, 504, timeouts) are retried with exponential backoff;
the others (403, 404, ...) become a `VertexApiError` that says what to do. Runs, schedules and
templates (`vertex_runs`, `vertex_schedules`, `vertex_registry`) all call through `call_api`.
Nothing here reads the environment; `pipelines/__main__.py` does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from labelloop.errors import LabelloopError
from labelloop.vertex_config import VertexSettings

if TYPE_CHECKING:
    from google.auth.credentials import Credentials

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_ATTEMPTS = 4
# Seconds before the first retry; doubles each time (tests set it to 0).
RETRY_BASE_DELAY = 1.0


class VertexApiError(LabelloopError):
    """A Vertex AI / Cloud Storage / Artifact Registry call failed in a way a retry will not fix."""


def api_error(exc: Exception, *, action: str, vertex: VertexSettings) -> VertexApiError:
    """Turn a Google API exception into a message that says what to do."""
    from google.api_core import exceptions as gexc

    where = f"project {vertex.project!r}, region {vertex.region!r}"
    if isinstance(exc, gexc.Forbidden | gexc.PermissionDenied | gexc.Unauthorized):
        hint = (
            f"permission denied while trying to {action} ({where}). The caller needs "
            "roles/aiplatform.user on the project"
        )
        if vertex.service_account:
            hint += (
                f" and roles/iam.serviceAccountUser on {vertex.service_account}; that service "
                "account needs roles/aiplatform.user and roles/storage.objectAdmin on the "
                "pipeline root bucket"
            )
        hint += ". Check `gcloud auth list` and that the Vertex AI API is enabled (docs/vertex.md)."
        return VertexApiError(f"{hint} [{exc}]")
    if isinstance(exc, gexc.NotFound):
        return VertexApiError(
            f"not found while trying to {action} ({where}): check the project id and region, "
            "that aiplatform.googleapis.com is enabled, and that the resource or template "
            f"exists [{exc}]"
        )
    if isinstance(exc, gexc.TooManyRequests | gexc.ResourceExhausted):
        return VertexApiError(
            f"quota exceeded while trying to {action} ({where}) after {RETRY_ATTEMPTS} attempts: "
            "wait and retry, or request a quota increase under IAM & Admin > Quotas "
            f"(aiplatform.googleapis.com) [{exc}]"
        )
    if isinstance(exc, gexc.InvalidArgument | gexc.BadRequest | gexc.FailedPrecondition):
        return VertexApiError(f"Vertex AI rejected the request to {action}: {exc}")
    return VertexApiError(f"failed to {action} ({where}): {exc}")


def _is_transient(exc: Exception) -> bool:
    from google.api_core import exceptions as gexc

    return isinstance(
        exc,
        gexc.TooManyRequests
        | gexc.ResourceExhausted
        | gexc.InternalServerError
        | gexc.BadGateway
        | gexc.ServiceUnavailable
        | gexc.GatewayTimeout
        | gexc.DeadlineExceeded,
    )


def call_api(
    fn: Callable[[], T],
    *,
    action: str,
    vertex: VertexSettings,
    attempts: int = RETRY_ATTEMPTS,
    base_delay: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `fn`, retrying transient API errors with exponential backoff.

    Raises:
        VertexApiError: A permanent error, or a transient one that outlasted the retries.
    """
    from google.api_core import exceptions as gexc

    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except gexc.GoogleAPICallError as exc:
            if not _is_transient(exc) or attempt == attempts:
                raise api_error(exc, action=action, vertex=vertex) from exc
            delay = (RETRY_BASE_DELAY if base_delay is None else base_delay) * 2 ** (attempt - 1)
            log.warning("%s: %s; retry %d/%d in %.1fs", action, exc, attempt, attempts - 1, delay)
            sleep(delay)
    raise VertexApiError(f"failed to {action}")  # unreachable: the loop returns or raises


def init_vertex(
    vertex: VertexSettings,
    *,
    api_endpoint: str | None = None,
    credentials: Credentials | None = None,
) -> None:
    """Point the Vertex AI SDK at the project, region and (for tests) an API endpoint."""
    from google.cloud import aiplatform

    kwargs: dict[str, Any] = {
        "project": vertex.project,
        "location": vertex.region,
        "staging_bucket": vertex.pipeline_root,
    }
    if vertex.encryption_spec_key_name:
        kwargs["encryption_spec_key_name"] = vertex.encryption_spec_key_name
    if vertex.service_account:
        kwargs["service_account"] = vertex.service_account
    if credentials is not None:
        kwargs["credentials"] = credentials
    if api_endpoint:
        kwargs["api_endpoint"] = api_endpoint
        kwargs["api_transport"] = "rest"
    aiplatform.init(**kwargs)
