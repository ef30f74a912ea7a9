"""Device arrays from other libraries: ``__cuda_array_interface__`` and DLPack, read as one view.

    v = device_view(cupy_array)        # or a torch CUDA tensor, a numba device array, ...
    v.ptr, v.shape, v.strides, v.dtype # strides in bytes, always filled in

CuPy, PyTorch and numba expose ``__cuda_array_interface__`` (version 2/3: ``data``,
``shape``, ``typestr``, optional ``strides`` in bytes, None meaning C-contiguous); JAX and
others only DLPack (``__dlpack__()`` returns a ``"dltensor"`` capsule of a
``DLManagedTensor``; ``__dlpack_device__()`` its (device type, id)). The interface is
preferred where both exist: it costs no capsule. A capsule that is read but not consumed
calls its deleter when it is collected, which is the protocol's rule for a borrow: the
producer's array (the launch argument) keeps the memory alive meanwhile.

Plain ctypes over the capsule: no compiler, no driver needed to read a view.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

KDL_CPU, KDL_CUDA, KDL_CUDA_HOST, KDL_CUDA_MANAGED = 1, 2, 3, 13
CUDA_DEVICES = (KDL_CUDA, KDL_CUDA_HOST, KDL_CUDA_MANAGED)


@dataclass(frozen=True)
class DeviceView:
    ptr: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]  # bytes
    dtype: np.dtype
    c_contiguous: bool
    device: tuple[int, int]  # DLPack (device type, id)


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


_CAPSULE_GET = ctypes.pythonapi.PyCapsule_GetPointer
_CAPSULE_GET.restype = ctypes.c_void_p
_CAPSULE_GET.argtypes = [ctypes.py_object, ctypes.c_char_p]
_CAPSULE_VALID = ctypes.pythonapi.PyCapsule_IsValid
_CAPSULE_VALID.restype = ctypes.c_int
_CAPSULE_VALID.argtypes = [ctypes.py_object, ctypes.c_char_p]

# DLPack type codes: kDLInt, kDLUInt, kDLFloat, kDLBfloat (4), kDLComplex (5), kDLBool (6).
_DL_KINDS = {0: "i", 1: "u", 2: "f", 5: "c", 6: "b"}


def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    out, acc = [], itemsize
    for s in reversed(shape):
        out.append(acc)
        acc *= s
    return tuple(reversed(out))


def _contiguous(shape, strides, itemsize) -> bool:
    """C-contiguous as numpy judges it: dimensions of extent 1 may have any stride."""
    want = _c_strides(shape, itemsize)
    return all(n <= 1 or s == w for n, s, w in zip(shape, strides, want))


def has_interface(a) -> bool:
    return hasattr(a, "__cuda_array_interface__") or hasattr(a, "__dlpack__")


def dlpack_device(a) -> tuple[int, int] | None:
    dev = getattr(a, "__dlpack_device__", None)
    if dev is None:
        return None
    try:
        t, i = dev()
        return int(t), int(i)
    except Exception:  # noqa: BLE001 - a foreign object's method
        return None


def is_cuda_array(a) -> bool:
    if hasattr(a, "__cuda_array_interface__"):
        return True
    if isinstance(a, np.ndarray):
        return False
    dev = dlpack_device(a)
    return dev is not None and dev[0] in CUDA_DEVICES


def device_view(a) -> DeviceView:
    """The view of an array object; TypeError when it speaks neither interface."""
    cai = getattr(a, "__cuda_array_interface__", None)
    if cai is not None:
        return _from_cai(cai)
    if hasattr(a, "__dlpack__"):
        return _from_dlpack(a)
    raise TypeError(f"{type(a).__name__} has neither __cuda_array_interface__ nor __dlpack__")


def dtype_ndim(a) -> tuple[np.dtype | None, int | None]:
    """(dtype, ndim) of any array argument, or (None, None) for something else."""
    if isinstance(a, np.ndarray):
        return a.dtype, a.ndim
    cai = getattr(a, "__cuda_array_interface__", None)
    if cai is not None:
        try:
            return np.dtype(cai["typestr"]), len(cai["shape"])
        except (KeyError, TypeError, ValueError):
            return None, None
    if hasattr(a, "__dlpack__"):
        try:
            v = _from_dlpack(a)
        except (TypeError, ValueError, BufferError):
            return None, None
        return v.dtype, len(v.shape)
    return None, None


def _from_cai(cai: dict) -> DeviceView:
    try:
        ptr = int(cai["data"][0] or 0)
        shape = tuple(int(s) for s in cai["shape"])
        dtype = np.dtype(cai["typestr"])
        strides = cai.get("strides")
        strides = tuple(int(s) for s in strides) if strides is not None else None
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise TypeError(f"malformed __cuda_array_interface__: {e}") from None
    if strides is None:
        strides = _c_strides(shape, dtype.itemsize)
        contiguous = True
    else:
        contiguous = _contiguous(shape, strides, dtype.itemsize)
    return DeviceView(ptr, shape, strides, dtype, contiguous, (KDL_CUDA, 0))


def _from_dlpack(a) -> DeviceView:
    capsule = a.__dlpack__()
    if not _CAPSULE_VALID(capsule, b"dltensor"):
        raise TypeError(f"{type(a).__name__}.__dlpack__() did not return a 'dltensor' capsule")
    t = _DLTensor.from_address(_CAPSULE_GET(capsule, b"dltensor"))
    kind = _DL_KINDS.get(t.dtype.code)
    if kind is None or t.dtype.lanes != 1 or t.dtype.bits % 8:
        raise TypeError(
            f"DLPack dtype (code {t.dtype.code}, {t.dtype.bits} bits, {t.dtype.lanes} lanes) "
            "has no gpuaot type"
        )
    dtype = np.dtype(f"{kind}{t.dtype.bits // 8}") if kind != "b" else np.dtype(bool)
    ndim = int(t.ndim)
    shape = tuple(int(t.shape[k]) for k in range(ndim))
    if t.strides:
        strides = tuple(int(t.strides[k]) * dtype.itemsize for k in range(ndim))
    else:
        strides = _c_strides(shape, dtype.itemsize)
    ptr = int(t.data or 0) + int(t.byte_offset)
    device = (int(t.device.device_type), int(t.device.device_id))
    del capsule  # not consumed: its destructor returns the borrow
    return DeviceView(
        ptr, shape, strides, dtype, _contiguous(shape, strides, dtype.itemsize), device
    )
