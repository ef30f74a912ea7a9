"""Kernels timed by ``bench/cpu_kernels.py`` (and checked by ``tests/test_cpu_codegen.py``).

Each is written as a GPU kernel would be. ``stencil5`` (``j, i = ga.grid(2)``: x follows the
column) and ``stencil5_ij`` (``i, j``: x follows the row) are the same computation; the CPU
backend picks the thread loop order that walks memory contiguously for both.
"""

from .kernels import empty, histogram, matmul, row_sums, saxpy, stencil5, stencil5_ij, total

__all__ = [
    "empty",
    "histogram",
    "matmul",
    "row_sums",
    "saxpy",
    "stencil5",
    "stencil5_ij",
    "total",
]
