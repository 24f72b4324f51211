"""Errors and bad-record reporting.

Every error about user input names where it came from (file, line, field) so it can be fixed
without reading our code. Bad records in data files are not fatal: they are collected as
`BadRecord`s, counted in the step's outputs and written beside them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any


class LabelloopError(Exception):
    """Base class for every error labelloop raises on purpose."""


class InputError(LabelloopError, ValueError):
    """Bad user input: a file, a record in it, a config value or a parameter.

    Args:
        message: What is wrong and, where it helps, what would be right.
        source: The file or URI the input came from.
        line: 1-based line number in `source`.
        field: The field (column, key or dotted config path) that is wrong.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.field = field
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.source:
            where = f"{self.source}:{self.line}" if self.line else self.source
        parts = [p for p in (where, f"field '{self.field}'" if self.field else "") if p]
        prefix = ": ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message


class ConfigError(InputError):
    """A configuration file or override is wrong."""


class CredentialsError(LabelloopError):
    """Credentials the run needs are missing (no Application Default Credentials, no API key)."""


ADC_ADVICE = (
    "no Google credentials found: run `gcloud auth application-default login` (or set "
    "GOOGLE_APPLICATION_CREDENTIALS to a service account key file)"
)


class ProviderError(LabelloopError):
    """A labeling provider failed in a way a retry will not fix.

    Args:
        message: What failed.
        status: The HTTP status the provider's server answered, if that is what failed.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


# Exit codes of the commands (`labelloop`, `python -m pipelines`), documented in docs/errors.md.
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3
EXIT_NOT_AUTHORIZED = 4
EXIT_REFUSED = 5


def _names(exc: BaseException) -> set[str]:
    """`module.Class` of the exception's class and its bases (no third-party import needed)."""
    return {f"{k.__module__}.{k.__qualname__}" for k in type(exc).__mro__}


def _status_exit(status: int | None) -> int:
    return EXIT_NOT_AUTHORIZED if status in (401, 403) else EXIT_REFUSED


def describe_error(exc: BaseException) -> tuple[int, str] | None:  # noqa: PLR0911
    """The exit code and one line for an error a user can act on; None for a bug.

    Covers labelloop's own errors, HTTP answers from Label Studio and Google APIs, unreachable
    hosts and missing Google credentials, so no traceback reaches a user for any of them.
    """
    names = _names(exc)
    if isinstance(exc, CredentialsError):
        return EXIT_NOT_AUTHORIZED, str(exc)
    if isinstance(exc, ProviderError):
        code = EXIT_REFUSED if exc.status is None else _status_exit(exc.status)
        return code, str(exc)
    if isinstance(exc, LabelloopError):
        return EXIT_BAD_INPUT, str(exc)
    if "google.auth.exceptions.DefaultCredentialsError" in names:
        return EXIT_NOT_AUTHORIZED, ADC_ADVICE
    if "google.auth.exceptions.RefreshError" in names:
        return EXIT_NOT_AUTHORIZED, (
            f"Google credentials were refused ({exc}): run "
            "`gcloud auth application-default login` again"
        )
    if "label_studio_sdk.core.api_error.ApiError" in names:
        status = getattr(exc, "status_code", None)
        body = str(getattr(exc, "body", "") or "")[:300]
        hint = " (check LABEL_STUDIO_API_KEY)" if status in (401, 403) else ""
        return _status_exit(status), f"Label Studio answered {status}{hint}: {body}"
    if "httpx.HTTPStatusError" in names:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        url = getattr(getattr(exc, "request", None), "url", "")
        return _status_exit(
            status
        ), f"{url} answered {status}: {str(getattr(response, 'text', ''))[:300]}"
    if "google.api_core.exceptions.GoogleAPICallError" in names:
        status = getattr(exc, "code", None)
        return _status_exit(
            status
        ), f"Google Cloud answered {status}: {getattr(exc, 'message', exc)}"
    unreachable = (
        "httpx.TransportError",
        "requests.exceptions.ConnectionError",
        "urllib3.exceptions.HTTPError",
        "builtins.ConnectionError",
        "google.api_core.exceptions.RetryError",
    )
    if names & set(unreachable):
        url = getattr(getattr(exc, "request", None), "url", "")
        where = f" {url}" if url else ""
        return (
            EXIT_UNREACHABLE,
            f"cannot reach{where}: {exc} (is the server running, the URL right?)",
        )
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
        return EXIT_BAD_INPUT, f"{exc.strerror}: {exc.filename}"
    return None


@dataclasses.dataclass(frozen=True)
class BadRecord:
    """One record that was rejected, and why. Serialised to the step's `rejects` file."""

    source: str
    line: int
    field: str
    reason: str

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: field '{self.field}': {self.reason}"


def summarize_bad_records(bad: Iterable[BadRecord], *, limit: int = 5) -> str:
    """A short human summary: the count and the first `limit` records."""
    bad = list(bad)
    if not bad:
        return "no bad records"
    head = "; ".join(str(b) for b in bad[:limit])
    more = f" (+{len(bad) - limit} more)" if len(bad) > limit else ""
    return f"{len(bad)} bad record(s): {head}{more}"


def to_jsonable(value: Any) -> Any:
    """Turn dataclasses and tuples into plain JSON types (for step summaries)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value
