"""Typed, keyword-only options read from a JSON/YAML mapping (a provider's `provider_options`).

An options schema is a frozen, keyword-only dataclass. `parse_options` builds it from a plain
mapping and refuses, naming the dotted field: an unknown key (with a "did you mean"), a
required key that is missing, a value of the wrong type, a malformed URI in a field whose name
ends in `uri`. A schema may add value checks in a `validate(self, field: str)` method.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

from labelloop.errors import InputError

T = TypeVar("T")

# Field metadata of an option that names a file the run reads (pre-flight checks it exists).
INPUT_FILE = {"input_file": True}


def _describe(kind: Any) -> str:
    """A type as a user reads it in an error message."""
    names = {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}
    if kind in names:
        return names[kind]
    origin = typing.get_origin(kind)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(kind))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(
            "null" if a is type(None) else _describe(a) for a in typing.get_args(kind)
        )
    if origin is dict or kind is dict:
        return "an object"
    if dataclasses.is_dataclass(kind):
        return "an object"
    return str(kind)


def _convert(value: Any, kind: Any, *, field: str) -> Any:  # noqa: PLR0911 - one per kind
    """`value` as type `kind`, or raise `InputError` naming `field`."""
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(kind)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, field=field)
            except InputError:
                continue
        raise InputError(f"expected {_describe(kind)}, got {value!r}", field=field)
    if origin is typing.Literal:
        if value not in typing.get_args(kind):
            close = difflib.get_close_matches(str(value), [str(a) for a in typing.get_args(kind)])
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InputError(
                f"expected {_describe(kind)}, got {value!r}{hint}", field=field
            ) from None
        return value
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        return parse_options(kind, value, field=field)
    if kind is Any:
        return value
    ok = {
        str: isinstance(value, str),
        # JSON true/false are ints to Python: only a bool field takes them.
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        bool: isinstance(value, bool),
    }
    if kind in ok:
        if not ok[kind]:
            raise InputError(f"expected {_describe(kind)}, got {value!r}", field=field)
        return float(value) if kind is float else value
    if origin is dict or kind is dict:
        if not isinstance(value, Mapping):
            raise InputError(f"expected an object, got {value!r}", field=field)
        args = typing.get_args(kind)
        inner = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, inner, field=f"{field}.{k}") for k, v in value.items()}
    raise TypeError(f"unsupported option type {kind!r} for {field}")


def parse_options(
    schema: type[T],
    data: Any,
    *,
    field: str = "options",
    extra: Collection[str] = (),
    supplied: Collection[str] = (),
) -> T:
    """Build the keyword-only dataclass `schema` from `data`, checking every key.

    Args:
        schema: A dataclass whose fields are the accepted keys.
        data: The mapping to read (None reads as empty).
        field: The dotted name of `data` in the user's config, the prefix of every error's field.
        extra: Keys that belong to someone else (accepted, ignored, offered as suggestions).
        supplied: Required keys the caller will fill in itself (not refused as missing).

    Raises:
        InputError: Not a mapping, an unknown key, a missing required key, a wrong type, a
            malformed URI, or whatever the schema's own `validate` refuses.
    """
    from labelloop.storage import check_uri

    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise InputError(f"expected an object, got {data!r}", field=field)
    fields = {f.name: f for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(schema)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{field}.{key}"
        if key in extra:
            continue
        if key not in fields:
            close = difflib.get_close_matches(str(key), [*fields, *extra], n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            known = ", ".join(sorted([*fields, *extra]))
            raise InputError(f"unknown option{hint} (known: {known})", field=path)
        kwargs[key] = _convert(value, hints[key], field=path)
        if key.endswith("uri") and isinstance(kwargs[key], str) and kwargs[key]:
            check_uri(kwargs[key], field=path)
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in kwargs and name not in supplied:
            doc = field_doc(schema, name)
            raise InputError(
                f"required option '{name}' is missing: {_describe(hints[name])}"
                + (f", {doc[0].lower()}{doc[1:]}" if doc else ""),
                field=f"{field}.{name}",
            )
    if any(name not in kwargs for name in supplied if name in fields):
        # Placeholders for what the caller fills in, so the schema can still be built.
        for name in supplied:
            if name in fields and name not in kwargs:
                kwargs[name] = _placeholder(hints[name])
    options = schema(**kwargs)
    check = getattr(options, "validate", None)
    if callable(check):
        check(field)
    return options


def field_doc(schema: type[Any], name: str) -> str:
    """The first sentence a schema's docstring (`Args:` section) gives for field `name`."""
    match = re.search(rf"^\s+{re.escape(name)}: (.+?)(?:\.\s|\.?$)", schema.__doc__ or "", re.M)
    return match.group(1).strip() if match else ""


def _placeholder(kind: Any) -> Any:
    return {str: "", int: 0, float: 0.0, bool: False}.get(kind)


def input_files(options: Any, *, field: str) -> list[tuple[str, str]]:
    """`(dotted field, URI)` of every file option marked `INPUT_FILE` that has a value,
    in `options` and in the options nested in it (a nested schema, or a `typed()` method)."""
    found: list[tuple[str, str]] = []
    if not dataclasses.is_dataclass(options) or isinstance(options, type):
        return found
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        path = f"{field}.{f.name}"
        if f.metadata.get("input_file") and isinstance(value, str) and value:
            found.append((path, value))
        found += input_files(value, field=path)
    nested = getattr(options, "typed", None)
    if callable(nested):
        found += input_files(nested(), field=f"{field}.options")
    return found


def options_argument(value: str, *, field: str = "--options") -> dict[str, Any]:
    """A command's `--options`: a JSON object, or `@file.json` (local path or `gs://`).

    Raises:
        InputError: Not JSON, or not an object.
    """
    import json

    from labelloop import storage

    text = storage.read_text(value[1:]) if value.startswith("@") else value
    try:
        options = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise InputError(f"not JSON ({exc.msg})", field=field) from None
    if not isinstance(options, dict):
        raise InputError("must be a JSON object", field=field)
    return options
