import gpuaot as ga
from gpuaot import Array, f32, i64


@ga.kernel
def saxpy(a: f32, x: Array[f32], y: Array[f32], out: Array[f32]):
    i = ga.grid(1)
    if i < x.shape[0]:
        out[i] = a * x[i] + y[i]


@ga.kernel
def stencil5(u: Array[f32, 2], out: Array[f32, 2]):
    j, i = ga.grid(2)
    n, m = u.shape
    if 0 < i < n - 1 and 0 < j < m - 1:
        out[i, j] = 0.25 * (u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1]) - u[i, j]


@ga.kernel
def row_sums(x: Array[f32, 2], out: Array[f32]):
    i = ga.grid(1)
    if i < x.shape[0]:
        acc = f32(0)
        for j in range(x.shape[1]):
            acc += x[i, j]
        out[i] = acc


@ga.kernel
def matmul(A: Array[f32, 2], B: Array[f32, 2], C: Array[f32, 2]):
    col, row = ga.grid(2)
    if row < C.shape[0] and col < C.shape[1]:
        acc = f32(0)
        for k in range(A.shape[1]):
            acc += A[row, k] * B[k, col]
        C[row, col] = acc


@ga.kernel
def empty(x: Array[f32]):
    """Nothing: the GPU check times the launch overhead with it."""
    pass


@ga.kernel
def stencil5_ij(u: Array[f32, 2], out: Array[f32, 2]):
    """``stencil5`` written as most numba-cuda code is: x follows the row."""
    i, j = ga.grid(2)
    n, m = u.shape
    if 0 < i < n - 1 and 0 < j < m - 1:
        out[i, j] = 0.25 * (u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1]) - u[i, j]


@ga.kernel
def histogram(x: Array[f32], bins: Array[i64]):
    """Values in [0, 1) counted into ``bins.shape[0]`` bins; the old counts are unused."""
    i = ga.grid(1)
    if i < x.shape[0]:
        k = i64(x[i] * bins.shape[0])
        if 0 <= k < bins.shape[0]:
            ga.atomic_add(bins, k, 1)


@ga.kernel
def total(x: Array[f32], out: Array[f32]):
    """Every value added into one cell."""
    i = ga.grid(1)
    if i < x.shape[0]:
        ga.atomic_add(out, 0, x[i])
