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

from ...lang.types import Type
from ..discover import FuncInfo
from .names import function_symbol


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
