"""Arrays a kernel allocates: ``shared_array`` (a block's, GPU only) and ``local_array``.

    ga.local_array(f32, (4, 4))  -> intr.local_array: Array[f32, 2]; zeroed stack memory
    ga.shared_array(f32, 256)    -> intr.shared_array: Array[f32, 1]; an addrspace(3) global

The element type and the constant shape are the call's data (``Builtin.data``).
"""

from __future__ import annotations

import ast

from ...lang.types import BY_NAME, array_of
from ..frontend.rules import Reject
from .registry import BASE, Op, Typed, declare


def _type_alloc(tc, node, name):
    if len(node.args) != 2:
        raise Reject(f"{name}() takes (dtype, shape)")
    dsym = tc.pkg.resolve_expr(tc.mod, node.args[0])
    if dsym is None or dsym.kind != "gpuaot" or dsym.value not in BY_NAME:
        raise Reject(f"the first argument of {name}() must be a gpuaot scalar type")
    shape_node = node.args[1]
    if isinstance(shape_node, ast.Tuple):
        shape = tuple(tc.static_int(e) for e in shape_node.elts)
    else:
        shape = (tc.static_int(shape_node),)
    if not 1 <= len(shape) <= 3 or any(s is None or s <= 0 for s in shape):
        raise Reject(
            f"{name}() needs a constant positive shape of 1 to 3 dimensions",
            "e.g. shared_array(f32, 256) or local_array(f32, (4, 4))",
        )
    dtype = BY_NAME[dsym.value]
    return Typed(array_of(dtype, len(shape), "C"), (dtype, shape))


def _lower_local(fl, node, call, rt):
    return fl.em.local_array(fl.b, fl.alloca_builder, *call.data)


def _lower_shared(fl, node, call, rt):
    return fl.em.shared_array(fl.b, *call.data)


declare(
    Op(
        "intr.local_array",
        "gpuaot",
        ("local_array",),
        _type_alloc,
        {BASE: _lower_local},
        "intrinsics.local_array",
    )
)
declare(
    Op(
        "intr.shared_array",
        "gpuaot",
        ("shared_array",),
        _type_alloc,
        {"gpu": _lower_shared},
        "intrinsics.shared_array",
    )
)
