"""Pipeline functions whose signature and docstring come from one parameter list.

KFP reads a pipeline's interface from the function: `inspect.signature` for names, types and
defaults, the docstring's `Args:` for the descriptions. Both pipelines take the parameters
declared once in `labelloop.config.PipelineParams`, so instead of spelling them out in two
`def`s, `pipeline_function` builds a function with that signature and docstring whose body
receives the parameters' channels as one object (`params.task_type`, ...).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from labelloop.config import ParameterSpec, pipeline_parameters


class Params:
    """A pipeline's parameters inside its body: one channel per parameter, as attributes."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"the pipeline has no parameter {name!r}") from None

    def names(self) -> list[str]:
        return list(self._values)


def portable_parameters(*, exclude: Iterable[str] = ()) -> list[ParameterSpec]:
    """The labeling pipeline's parameters (`PipelineParams`), minus `exclude`."""
    left_out = set(exclude)
    unknown = left_out - {p.name for p in pipeline_parameters()}
    if unknown:
        raise ValueError(f"not pipeline parameters: {sorted(unknown)}")
    return [p for p in pipeline_parameters() if p.name not in left_out]


def docstring(summary: str, parameters: Sequence[ParameterSpec]) -> str:
    """A Google-style docstring: `summary`, then one `Args:` line per parameter."""
    lines = [summary, "", "Args:"]
    lines += [f"    {p.name}: {p.doc}" for p in parameters]
    return "\n".join(lines) + "\n"


def signature(parameters: Sequence[ParameterSpec]) -> inspect.Signature:
    """The signature KFP reads; required parameters first (KFP passes them positionally)."""
    ordered = [p for p in parameters if p.required] + [p for p in parameters if not p.required]
    return inspect.Signature(
        [
            inspect.Parameter(
                p.name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=p.kind,
                default=inspect.Parameter.empty if p.required else p.default,
            )
            for p in ordered
        ],
        return_annotation=None,
    )


def pipeline_function(
    body: Callable[[Params], None],
    *,
    name: str,
    summary: str,
    parameters: Sequence[ParameterSpec],
) -> Callable[..., None]:
    """A function for `@dsl.pipeline`: signature and docstring from `parameters`, calling
    `body(Params)` with the channels KFP passes in.

    Args:
        body: Builds the DAG from the parameters' channels.
        name: The function's name.
        summary: The docstring's first line.
        parameters: The pipeline's parameters, each declared once elsewhere.
    """
    names = [p.name for p in parameters]
    if len(set(names)) != len(names):
        raise ValueError(f"a parameter is declared twice: {names}")
    sig = signature(parameters)

    def pipeline(*args: Any, **kwargs: Any) -> None:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        body(Params(dict(bound.arguments)))

    pipeline.__signature__ = sig  # type: ignore[attr-defined]
    pipeline.__doc__ = docstring(summary, parameters)
    pipeline.__name__ = pipeline.__qualname__ = name
    pipeline.__module__ = body.__module__
    return pipeline
