"""Foreign device arrays (SPEC §3): ``__cuda_array_interface__`` and DLPack read into one view,
checked here over host memory, with numpy as the oracle of pointers, shapes and strides (its
own ``__dlpack__`` capsule is parsed, not a fake). The GPU launch itself needs a device
(tests/test_gpu_runtime.py, bench/gpu_check.py); here the arguments stop at the driver."""

from __future__ import annotations

import numpy as np
import pytest

from gpuaot.bundle.abi import array_abi, scalar_abi
from gpuaot.bundle.manifest import Param
from gpuaot.runtime import arrays
from gpuaot.runtime.args import device_of, marshal


class HostCAI:
    """``__cuda_array_interface__`` over a numpy array's memory (as CuPy writes it)."""

    def __init__(self, a: np.ndarray, strides: bool = True):
        self.a = a
        self.__cuda_array_interface__ = {
            "shape": a.shape,
            "typestr": a.dtype.str,
            "data": (a.ctypes.data, False),
            "version": 3,
            "strides": a.strides if strides and not a.flags.c_contiguous else None,
        }


class HostDLPack:
    """Only DLPack, with numpy's capsule, claiming a CUDA device (as JAX arrays do)."""

    def __init__(self, a: np.ndarray, device=(arrays.KDL_CUDA, 0)):
        self.a, self.device = a, device

    def __dlpack__(self, stream=None):
        return self.a.__dlpack__()

    def __dlpack_device__(self):
        return self.device


BASE = np.arange(6 * 8, dtype=np.float32).reshape(6, 8)
VIEWS = {
    "contiguous": BASE,
    "rows": BASE[::2],
    "cols": BASE[:, 1::3],
    "transposed": BASE.T,
    "reversed": BASE[:, ::-1],
    "offset": BASE[2:, 3:],
}


@pytest.mark.parametrize("kind", ["cai", "dlpack"])
@pytest.mark.parametrize("view", VIEWS, ids=list(VIEWS))
def test_views_match_numpy(kind, view):
    a = VIEWS[view]
    obj = HostCAI(a) if kind == "cai" else HostDLPack(a)
    v = arrays.device_view(obj)
    assert v.ptr == a.ctypes.data
    assert v.shape == a.shape and v.strides == a.strides and v.dtype == a.dtype
    assert v.c_contiguous == a.flags.c_contiguous
    assert arrays.dtype_ndim(obj) == (a.dtype, a.ndim)
    assert arrays.is_cuda_array(obj)


@pytest.mark.parametrize("dtype", ["i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f4", "f8", "?"])
def test_dlpack_dtypes(dtype):
    a = np.zeros(5, dtype=dtype)
    assert arrays.device_view(HostDLPack(a)).dtype == a.dtype


def test_a_cpu_dlpack_object_is_not_a_cuda_array():
    assert not arrays.is_cuda_array(HostDLPack(BASE, device=(arrays.KDL_CPU, 0)))
    assert not arrays.is_cuda_array(BASE)  # numpy has __dlpack__ too


def _params(layout: str) -> tuple[Param, ...]:
    """``(x: Array[f32, 2, layout], s: f32)`` as a manifest records it."""
    x = Param("x", f"Array[f32, 2, {layout!r}]", tuple(array_abi(2, layout)), "f32", 2, layout)
    return (x, Param("s", "f32", tuple(scalar_abi("f32"))))


@pytest.mark.parametrize("kind", ["cai", "dlpack"])
def test_gpu_marshalling_passes_strides_for_A_and_refuses_views_as_C(kind):
    wrap = HostCAI if kind == "cai" else HostDLPack
    view = BASE[:, 1::3]
    vals = marshal("k", _params("A"), (wrap(view), 2.0), device="gpu")
    assert [v.value for v in vals] == [view.ctypes.data, *view.shape, *view.strides, 2.0]
    vals = marshal("k", _params("C"), (wrap(BASE), 2.0), device="gpu")
    assert [v.value for v in vals] == [BASE.ctypes.data, 6, 8, 2.0]
    with pytest.raises(TypeError, match="argument 'x' is not C-contiguous"):
        marshal("k", _params("C"), (wrap(view), 2.0), device="gpu")


def test_mixed_devices_are_refused():
    with pytest.raises(TypeError, match="mix CUDA and numpy arrays"):
        device_of("k", (HostDLPack(BASE), BASE))
    assert device_of("k", (HostCAI(BASE), 1.0)) == "gpu"
    assert device_of("k", (BASE, np.float32(1))) == "cpu"


def test_malformed_interfaces_are_type_errors():
    class Bad:
        __cuda_array_interface__ = {"shape": (3,), "data": (0, False)}  # no typestr

    with pytest.raises(TypeError, match="malformed __cuda_array_interface__"):
        arrays.device_view(Bad())
    assert arrays.dtype_ndim(Bad()) == (None, None)

    class NotCapsule:
        def __dlpack__(self, stream=None):
            return object()

    with pytest.raises(TypeError, match="did not return a 'dltensor' capsule"):
        arrays.device_view(NotCapsule())
