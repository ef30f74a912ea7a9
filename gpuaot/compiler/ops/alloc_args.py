"""The arguments of ``shared_array`` and ``local_array``: the element type and the shape.

    ga.local_array(f32, (4, 4))               # gpuaot's order: (dtype, shape)
    ga.local_array((4, 4), f32)               # numba's order: (shape, dtype)
    ga.local_array(shape=(4, 4), dtype=f32)   # numba's keywords, in any order
    ga.shared_array(TILE, dtype=nbtype)       # TILE = 16; nbtype = f32 at module level

The order of two positional arguments is read from them: a type is never a shape, so the
one that names a scalar type is the dtype. A shape is a constant int or tuple of ints:
literals, module-level constants and function-local constants (:mod:`..frontend.local_consts`).
"""

from __future__ import annotations

import ast

from ...lang.types import BY_NAME, Scalar
from ..frontend.local_consts import static_value
from ..frontend.rules import Reject
from ..frontend.typed import ValueArg

KEYWORDS = ("dtype", "shape")
ALLOCATORS = ("local_array", "shared_array")


def takes_keywords(tc, node: ast.Call) -> bool:
    """Whether the call is to an allocator (whose keywords :func:`dtype_and_shape` reads)."""
    sym = tc.pkg.resolve_expr(tc.mod, node.func)
    return sym is not None and sym.kind == "gpuaot" and sym.value in ALLOCATORS


def dtype_of(tc, node: ast.expr) -> Scalar | None:
    """The scalar type ``node`` names (``f32``, ``ga.float32``, a module-level alias, a
    parameter given a type), or None."""
    if isinstance(node, ast.Name) and node.id in tc.var_types:
        t = tc.var_types[node.id]  # a helper's parameter given a type: local_array(dt, 4)
        sym = t.symbol if isinstance(t, ValueArg) else None
    else:
        sym = tc.pkg.resolve_expr(tc.mod, node)
    if sym is None or sym.kind != "gpuaot" or sym.value not in BY_NAME:
        return None
    return BY_NAME[sym.value]


def dtype_and_shape(tc, node: ast.Call, name: str) -> tuple[Scalar, tuple]:
    """(dtype, shape) of an allocator call; a shape entry that is not a constant int is None."""
    given = {}
    for kw in node.keywords:
        if kw.arg not in KEYWORDS:
            shown = "**" if kw.arg is None else f"'{kw.arg}'"
            raise Reject(f"{name}() takes no keyword {shown}", "its keywords are shape= and dtype=")
        given[kw.arg] = kw.value
    args = list(node.args)
    if len(args) + len(given) != 2:
        raise Reject(
            f"{name}() takes (dtype, shape)", "or numba's (shape, dtype), or shape=, dtype="
        )
    if len(args) == 2:
        if dtype_of(tc, args[0]) is None and dtype_of(tc, args[1]) is not None:
            args.reverse()  # numba's order
        given["dtype"], given["shape"] = args
    elif args:
        given["shape" if "dtype" in given else "dtype"] = args[0]
    dtype = dtype_of(tc, given["dtype"])
    if dtype is None:
        which = "first argument" if args and given["dtype"] is args[0] else "dtype"
        raise Reject(
            f"the {which} of {name}() must be a gpuaot scalar type",
            f"e.g. {name}(f32, 16) or {name}(shape=16, dtype=f32)",
        )
    value = static_value(tc.pkg, tc.func, given["shape"])
    items = value if isinstance(value, tuple) else (value,)
    return dtype, tuple(v if type(v) is int else None for v in items)
