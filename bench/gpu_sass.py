"""SASS of the benchmark kernels for sm_80, offline: gpuaot with ``fma=False``, gpuaot's
default (``fma=True``) and, where numba-cuda is installed, numba-cuda's PTX for the same
kernels; every PTX assembled by the same ptxas, counted with ``cuobjdump -sass``
(instructions, FFMA) and ``cuobjdump -res-usage`` (registers).

    .venv/bin/python bench/gpu_sass.py [--arch sm_80] [--bench-python .venv-bench/bin/python]

numba pins llvmlite, so numba + numba-cuda live in a separate venv (``.venv-bench``, git-
ignored: ``python3 -m venv .venv-bench && .venv-bench/bin/pip install 'numba-cuda[cu12]'``);
its ``compile_ptx`` runs there in a subprocess. Without it the numba columns say "-".
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# (label, package directory, module, function); numba's twins are in NUMBA_SRC by label.
KERNELS = [
    ("saxpy", "bench/kernels_pkg", "kernels", "saxpy"),
    ("stencil5 (bench)", "bench/kernels_pkg", "kernels", "stencil5"),
    ("stencil5 (example)", "fixtures/example", "kernels", "stencil5"),
    ("matmul (naive)", "bench/kernels_pkg", "kernels", "matmul"),
    ("block_sum", "fixtures/gpu_features", "kernels", "block_sum"),
    ("warp_sum", "fixtures/gpu_features", "kernels", "warp_sum"),
    ("histogram", "fixtures/gpu_features", "kernels", "histogram"),
    ("stencil5 i, j", "bench/sass_pkg", "kernels", "stencil5_ij"),
    ("matmul (tiled)", "bench/sass_pkg", "kernels", "matmul_tiled"),
    ("atomic sum", "bench/sass_pkg", "kernels", "atomic_sum"),
    ("transcendental", "bench/sass_pkg", "kernels", "transcendental"),
]

NUMBA_SRC = r"""
import json, math, sys
from numba import cuda, float32, int32, int64

THREADS = 128
TILE = 16

def saxpy(a, x, y, out):
    i = cuda.grid(1)
    if i < x.shape[0]:
        out[i] = a * x[i] + y[i]

def stencil5(u, out):
    j, i = cuda.grid(2)
    n, m = u.shape
    if 0 < i < n - 1 and 0 < j < m - 1:
        out[i, j] = float32(0.25) * (u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1]) - u[i, j]

def matmul(A, B, C):
    col, row = cuda.grid(2)
    if row < C.shape[0] and col < C.shape[1]:
        acc = float32(0)
        for k in range(A.shape[1]):
            acc += A[row, k] * B[k, col]
        C[row, col] = acc

def block_sum(x, out):
    buf = cuda.shared.array(THREADS, float32)
    t = cuda.threadIdx.x
    i = cuda.grid(1)
    buf[t] = x[i] if i < x.shape[0] else float32(0)
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step:
            buf[t] += buf[t + step]
        cuda.syncthreads()
        step //= 2
    if t == 0:
        out[cuda.blockIdx.x] = buf[0]

def warp_sum(x, out):
    i = cuda.grid(1)
    v = x[i] if i < x.shape[0] else float32(0)
    offset = 16
    while offset > 0:
        v += cuda.shfl_down_sync(0xFFFFFFFF, v, offset)
        offset //= 2
    if cuda.laneid == 0:
        out[i // 32] = v

def histogram(x, bins):
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < x.shape[0]:
        b = x[i] % bins.shape[0]
        cuda.atomic.add(bins, b, 1)
        i += stride

def stencil5_ij(u, out):
    i, j = cuda.grid(2)
    n, m = u.shape
    if 0 < i < n - 1 and 0 < j < m - 1:
        out[i, j] = float32(0.25) * (u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1]) - u[i, j]

