import math

import gpuaot as ga
from gpuaot import Array, f32

TILE = 16


@ga.kernel
def stencil5_ij(u: Array[f32, 2], out: Array[f32, 2]):
    """The 5-point stencil as most numba-cuda code writes it: x follows the row."""
    i, j = ga.grid(2)
    n, m = u.shape
    if 0 < i < n - 1 and 0 < j < m - 1:
        out[i, j] = f32(0.25) * (u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1]) - u[i, j]


@ga.kernel
def matmul_tiled(A: Array[f32, 2], B: Array[f32, 2], C: Array[f32, 2]):
    """C = A @ B with TILE x TILE tiles of A and B in shared memory (GPU only)."""
    sa = ga.shared_array(f32, (TILE, TILE))
    sb = ga.shared_array(f32, (TILE, TILE))
    col, row = ga.grid(2)
    tx = ga.thread_idx.x
    ty = ga.thread_idx.y
    n = A.shape[1]
    acc = f32(0)
    for t in range((n + TILE - 1) // TILE):
        k = t * TILE
        sa[ty, tx] = A[row, k + tx] if row < A.shape[0] and k + tx < n else f32(0)
        sb[ty, tx] = B[k + ty, col] if k + ty < n and col < B.shape[1] else f32(0)
        ga.syncthreads()
        for q in range(TILE):
            acc += sa[ty, q] * sb[q, tx]
        ga.syncthreads()
    if row < C.shape[0] and col < C.shape[1]:
        C[row, col] = acc


@ga.kernel
def atomic_sum(x: Array[f32], out: Array[f32]):
    """Every value added into one cell."""
    i = ga.grid(1)
    if i < x.shape[0]:
        ga.atomic_add(out, 0, x[i])


@ga.kernel
def transcendental(x: Array[f32], out: Array[f32]):
    """A transcendental-heavy body: exp, log, sin, cos, sqrt, tanh."""
    i = ga.grid(1)
    if i < x.shape[0]:
        v = x[i]
        out[i] = (
            math.exp(-v * v) * math.sin(v)
            + math.log(f32(1) + v * v) * math.cos(v)
            + (math.sqrt(abs(v)) * math.tanh(v))
        )
