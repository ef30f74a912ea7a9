"""gpuaot's CPU backend against numba's ``@njit(parallel=True)`` and numpy, side by side.

    python bench/cpu_kernels.py                 # build bench/kernels_pkg, check, time, table
    python bench/cpu_kernels.py --rounds 15     # more alternating rounds (median kept)
    python bench/cpu_kernels.py --strict        # exit 1 when a kernel misses its target
    python bench/cpu_kernels.py saxpy total     # some cases only

The kernels (``bench/kernels_pkg``) are built once, into a temporary directory with a fresh
compilation cache, so the numbers always describe the compiler in this tree. Each result is
checked against numpy before anything is timed. A measurement is the median of ``--repeat``
runs (``time.perf_counter``) after a warm-up of at least 3 runs and 50 ms; each case runs
``--rounds`` rounds in which numba, numpy and every CPU level take turns, and each column is
the median over the rounds. gpuaot/numba is the median of the rounds' own ratios: a shared VM
slows whole stretches of time, and a ratio of two columns measured seconds apart would
report that rather than the code.

The bundle is built with the default CPU levels and ``native``; each kernel is timed in
every variant this CPU runs (``GPUAOT_CPU`` pins one): "default" is the variant a bundle
built with the default levels runs here (the highest it can), and default/native says what
shipping a portable bundle costs against ``-march=native`` code. The variants are the same
objects a default build links (same IR, same target machine per level).

numba's twins (``NUMBA_SRC``: ``prange`` loops as a numba user writes them, the histogram
with per-chunk counts) run in a subprocess of ``.venv-bench`` (numba pins llvmlite, so it
cannot share gpuaot's venv; ``--bench-python`` to point elsewhere), a server started once and
asked for each round's runs, on the same inputs and with as many threads as gpuaot, their
results checked by the same checks; without numba the numba columns say "-". numba is a
bench-only dependency, never needed by users. On a busy machine numba's parked workers wake
on scheduler ticks (its medians then sit at multiples of 4 ms): compare there with
``GPUAOT_NUM_THREADS=1`` (numba gets the same).

``GPUAOT_NUM_THREADS`` sets the CPU backend's thread count (default: the usable cores).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PKG_DIR = HERE / "kernels_pkg"
BENCH_PYTHON = HERE.parent / ".venv-bench" / "bin" / "python"


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
# Each case holds a numpy callable (the expression as a user writes it), a gpuaot callable
# that launches into preallocated outputs, the check of a result against numpy (for gpuaot
# and numba alike), and numba's twin with its inputs. Targets are (reference, bound) pairs:
# gpuaot's default variant at most ``bound`` times the reference (numpy, numba, or another
# case's gpuaot time).


@dataclass
class Case:
    np_fn: object
    ga_fn: object
    ga_result: object  # runs gpuaot once on fresh outputs, returns the result to check
    check: object  # result -> raises if it differs from numpy
    size: str
    cfg: str
    twin: str  # the function in NUMBA_SRC
    twin_args: list = field(default_factory=list)
    targets: list = field(default_factory=list)


def case_saxpy(kp, n: int = 10**7):
    rng = np.random.default_rng(0)
    a = np.float32(2.5)
    x = rng.standard_normal(n, dtype=np.float32)
    y = rng.standard_normal(n, dtype=np.float32)
    out = np.zeros(n, dtype=np.float32)
    threads = 1024
    launch = kp.saxpy[cdiv(n, threads), threads]

    def check(res):
        # FMA contraction (the default): within a rounding of the product
        scale = float(np.abs(a * x).max())
        np.testing.assert_allclose(res, a * x + y, rtol=EPS, atol=EPS * scale)

    def result():
        out[:] = 0
        launch(a, x, y, out)
        return out

    return Case(
        lambda: a * x + y,
        lambda: launch(a, x, y, out),
        result,
        check,
        f"{n:.0e}".replace("+0", ""),
        f"[{cdiv(n, threads)}, {threads}]",
        "saxpy",
        [a, x, y, np.zeros_like(out)],
        [("numba", 1.0), ("numpy", 1.25)],
    )


def stencil_numpy(u: np.ndarray, out: np.ndarray) -> None:
    out[1:-1, 1:-1] = (
        0.25 * (u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) - u[1:-1, 1:-1]
    )


def _stencil(kp, kernel: str, block: tuple[int, int], n: int, targets: list) -> Case:
    rng = np.random.default_rng(1)
    u = rng.standard_normal((n, n), dtype=np.float32)
    out = np.zeros((n, n), dtype=np.float32)
    ref = np.zeros((n, n), dtype=np.float32)
    bx, by = block
    # ``j, i = ga.grid(2)``: x walks the columns; ``i, j``: x walks the rows
    gx, gy = (cdiv(n, bx), cdiv(n, by))
    launch = getattr(kp, kernel)[(gx, gy), (bx, by)]

    def check(res):
        stencil_numpy(u, ref)
        scale = float(np.abs(u).max())  # 0.25 * (4 terms) - u: one product to fuse
        np.testing.assert_allclose(res, ref, rtol=EPS, atol=EPS * scale)

    def result():
        out[:] = 0
        launch(u, out)
        return out

    return Case(
        lambda: stencil_numpy(u, ref),
        lambda: launch(u, out),
        result,
        check,
        f"{n}²",
        f"[({gx}, {gy}), ({bx}, {by})]",
        "stencil5",
        [u, np.zeros_like(out)],
        targets,
    )


def case_stencil(kp, n: int = 2048):
    return _stencil(kp, "stencil5", (256, 4), n, [("numba", 1.0), ("numpy", 1.25)])


def case_stencil_ij(kp, n: int = 2048):
    return _stencil(kp, "stencil5_ij", (16, 16), n, [("numba", 1.0), ("stencil5", 1.25)])


def case_row_sums(kp, n: int = 4096):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, n), dtype=np.float32)
    out = np.zeros(n, dtype=np.float32)
    threads = 64
    launch = kp.row_sums[cdiv(n, threads), threads]

    def check(res):
        # Different summation orders: compare against float64 sums, scaled by the row's mass.
        exact = x.astype(np.float64).sum(axis=1)
        scale = np.abs(x).astype(np.float64).sum(axis=1)
        assert np.all(np.abs(res - exact) <= 1e-5 * scale), "row_sums differs from numpy"

    def result():
        out[:] = 0
        launch(x, out)
        return out

    return Case(
        lambda: x.sum(axis=1),
        lambda: launch(x, out),
        result,
        check,
        f"{n}²",
        f"[{cdiv(n, threads)}, {threads}]",
        "row_sums",
        [x, np.zeros_like(out)],
    )


def case_matmul(kp, n: int = 512):
    rng = np.random.default_rng(3)
    A = rng.standard_normal((n, n), dtype=np.float32)
    B = rng.standard_normal((n, n), dtype=np.float32)
    C = np.zeros((n, n), dtype=np.float32)
    bx, by = 64, 4
    launch = kp.matmul[(cdiv(n, bx), cdiv(n, by)), (bx, by)]

    def check(res):
        exact = A.astype(np.float64) @ B.astype(np.float64)
        scale = np.abs(A).astype(np.float64) @ np.abs(B).astype(np.float64)
        assert np.all(np.abs(res - exact) <= 1e-5 * scale), "matmul differs from numpy"

    def result():
        C[:] = 0
        launch(A, B, C)
        return C

    return Case(
        lambda: A @ B,
        lambda: launch(A, B, C),
        result,
        check,
        f"{n}²",
        f"[({cdiv(n, bx)}, {cdiv(n, by)}), ({bx}, {by})]",
        "matmul",
        [A, B, np.zeros_like(C)],
    )


def case_histogram(kp, n: int = 10**7, nbins: int = 256):
    rng = np.random.default_rng(4)
    x = rng.random(n, dtype=np.float32)
    bins = np.zeros(nbins, dtype=np.int64)
    threads = 256
    launch = kp.histogram[cdiv(n, threads), threads]

    def counts():  # the kernel's binning: int(x * nbins), x in [0, 1)
        return np.bincount((x * np.float32(nbins)).astype(np.int64), minlength=nbins)

    expected = counts()

    def check(res):
        np.testing.assert_array_equal(res, expected)

    def result():
        bins[:] = 0
        launch(x, bins)
        return bins

    return Case(
        counts,
        lambda: launch(x, bins),
        result,
        check,
        f"{n:.0e} → {nbins}".replace("+0", ""),
        f"[{cdiv(n, threads)}, {threads}]",
        "histogram",
        [x, np.int64(nbins)],
        [("numba", 1.25)],
    )


def case_total(kp, n: int = 10**7):
    rng = np.random.default_rng(5)
    x = rng.random(n, dtype=np.float32)
    out = np.zeros(1, dtype=np.float32)
    threads = 256
    launch = kp.total[cdiv(n, threads), threads]
    exact = float(x.astype(np.float64).sum())

    def check(res):
        got = float(np.asarray(res).reshape(-1)[0])
        assert abs(got - exact) <= 1e-4 * exact, f"total: {got} against {exact}"

    def result():
        out[:] = 0
        launch(x, out)
        return out

    return Case(
        lambda: x.sum(),
        lambda: launch(x, out),
        result,
        check,
        f"{n:.0e}".replace("+0", ""),
        f"[{cdiv(n, threads)}, {threads}]",
        "total",
        [x],
        [("numba", 1.0)],
    )


CASES = {
    "saxpy": case_saxpy,
    "stencil5": case_stencil,
    "stencil5_ij": case_stencil_ij,
    "row_sums": case_row_sums,
    "matmul": case_matmul,
    "histogram": case_histogram,
    "total": case_total,
}


# ---------------------------------------------------------------------- numba's twins

NUMBA_SRC = r"""
import json, statistics, sys, time
import numpy as np
from numba import njit, prange, float32, int64


