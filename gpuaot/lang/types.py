"""The kernel language's types: small, immutable, interned and compared by identity.

    >>> f32.name, f32.bits, f32.kind
    ('f32', 32, 'f')
    >>> Array[f32, 2] is Array[f32, 2]
    True
    >>> f32(1.5)                     # a cast, also in plain Python
    np.float32(1.5)

Weak literal types (``INT_LIT``, ``FLOAT_LIT``) are what an untyped literal has: they take the
type of the other operand (``x * 2.0`` stays f32), and become i64 / f64 when alone.

This module imports numpy only; it is part of the run-time path.
"""

from __future__ import annotations

import numpy as np


class Type:
    """Base of all gpuaot types. Instances are interned: compare with ``is``."""

    __slots__ = ()
    name: str

    def __repr__(self) -> str:
        return self.name

    def __reduce__(self):
        # Interned singletons survive pickling (process pools) as themselves.
        return (parse_type, (self.name,))


class Scalar(Type):
    __slots__ = ("name", "kind", "bits", "weak", "np_dtype")

    def __init__(self, name: str, kind: str, bits: int, weak: bool = False):
        self.name = name
        self.kind = kind  # 'b' bool, 'i' signed, 'u' unsigned, 'f' float, 'c' complex
        self.bits = bits
        self.weak = weak
        np_name = {"b": "bool", "i": f"int{bits}", "u": f"uint{bits}", "f": f"float{bits}"}.get(
            kind, f"complex{bits}"
        )
        self.np_dtype = np.dtype(np_name)

    @property
    def is_int(self) -> bool:
        return self.kind in "iu"

    @property
    def is_float(self) -> bool:
        return self.kind == "f"

    @property
    def is_complex(self) -> bool:
        return self.kind == "c"

    @property
    def is_signed(self) -> bool:
        return self.kind == "i"

    @property
    def itemsize(self) -> int:
        return max(1, self.bits // 8)

    def __call__(self, value=0):
        """A cast, as in kernel code: ``f32(x)``; integers wrap like numpy's."""
        if self.kind == "b":
            return np.bool_(bool(value))
        if self.is_int and isinstance(value, (float, np.floating)):
            value = int(value)
        if self.is_int and isinstance(value, int):
            bits = self.bits
            value &= (1 << bits) - 1
            if self.kind == "i" and value >= 1 << (bits - 1):
                value -= 1 << bits
        return self.np_dtype.type(value)


class ArrayType(Type):
    __slots__ = ("name", "dtype", "ndim", "layout")

    def __init__(self, dtype: Scalar, ndim: int, layout: str):
        self.dtype = dtype
        self.ndim = ndim
        self.layout = layout
        self.name = f"Array[{dtype.name}, {ndim}" + (', "A"]' if layout == "A" else "]")


class TupleType(Type):
    __slots__ = ("name", "items")

    def __init__(self, items: tuple[Type, ...]):
        self.items = items
        self.name = "(" + ", ".join(t.name for t in items) + ("," if len(items) == 1 else "") + ")"


class NoneType_(Type):
    __slots__ = ("name",)

    def __init__(self):
        self.name = "None"


boolean = Scalar("bool", "b", 1)
i8 = Scalar("i8", "i", 8)
i16 = Scalar("i16", "i", 16)
i32 = Scalar("i32", "i", 32)
i64 = Scalar("i64", "i", 64)
u8 = Scalar("u8", "u", 8)
u16 = Scalar("u16", "u", 16)
u32 = Scalar("u32", "u", 32)
u64 = Scalar("u64", "u", 64)
f32 = Scalar("f32", "f", 32)
f64 = Scalar("f64", "f", 64)
# numpy's float16, CUDA's __half: 2 bytes; each operation's result is rounded to it.
f16 = Scalar("f16", "f", 16)
# numpy's complex64 / complex128: two f32 / f64 (real, imaginary), 8 / 16 bytes.
c64 = Scalar("c64", "c", 64)
c128 = Scalar("c128", "c", 128)
# The highest array rank (SPEC §2): what the manifest schema accepts, as numba-cuda's kernels use.
MAX_RANK = 4
INT_LIT = Scalar("int literal", "i", 64, weak=True)
FLOAT_LIT = Scalar("float literal", "f", 64, weak=True)
COMPLEX_LIT = Scalar("complex literal", "c", 128, weak=True)
none = NoneType_()

SCALARS: dict[str, Scalar] = {
    t.name: t for t in (boolean, i8, i16, i32, i64, u8, u16, u32, u64, f16, f32, f64, c64, c128)
}
# The long spellings the SPEC also exports.
ALIASES: dict[str, Scalar] = {
    "bool_": boolean,
    "int8": i8,
    "int16": i16,
    "int32": i32,
    "int64": i64,
    "uint8": u8,
    "uint16": u16,
    "uint32": u32,
    "uint64": u64,
    "float32": f32,
    "float16": f16,
    "float64": f64,
    "complex64": c64,
    "complex128": c128,
}
BY_NAME: dict[str, Scalar] = {**SCALARS, **ALIASES}
int8, int16, int32, int64 = i8, i16, i32, i64
uint8, uint16, uint32, uint64 = u8, u16, u32, u64
float16, float32, float64 = f16, f32, f64
complex64, complex128 = c64, c128

_arrays: dict[tuple, ArrayType] = {}
_tuples: dict[tuple, TupleType] = {}


def array_of(dtype: Scalar, ndim: int = 1, layout: str = "C") -> ArrayType:
    key = (dtype, ndim, layout)
    t = _arrays.get(key)
    if t is None:
        t = _arrays[key] = ArrayType(dtype, ndim, layout)
    return t


def tuple_of(items) -> TupleType:
    items = tuple(items)
    t = _tuples.get(items)
    if t is None:
        t = _tuples[items] = TupleType(items)
    return t


class _ArrayFactory:
    """``Array[f32]``, ``Array[f32, 2]``, ``Array[f32, 2, "A"]``."""

    def __getitem__(self, params) -> ArrayType:
        if not isinstance(params, tuple):
            params = (params,)
        # The Python builtins spell scalar types too, as in the compiler's annotations.
        dtype = _PY_SCALARS.get(params[0], params[0]) if isinstance(params[0], type) else params[0]
        ndim = params[1] if len(params) > 1 else 1
        layout = params[2] if len(params) > 2 else "C"
        if not isinstance(dtype, Scalar) or dtype.weak:
            raise TypeError(f"Array element type must be a scalar type, not {dtype!r}")
        if not isinstance(ndim, int) or not 1 <= ndim <= MAX_RANK:
            raise TypeError(f"Array rank must be 1 to {MAX_RANK}, not {ndim!r}")
        if layout not in ("C", "A"):
            raise TypeError(f'Array layout must be "C" or "A", not {layout!r}')
        return array_of(dtype, ndim, layout)

    def __repr__(self) -> str:
        return "Array"


_PY_SCALARS = {bool: boolean, int: i64, float: f64, complex: c128}
Array = _ArrayFactory()


def parse_type(text: str) -> Type:
    """The inverse of ``Type.name`` (manifest and pickling use it)."""
    text = text.strip()
    if text in BY_NAME:
        return BY_NAME[text]
    if text == "int literal":
        return INT_LIT
    if text == "float literal":
        return FLOAT_LIT
    if text == "complex literal":
        return COMPLEX_LIT
    if text == "None":
        return none
    if text.startswith("Array[") and text.endswith("]"):
        parts = [p.strip() for p in text[6:-1].split(",")]
        layout = parts[2].strip("'\"") if len(parts) > 2 else "C"
        return array_of(BY_NAME[parts[0]], int(parts[1]) if len(parts) > 1 else 1, layout)
    if text.startswith("(") and text.endswith(")"):
        inner = text[1:-1]
        items, depth, cur = [], 0, ""
        for ch in inner:
            if ch in "([":
                depth += 1
            elif ch in ")]":
                depth -= 1
            if ch == "," and depth == 0:
                items.append(cur)
                cur = ""
            else:
                cur += ch
        if cur.strip():
            items.append(cur)
        return tuple_of(parse_type(i) for i in items)
    raise ValueError(f"not a gpuaot type: {text!r}")


# ---------------------------------------------------------------- promotion rules (SPEC §2)


def materialize(t: Type) -> Type:
    """A weak literal type alone: int literal → i64, float literal → f64."""
    if t is INT_LIT:
        return i64
    if t is FLOAT_LIT:
        return f64
    if t is COMPLEX_LIT:
        return c128
    if isinstance(t, TupleType):
        return tuple_of(materialize(i) for i in t.items)
    return t


def promote(a: Scalar, b: Scalar) -> Scalar:
    """The result type of ``a ⊕ b`` for arithmetic.

    An untyped literal takes the other operand's type (a float literal with an int gives f64);
    int ⊕ float gives the float; narrower ⊕ wider gives the wider; same width signed ⊕ unsigned
    gives the unsigned (C's rule). bool counts as the narrowest int.
    """
    if a is b:
        return a
    if a.is_complex or b.is_complex:
        return promote_complex(a, b)
    if a.weak and b.weak:
        return FLOAT_LIT if FLOAT_LIT in (a, b) else INT_LIT
    if a.weak or b.weak:
        weak, strong = (a, b) if a.weak else (b, a)
        if weak is FLOAT_LIT and not strong.is_float:
            return f64
        return i64 if strong is boolean else strong
    if f16 in (a, b) and a.is_float != b.is_float:
        return _promote_half_int(a, b)
    if a.is_float != b.is_float:
        return a if a.is_float else b
    if a.bits != b.bits:
        return a if a.bits > b.bits else b
    if a.kind == "b":
        return i64
    return a if a.kind == "u" else b


def _promote_half_int(a: Scalar, b: Scalar) -> Scalar:
    """f16 ⊕ an int (or bool), as numpy's ``result_type``: an 8-bit int or a bool keeps f16, a
    16-bit one gives f32, a wider one f64 (the type that holds every value of both)."""
    other = b if a is f16 else a
    return f16 if other.bits <= 8 else f32 if other.bits == 16 else f64


def promote_complex(a: Scalar, b: Scalar) -> Scalar:
    """``a ⊕ b`` where one is complex, by the rules for floats: a complex with an int or a
    bool keeps its type (as int ⊕ float gives the float; numpy would widen c64 with an i32
    or i64 to c128), with f32 (or narrower) c64 stays c64, with f64 it is c128, and c64 with
    c128 is c128. A complex literal is weak as a float literal is: ``z * 1j`` keeps c64;
    ``x * 1j`` is c64 for an f32 ``x``, c128 for an f64 or an int.
    """
    if a.weak and b.weak:
        return COMPLEX_LIT
    if a.weak or b.weak:
        weak, strong = (a, b) if a.weak else (b, a)
        if strong.is_complex:
            return strong
        return c64 if strong.is_float and strong.bits <= 32 else c128  # 1j with a real
    if a.is_complex and b.is_complex:
        return a if a.bits >= b.bits else b
    z, other = (a, b) if a.is_complex else (b, a)
    return c128 if other.is_float and other.bits > 32 else z


def unify(a: Type, b: Type) -> Type | None:
    """The one type a variable assigned both an ``a`` and a ``b`` has, or None if they conflict.

    Weak literals join any number type; ints widen with ints and floats with floats;
    int vs float, bool vs number, arrays and tuples of different types conflict.
    """
    if a is b:
        return a
    if isinstance(a, Scalar) and isinstance(b, Scalar):
        if a.is_complex or b.is_complex:
            return _unify_complex(a, b)
        if a.weak or b.weak:
            if a.weak and b.weak:
                return FLOAT_LIT if FLOAT_LIT in (a, b) else INT_LIT
            weak, strong = (a, b) if a.weak else (b, a)
            if strong is boolean:
                return None
            if weak is FLOAT_LIT and not strong.is_float:
                return None
            return strong
        if a.kind == "b" or b.kind == "b":
            return None
        if a.is_float == b.is_float:
            return promote(a, b)
        return None
    if isinstance(a, TupleType) and isinstance(b, TupleType) and len(a.items) == len(b.items):
        items = [unify(x, y) for x, y in zip(a.items, b.items)]
        if any(i is None for i in items):
            return None
        return tuple_of(items)
    return None


def _unify_complex(a: Scalar, b: Scalar) -> Scalar | None:
    """A variable holding a complex and another number: complexes widen with complexes, and a
    real literal joins one (``z = 0.0`` then ``z = w * w``); a real type conflicts."""
    if a.is_complex and b.is_complex:
        return promote_complex(a, b)
    z, other = (a, b) if a.is_complex else (b, a)
    if other.weak and other is not boolean:
        return COMPLEX_LIT if z.weak else z
    return None
