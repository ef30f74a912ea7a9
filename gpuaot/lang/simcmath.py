"""``cmath`` as kernels see it under ``simulate``: a c64 (or f32) argument gives a c64 result.

    shim = CMATH
    shim.exp(np.complex64(1j))        # np.complex64(0.5403023+0.84147096j)
    shim.phase(np.complex64(1j))      # np.float32(1.5707964)
    shim.polar(np.complex64(1j))      # (np.float32(1.0), np.float32(1.5707964))

Python's cmath computes in double; as the ``math`` shim keeps f32 as f32, this one rounds the
result of a single-precision argument back to c64 (its reals to f32), the types the compiled
code computes in. Everything else is Python's ``cmath`` itself. (:func:`shim` builds this one
and simulate's ``math``.)
"""

from __future__ import annotations

import cmath
import types

import numpy as np

_NARROW = (np.complex64, np.float32)


def _narrow(args) -> bool:
    """Every argument single precision or a plain Python number, at least one numpy one."""
    plain = (int, float, complex)
    return any(isinstance(a, _NARROW) for a in args) and all(
        isinstance(a, _NARROW) or (isinstance(a, plain) and not isinstance(a, bool)) for a in args
    )


def _to_narrow(v):
    if isinstance(v, complex):
        return np.complex64(v)
    if isinstance(v, float):
        return np.float32(v)
    if isinstance(v, tuple):
        return tuple(_to_narrow(i) for i in v)
    return v  # a bool


def _keep_c64(fn):
    def wrapped(*args):
        result = fn(*args)
        return _to_narrow(result) if _narrow(args) else result

    wrapped.__name__ = fn.__name__
    return wrapped


def shim(module: types.ModuleType, wrap, unwrapped=()) -> tuple[types.ModuleType, dict]:
    """``module`` as kernels see it under simulate: each function wrapped by ``wrap`` (but
    those named in ``unwrapped``); and the id of each original function -> its twin (for
    ``from module import fn``)."""
    out = types.ModuleType(module.__name__)
    twins: dict[int, object] = {}
    for name in dir(module):
        obj = getattr(module, name)
        if callable(obj):
            twins[id(obj)] = obj = obj if name in unwrapped else wrap(obj)
        setattr(out, name, obj)
    return out, twins


CMATH, CMATH_FUNCS = shim(cmath, _keep_c64)
