"""Typing rules of SPEC §2 that need no AST: operators, builtins, math, intrinsics.

Each rule takes argument types and returns a result type, or raises :class:`Reject` with the
message and hint the typer turns into a located error::

    >>> binop_type(ast.Div(), i64, INT_LIT)
    f64
    >>> binop_type(ast.Mult(), f32, FLOAT_LIT)
    f32
"""

from __future__ import annotations

import ast

from ...lang.types import (
    FLOAT_LIT,
    INT_LIT,
    ArrayType,
    Scalar,
    Type,
    boolean,
    f64,
    i64,
    promote,
    u32,
    u64,
)


class Reject(Exception):
    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class Stop(Exception):
    """An expression whose type is unknown in this pass (a later pass may know it)."""


ARITH = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
BITWISE = (ast.BitAnd, ast.BitOr, ast.BitXor, ast.LShift, ast.RShift)
OP_SYMBOL = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.MatMult: "@",
}


def describe(t: Type) -> str:
    return t.name


def scalar(t: Type, what: str) -> Scalar:
    if not isinstance(t, Scalar):
        raise Reject(f"{what} must be a number or bool, not {describe(t)}")
    return t


def numeric(t: Type, what: str, complex_ok: bool = False) -> Scalar:
    """A number (not a bool); a complex one only where ``complex_ok`` (arithmetic, abs)."""
    t = scalar(t, what)
    if t is boolean:
        raise Reject(
            f"{what} is a bool; arithmetic needs a number", hint="cast it first: int(flag)"
        )
    if t.is_complex and not complex_ok:
        raise Reject(
            f"{what} must be a real number, not {t.name}",
            hint="take z.real, z.imag or abs(z); cmath.* take complex numbers",
        )
    return t


def binop_type(op: ast.operator, lt: Type, rt: Type) -> Type:
    sym = OP_SYMBOL.get(type(op), type(op).__name__)
    if isinstance(op, ARITH):
        a = numeric(lt, f"left operand of '{sym}'", complex_ok=True)
        b = numeric(rt, f"right operand of '{sym}'", complex_ok=True)
        if (a.is_complex or b.is_complex) and isinstance(op, (ast.FloorDiv, ast.Mod, ast.Pow)):
            raise Reject(
                f"'{sym}' is not supported on complex numbers in kernels",
                hint="'**': cmath.exp(w * cmath.log(z))" if sym == "**" else None,
            )
        if isinstance(op, ast.Div) and a.is_int and b.is_int:
            return FLOAT_LIT if a.weak and b.weak else f64
        return promote(a, b)
    if isinstance(op, BITWISE):
        a = scalar(lt, f"left operand of '{sym}'")
        b = scalar(rt, f"right operand of '{sym}'")
        if a is boolean and b is boolean and not isinstance(op, (ast.LShift, ast.RShift)):
            return boolean
        if not a.is_int or not b.is_int:  # floats, complexes and a bool with an int
            raise Reject(f"'{sym}' needs integer operands, not {a.name} and {b.name}")
        return promote(a, b)
    raise Reject(f"operator '{sym}' is not supported in kernels")


def unary_type(op: ast.unaryop, t: Type) -> Type:
    if isinstance(op, ast.Not):
        truth(t)
        return boolean
    if isinstance(op, ast.Invert):
        s = scalar(t, "operand of '~'")
        if not s.is_int:
            raise Reject(
                f"'~' needs an integer operand, not {s.name}", hint="for a bool, use 'not'"
            )
        return s
    return numeric(t, "operand of unary '-'/'+'", complex_ok=True)


