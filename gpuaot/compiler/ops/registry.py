"""The operation declaration and its lookup: one :class:`Op` per operation kernels can use.

    op = lookup("gpuaot", "popc")          # what ``ga.popc(x)`` means
    op.key, op.simulate                    # ('intr.popc', 'intrinsics.popc')
    op.typing(typer, node, "popc")         # the result type (or rules.Reject)
    op.lowering("gpu")(fl, node, call, rt) # the llvmlite value, built through fl.em

An op is declared once, in the family module of this package that holds it; the typer, the
lowering, the method tables (:mod:`..methods`) and the simulate checks read it from here. Its
``lower`` maps a target to its lowering: ``"base"`` means one lowering on every target (the
base table), ``"cpu"``/``"gpu"`` a target's own (its overlay); a target it does not name has
no meaning for it, which typing reports as a located error naming the call chain.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ...lang.types import Type

BASE = "base"
TARGETS = ("cpu", "gpu")
# The lowering of an op built in place by the statement or expression that uses it (a raise
# site, ``a.shape``), not through a call: it is in the tables, but no call lowers it.
IN_PLACE = "in place"


@dataclass(frozen=True)
class Typed:
    """What a typing rule returns when the call's type is not all: the call's ``Builtin``
    data (a cast's target type, ``grid``'s rank) or ``folded`` (the call became a constant,
    nothing is left to lower)."""

    type: Type
    data: object = None
    folded: bool = False


@dataclass(frozen=True)
class Op:
    key: str  # the method-table key: "math.sqrt", "intr.popc", "atomic.add", "builtin.abs"
    namespace: str | None  # builtin, math, gpuaot or attribute; None: internal, no spelling
    names: tuple[str, ...]  # its spellings there: ("sqrt",), ("thread_idx.x",), every cast type
    typing: Callable | None  # (typer, node, name) -> Type | Typed, raising rules.Reject
    lower: Mapping[str, Callable | str]  # "base" | "cpu" | "gpu" -> (fl, node, call, rt) -> value
    simulate: str | None = None  # "intrinsics.X", "math.X", "builtins.X" ({name}: the spelling)
    info: Mapping = field(default_factory=dict)  # family details (a math function's kind, arity)

    @property
    def spelling(self) -> str:
        """How a kernel writes it: ``ga.popc``, ``math.sqrt``, ``abs``, ``thread_idx.x``."""
        prefix = {"math": "math.", "cmath": "cmath.", "gpuaot": "ga."}.get(self.namespace or "", "")
        return prefix + self.names[0] if self.names else self.key

    def lowering(self, target: str) -> Callable:
        fn = self.lower.get(target, self.lower.get(BASE))
        if not callable(fn):  # pragma: no cover - the typer lets only available ops through
            raise KeyError(f"'{self.key}' has no {target} lowering called by name")
        return fn


_OPS: dict[str, Op] = {}
_NAMES: dict[tuple[str, str], Op] = {}


def declare(op: Op) -> Op:
    if op.key in _OPS:
        raise ValueError(f"operation {op.key} is declared twice")
    if set(op.lower) - {BASE, *TARGETS} or (BASE in op.lower and len(op.lower) > 1):
        raise ValueError(f"{op.key}: lower names 'base' alone, or targets of {TARGETS}")
    _OPS[op.key] = op
    for name in op.names:
        if (op.namespace, name) in _NAMES:
            raise ValueError(f"{op.namespace}.{name} is declared twice")
        _NAMES[(op.namespace, name)] = op
    return op


def lookup(namespace: str, name: str) -> Op | None:
    """The op kernels spell ``name`` in ``namespace`` (``("math", "sqrt")``), or None."""
    return _NAMES.get((namespace, name))


def get(key: str) -> Op:
    return _OPS[key]


def all_ops() -> list[Op]:
    return list(_OPS.values())


def table_keys(table: str) -> set[str]:
    """The keys a method table holds: ``"base"``, or a target's overlay."""
    return {k for k, op in _OPS.items() if table in op.lower}
