"""Function-local constants: a name bound once, by a plain assignment, to a constant.

    n = 4
    SHAPE = (n, 2 * n)
    a = ga.local_array(f32, SHAPE)      # static_value(typer, SHAPE) -> (4, 8)

A name is a local constant when the function assigns it exactly once, as the whole target
of an ``=`` statement (not a parameter, a loop variable, an ``+=`` or an unpacking), and the
value folds (:meth:`..discover.Package.fold`) to a number or a tuple of numbers, reading
module-level constants and other local constants. Only what must be known at compile time
reads these (an array's shape); the variable itself is still typed and stored as any other.
"""

from __future__ import annotations

import ast
import weakref

from ..discover import NOT_LOCAL, UNFOLDABLE, FuncInfo

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # FuncInfo -> _bindings


def _bindings(func: FuncInfo) -> tuple[dict[str, ast.expr], set[str]]:
    """(name -> its one assigned value, every name the function binds)."""
    hit = _CACHE.get(func)
    if hit is not None:
        return hit
    counts: dict[str, int] = {}
    for n in ast.walk(func.node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            counts[n.id] = counts.get(n.id, 0) + 1
    bound = set(counts) | {a.arg for a in func.params}
    once: dict[str, ast.expr] = {}
    for n in ast.walk(func.node):
        if (
            isinstance(n, ast.Assign)
            and len(n.targets) == 1
            and isinstance(n.targets[0], ast.Name)
            and counts.get(n.targets[0].id) == 1
            and n.targets[0].id not in {a.arg for a in func.params}
        ):
            once[n.targets[0].id] = n.value
    _CACHE[func] = (once, bound)
    return once, bound


def static_value(pkg, func: FuncInfo, node: ast.expr):
    """The compile-time value of ``node`` in ``func`` (module and local constants), or
    :data:`UNFOLDABLE`."""
    once, bound = _bindings(func)
    active: set[str] = set()

    def local(name: str):
        if name not in bound:
            return NOT_LOCAL
        if name not in once or name in active:
            return UNFOLDABLE
        active.add(name)
        try:
            return pkg.fold(func.module, once[name], local)
        finally:
            active.discard(name)

    return pkg.fold(func.module, node, local)
