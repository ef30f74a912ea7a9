"""The typed IR: a function's AST plus what typing decided about every node.

    tf = specialize(ctx, pkg.function("example.kernels.saxpy"), None)
    tf.var_types        # {'a': f32, 'x': Array[f32, 1], ..., 'i': i64}
    tf.expr_types[node] # the type of any expression node
    tf.calls[node]      # what a Call resolved to: a Builtin key or another TypedFunction

One AST can have several typed functions (a generic ``@device`` helper per call types), so
the decisions live beside the tree, keyed by node identity, not on it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from ...lang.types import BY_NAME, Scalar, Type
from ..discover import FuncInfo
from .names import function_symbol
from .rules import Reject


@dataclass(frozen=True)
class Builtin:
    """A call or attribute resolved through the method table: ``key`` names the method."""

    key: str
    data: object = None  # e.g. the target type of a cast, the ndim of grid()


@dataclass(frozen=True)
class RaiseSite:
    exc_type: str
    message: str
    file: str
    line: int
    col: int
    base: str | None = None  # a package exception class's nearest built-in base


@dataclass(eq=False)
class TypedFunction:
    func: FuncInfo
    target: str
    arg_types: tuple[Type, ...]
    var_types: dict[str, Type] = field(default_factory=dict)
    expr_types: dict[ast.AST, Type] = field(default_factory=dict)
    calls: dict[ast.AST, object] = field(default_factory=dict)  # Builtin | TypedFunction
    consts: dict[ast.AST, object] = field(default_factory=dict)  # folded constants
    sites: dict[ast.AST, RaiseSite] = field(default_factory=dict)
    return_type: Type | None = None
    may_raise: bool = False
    uses: set[str] = field(default_factory=set)  # method keys used (GPU-only detection)

    @property
    def symbol(self) -> str:
        """A stable, readable name for this specialisation, unique in the package
        (:mod:`.names`): ``example__kernels__saxpy``; ``m__k$sf32_Array_f32_1`` for one of
        several signatures; ``example__kernels__axpy.f32_f32_f32`` for a device helper."""
        several = "signatures" in self.func.options
        return function_symbol(self.func.qualname, self.func.kind, self.arg_types, several)

    @property
    def params(self) -> list[str]:
        return [a.arg for a in self.func.params]


def declared_params(params: list[str], types: tuple[Type, ...]) -> dict[str, Type]:
    """Parameters keep their type, as annotated variables do: ``x = x * 2.0`` on an f32 ``x``
    converts the value to f32. A weak literal type (a helper called with ``3``) still widens."""
    return {p: t for p, t in zip(params, types) if isinstance(t, Scalar) and not t.weak}


class ValueArg(Type):
    """A function or a scalar type passed as a ``@device`` helper's argument: a compile-time
    value, not a run-time one. The helper is specialised per value (it is part of the
    argument types, so of the specialisation key and the symbol); calling the parameter calls
    what it names, using it as a dtype names that type. It has no machine representation."""

    __slots__ = ("name", "symbol", "what")
    _interned: dict = {}

    def __new__(cls, symbol):
        hit = cls._interned.get(symbol)
        if hit is None:
            hit = cls._interned[symbol] = super().__new__(cls)
            hit.symbol = symbol
            if symbol.kind == "func":
                hit.what, hit.name = "function", f"function {symbol.value.qualname}"
            elif symbol.kind == "math":
                hit.what, hit.name = "function", f"function math.{symbol.value}"
            elif symbol.value in BY_NAME:
                hit.what, hit.name = "type", f"type {symbol.value}"
            else:
                hit.what, hit.name = "function", f"function gpuaot.{symbol.value}"
        return hit

    def __reduce__(self):
        return (ValueArg, (self.symbol,))

    @property
    def key(self) -> str:
        """The value in the symbol: a kind letter and its name (``fpkg.mod.helper``,
        ``msqrt``, ``gatomic_add``, ``gu32``), distinct for distinct values."""
        s = self.symbol
        kind = {"func": "f", "math": "m"}.get(s.kind, "g")
        return kind + (s.value.qualname if s.kind == "func" else str(s.value))


def plain_value(name: str, t: Type) -> Type:
    """A variable read as a value: a :class:`ValueArg` can only be called or passed on."""
    if isinstance(t, ValueArg):
        raise Reject(
            f"'{name}' holds the {t.name}; it can be called or passed on, not used as a value"
        )
    return t
