"""Provider credentials: from the environment or Google Secret Manager, never from parameters.

A pipeline parameter is visible to anyone who can read the run, so API keys are read here, at
the edge, when a provider is built: first the named Secret Manager secret version (if the
provider options name one), then the environment variable.
"""

from __future__ import annotations

import base64
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

from labelloop.errors import InputError, ProviderError

log = logging.getLogger(__name__)

SECRET_MANAGER_URL = "https://secretmanager.googleapis.com/v1"  # noqa: S105 - an API root

# Keys that hold a secret itself. A key ending in `_secret` names a Secret Manager version
# instead (`api_key_secret`), and its value must look like one.
SECRET_OPTION_NAMES = ("api_key", "apikey", "token", "password", "passwd", "secret")
_SECRET_SUFFIXES = ("_token", "_password", "_api_key", "_apikey", "private_key", "_credentials")
_SECRET_VERSION = re.compile(r"^projects/[^/]+/secrets/[^/]+/versions/[^/]+$")
# Values that are keys whatever their field is called: Google API keys, PEM private keys.
_SECRET_VALUES = (
    re.compile(r"AIza[0-9A-Za-z_\-]{35}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
)
_ADVICE = (
    "secrets never travel in the config or as pipeline parameters (anyone who can read the run "
    "reads them): set the environment variable or name a Secret Manager version "
    "(e.g. 'api_key_secret: projects/P/secrets/S/versions/latest')"
)


def find_secret(data: Any, *, field: str) -> str | None:
    """The dotted field of the first secret in `data` (nested mappings and lists), or None."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            path = f"{field}.{key}" if field else str(key)
            name = str(key).lower().replace("-", "_")
            named = name in SECRET_OPTION_NAMES or name.endswith(_SECRET_SUFFIXES)
            if named and value not in (None, ""):
                return path
            reference = name.endswith("_secret") and isinstance(value, str) and value
            if reference and not _SECRET_VERSION.match(str(value).strip("/")):
                return path
            found = find_secret(value, field=path)
            if found:
                return found
    elif isinstance(data, list | tuple):
        for i, value in enumerate(data):
            found = find_secret(value, field=f"{field}[{i}]")
            if found:
                return found
    elif isinstance(data, str) and any(p.search(data) for p in _SECRET_VALUES):
        return field
    return None


def refuse_secrets(data: Any, *, field: str) -> None:
    """Raise `InputError` naming the field if `data` holds a secret anywhere.

    Raises:
        InputError: A key named like a secret with a value, a `*_secret` key whose value is not
            a Secret Manager version name, or a value shaped like an API or private key.
    """
    found = find_secret(data, field=field)
    if found:
        raise InputError(_ADVICE, field=found)


def access_secret_version(
    resource: str, *, endpoint: str = SECRET_MANAGER_URL, credentials: Any = None
) -> str:
    """Read a Secret Manager secret version through its REST API.

    Args:
        resource: `projects/{project}/secrets/{name}/versions/{version|latest}`.
        endpoint: The API root (a loopback fake in tests).
        credentials: Google credentials; default: Application Default Credentials.

    Returns:
        The secret's payload, decoded as UTF-8 and stripped.

    Raises:
        InputError: The resource name is not a secret version.
        ProviderError: Secret Manager refused or failed.
    """
    parts = resource.strip("/").split("/")
    if len(parts) != 6 or parts[0] != "projects" or parts[2] != "secrets" or parts[4] != "versions":
        raise InputError(
            f"expected projects/P/secrets/S/versions/V, got {resource!r}",
            field="provider_options.api_key_secret",
        )
    # REST through google-auth keeps google-cloud-secret-manager out of the image.
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    if credentials is None:
        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
    response = AuthorizedSession(credentials).get(f"{endpoint}/{resource.strip('/')}:access")
    if response.status_code != 200:
        raise ProviderError(
            f"Secret Manager answered {response.status_code} for {resource}",
            status=response.status_code,
        )
    data = response.json().get("payload", {}).get("data", "")
    return base64.b64decode(data).decode("utf-8").strip()


def resolve_api_key(*, env_var: str, secret: str | None, field: str) -> str:
    """The API key: the Secret Manager version `secret` if given, else `env_var`.

    Raises:
        InputError: Neither source has a key (names both, so the fix is obvious).
    """
    if secret:
        log.info("reading the API key from Secret Manager (%s)", secret)
        return access_secret_version(secret)
    value = os.environ.get(env_var, "").strip()
    if not value:
        raise InputError(
            f"no API key: set the {env_var} environment variable or name a Secret Manager "
            "secret version in the provider options (never pass keys as pipeline parameters)",
            field=field,
        )
    return value
