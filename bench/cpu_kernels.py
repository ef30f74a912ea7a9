"""gpuaot's CPU backend against numpy, side by side, in one run, for every CPU level.

    python bench/cpu_kernels.py                 # build bench/kernels_pkg, check, time, table
    python bench/cpu_kernels.py --repeat 15     # more runs per measurement (median kept)
    python bench/cpu_kernels.py --strict        # exit 1 when a kernel misses its target

The kernels (``bench/kernels_pkg``) are built once, into a temporary directory with a fresh
compilation cache, so the numbers always describe the compiler in this tree. Each result is
checked against numpy before anything is timed. Every measurement is the median of ``--repeat``
runs (``time.perf_counter``) after a warm-up of at least 3 runs and 50 ms.

The bundle is built with the default CPU levels and ``native``; each kernel is timed in
every variant this CPU runs (``GPUAOT_CPU`` pins one): "default" is the variant a bundle
built with the default levels runs here (the highest it can), and default/native says what
shipping a portable bundle costs against ``-march=native`` code. The variants are the same
objects a default build links (same IR, same target machine per level).

``GPUAOT_NUM_THREADS`` sets the CPU backend's thread count (default: the usable cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PKG_DIR = HERE / "kernels_pkg"


def build(out: Path) -> None:
    """``gpuaot build bench/kernels_pkg --no-gpu --cpu <defaults>,native --out OUT``
    (fresh cache: no stale objects)."""
    from gpuaot.bundle import cpus
    from gpuaot.compiler.driver import BuildOptions, build_package

    levels = [*cpus.DEFAULTS.get(cpus.machine(), ()), cpus.NATIVE]
    opts = BuildOptions.resolve(
        str(PKG_DIR),
        out_dir=str(out),
        cache_dir=str(out / "cache"),
        no_gpu=True,
        cpu_levels=",".join(levels),
    )
    result = build_package(opts)
    if result.leaks:
        raise SystemExit(f"the bench bundle {result.bundle} failed the leak check")
    os.environ["GPUAOT_BUNDLE_PATH"] = str(out)


def runnable_levels() -> tuple[list[str], str]:
    """The bundle's levels this CPU runs (lowest first), and the default bundle's pick."""
    from gpuaot.runtime import bundle as rb
    from gpuaot.runtime.cpu_variant import cpu_features

    b = rb.load_bundle("kernels_pkg")
    have = cpu_features(b.lib)
    levels = [v["level"] for v in b.manifest["cpu_variants"] if set(v["requires"]) <= have]
    named = [lv for lv in levels if lv != "native"]
    return levels, named[-1]


def use_level(level: str) -> None:
    """Bind the ``level`` variant: as ``GPUAOT_CPU=level`` in a new process would."""
    from gpuaot.runtime import bundle as rb

    os.environ["GPUAOT_CPU"] = level
    rb.forget("kernels_pkg")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median_ms(fn, repeat: int, warmup_runs: int = 3, warmup_s: float = 0.05) -> float:
    """Median of ``repeat`` timed runs, after a warm-up of at least 3 runs and 50 ms.

    The warm-up is timed rather than counted because on a VM an idle core takes a few
    launches (about 2 ms) to come back to speed, which a fast kernel's first runs would show.
    """
    t_end = time.perf_counter() + warmup_s
    k = 0
    while k < warmup_runs or time.perf_counter() < t_end:
        fn()
        k += 1
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


EPS = float(np.finfo(np.float32).eps)


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


# ---------------------------------------------------------------------- cases
#
# Each case returns (numpy callable, gpuaot callable, check callable, size text, target,
# launch configuration text).
# The gpuaot callable launches into a preallocated output; numpy evaluates the expression
# as a user writes it.


def case_saxpy(kp, n: int = 10**7):
    rng = np.random.default_rng(0)
    a = np.float32(2.5)
    x = rng.standard_normal(n, dtype=np.float32)
    y = rng.standard_normal(n, dtype=np.float32)
    out = np.zeros(n, dtype=np.float32)
    threads = 1024
    launch = kp.saxpy[cdiv(n, threads), threads]

    def check():
        out[:] = 0
        launch(a, x, y, out)
        # FMA contraction (the default): within a rounding of the product
        scale = float(np.abs(a * x).max())
        np.testing.assert_allclose(out, a * x + y, rtol=EPS, atol=EPS * scale)

    return (
        (lambda: a * x + y),
        (lambda: launch(a, x, y, out)),
        check,
        f"{n:.0e}".replace("+0", ""),
        1.25,
        f"[{cdiv(n, threads)}, {threads}]",
    )


def stencil_numpy(u: np.ndarray, out: np.ndarray) -> None:
    out[1:-1, 1:-1] = (
        0.25 * (u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) - u[1:-1, 1:-1]
    )


def case_stencil(kp, n: int = 2048):
    rng = np.random.default_rng(1)
    u = rng.standard_normal((n, n), dtype=np.float32)
    out = np.zeros((n, n), dtype=np.float32)
    ref = np.zeros((n, n), dtype=np.float32)
    bx, by = 256, 4
    launch = kp.stencil5[(cdiv(n, bx), cdiv(n, by)), (bx, by)]

    def check():
        out[:] = 0
        launch(u, out)
        stencil_numpy(u, ref)
        scale = float(np.abs(u).max())  # 0.25 * (4 terms) - u: one product to fuse
        np.testing.assert_allclose(out, ref, rtol=EPS, atol=EPS * scale)

    cfg = f"[({cdiv(n, bx)}, {cdiv(n, by)}), ({bx}, {by})]"
    return (lambda: stencil_numpy(u, ref)), (lambda: launch(u, out)), check, f"{n}²", 1.25, cfg


def case_row_sums(kp, n: int = 4096):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, n), dtype=np.float32)
    out = np.zeros(n, dtype=np.float32)
    threads = 64
    launch = kp.row_sums[cdiv(n, threads), threads]

    def check():
        out[:] = 0
        launch(x, out)
        # Different summation orders: compare against float64 sums, scaled by the row's mass.
        exact = x.astype(np.float64).sum(axis=1)
        scale = np.abs(x).astype(np.float64).sum(axis=1)
        assert np.all(np.abs(out - exact) <= 1e-5 * scale), "row_sums differs from numpy"

    cfg = f"[{cdiv(n, threads)}, {threads}]"
    return (lambda: x.sum(axis=1)), (lambda: launch(x, out)), check, f"{n}²", None, cfg


def case_matmul(kp, n: int = 512):
    rng = np.random.default_rng(3)
    A = rng.standard_normal((n, n), dtype=np.float32)
    B = rng.standard_normal((n, n), dtype=np.float32)
    C = np.zeros((n, n), dtype=np.float32)
    bx, by = 64, 4
    launch = kp.matmul[(cdiv(n, bx), cdiv(n, by)), (bx, by)]

    def check():
        C[:] = 0
        launch(A, B, C)
        exact = A.astype(np.float64) @ B.astype(np.float64)
        scale = np.abs(A).astype(np.float64) @ np.abs(B).astype(np.float64)
        assert np.all(np.abs(C - exact) <= 1e-5 * scale), "matmul differs from numpy"

    cfg = f"[({cdiv(n, bx)}, {cdiv(n, by)}), ({bx}, {by})]"
    return (lambda: A @ B), (lambda: launch(A, B, C)), check, f"{n}²", None, cfg


CASES = {
    "saxpy": case_saxpy,
    "stencil5": case_stencil,
    "row_sums": case_row_sums,
    "matmul": case_matmul,
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=9, help="timed runs per measurement (>= 7)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("cases", nargs="*", help=f"cases to run: {', '.join(CASES)} [all]")
    args = ap.parse_args(argv)
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    repeat = max(7, args.repeat)

    with tempfile.TemporaryDirectory(prefix="gpuaot-bench-") as tmp:
        t0 = time.perf_counter()
        build(Path(tmp))
        build_s = time.perf_counter() - t0
        sys.path.insert(0, str(HERE))
        import kernels_pkg as kp

        from gpuaot.runtime.cpu import _workers

        print(f"CPU: {cpu_name()} ({os.cpu_count()} logical CPUs)")
        print(
            f"gpuaot threads: {_workers()} (GPUAOT_NUM_THREADS to change); numpy "
            f"{np.__version__}; Python {platform.python_version()}"
        )
        levels, default = runnable_levels()
        print(f"build: {build_s:.2f} s; median of {repeat} runs after warm-up")
        print(f"CPU levels run here: {', '.join(levels)}; a default bundle runs {default}\n")
        heads = " | ".join(f"{lv} ms" for lv in levels)
        print(f"| kernel | size | numpy ms | {heads} | default/native | gpuaot/numpy | target |")
        print("|---|---|---:|" + "---:|" * len(levels) + "---:|---:|---|")
        missed, launches = [], []
        for name in args.cases or CASES:
            np_fn, ga_fn, check, size, target, cfg = CASES[name](kp)
            launches.append(f"{name}{cfg}")
            t_np = median_ms(np_fn, repeat)
            times = {}
            for lv in levels:
                use_level(lv)
                check()
                times[lv] = median_ms(ga_fn, repeat)
            t_ga = times[default]
            ratio = t_ga / t_np
            if target is None:
                verdict = "—"
            elif ratio <= target:
                verdict = f"≤ {target}× ok"
            else:
                verdict = f"≤ {target}× MISSED"
                missed.append(name)
            vs_native = f"{t_ga / times['native']:.2f}×" if "native" in times else "—"
            cols = " | ".join(f"{times[lv]:.3f}" for lv in levels)
            print(
                f"| {name} | {size} | {t_np:.3f} | {cols} | {vs_native} | {ratio:.2f}× "
                f"| {verdict} |",
                flush=True,
            )
    print(f"\nlaunches: {'; '.join(launches)}")
    print("numpy: elementwise operations on one core; A @ B through its BLAS (threaded)")
    if missed:
        print(f"missed: {', '.join(missed)}")
    return 1 if (missed and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
