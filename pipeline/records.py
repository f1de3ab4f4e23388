"""Check JSON data read back from a file or a ConfigMap against the frozen dataclass it should be.

A ledger line, a ledger ConfigMap or a state file may have been edited by hand, cut short by a
crash or written by another version: each record read is checked here (keys, and the type of
every value) before a dataclass is built from it, so a bad one is ``BadInput`` naming where it
came from instead of a ``TypeError`` deep inside a phase.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from pipeline.errors import BadInput

MAX_TEXT_CHARS = 4096  # no field of a record is longer; a longer one is not a record


def build(cls: type, data: Any, *, where: str, what: str = "", hint: str = "") -> Any:
    """Return ``cls(**data)`` once every key and value of ``data`` fits ``cls``; raise BadInput."""
    problem = _problem(cls, data)
    if problem:
        raise BadInput(f"{where}: not {what or 'a ' + cls.__name__}: {problem}", hint=hint)
    return _build(cls, data)


def _problem(cls: type, data: Any, path: str = "") -> str:
    if not isinstance(data, dict):
        return f"{path or 'it'} is {_kind(data)}, expected a mapping"
    fields = {field.name: field for field in dataclasses.fields(cls)}
    extra = sorted(str(key) for key in data if key not in fields)
    if extra:
        return f"unknown key {_short(extra[0])!r}" + (f" and {len(extra) - 1} more" if len(extra) > 1 else "")
    missing = [name for name, field in fields.items() if name not in data
               and field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING]
    if missing:
        return f"missing key {path}{missing[0]!r}"
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        problem = _value_problem(hints[name], value, f"{path}{name}")
        if problem:
            return problem
    return ""


def _value_problem(kind: Any, value: Any, path: str) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return ""
        kind = next(arg for arg in args if arg is not type(None))
        origin, args = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind):
        return _problem(kind, value, f"{path}.")
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            return f"{path} is {_kind(value)}, expected a list of strings"
        return ""
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) and _number(v) for k, v in value.items()):
            return f"{path} is {_kind(value)}, expected a mapping of names to numbers"
        return ""
    if kind is bool:
        return "" if isinstance(value, bool) else f"{path} is {_kind(value)}, expected true or false"
    if kind is str:
        if not isinstance(value, str):
            return f"{path} is {_kind(value)}, expected a string"
        return "" if len(value) <= MAX_TEXT_CHARS else f"{path} is longer than {MAX_TEXT_CHARS} characters"
    if kind in (int, float):
        return "" if _number(value) else f"{path} is {_kind(value)}, expected a number"
    return f"{path} has a type no record holds"


def _build(cls: type, data: dict) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kind = hints[name]
        inner = [arg for arg in typing.get_args(kind) if dataclasses.is_dataclass(arg)]
        target = kind if dataclasses.is_dataclass(kind) else (inner[0] if inner else None)
        if target is not None and value is not None:
            value = _build(target, value)
        elif typing.get_origin(kind) is tuple:
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 1e15


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "true or false", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