@njit(parallel=True)
def saxpy(a, x, y, out):
    for i in prange(x.shape[0]):
        out[i] = a * x[i] + y[i]
    return out


@njit(parallel=True)
def stencil5(u, out):
    n, m = u.shape
    for i in prange(1, n - 1):
        for j in range(1, m - 1):
            out[i, j] = float32(0.25) * (u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1]) - u[i, j]
    return out


@njit(parallel=True)
def row_sums(x, out):
    for i in prange(x.shape[0]):
        acc = float32(0)
        for j in range(x.shape[1]):
            acc += x[i, j]
        out[i] = acc
    return out


@njit(parallel=True)
def matmul(A, B, C):
    for i in prange(C.shape[0]):
        for j in range(C.shape[1]):
            acc = float32(0)
            for k in range(A.shape[1]):
                acc += A[i, k] * B[k, j]
            C[i, j] = acc
    return C


@njit(parallel=True)
def histogram(x, nbins):
    # per-chunk counts, one chunk per thread, combined at the end
    chunks = NTHREADS
    part = np.zeros((chunks, nbins), dtype=np.int64)
    n = x.shape[0]
    for c in prange(chunks):
        for i in range(c * n // chunks, (c + 1) * n // chunks):
            k = int64(x[i] * nbins)
            if 0 <= k < nbins:
                part[c, k] += 1
    return part.sum(axis=0)


@njit(parallel=True)
def total(x):
    acc = float32(0)
    for i in prange(x.shape[0]):
        acc += x[i]
    return np.array([acc], dtype=np.float32)


def main():
    # A server: compile each twin and save its result, then time on request ("name repeat"
    # per line, the median in ms back), so that its runs can alternate with gpuaot's.
    tmp, names = sys.argv[1], sys.argv[2:]
    cases = {}
    for name in names:
        data = np.load(f"{tmp}/{name}.in.npz")
        args = [data[f"a{k}"][()] for k in range(len(data.files))]
        fn = globals()[TWINS[name]]
        np.save(f"{tmp}/{name}.out.npy", fn(*args))
        cases[name] = (fn, args)
    print("ready", flush=True)
    for line in sys.stdin:
        name, repeat = line.split()
        fn, args = cases[name]
        print(json.dumps(median_ms(lambda: fn(*args), int(repeat))), flush=True)
"""


class Twins:
    """numba's twins in a server process of ``python`` (numba's venv), started once:
    ``result(name)`` is a twin's output, ``time(name, repeat)`` its median in ms, taken when
    asked, so that numba's runs alternate with gpuaot's. Without numba: ``ok`` is False."""

    def __init__(self, cases: dict[str, Case], threads: int, python: Path):
        self.ok = False
        if not python.exists():
            return
        self._tmp = tempfile.TemporaryDirectory(prefix="gpuaot-bench-numba-")
        tmp = self._tmp.name
        for name, c in cases.items():
            np.savez(f"{tmp}/{name}.in.npz", **{f"a{k}": a for k, a in enumerate(c.twin_args)})
        twins = {name: c.twin for name, c in cases.items()}
        # (the same median_ms as here: one way to time, for both columns)
        src = (
            f"{NUMBA_SRC}\n{inspect.getsource(median_ms)}\n"
            f"NTHREADS = {threads}\nTWINS = {twins!r}\nmain()\n"
        )
        script = Path(tmp) / "twins.py"
        script.write_text(src)
        env = {**os.environ, "NUMBA_NUM_THREADS": str(threads)}
        self._proc = subprocess.Popen(
            [str(python), str(script), tmp, *cases],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        if self._proc.stdout.readline().strip() != "ready":
            self._proc.wait()
            err = self._proc.stderr.read()[-2000:]
            print(f"numba's twins failed; numba columns left out:\n{err}")
            self.close()
            return
        self.ok = True

    def result(self, name: str) -> np.ndarray:
        return np.load(f"{self._tmp.name}/{name}.out.npy")

    def time(self, name: str, repeat: int) -> float:
        self._proc.stdin.write(f"{name} {repeat}\n")
        self._proc.stdin.flush()
        return float(json.loads(self._proc.stdout.readline()))

    def close(self) -> None:
        if hasattr(self, "_proc"):
            self._proc.stdin.close()
            self._proc.wait()
            self._tmp.cleanup()
            del self._proc


def _ratio(t: float, ref: float | None) -> str:
    return "-" if ref is None else f"{t / ref:.2f}×"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (>= 3)")
    ap.add_argument("--rounds", type=int, default=7, help="alternating rounds (median kept)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--bench-python", default=str(BENCH_PYTHON), help="numba's Python")
    ap.add_argument("cases", nargs="*", help=f"cases to run: {', '.join(CASES)} [all]")
    args = ap.parse_args(argv)
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    repeat = max(3, args.repeat)

    with tempfile.TemporaryDirectory(prefix="gpuaot-bench-") as tmp:
        t0 = time.perf_counter()
        build(Path(tmp))
        build_s = time.perf_counter() - t0
        sys.path.insert(0, str(HERE))
        import kernels_pkg as kp

        from gpuaot.runtime.cpu import _workers

        threads = _workers()
        print(f"CPU: {cpu_name()} ({os.cpu_count()} logical CPUs)")
        print(
            f"gpuaot threads: {threads} (GPUAOT_NUM_THREADS to change); numpy "
            f"{np.__version__}; Python {platform.python_version()}"
        )
        levels, default = runnable_levels()
        print(
            f"build: {build_s:.2f} s; {args.rounds} rounds of numba, numpy and every level "
            f"taking turns, each the median of {repeat} runs after warm-up; medians of rounds"
        )
        print(f"CPU levels run here: {', '.join(levels)}; a default bundle runs {default}")
        cases = {name: CASES[name](kp) for name in args.cases or CASES}
        bench_python = Path(args.bench_python)
        print(f"numba: {str(threads) + ' threads' if bench_python.exists() else '-'}\n")
        heads = " | ".join(f"{lv} ms" for lv in levels)
        print(
            f"| kernel | size | numpy ms | numba ms | {heads} | default/native "
            "| gpuaot/numba | gpuaot/numpy | target |"
        )
        print("|---|---|---:|---:|" + "---:|" * len(levels) + "---:|---:|---:|---|")
        missed, launches, defaults = [], [], {}
        twins = Twins(cases, threads, bench_python)
        try:
            for name, c in cases.items():
                launches.append(f"{name}{c.cfg}")
                if twins.ok:
                    c.check(twins.result(name))  # numba's results are checked like gpuaot's
                for lv in levels:
                    use_level(lv)
                    c.check(c.ga_result())
                # Rounds: numba, numpy, then every level, each ``repeat`` runs, so that all
                # columns see the same moments of a shared machine; each column is the median
                # over rounds, and gpuaot/numba the median of the rounds' ratios.
                rounds: dict[str, list[float]] = {k: [] for k in ("numba", "numpy", *levels)}
                for _ in range(args.rounds):
                    if twins.ok:
                        rounds["numba"].append(twins.time(name, repeat))
                    rounds["numpy"].append(median_ms(c.np_fn, repeat))
                    for lv in levels:
                        use_level(lv)
                        rounds[lv].append(median_ms(c.ga_fn, repeat))
                times = {k: statistics.median(v) for k, v in rounds.items() if v}
                t_np, t_nb = times["numpy"], times.get("numba")
                t_ga = defaults[name] = times[default]
                vs_numba = None
                if t_nb is not None:  # the median ratio of one round's two columns
                    vs_numba = statistics.median(
                        g / n for g, n in zip(rounds[default], rounds["numba"])
                    )
                refs = {"numpy": t_np, "numba": t_nb, **defaults}
                verdicts = []
                for ref, bound in c.targets:
                    r = refs.get(ref)
                    if r is None:
                        continue
                    ok = (vs_numba if ref == "numba" else t_ga / r) <= bound
                    verdicts.append(f"≤ {bound}× {ref} {'ok' if ok else 'MISSED'}")
                    if not ok:
                        missed.append(f"{name} (vs {ref})")
                vs_native = _ratio(t_ga, times.get("native"))
                cols = " | ".join(f"{times[lv]:.3f}" for lv in levels)
                nb = "-" if t_nb is None else f"{t_nb:.3f}"
                ga_nb = "-" if vs_numba is None else f"{vs_numba:.2f}×"
                print(
                    f"| {name} | {c.size} | {t_np:.3f} | {nb} | {cols} | {vs_native} "
                    f"| {ga_nb} | {_ratio(t_ga, t_np)} | {'; '.join(verdicts) or '—'} |",
                    flush=True,
                )
        finally:
            twins.close()
    print(f"\nlaunches: {'; '.join(launches)}")
    print("numpy: elementwise operations on one core; A @ B through its BLAS (threaded)")
    print("numba: @njit(parallel=True) prange loops; the histogram counts per chunk")
    if missed:
        print(f"missed: {', '.join(missed)}")
    return 1 if (missed and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
