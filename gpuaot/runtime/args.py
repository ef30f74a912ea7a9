"""Arguments against the manifest: which specialisation a call picks, and the flat ABI values.

    spec = select_specialization("pkg.k.saxpy", kernel, (np.float32(2), x, y, out))
    marshal("pkg.k.saxpy", spec.params, args)      # [c_float(2.0), c_void_p(x), c_int64(n), ...]
    pointer_array(values)                          # the kernelParams array of pointers

Wrong dtype, rank, layout or arity is a ``TypeError`` naming the argument, before anything
runs. Both backends share the flat layout (``bundle/abi.py``); the CPU's fast path
(``runtime.cpu``) flattens the common cases itself and falls back to :func:`marshal`.
"""

from __future__ import annotations

import ctypes

import numpy as np

from ..bundle.abi import STRIDED_LAYOUT
from ..bundle.manifest import Kernel, Param, Specialization
from ..lang.types import BY_NAME
from . import arrays
from .ccomplex import C64, C128
from .half import CHalf

_CTYPES = {
    "c64": C64,
    "c128": C128,
    "bool": ctypes.c_bool,
    "i8": ctypes.c_int8,
    "i16": ctypes.c_int16,
    "i32": ctypes.c_int32,
    "i64": ctypes.c_int64,
    "u8": ctypes.c_uint8,
    "u16": ctypes.c_uint16,
    "u32": ctypes.c_uint32,
    "u64": ctypes.c_uint64,
    "f32": ctypes.c_float,
    "f64": ctypes.c_double,
    "f16": CHalf,  # its 16 bits (runtime/half.py)
}


_PLAIN_SCALARS = (bool, int, float, complex)


def device_of(name: str, args) -> str:
    cuda = host = False
    for a in args:
        if type(a) is np.ndarray:  # the common cases first: no attribute probing
            host = True
        elif type(a) in _PLAIN_SCALARS or isinstance(a, np.generic):
            continue
        else:
            cuda = cuda or arrays.is_cuda_array(a)
            host = host or isinstance(a, np.ndarray)
    if cuda and host:
        raise TypeError(f"{name}: arguments mix CUDA and numpy arrays; move them to one device")
    return "gpu" if cuda else "cpu"


# id(params) -> (params, (arity, [(index, dtype, ndim) of each array parameter])): per
# parameter list of a loaded manifest (a specialisation's, a host function's)
_matchers: dict[int, tuple[tuple[Param, ...], tuple]] = {}


def _matcher(params: tuple[Param, ...]):
    hit = _matchers.get(id(params))
    if hit is not None and hit[0] is params:
        return hit[1]
    arrays = [(k, BY_NAME[p.dtype].np_dtype, p.ndim) for k, p in enumerate(params) if p.is_array]
    m = (len(params), arrays)
    if len(_matchers) > 4096:  # bundles rebuilt and reloaded in one process (tests)
        _matchers.clear()
    _matchers[id(params)] = (params, m)
    return m


def _matches(params: tuple[Param, ...], args) -> bool:
    m = _matcher(params)
    if m[0] != len(args):
        return False
    for k, dtype, ndim in m[1]:
        a = args[k]
        if type(a) is np.ndarray:
            dt, nd = a.dtype, a.ndim
        else:
            dt, nd = arrays.dtype_ndim(a)
        if dt is None or dt != dtype or nd != ndim:
            return False
    return True


def select_specialization(name: str, entry: Kernel, args) -> Specialization:
    """The first of ``entry``'s specialisations the arguments match; else a ``TypeError``
    that says which argument is wrong (one specialisation) or what was compiled."""
    specs = entry.specializations
    for s in specs:
        if _matches(s.params, args):
            return s
    _refuse(name, [s.params for s in specs], args)


def check_arguments(name: str, params: tuple[Param, ...], args) -> None:
    """A host function's arguments against its one parameter list: the same check, and the
    same ``TypeError``, as a kernel with one specialisation gets."""
    if not _matches(params, args):
        _refuse(name, [params], args)


