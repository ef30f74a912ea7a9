"""Kernels timed by ``bench/cpu_kernels.py`` (and checked by ``tests/test_cpu_codegen.py``).

Each is written as a GPU kernel would be; on the CPU backend the x-thread loop is innermost,
so the x axis is the contiguous one wherever a kernel walks a 2-D array.
"""

from .kernels import empty, matmul, row_sums, saxpy, stencil5

__all__ = ["empty", "matmul", "row_sums", "saxpy", "stencil5"]
