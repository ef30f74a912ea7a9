"""Typing rules of complex numbers that need no AST walk (the operators' are :mod:`.rules`).

    >>> part_type(c64), part_type(COMPLEX_LIT), part_type(f32)
    (f32, float literal, f32)
    >>> complex_result(f32), complex_result(i64), complex_result(FLOAT_LIT)
    (c64, c128, complex literal)

``z.real``/``z.imag`` have the part type (a real number's are itself and zero, as Python's);
a ``cmath`` function of a real argument is complex as Python's (f32 gives c64, as the f32
math functions keep f32); a complex converts to a real type only through ``.real``,
``.imag`` or ``abs`` (Python's ``float(z)`` and ``int(z)`` raise), but ``bool(z)`` is
``z != 0``.
"""

from __future__ import annotations

import ast

from ...lang.types import (
    COMPLEX_LIT,
    FLOAT_LIT,
    Scalar,
    Type,
    boolean,
    c64,
    c128,
    f32,
    f64,
)
from .rules import Reject, numeric

PARTS = ("real", "imag")


def is_part(t: Type, attr: str) -> bool:
    """``x.real`` / ``x.imag`` of a number (complex or real)."""
    return attr in PARTS and isinstance(t, Scalar) and t is not boolean


def part_type(t: Scalar) -> Scalar:
    if t is COMPLEX_LIT:
        return FLOAT_LIT
    if t.is_complex:
        return f32 if t is c64 else f64
    return t


def complex_result(t: Scalar) -> Scalar:
    """The complex type a ``cmath`` function of ``t`` computes in."""
    if t.is_complex:
        return t
    if t.weak:
        return COMPLEX_LIT
    return c64 if t.is_float and t.bits <= 32 else c128


def cmath_arg(t: Type, spelled: str) -> Scalar:
    return numeric(t, f"argument of {spelled}()", complex_ok=True)


def check_cast(src: Type, dst: Scalar, spelled: str) -> None:
    """``f32(z)``, ``int(z)``: a complex converts to a complex type or to bool only."""
    if isinstance(src, Scalar) and src.is_complex and not dst.is_complex and dst is not boolean:
        raise Reject(
            f"{spelled}() cannot convert a complex number ({src.name})",
            hint=f"take z.real, z.imag or abs(z) first, e.g. {spelled}(z.real)",
        )


def nonzero_constant(node: ast.expr) -> bool:
    """A divisor that is a nonzero literal (``z / 2.0``) needs no ZeroDivisionError check."""
    v = node.value if isinstance(node, ast.Constant) else None
    return type(v) in (int, float, complex) and v != 0