def compare_type(op: ast.cmpop, lt: Type, rt: Type) -> Type:
    if isinstance(op, (ast.Is, ast.IsNot, ast.In, ast.NotIn)):
        raise Reject("'is' and 'in' are not supported in kernels", hint="compare with == or <")
    a = scalar(lt, "left side of the comparison")
    b = scalar(rt, "right side of the comparison")
    if (a is boolean) != (b is boolean) and not isinstance(op, (ast.Eq, ast.NotEq)):
        raise Reject(f"cannot order {a.name} and {b.name}")
    if (a.is_complex or b.is_complex) and not isinstance(op, (ast.Eq, ast.NotEq)):
        raise Reject(
            f"complex numbers have no order: '{_CMP_SYMBOL[type(op)]}' between {a.name} and "
            f"{b.name}",
            hint="compare abs(z) or z.real; complex numbers compare with == and != only",
        )
    return boolean


_CMP_SYMBOL = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}


def compare_operand_type(lt: Scalar, rt: Scalar) -> Scalar:
    """The type both sides of a comparison are converted to before comparing."""
    if lt is boolean and rt is boolean:
        return boolean
    lt = i64 if lt is boolean else lt
    rt = i64 if rt is boolean else rt
    return promote(lt, rt)


def truth(t: Type) -> None:
    if not isinstance(t, Scalar):
        raise Reject(
            f"a {describe(t)} has no truth value in kernels",
            hint="compare explicitly, e.g. 'x.shape[0] > 0'",
        )


def ifexp_type(a: Type, b: Type) -> Type:
    from ...lang.types import unify

    u = unify(a, b)
    if u is not None:
        return u
    if isinstance(a, Scalar) and isinstance(b, Scalar) and boolean not in (a, b):
        return promote(a, b)
    raise Reject(f"the two branches have different types: {describe(a)} and {describe(b)}")


def float_result(t: Scalar) -> Scalar:
    """f32 stays f32, literals stay weak, everything else computes in f64."""
    if t.is_float:
        return t
    return FLOAT_LIT if t.weak else f64


def math_type(name: str, args: list[Type], arity: int, kind: str, spelled: str = "") -> Type:
    """A math function of ``kind`` (float, rounding, predicate, scale) and ``arity``."""
    spelled = spelled or f"math.{name}"
    if len(args) != arity:
        raise Reject(
            f"{spelled}() takes {arity} argument{'s' if arity > 1 else ''}, got {len(args)}"
        )
    ts = [numeric(a, f"argument of {spelled}()") for a in args]
    if kind == "predicate":
        return boolean
    if kind == "rounding":
        return i64 if ts[0].is_float else ts[0]
    t = ts[0]
    for other in ts[1:]:
        t = promote(t, other)
    return float_result(t)


def min_max_type(name: str, args: list[Type]) -> Type:
    if len(args) < 2:
        raise Reject(f"{name}() takes two or more numbers in kernels")
    result = numeric(args[0], f"argument of {name}()")
    for a in args[1:]:
        result = promote(result, numeric(a, f"argument of {name}()"))
    return result


def index_types(array: ArrayType, indices: list[Type]) -> None:
    if len(indices) != array.ndim:
        raise Reject(
            f"a {array.ndim}-D array takes {array.ndim} "
            f"ind{'ices' if array.ndim > 1 else 'ex'}, got {len(indices)}"
        )
    for t in indices:
        if not isinstance(t, Scalar) or not t.is_int:
            raise Reject(
                f"array indices must be integers, not {describe(t)}", hint="cast with int(...)"
            )


def shfl_type(t: Type) -> Type:
    t = numeric(t, "shuffled value")
    if t is INT_LIT:
        return i64
    if t is FLOAT_LIT:
        return f64
    if t.bits < 32:
        raise Reject(f"shuffles move 32- or 64-bit values, not {t.name}")
    return t


def int_operand(name: str, t: Type) -> Scalar:
    """The operand of a bit intrinsic: a 32- or 64-bit integer (a literal is i64)."""
    if t is INT_LIT:
        t = i64
    if not isinstance(t, Scalar) or not t.is_int or t.bits not in (32, 64):
        raise Reject(
            f"{name}() takes a 32- or 64-bit integer, not {t.name}", "cast it, e.g. u32(x)"
        )
    return t


def unsigned_of(t: Scalar) -> Scalar:
    return u32 if t.bits == 32 else u64
