"""gpuaot: ahead-of-time compiled Python GPU kernels, shipped as one relocatable bundle.

    import gpuaot as ga
    from gpuaot import f32, Array

    @ga.kernel
    def saxpy(a: f32, x: Array[f32], y: Array[f32], out: Array[f32]):
        i = ga.grid(1)
        if i < x.shape[0]:
            out[i] = a * x[i] + y[i]

Importing gpuaot imports neither llvmlite nor any compiler module.
"""

from .lang.decorators import device, device_only, host, kernel, overlay
from .lang.intrinsics import (
    WARP_SIZE,
    atomic_add,
    atomic_cas,
    atomic_exch,
    atomic_max,
    atomic_min,
    atomic_sub,
    block_dim,
    block_idx,
    grid,
    grid_dim,
    grid_size,
    lane_id,
    local_array,
    shared_array,
    shfl_down,
    shfl_xor,
    syncthreads,
    thread_idx,
)
from .lang.types import (
    Array,
    f32,
    f64,
    float32,
    float64,
    i8,
    i16,
    i32,
    i64,
    int8,
    int16,
    int32,
    int64,
    u8,
    u16,
    u32,
    u64,
    uint8,
    uint16,
    uint32,
    uint64,
)
from .lang.types import boolean as bool_
from .runtime.errors import BundleNotFoundError, DeviceException, StaleBundleError

__version__ = "0.1.0"

__all__ = [
    "Array", "BundleNotFoundError", "DeviceException", "StaleBundleError", "WARP_SIZE",
    "atomic_add", "atomic_cas", "atomic_exch", "atomic_max", "atomic_min", "atomic_sub",
    "block_dim", "block_idx", "bool_", "device", "device_only", "f32", "f64", "float32",
    "float64", "grid", "grid_dim", "grid_size", "host", "i8", "i16", "i32", "i64", "int8",
    "int16", "int32", "int64", "kernel", "lane_id", "local_array", "overlay", "shared_array",
    "shfl_down", "shfl_xor", "syncthreads", "thread_idx", "u8", "u16", "u32", "u64", "uint8",
    "uint16", "uint32", "uint64",
]