def _refuse(name: str, lists: list[tuple[Param, ...]], args):
    params = lists[0] if lists else ()
    if len(args) != len(params):
        raise TypeError(f"{name}() takes {len(params)} arguments, got {len(args)}")
    if len(lists) == 1:
        for p, a in zip(params, args):
            if p.is_array:
                dt, nd = arrays.dtype_ndim(a)
                if dt is None:
                    raise TypeError(
                        f"{name}(): argument '{p.name}' must be an array "
                        f"({p.type}), got {type(a).__name__}"
                    )
                want = BY_NAME[p.dtype].np_dtype
                if dt != want:
                    raise TypeError(
                        f"{name}(): argument '{p.name}' has dtype {dt}, expected {want} ({p.type})"
                    )
                if nd != p.ndim:
                    raise TypeError(
                        f"{name}(): argument '{p.name}' has {nd} dimensions, "
                        f"expected {p.ndim} ({p.type})"
                    )
    sigs = "; ".join("(" + ", ".join(p.type for p in ps) + ")" for ps in lists)
    got = ", ".join(_describe(a) for a in args)
    raise TypeError(f"{name}(): no specialisation matches ({got}); compiled: {sigs}")


def _describe(a) -> str:
    dt, nd = arrays.dtype_ndim(a)
    if dt is not None:
        return f"{dt}[{nd}-D]"
    return type(a).__name__


def marshal(name: str, params: tuple[Param, ...], args, *, device: str = "cpu"):
    """Flat values for the kernel ABI (``bundle/abi.py``): ctypes objects, kept alive by the
    returned list."""
    values: list = []
    for p, a in zip(params, args):
        if p.is_array:
            values.extend(_array_parts(name, p, a, device))
        else:
            values.append(_scalar(name, p, a))
    return values


def _scalar(name: str, p: Param, a):
    if isinstance(a, (np.ndarray,)) or arrays.is_cuda_array(a):
        raise TypeError(f"{name}(): argument '{p.name}' must be a {p.type} scalar, got an array")
    t = BY_NAME[p.type]
    if not isinstance(a, (bool, int, float, complex, np.number, np.bool_)):
        raise TypeError(
            f"{name}(): argument '{p.name}' must be a number ({p.type}), got {type(a).__name__}"
        )
    if t.is_int and isinstance(a, (float, np.floating)):
        raise TypeError(f"{name}(): argument '{p.name}' is {p.type}; got a float")
    if isinstance(a, (complex, np.complexfloating)) and not t.is_complex:
        raise TypeError(f"{name}(): argument '{p.name}' is {p.type}; got a complex")
    if _CTYPES[p.type] is CHalf:
        return CHalf.of(t(a))
    if t.is_complex:
        z = t(a).item()
        return _CTYPES[p.type](z.real, z.imag)
    return _CTYPES[p.type](t(a).item())


def _array_parts(name: str, p: Param, a, device: str) -> list:
    """Data pointer, shape, and strides if strided: ``abi.array_abi``'s values."""
    if device == "cpu":
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name}(): argument '{p.name}' must be a numpy array")
        ptr, shape, strides = a.ctypes.data, a.shape, a.strides
        contiguous = a.flags.c_contiguous
    else:
        v = arrays.device_view(a)
        ptr, shape, strides, contiguous = v.ptr, v.shape, v.strides, v.c_contiguous
    strided = p.layout == STRIDED_LAYOUT
    if not strided and not contiguous and any(s > 1 for s in shape):
        raise TypeError(
            f"{name}(): argument '{p.name}' is not C-contiguous; pass a "
            f'contiguous copy or declare it Array[{p.dtype}, {p.ndim}, "A"]'
        )
    parts = [ctypes.c_void_p(ptr)] + [ctypes.c_int64(s) for s in shape]
    if strided:
        parts += [ctypes.c_int64(s) for s in strides]
    return parts


def pointer_array(values: list) -> ctypes.Array:
    arr = (ctypes.c_void_p * max(1, len(values)))()
    for k, v in enumerate(values):
        arr[k] = ctypes.cast(ctypes.byref(v), ctypes.c_void_p)
    return arr
