"""The agreement-metric registry: each metric is registered by the module that computes it.

`labelloop.quality.metrics` imports every registering module and answers for all of them.
A metric applies to one or more task families, the annotation shapes (`schemas.Shape`:
`single`, `multi`, `boxes`, `spans`); the first metric registered for a family is that family's
fallback. Config
validation and the quality step read it (through `quality.metrics`), so adding a metric touches the
module that computes it (and `quality.metrics`' import list when it is a new module).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar

from labelloop.errors import InputError

FAMILIES = ("single", "multi", "boxes", "spans")

F = TypeVar("F", bound=Callable[..., object])


@dataclasses.dataclass(frozen=True)
class AgreementMetric:
    """A registered agreement metric.

    Attributes:
        name: The `agreement_metric` value users write.
        families: Task families it applies to.
        compute: The function that computes it (its signature is the family's business).
    """

    name: str
    families: tuple[str, ...]
    compute: Callable[..., object]


METRICS: dict[str, AgreementMetric] = {}


def register_metric(name: str, *, families: tuple[str, ...]) -> Callable[[F], F]:
    """Class/function decorator: register `name` as an agreement metric of `families`."""
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown task families {sorted(unknown)}; expected {FAMILIES}")

    def wrap(fn: F) -> F:
        if name in METRICS:
            raise ValueError(f"agreement metric {name!r} is registered twice")
        METRICS[name] = AgreementMetric(name, tuple(families), fn)
        return fn

    return wrap


def get_metric(name: str) -> AgreementMetric:
    """The registered metric `name` (registered so far: see `quality.metrics` for all).

    Raises:
        InputError: No metric of that name.
    """
    if name not in METRICS:
        raise InputError(
            f"unknown agreement metric {name!r}; expected one of {', '.join(sorted(METRICS))}",
            field="agreement_metric",
        )
    return METRICS[name]


def metrics_for(family: str) -> list[str]:
    """The registered metrics that apply to a task family (an annotation shape), fallback
    first (registered so far: see `quality.metrics` for all)."""
    return [m.name for m in METRICS.values() if family in m.families]
