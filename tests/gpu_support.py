"""Helpers for GPU-side tests: a real CUDA device or a clean skip, and tiny device arrays.

The device arrays speak ``__cuda_array_interface__`` over cuda-python's driver API, so the GPU
tests need neither CuPy nor PyTorch.
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np
import pytest


@functools.cache
def gpu_reason() -> str | None:
    """None when a CUDA GPU is usable here, else why not."""
    try:
        from cuda.bindings import driver
    except ImportError:
        return "cuda-python is not installed"
    try:
        (err,) = driver.cuInit(0)
    except Exception as e:  # noqa: BLE001 - no driver library at all
        return f"no CUDA driver ({e})"
    if int(err) != 0:
        return f"no CUDA driver/GPU (cuInit: {err})"
    err, count = driver.cuDeviceGetCount()
    if int(err) != 0 or count == 0:
        return "no CUDA device"
    return None


requires_gpu = pytest.mark.skipif(gpu_reason() is not None, reason=str(gpu_reason()))


class DeviceArray:
    """A device copy of a numpy array (``cuMemAlloc``), readable back with ``get()``."""

    def __init__(self, host: np.ndarray):
        from cuda.bindings import driver

        from gpuaot.runtime.cuda import _check, _context, _init

        self._driver = driver
        _init(driver)
        _context(driver, 0)
        host = np.ascontiguousarray(host)
        self.shape, self.dtype = host.shape, host.dtype
        self.nbytes = max(1, host.nbytes)
        self.ptr = _check(driver, driver.cuMemAlloc(self.nbytes), "cuMemAlloc")
        if host.nbytes:
            _check(
                driver, driver.cuMemcpyHtoD(self.ptr, host.ctypes.data, host.nbytes), "cuMemcpyHtoD"
            )

    @property
    def __cuda_array_interface__(self) -> dict:
        return {
            "shape": self.shape,
            "typestr": self.dtype.str,
            "data": (int(self.ptr), False),
            "version": 3,
            "strides": None,
        }

    def get(self) -> np.ndarray:
        from gpuaot.runtime.cuda import _check

        out = np.empty(self.shape, self.dtype)
        if out.nbytes:
            _check(self._driver, self._driver.cuCtxSynchronize(), "cuCtxSynchronize")
            _check(
                self._driver,
                self._driver.cuMemcpyDtoH(out.ctypes.data, self.ptr, out.nbytes),
                "cuMemcpyDtoH",
            )
        return out

    def __del__(self):
        try:
            self._driver.cuMemFree(self.ptr)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


__all__ = ["DeviceArray", "gpu_reason", "requires_gpu", "ctypes"]