def matmul_tiled(A, B, C):
    sa = cuda.shared.array((TILE, TILE), float32)
    sb = cuda.shared.array((TILE, TILE), float32)
    col, row = cuda.grid(2)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    n = A.shape[1]
    acc = float32(0)
    for t in range((n + TILE - 1) // TILE):
        k = t * TILE
        sa[ty, tx] = A[row, k + tx] if row < A.shape[0] and k + tx < n else float32(0)
        sb[ty, tx] = B[k + ty, col] if k + ty < n and col < B.shape[1] else float32(0)
        cuda.syncthreads()
        for q in range(TILE):
            acc += sa[ty, q] * sb[q, tx]
        cuda.syncthreads()
    if row < C.shape[0] and col < C.shape[1]:
        C[row, col] = acc

def atomic_sum(x, out):
    i = cuda.grid(1)
    if i < x.shape[0]:
        cuda.atomic.add(out, 0, x[i])

def transcendental(x, out):
    i = cuda.grid(1)
    if i < x.shape[0]:
        v = x[i]
        out[i] = math.exp(-v * v) * math.sin(v) + math.log(float32(1) + v * v) * math.cos(v) + (
            math.sqrt(abs(v)) * math.tanh(v)
        )

f1, f2 = float32[::1], float32[:, ::1]
JOBS = {
    "saxpy": (saxpy, (float32, f1, f1, f1)),
    "stencil5 (bench)": (stencil5, (f2, f2)),
    "stencil5 (example)": (stencil5, (f2, f2)),
    "matmul (naive)": (matmul, (f2, f2, f2)),
    "block_sum": (block_sum, (f1, f1)),
    "warp_sum": (warp_sum, (f1, f1)),
    "histogram": (histogram, (int32[::1], int64[::1])),
    "stencil5 i, j": (stencil5_ij, (f2, f2)),
    "matmul (tiled)": (matmul_tiled, (f2, f2, f2)),
    "atomic sum": (atomic_sum, (f1, f1)),
    "transcendental": (transcendental, (f1, f1)),
}
cc = tuple(int(c) for c in sys.argv[1])
out = {}
for label, (fn, sig) in JOBS.items():
    try:
        out[label] = cuda.compile_ptx(fn, sig, cc=cc)[0]
    except Exception as e:  # one kernel numba cannot take does not hide the others
        out[label] = {"error": f"{type(e).__name__}: {e}"}
json.dump(out, sys.stdout)
"""


def gpuaot_ptx(pkg_dir: str, module: str, fn: str, arch: str, fma: bool) -> str:
    """The kernel's PTX as a build makes it, with the build's ``fma`` switch."""
    from gpuaot.compiler.discover import discover
    from gpuaot.compiler.driver import BuildOptions, type_units
    from gpuaot.compiler.targets import gpu
    from gpuaot.compiler.targets.nvptx import compile_ptx
    from gpuaot.errors import Diagnostics

    opts = BuildOptions.resolve(str(REPO / pkg_dir), no_cpu=True, no_fma=not fma, arch=arch)
    diag = Diagnostics()
    units, _ = type_units(discover(str(opts.root), diag), opts, "gpu", diag)
    diag.raise_if_any()
    (unit,) = [u for u in units if u.func.qualname == f"{opts.name}.{module}.{fn}"]
    gpu.lower_gpu(unit)
    return compile_ptx(unit.ir, [unit.symbol], arch, fastmath=unit.fastmath, keep=[gpu.EXC_RECORD])


def sass_stats(ptx: str, arch: str) -> dict:
    """Instructions (NOPs and the final self-branch excluded), FFMA, registers."""
    from gpuaot.compiler.targets.nvtools import find_cuobjdump, ptx_to_cubin

    tool = find_cuobjdump()
    if tool is None:
        raise SystemExit("cuobjdump not found: pip install nvidia-cuda-cuobjdump")
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "k.cubin"
        cubin.write_bytes(ptx_to_cubin(ptx, arch))
        sass = _run([str(tool), "-sass", str(cubin)], "nvidia-cuda-nvdisasm")
        res = _run([str(tool), "-res-usage", str(cubin)], None)
    ops = re.findall(r"/\*[0-9a-f]{4}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", sass)
    body = [o for o in ops if not o.startswith("NOP")]
    while body and body[-1].startswith("BRA"):  # the trailing "BRA self" padding loop
        body.pop()
    regs = re.search(r"REG:(\d+)", res)
    return {
        "instrs": len(body),
        "ffma": sum(o.startswith("FFMA") for o in body),
        "regs": int(regs.group(1)) if regs else -1,
    }


def _run(cmd: list[str], wheel: str | None) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        hint = f" (pip install {wheel})" if wheel and "nvdisasm" in r.stderr else ""
        raise SystemExit(f"{' '.join(cmd)} failed{hint}:\n{r.stderr}")
    return r.stdout


def numba_ptx(python: Path, arch: str) -> dict | None:
    """numba-cuda's PTX per label, from the bench venv; None where it is not installed."""
    if not python.is_file():
        return None
    r = subprocess.run(
        [str(python), "-c", NUMBA_SRC, arch.removeprefix("sm_")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if r.returncode != 0:
        print(f"numba-cuda unavailable ({r.stderr.strip().splitlines()[-1:]})", file=sys.stderr)
        return None
    return json.loads(r.stdout)


def _cell(s: dict | None) -> str:
    return f"{s['instrs']} / {s['ffma']} / {s['regs']}" if s else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="sm_80")
    ap.add_argument("--bench-python", default=str(REPO / ".venv-bench" / "bin" / "python"))
    args = ap.parse_args()
    numba = numba_ptx(Path(args.bench_python), args.arch)
    print(f"SASS for {args.arch} (instructions / FFMA / registers; same ptxas for every column)\n")
    print(
        "| kernel | gpuaot fma=False | gpuaot default | numba-cuda | "
        "instrs default/numba | instrs fma=False/numba |"
    )
    print("|---|---|---|---|---|---|")
    for label, pkg_dir, module, fn in KERNELS:
        off = sass_stats(gpuaot_ptx(pkg_dir, module, fn, args.arch, fma=False), args.arch)
        on = sass_stats(gpuaot_ptx(pkg_dir, module, fn, args.arch, fma=True), args.arch)
        nb = None
        if numba is not None and isinstance(numba.get(label), str):
            nb = sass_stats(numba[label], args.arch)
        ratio_on = f"{on['instrs'] / nb['instrs']:.2f}x" if nb else "-"
        ratio_off = f"{off['instrs'] / nb['instrs']:.2f}x" if nb else "-"
        print(f"| {label} | {_cell(off)} | {_cell(on)} | {_cell(nb)} | {ratio_on} | {ratio_off} |")


if __name__ == "__main__":
    main()
