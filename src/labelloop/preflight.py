"""Pre-flight: what can be checked before a run starts, checked before it starts.

`load_config` already refuses what the file alone shows (unknown keys, types, ranges, provider
options against their schema, malformed URIs, secrets). `preflight` adds what depends on the
machine and on where the run goes: local files that must exist, local paths a Vertex AI run
could not read, a provider's URL or key, and the Google credentials the run will call with.
Every refusal names the config file, line and field, or says which command fixes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from labelloop import storage
from labelloop.config import Config
from labelloop.errors import ADC_ADVICE, CredentialsError
from labelloop.options import input_files
from labelloop.providers import check_options
from labelloop.sample_data import SAMPLE_SCHEME, supplied_options

Target = Literal["local", "vertex"]

# Pipeline parameters naming a file the run reads (not written): they must exist.
INPUT_FILES = ("predictions_uri", "gold_uri")
# Providers that call Google APIs with the runner's credentials, unless pointed at a test URL.
GOOGLE_PROVIDERS = ("gemini", "gemini_then_human")


def preflight(
    config: Config,
    *,
    target: Target,
    env: Mapping[str, str],
    check_credentials: bool = True,
) -> None:
    """Refuse a run that would fail for a reason known now.

    Args:
        config: The loaded config.
        target: `local` (kfp.local on this machine) or `vertex` (submitted to Vertex AI).
        env: The environment of this process (read at the edge, passed in).
        check_credentials: Look for Google Application Default Credentials when the run will
            need them (off when the caller talks to a loopback fake).

    Raises:
        ConfigError: A missing local file or folder, a local path on a Vertex run, a provider
            without the URL or key it needs.
        CredentialsError: No Google credentials though the run will call Google APIs.
    """
    p = config.pipeline
    files: list[tuple[str, str]] = [(f"pipeline.{n}", getattr(p, n)) for n in INPUT_FILES]
    typed = check_options(
        p.provider, _options(config), supplied=supplied_options(p.source_uri, p.provider)
    )
    files += input_files(typed, field="pipeline.provider_options")
    files = [(field, uri) for field, uri in files if uri]
    if target == "vertex":
        _vertex_paths(config, files)
    else:
        _local_paths(config, files)
    _provider_needs(config, typed, target=target, env=env)
    if check_credentials and needs_google_credentials(config, target=target, env=env):
        require_google_credentials()


def _options(config: Config) -> dict[str, object]:
    import json

    options = json.loads(config.pipeline.provider_options or "{}")
    return dict(options)


def _local_paths(config: Config, files: list[tuple[str, str]]) -> None:
    source = config.pipeline.source_uri
    local = not storage.is_gcs(source) and not source.startswith(SAMPLE_SCHEME)
    if local and not storage.local_path(source).is_dir():
        raise config.error(
            f"the source folder does not exist: {source}", field="pipeline.source_uri"
        )
    for field, uri in files:
        if not storage.is_gcs(uri) and not storage.local_path(uri).exists():
            raise config.error(f"file does not exist: {uri}", field=field)


def _vertex_paths(config: Config, files: list[tuple[str, str]]) -> None:
    for field, uri in files:
        if not storage.is_gcs(uri):
            raise config.error(
                f"on Vertex AI every file must be a gs:// URI (the run cannot read {uri!r} "
                "on this machine)",
                field=field,
            )


def _provider_needs(
    config: Config, typed: object, *, target: Target, env: Mapping[str, str]
) -> None:
    """A provider's URL and key: Label Studio needs both, from the options or the environment
    (on Vertex AI only the options reach the run: the key from Secret Manager)."""
    from labelloop.providers.label_studio import API_KEY_ENV, URL_ENV, LabelStudioOptions

    human = getattr(typed, "human", None)
    candidates = [("pipeline.provider_options", typed)]
    if human is not None:
        candidates.append(("pipeline.provider_options.human.options", human.typed()))
    for field, options in candidates:
        if not isinstance(options, LabelStudioOptions):
            continue
        url = options.url or env.get(URL_ENV, "").strip()
        if not options.url and (target == "vertex" or not url):
            where = "" if target == "vertex" else f" or set {URL_ENV}"
            raise config.error(
                f"Label Studio needs its URL: add 'url: https://...' to the options{where}",
                field=f"{field}.url",
            )
        if not options.api_key_secret and (target == "vertex" or not env.get(API_KEY_ENV)):
            where = "" if target == "vertex" else f"set {API_KEY_ENV} or "
            raise config.error(
                f"Label Studio needs an API key: {where}name a Secret Manager version in "
                "'api_key_secret' (projects/P/secrets/S/versions/latest)",
                field=f"{field}.api_key_secret",
            )
        if target == "local":
            problem = unreachable(url)
            if problem:
                named = "" if options.url else f" (from {URL_ENV})"
                raise config.error(
                    f"Label Studio at {url}{named} cannot be reached: {problem}; is the server "
                    "running and the URL right?",
                    field=f"{field}.url",
                )


def unreachable(url: str, *, timeout: float = 5.0) -> str:
    """Why nothing answers at `url` ("" when something does, whatever its HTTP status)."""
    import httpx

    try:
        httpx.get(url.rstrip("/") + "/health", timeout=timeout)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return ""


def needs_google_credentials(config: Config, *, target: Target, env: Mapping[str, str]) -> bool:
    """Whether the run will call Google APIs from this machine (or, on Vertex, submit at all)."""
    if target == "vertex":
        return True
    p = config.pipeline
    uris = [p.source_uri, p.state_uri, p.predictions_uri, p.gold_uri]
    options = _options(config)
    uris += [str(v) for v in _values(options)]
    if any(storage.is_gcs(u) for u in uris) and not env.get("STORAGE_EMULATOR_HOST"):
        return True
    if p.provider in GOOGLE_PROVIDERS:
        gemini = options.get("gemini", options) if p.provider == "gemini_then_human" else options
        if not (isinstance(gemini, Mapping) and gemini.get("base_url")):
            return True
    return "api_key_secret" in str(options)


def _values(data: object) -> list[object]:
    if isinstance(data, Mapping):
        return [v for value in data.values() for v in _values(value)]
    if isinstance(data, list):
        return [v for value in data for v in _values(value)]
    return [data]


def require_google_credentials() -> None:
    """Raise `CredentialsError` with the command that fixes it when no Google credentials exist.

    Raises:
        CredentialsError: `google.auth.default()` finds no Application Default Credentials.
    """
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        google.auth.default()
    except DefaultCredentialsError:
        raise CredentialsError(ADC_ADVICE) from None
