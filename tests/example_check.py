"""Every kernel and host function of a built fixtures/example, on tiny inputs, against numpy.

    PYTHONPATH=PARENT_OF_EXAMPLE:REPO python example_check.py     # under qemu-x86_64 -cpu X
    python example_check.py shipkern                              # the same package, renamed
                                                                  # (installed from a wheel)

Prints ``level <the CPU variant bound>``, a line per function, and ``ok N/N``; exits 0 when
all match, 1 on a mismatch, 3 when the bundle has no variant this CPU can run (the error's
message printed after ``unsupported:``, once for a launch and once for a host call). Small
arrays: qemu is slow.
"""

from __future__ import annotations

import importlib
import sys

import numpy as np

from gpuaot.runtime.bundle import load_bundle
from gpuaot.runtime.errors import UnsupportedCPUError

NAME = sys.argv[1] if len(sys.argv) > 1 else "example"
example = importlib.import_module(NAME)


def fused(level: str) -> bool:
    """Whether the bound variant may contract a*b+c into an FMA (the default, as nvcc does)."""
    variants = load_bundle(NAME).manifest["cpu_variants"]
    return any(v["level"] == level and "fma" in v["requires"] for v in variants)


def agrees(out, ref, scale: float) -> bool:
    """numpy's (unfused) result exactly where the variant has no FMA; else within a rounding
    of the products, which a fused multiply-add skips (``scale``: their magnitude)."""
    if not fused(load_bundle(NAME).cpu_level):
        return np.array_equal(out, ref)
    eps = np.finfo(ref.dtype).eps
    return np.allclose(out, ref, rtol=eps, atol=eps * scale)


def checks(rng):
    n = 203
    x, y = rng.random(n, dtype=np.float32), rng.random(n, dtype=np.float32)
    out = np.zeros_like(x)
    example.saxpy[(n + 63) // 64, 64](np.float32(2.0), x, y, out)
    yield "saxpy", agrees(out, np.float32(2.0) * x + y, 2.0)

    a, b = rng.random((19, 13), dtype=np.float32), rng.random((13, 11), dtype=np.float32)
    c = np.zeros((19, 11), np.float32)
    example.matmul[(3, 2), (8, 8)](a, b, c)
    yield "matmul", np.allclose(c, a @ b, rtol=1e-5, atol=1e-6)

    u = rng.random((21, 34), dtype=np.float32)
    s = np.zeros_like(u)
    example.stencil5[(3, 2), (16, 16)](u, s)
    ref = np.zeros_like(u)
    half = np.float32(example.SCALE / 5)
    ref[1:-1, 1:-1] = (
        half * (u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) - u[1:-1, 1:-1]
    )
    yield "stencil5", agrees(s, ref, 4.0)

    rows = rng.random((37, 29), dtype=np.float32)
    sums = np.zeros(37, np.float32)
    example.row_sums[2, 32](rows, sums)
    yield "row_sums", np.allclose(sums, rows.sum(axis=1), rtol=1e-5)

    w = rng.standard_normal((20, 18), dtype=np.float32)
    sc = rng.random(20, dtype=np.float32)
    soft = np.zeros_like(w)
    example.scale_rows[(2, 2), (16, 16)](w, sc, soft)
    yield "scale_rows", np.allclose(soft, np.log1p(np.exp(w * sc[:, None])), rtol=1e-5, atol=1e-6)

    v = rng.random(301)
    acc = 0.0
    for e in v.tolist():
        acc += e * e
    # 301 products summed: a fused step skips one rounding of each (all terms are positive)
    yield "dot", agrees(np.asarray(example.dot(v, v)), np.asarray(acc), len(v) * acc)
    root = np.sqrt(acc)
    yield "norm2", agrees(np.asarray(example.norm2(v)), np.asarray(root), len(v) * root)


def main() -> int:
    rng = np.random.default_rng(7)
    try:
        results = list(checks(rng))
    except UnsupportedCPUError as e:
        print(f"unsupported: {e}")
        try:  # a host call says the same, and nothing has run
            example.dot(np.zeros(3), np.zeros(3))
        except UnsupportedCPUError as e2:
            print(f"unsupported: {e2}")
        return 3
    print(f"level {load_bundle(NAME).cpu_level}")
    for name, ok in results:
        print(f"{name} {'ok' if ok else 'MISMATCH'}")
    good = sum(1 for _, ok in results if ok)
    print(f"ok {good}/{len(results)}")
    return 0 if good == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
