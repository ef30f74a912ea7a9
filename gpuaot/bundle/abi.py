"""The ABI the compiler and the run time share: how a parameter travels, the exception
record, the entry points' symbols and the bundle's sections. Plain Python (no llvmlite, no
numpy), so the run time imports it as cheaply as the compiler.

    >>> array_abi(2, "C"), array_abi(2, "A"), scalar_abi("f32")
    (['ptr', 'i64', 'i64'], ['ptr', 'i64', 'i64', 'i64', 'i64'], ['f32'])
    >>> cpu_kernel_symbol("example__kernels__saxpy"), variant_symbol("gpuaot_host_m__f", "x86_64_v3")
    ('gpuaot_cpu_example__kernels__saxpy', 'gpuaot_host_m__f.x86_64_v3')
    >>> EXC_RECORD_FIELDS.index("site"), EXC_RECORD_BYTES
    (1, 64)

**Parameters.** A scalar is one value of its own type. An array is its data pointer, then
its extent along each axis (``i64``), then, for a strided (``"A"``) array only, its stride
along each axis in bytes (``i64``). The CPU entry reads them from ``void **args`` in that
order (the GPU's ``kernelParams`` layout, one pointer per value), and the manifest records
each parameter's list as its ``abi``.

**The exception record.** :data:`EXC_RECORD_WORDS` ``int64`` words, in the order of
:data:`EXC_RECORD_FIELDS`: word 0 is nonzero once a thread has raised (the first writer
wins), word 1 the raise site's index in the manifest's ``sites``, then the raising thread's
index and its block's index. On the GPU it is the ``addrspace(1)`` global
:data:`EXC_RECORD`, which the run time clears before and reads after each launch; on the CPU
the launcher passes it as the entry's last argument.

**Entry points.** A kernel's CPU entry is ``void gpuaot_cpu_<name>.<level tag>(void **args,
int64_t *dims, int64_t begin, int64_t end, int64_t *exc)``, ``dims`` holding
:data:`CPU_DIMS`, the blocks ``[begin, end)`` run by this call; a host function is
``void gpuaot_host_<name>.<level tag>(void **args, void *ret, int64_t *exc)``; ``<name>`` is
``frontend.names``'s mangled name. Inside, every body takes :data:`CPU_HIDDEN_PARAMS` after
its own parameters. A GPU kernel is the ``.entry`` ``<name>_s<spec>``.
"""

from __future__ import annotations

# ---------------------------------------------------------------------- parameters

DATA_POINTER = "ptr"  # an array's first value
EXTENT = "i64"  # each shape and stride value
STRIDED_LAYOUT = "A"  # the layout whose strides travel too; "C" arrays are contiguous


def array_abi(ndim: int, layout: str) -> list[str]:
    """The values of an array parameter: data pointer, shape, and strides if strided."""
    return [DATA_POINTER] + [EXTENT] * ndim * (2 if layout == STRIDED_LAYOUT else 1)


def scalar_abi(type_name: str) -> list[str]:
    """The values of a scalar parameter: itself."""
    return [type_name]


# ---------------------------------------------------------------------- the exception record

EXC_RECORD = "gpuaot_exception_record"
EXC_RECORD_FIELDS = ("status", "site", "tid.x", "tid.y", "tid.z", "bid.x", "bid.y", "bid.z")
EXC_RECORD_WORDS = len(EXC_RECORD_FIELDS)
EXC_RECORD_BYTES = 8 * EXC_RECORD_WORDS  # int64 words

# ---------------------------------------------------------------------- entry points

CPU_KERNEL_PREFIX = "gpuaot_cpu_"
HOST_FUNCTION_PREFIX = "gpuaot_host_"
# The CPU entry's ``dims`` argument: the grid's size in blocks, then the block's in threads.
CPU_DIMS = ("grid.x", "grid.y", "grid.z", "block.x", "block.y", "block.z")
# What every CPU body takes after its own parameters: the exception record, then the
# thread's index, its block's, the block's size and the grid's (each x, y, z; i64).
CPU_HIDDEN_PARAMS = tuple(
    "exc tid.x tid.y tid.z bid.x bid.y bid.z bdim.x bdim.y bdim.z gdim.x gdim.y gdim.z".split()
)


def cpu_kernel_symbol(name: str) -> str:
    """A kernel's CPU entry before the level's suffix (see :func:`variant_symbol`)."""
    return f"{CPU_KERNEL_PREFIX}{name}"


def host_function_symbol(name: str) -> str:
    """A host function's entry before the level's suffix."""
    return f"{HOST_FUNCTION_PREFIX}{name}"


def variant_symbol(base: str, tag: str) -> str:
    """A CPU entry in the variant of the level with symbol tag ``tag``
    (``gpuaot_cpu_m__k.x86_64_v3``, as GCC names ``target_clones``)."""
    return f"{base}.{tag}"


# ---------------------------------------------------------------------- the bundle's ELF

MANIFEST_SECTION = ".gpuaot.manifest"
FATBIN_SECTION = ".nv_fatbin"  # FATBIN_DATA_SECTION_NAME in CUDA's fatbinary_section.h
FATBIN_WRAPPER_SECTION = ".nvFatBinSegment"  # FATBIN_CONTROL_SECTION_NAME
MANIFEST_SYMBOL = "gpuaot_manifest"
MANIFEST_SIZE_SYMBOL = "gpuaot_manifest_size"
FATBIN_SYMBOL = "gpuaot_fatbin"
FATBIN_SIZE_SYMBOL = "gpuaot_fatbin_size"
FATBIN_WRAPPER_SYMBOL = "__gpuaot_fatbin_wrapper"
CPU_PROBE_SYMBOL = "gpuaot_rt_cpuid"  # the run time's CPU feature probe in the bundle
POOL_PREFIX = "gpuaot_rt_pool_"  # the CPU worker pool (compiler.targets.cpu.pool)
# What the bundle exports (a version-script pattern each); everything else stays local.
EXPORTED = (
    f"{CPU_KERNEL_PREFIX}*",
    f"{HOST_FUNCTION_PREFIX}*",
    f"{MANIFEST_SYMBOL}*",
    f"{FATBIN_SYMBOL}*",
    CPU_PROBE_SYMBOL,
    f"{POOL_PREFIX}*",
)
