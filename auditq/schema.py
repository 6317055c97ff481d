"""Strict type checks of settings tables against the dataclass that holds them (suite.toml [probes],
auditq.toml / --config / [tool.auditq]).

Generic over the schema, not per key: the field's annotation is the contract, so a setting added to the
dataclass is type-checked without a new line here. TOML has real types and auditq keeps them: `"false"`
is a string, not a bool (a truthy string silently enabled `mia_qa`), `true` is not 1, `"16"` and `16.5`
are not 16, and nothing is coerced. Value ranges stay with each setting's own checker.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from auditq.errors import InputError

_NAMES = {bool: "a boolean (true or false, unquoted)", int: "an integer", float: "a number", str: "a string"}


def _matches(value: Any, annotation: Any) -> bool:
    """True when `value` is strictly of `annotation` (bool is not int, int is a float, None only if Optional)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arm) for arm in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin is not None:
        return isinstance(value, origin)
    return isinstance(value, annotation) if isinstance(annotation, type) else True


def describe(annotation: Any) -> str:
    """'a boolean (true or false, unquoted)', 'a string or nothing', ... for the error line."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        arms = [a for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(describe(a) for a in arms)
    return _NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def check_value(value: Any, annotation: Any, where: str) -> None:
    """InputError (one line, exit 2) unless `value` is strictly of `annotation`."""
    if not _matches(value, annotation):
        hint = " (a quoted value is a string; write it unquoted)" if isinstance(value, str) else ""
        raise InputError(f"{where} = {value!r}: expected {describe(annotation)}, got {type(value).__name__}{hint}")


def check_table(table: dict[str, Any], schema: type, where: str, keys: typing.Iterable[str] | None = None) -> None:
    """Type-check every key of `table` that is a field of dataclass `schema` (or only `keys`).

    Unknown keys are left to the caller (each refuses them with its own list of known names).
    """
    hints = typing.get_type_hints(schema)
    wanted = set(hints) if keys is None else set(keys) & set(hints)
    for key, value in table.items():
        if key in wanted:
            check_value(value, hints[key], f"{where} {key}")
