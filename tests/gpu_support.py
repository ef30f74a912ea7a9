"""Helpers for GPU-side tests: a real CUDA device or a clean skip, and tiny device arrays.

The device arrays (:mod:`gpuaot.runtime.devicearray`) speak ``__cuda_array_interface__`` over
cuda-python's driver API, so the GPU tests need neither CuPy nor PyTorch.
"""

from __future__ import annotations

import ctypes
import functools

import pytest

from gpuaot.runtime.devicearray import DeviceArray, cuda_unavailable

gpu_reason = functools.cache(cuda_unavailable)


requires_gpu = pytest.mark.skipif(gpu_reason() is not None, reason=str(gpu_reason()))


__all__ = ["DeviceArray", "gpu_reason", "requires_gpu", "ctypes"]
