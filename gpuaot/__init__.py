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

# Exports resolve on first use (PEP 562): `gpuaot check-leaks` and other commands that need
# no kernel language start without importing numpy.
_EXPORTS = {
    **dict.fromkeys(["device", "device_only", "host", "kernel", "overlay"], "lang.decorators"),
    **dict.fromkeys(
        [
            "WARP_SIZE",
            "activemask",
            "all_sync",
            "any_sync",
            "atomic_add",
            "atomic_and",
            "atomic_cas",
            "atomic_dec",
            "atomic_exch",
            "atomic_inc",
            "atomic_max",
            "atomic_min",
            "atomic_nanmax",
            "atomic_nanmin",
            "atomic_or",
            "atomic_sub",
            "atomic_xor",
            "ballot_sync",
            "block_dim",
            "block_idx",
            "brev",
            "cbrt",
            "clz",
            "eq_sync",
            "ffs",
            "fma",
            "grid",
            "grid_dim",
            "grid_size",
            "grid_sync",
            "lane_id",
            "lanemask_lt",
            "local_array",
            "match_all_sync",
            "match_any_sync",
            "popc",
            "selp",
            "shared_array",
            "shfl_down",
            "shfl_down_sync",
            "shfl_sync",
            "shfl_up_sync",
            "shfl_xor",
            "shfl_xor_sync",
            "syncthreads",
            "syncthreads_and",
            "syncthreads_count",
            "syncthreads_or",
            "syncwarp",
            "this_grid",
            "thread_idx",
            "threadfence",
            "threadfence_block",
            "threadfence_system",
        ],
        "lang.intrinsics",
    ),
    **dict.fromkeys(
        [
            "Array",
            "c64",
            "c128",
            "complex64",
            "complex128",
            "f16",
            "f32",
            "f64",
            "float16",
            "float32",
            "float64",
            "i8",
            "i16",
            "i32",
            "i64",
            "int8",
            "int16",
            "int32",
            "int64",
            "u8",
            "u16",
            "u32",
            "u64",
            "uint8",
            "uint16",
            "uint32",
            "uint64",
        ],
        "lang.types",
    ),
    **dict.fromkeys(
        ["BundleError", "BundleNotFoundError", "StaleBundleError", "UnsupportedCPUError"],
        "runtime.errors",
    ),
}


def __getattr__(name: str):
    if name == "bool_":
        from .lang.types import boolean

        return boolean
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gpuaot' has no attribute '{name}'")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS, "bool_"])


__version__ = "0.1.0"

__all__ = sorted([*_EXPORTS, "bool_"])
