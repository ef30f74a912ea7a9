"""Every operation kernels can use, declared once (:mod:`.registry`), by family.

    from gpuaot.compiler import ops
    ops.lookup("math", "sqrt").key          # 'math.sqrt'
    ops.table_keys("base")                  # what means the same on every target

:mod:`..methods` derives the method tables from these declarations, the typer types a call
with its op's rule, the lowering builds it with its op's lowering for the target, and
tests/test_ops_registry.py checks each op's simulate meaning exists in ``gpuaot.lang``.
"""

from __future__ import annotations

from . import (  # noqa: F401  (declare)
    alloc,
    atomics,
    bits,
    builtin,
    cmathfns,
    indexing,
    mathfns,
    select,
    warp,
)
from .registry import BASE, IN_PLACE, TARGETS, Op, Typed, all_ops, declare, get, lookup, table_keys

__all__ = [
    "BASE",
    "IN_PLACE",
    "TARGETS",
    "Op",
    "Typed",
    "all_ops",
    "declare",
    "get",
    "lookup",
    "table_keys",
]
