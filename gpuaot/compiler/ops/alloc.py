"""Arrays a kernel allocates: ``shared_array`` (a block's, GPU only) and ``local_array``.

    ga.local_array(f32, (4, 4))  -> intr.local_array: Array[f32, 2]; zeroed stack memory
    ga.shared_array(f32, 256)    -> intr.shared_array: Array[f32, 1]; an addrspace(3) global
    ga.shared_array(f32, 0)      -> the launch's dynamic shared memory (kernel[g, b, s, nbytes])

The element type and the constant shape are the call's data (``Builtin.data``).
"""

from __future__ import annotations

from ...lang.types import array_of
from ..frontend.rules import Reject
from .alloc_args import dtype_and_shape
from .registry import BASE, Op, Typed, declare


def _type_alloc(tc, node, name):
    dtype, shape = dtype_and_shape(tc, node, name)  # keywords, either order, constant names
    if name == "shared_array" and shape == (0,):  # dynamic: sized by the launch's nbytes
        return Typed(array_of(dtype, 1, "C"), (dtype, shape))
    if not 1 <= len(shape) <= 3 or any(s is None or s <= 0 for s in shape):
        raise Reject(
            f"{name}() needs a constant positive shape of 1 to 3 dimensions",
            "e.g. shared_array(f32, 256) or local_array(f32, (4, 4))",
        )
    return Typed(array_of(dtype, len(shape), "C"), (dtype, shape))


def _lower_local(fl, node, call, rt):
    return fl.em.local_array(fl.b, fl.alloca_builder, *call.data)


def _lower_shared(fl, node, call, rt):
    dtype, shape = call.data
    if shape == (0,):
        return fl.em.dynamic_shared_array(fl.b, dtype)
    return fl.em.shared_array(fl.b, dtype, shape)


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
