"""A minimal device array over the CUDA driver API: for checks and for users without CuPy.

    d = DeviceArray(np.arange(10, dtype=np.float32))   # cuMemAlloc + copy
    kernel[1, 32](d, ...)                               # __cuda_array_interface__
    d.get()                                             # back to numpy
    d.view(offset_bytes, shape, strides)                # a strided view, as CuPy's x[::2]

Only the driver (cuda-python's ``cuda.bindings.driver``, 12.x or 13.x) is needed.
"""

from __future__ import annotations

import numpy as np


def _driver():
    from .cuda import _driver as load

    return load()


def cuda_unavailable() -> str | None:
    """None when a CUDA GPU is usable here, else why not (one line)."""
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


class _View:
    """A strided window onto a DeviceArray's memory (keeps it alive)."""

    def __init__(self, base: DeviceArray, offset: int, shape, strides):
        self.base = base
        self.__cuda_array_interface__ = {
            "shape": tuple(shape),
            "typestr": base.dtype.str,
            "data": (int(base.ptr) + offset, False),
            "version": 3,
            "strides": tuple(strides),
        }


class DeviceArray:
    """A device copy of a numpy array (``cuMemAlloc``), readable back with ``get()``."""

    def __init__(self, host: np.ndarray):
        from .cuda import _check, _context, _init

        driver = self._driver = _driver()
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

    def view(self, offset: int, shape, strides) -> _View:
        return _View(self, offset, shape, strides)

    def get(self) -> np.ndarray:
        from .cuda import _check

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
