"""Frozen dataclasses ↔ JSON, by their fields' types: what the manifest's dataclasses share.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class P(Record):
    ...     name: str
    ...     dims: tuple[int, ...]
    ...     layout: str | None = optional()
    >>> P("x", (2, 3)).to_json()
    {'name': 'x', 'dims': [2, 3]}
    >>> P.from_json({"name": "x", "dims": [2, 3], "layout": "C"})
    P(name='x', dims=(2, 3), layout='C')

A field made with :func:`optional` is left out of the JSON while it is None (as the JSON has
always left it out); any other None is written as null. Sequences are tuples in Python and
arrays in JSON; ``dict[str, X]`` is an object. ``from_json`` trusts its input's shape: the
manifest's reader runs the schema (:mod:`.schema`) first, and ignores keys it does not know.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing

_OPTIONAL = "gpuaot.optional"


def optional():
    """A field that defaults to None and is absent from the JSON while it is None."""
    return dataclasses.field(default=None, metadata={_OPTIONAL: True})


def to_json(value):
    """``value`` (a dataclass, a tuple or list, a dict, or a JSON scalar) as plain JSON."""
    if dataclasses.is_dataclass(value):
        return {
            f.name: to_json(v)
            for f in dataclasses.fields(value)
            if not ((v := getattr(value, f.name)) is None and f.metadata.get(_OPTIONAL))
        }
    if isinstance(value, (tuple, list)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _decode(tp, value):
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):  # X | None
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decode(inner, value)
    if origin is tuple:
        inner = typing.get_args(tp)[0]
        return tuple(_decode(inner, v) for v in value)
    if origin is dict:
        inner = typing.get_args(tp)[1]
        return {k: _decode(inner, v) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_json(tp, value)
    return value


def from_json(cls, data: dict):
    """An instance of the dataclass ``cls`` from its JSON (see the module's docstring)."""
    hints = _hints(cls)
    return cls(
        **{
            f.name: _decode(hints[f.name], data[f.name])
            for f in dataclasses.fields(cls)
            if f.name in data
        }
    )


class Record:
    """A dataclass with ``to_json`` / ``from_json``; read by attribute (``spec.cpu.sites``),
    an absent :func:`optional` field reading as None."""

    def to_json(self) -> dict:
        return to_json(self)

    @classmethod
    def from_json(cls, data: dict):
        return from_json(cls, data)


__all__ = ["Record", "from_json", "optional", "to_json"]
