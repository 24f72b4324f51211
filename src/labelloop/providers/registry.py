"""The provider registry: each provider registers itself, with its options schema.

    @register("simulated", options=SimulatedOptions)
    class SimulatedWorkforce: ...

`get_provider`, config validation and the CLI read this registry; nothing else lists the
providers. Python imports a package before any module in it, and `labelloop.providers`'s
`__init__` imports every bundled provider module: whoever imports this module sees a full
registry (a plugin registers the same way, on import).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol, TypeVar

from labelloop.errors import InputError
from labelloop.options import parse_options
from labelloop.providers.base import LabelingProvider, ReviewProvider, hosts_review
from labelloop.providers.secrets import refuse_secrets


class _FromOptions(Protocol):
    name: str

    @classmethod
    def from_options(cls, options: Any) -> LabelingProvider: ...


P = TypeVar("P", bound=type)


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobOptions:
    """Options of the labeling step itself, accepted beside every provider's own.

    Args:
        wait_seconds: How long the step waits for the job to finish (0 collects what is there).
        poll_seconds: Seconds between progress checks while waiting.
        instructions: Shown to annotators (Label Studio) or sent with the prompt (Gemini).
    """

    wait_seconds: float = 0.0
    poll_seconds: float = 30.0
    instructions: str = ""

    def validate(self, field: str) -> None:
        if self.wait_seconds < 0:
            raise InputError("must be 0 or more", field=f"{field}.wait_seconds")
        if self.poll_seconds <= 0:
            raise InputError("must be more than 0", field=f"{field}.poll_seconds")


JOB_OPTIONS = tuple(f.name for f in dataclasses.fields(JobOptions))


@dataclasses.dataclass(frozen=True)
class ProviderSpec:
    """A registered provider: its class and the dataclass of its options."""

    name: str
    cls: type[_FromOptions]
    options: type[Any]


_REGISTRY: dict[str, ProviderSpec] = {}


def register(name: str, *, options: type[Any]) -> Callable[[P], P]:
    """Class decorator: register a provider class under `name` with its options schema.

    The class needs a `from_options(options)` classmethod taking an instance of `options`.
    """

    def decorate(cls: P) -> P:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"provider {name!r} is registered twice")
        _REGISTRY[name] = ProviderSpec(name, cls, options)
        return cls

    return decorate


def provider_names() -> tuple[str, ...]:
    """Every registered provider's name, in registration order."""
    return tuple(_REGISTRY)


def get_spec(name: str, *, field: str = "provider") -> ProviderSpec:
    """The registered provider `name`.

    Raises:
        InputError: No such provider (with the close match and the list of known ones).
    """
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InputError(
            f"unknown provider {name!r}: {hint}must be one of {', '.join(_REGISTRY)}", field=field
        )
    return _REGISTRY[name]


def check_options(
    name: str,
    options: Mapping[str, Any],
    *,
    field: str = "provider_options",
    job_options: bool = True,
    supplied: Collection[str] = (),
) -> Any:
    """Check `options` against provider `name`'s schema; return the typed options.

    Args:
        name: The provider.
        options: Its options as given (the pipeline's `provider_options`).
        field: Their dotted name in the config (prefixes every error's field).
        job_options: Also accept the labeling step's own `JobOptions` keys.
        supplied: Required keys the run fills in itself (the sample's truth file).

    Raises:
        InputError: A secret among the options, an unknown or missing key, a wrong type.
    """
    refuse_secrets(options, field=field)
    extra = JOB_OPTIONS if job_options else ()
    if job_options:
        parse_options(
            JobOptions,
            {k: v for k, v in options.items() if k in JOB_OPTIONS},
            field=field,
        )
    return parse_options(
        get_spec(name).options, options, field=field, extra=extra, supplied=supplied
    )


def get_provider(name: str, options: Mapping[str, Any]) -> LabelingProvider:
    """Build provider `name` from its options (the pipeline's `provider_options`).

    Raises:
        InputError: Unknown provider, options its schema refuses, or options that look like a
            secret (pipeline parameters are readable by anyone who can read the run; keys come
            from the environment or Secret Manager).
    """
    spec = get_spec(name)
    typed = check_options(name, options, job_options=False)
    return spec.cls.from_options(typed)


def get_reviewer(name: str, options: Mapping[str, Any]) -> ReviewProvider:
    """Build provider `name` for review projects (see `base.ReviewProvider`).

    Raises:
        InputError: Unknown provider, bad options, or a provider without review projects.
    """
    provider = get_provider(name, options)
    if not hosts_review(provider):
        able = [n for n, spec in _REGISTRY.items() if hosts_review(spec.cls)]
        raise InputError(
            f"provider {name!r} cannot host review projects; use one of {', '.join(able)}, or "
            "give the review file to your labeling tool by hand",
            field="provider",
        )
    return provider  # type: ignore[return-value]  # checked by hosts_review
