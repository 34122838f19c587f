"""Tests of the JSON values kt reads from files that travel: types, ranges and shapes.

Every record, manifest and table kt reads from a work dir is checked with these before
anything uses it (:mod:`ktcli.stages.records`, :mod:`ktcli.reports.ablation_records`).
"""
import dataclasses
import math
import typing
from typing import Any, Callable

# JSON numbers beyond this lose integer precision in other readers.
MAX_INT = 2 ** 53


def integer(minimum: int) -> Callable[[Any], bool]:
    """A test for an integer (never a bool) of at least ``minimum`` and below ``MAX_INT``."""
    return lambda value: (isinstance(value, int) and not isinstance(value, bool)
                          and minimum <= value < MAX_INT)


def number(value: Any) -> bool:
    """Whether ``value`` is a finite number (never a bool)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def optional(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """``test``, with None allowed."""
    return lambda value: value is None or test(value)


def short_string(value: Any) -> bool:
    """Whether ``value`` is a string of at most 4096 characters."""
    return isinstance(value, str) and len(value) <= 4096


def matches_hint(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a type hint (tuples are JSON lists)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is object or hint is Any:
        return True
    if origin is typing.Union:
        return any(matches_hint(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return integer(-MAX_INT)(value)
    if hint is float:
        return number(value)
    if hint is str:
        return short_string(value)
    if origin is tuple and isinstance(value, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return all(matches_hint(item, args[0]) for item in value)
        return len(value) == len(args) and all(map(matches_hint, value, args))
    if dataclasses.is_dataclass(hint):
        # A nested record (e.g. the data fingerprint): exactly its fields, each of its type.
        hints = typing.get_type_hints(hint)
        return (isinstance(value, dict)
                and set(value) == {field.name for field in dataclasses.fields(hint)}
                and all(matches_hint(value[name], hints[name]) for name in value))
    return False


def describe_hint(hint: Any) -> str:
    """How a message names what a type hint admits, e.g. ``'an integer or null'``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        return ' or '.join(describe_hint(arg) for arg in args)
    if origin is tuple:
        return 'a list'
    if dataclasses.is_dataclass(hint):
        return f'an object with {", ".join(f.name for f in dataclasses.fields(hint))}'
    return {type(None): 'null', bool: 'true or false', int: 'an integer', float: 'a number',
            str: 'a string'}.get(hint, str(hint))
