"""Phase 2 of the GPU check: run, on a machine with a GPU and only the driver, what phase 1
(``make gpu-bundles``, bench/gpu_bundles.py) built elsewhere.

    PYTHONPATH=. python3 bench/gpu_check.py gpu-check/        # PASS/FAIL per case, a table,
                                                            # last line "gpu-check: P/T passed"
    python3 bench/gpu_check.py gpu-check/ --dry-run-cpu       # the harness on the CPU backend
                                                            # (a self-test; not a GPU result)

Needs numpy and cuda-python's driver bindings (12.x or 13.x); uses CuPy, PyTorch and
numba-cuda where they are installed (their cases and benchmark columns are skipped, and said
so, where not). No compiler, no llvmlite, no ptxas, nothing fetched. Without a usable GPU it
exits 77 at once with one line saying why. Exit 1 when any case fails.

Checked: every recorded conformance kernel against the numpy/CPython oracle (bitwise where
the language promises it; rtol 4e-6 for transcendentals, whose libdevice and libm versions
differ in the last bits); every GPU-only kernel against ``simulate``; device exceptions (type,
kernel, file:line, thread, block); a non-default stream; CuPy and PyTorch arrays through
``__cuda_array_interface__`` and DLPack, a strided view as an ``"A"`` parameter and refused
as a C one; a mixed CPU/GPU call refused; the PTX (JIT) path; launches from several threads.
Benchmark (CUDA events, median of 25 after warm-up): effective bandwidth of saxpy, the
5-point stencil (2048², 8192²) and row sums, beside numba-cuda, CuPy and a device-to-device
copy of the same bytes; launch overhead of an empty kernel.
"""

from __future__ import annotations

import importlib
import json
import statistics
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SKIP = 77


class Checks:
    def __init__(self) -> None:
        self.passed = self.failed = 0
        self.failures: list[str] = []

    def run(self, name: str, fn, *args) -> None:
        t0 = time.perf_counter()
        try:
            note = fn(*args)
        except Skip as s:
            print(f"SKIP {name}: {s}", flush=True)
            return
        except Exception as e:  # noqa: BLE001 - every failure is reported, then the rest run
            self.failed += 1
            self.failures.append(name)
            detail = "".join(traceback.format_exception_only(type(e), e)).strip()
            print(f"FAIL {name}: {detail}", flush=True)
            return
        self.passed += 1
        ms = (time.perf_counter() - t0) * 1e3
        print(f"PASS {name}{f' ({note})' if note else ''} [{ms:.0f} ms]", flush=True)


class Skip(Exception):
    pass


# ---------------------------------------------------------------------- helpers


def _driver():
    from gpuaot.runtime.cuda import _driver as load

    return load()


def _tuple(v):
    return tuple(_tuple(x) for x in v) if isinstance(v, list) else v


def _compare(got: np.ndarray, want: np.ndarray, rtol, atol, what: str, fma=None) -> None:
    """Bitwise, or ``rtol``; ``fma``: (rtol, rows) where a*b+c may have been contracted (the
    GPU contracts by default, as nvcc does): those elements to within one rounding of the
    products (rtol, and atol = rtol × max|expected|), the others as the case says."""
    if fma is not None and fma[0] is not None and rtol is None and want.dtype.kind == "f":
        fma_rtol, rows = fma
        mask = np.zeros(want.shape[0] if want.ndim else (), bool)
        if want.ndim and rows is not None:
            mask[list(rows)] = True
        else:
            mask[...] = True
        fe = want[mask]
        scale = float(np.nanmax(np.abs(fe), initial=0.0)) if fe.size else 0.0
        np.testing.assert_allclose(
            got[mask], fe, rtol=fma_rtol, atol=fma_rtol * scale, err_msg=f"{what} (fma)"
        )
        if (~mask).any():
            _compare(got[~mask], want[~mask], None, 0, what)
        return
    if rtol is None:
        np.testing.assert_array_equal(got, want.astype(got.dtype), err_msg=what, strict=True)
        if got.dtype.kind == "f":
            num = ~np.isnan(got)
            np.testing.assert_array_equal(np.signbit(got[num]), np.signbit(want[num]), what)
    else:
        np.testing.assert_allclose(got, want, rtol=max(rtol, 4e-6), atol=atol, err_msg=what)


# ---------------------------------------------------------------------- correctness


class HostArray:
    """``--dry-run-cpu``: the harness over numpy arrays (the CPU backend runs the kernels)."""

    def __new__(cls, a: np.ndarray):
        return np.array(a)


def _host_view(a: np.ndarray, offset: int, shape, strides) -> np.ndarray:
    return np.lib.stride_tricks.as_strided(
        a.reshape(-1).view(np.uint8)[offset:].view(a.dtype), tuple(shape), tuple(strides)
    )


def conformance_case(pkg, case: dict, data, dry: bool = False) -> str | None:
    if dry:
        DeviceArray = HostArray  # noqa: N806
    else:
        from gpuaot.runtime.devicearray import DeviceArray

    n = case["index"]
    state = {k: np.array(data[f"c{n}/state/{k}"]) for k in case["state"]}
    dev = {k: DeviceArray(v) for k, v in state.items()}
    args = []
    for a in case["args"]:
        kind = a["kind"]
        if kind == "array":
            args.append(dev[a["key"]])
        elif kind == "view":
            base = dev[a["key"]]
            view = _host_view if dry else type(base).view
            args.append(view(base, a["offset"], a["shape"], a["strides"]))
        elif kind == "const":
            args.append(DeviceArray(np.array(data[f"c{n}/{a['name']}"])))
        elif kind == "scalar":
            args.append(np.dtype(a["dtype"]).type(a["value"]))
        else:
            args.append(a["value"])
    where = getattr(pkg, case["module"]) if case.get("module") else pkg  # lang_helpers, ...
    kernel = getattr(where, case["fn"])[_tuple(case["config"])]
    if case["raises"]:
        # A built-in class, or the package's own (lang_exc), with simulate's message.
        home = importlib.import_module(case.get("raises_module", "builtins"))
        exc = getattr(home, case["raises"])
        try:
            kernel(*args)
        except exc as e:
            if type(e) is not exc or not str(e).startswith(case.get("message", "")):
                raise AssertionError(f"raised {type(e).__name__}: {e}; expected {exc}") from e
            return f"raised {type(e).__name__}"
        raise AssertionError(f"expected {case['raises']}")
    kernel(*args)
    for key in case["expected"]:
        want = np.asarray(data[f"c{n}/expected/{key}"])
        got = dev[key] if dry else dev[key].get()
        fma = (case.get("fma_rtol"), case.get("fma_rows"))
        _compare(got, want, case["rtol"], case["atol"], f"{case['id']}: {key}", fma)
    return None


def feature_case(g, case: dict, data) -> None:
    from gpuaot.runtime.devicearray import DeviceArray

    name = case["fn"]
    dev = {k: DeviceArray(np.array(data[f"{name}/state/{k}"])) for k in case["args"]}
    getattr(g, name)[_tuple(case["config"])](*dev.values())
    for k in case["args"]:
        _compare(dev[k].get(), np.asarray(data[f"{name}/expected/{k}"]), None, 0, f"{name}: {k}")


def cooperative_too_large(wp) -> str:
    """A grid barrier's grid that cannot be resident at once is refused before the launch."""
    from gpuaot.runtime.devicearray import DeviceArray

    n = 1 << 18  # blocks of 32 threads: far more than any GPU holds at once
    x, partial, out = (DeviceArray(np.zeros(k, np.float32)) for k in (n * 32, n, n * 32))
    try:
        wp.grid_prefix[n, 32](x, partial, out)
    except ValueError as e:
        if "must all be resident at once" not in str(e):
            raise
        return str(e).split("; ")[0].split("but ")[-1]
    raise AssertionError(f"a cooperative grid of {n} blocks was launched")


def random_case(rp, case: dict, data) -> None:
    """A gpuaot.random kernel on the GPU against simulate: bitwise, the normals within maxulp."""
    from gpuaot.runtime.devicearray import DeviceArray

    name = case["fn"]
    state = {k: np.array(data[f"{name}/state/{k}"]) for k in case["args"]}
    dev = {k: DeviceArray(v) if v.ndim else v.item() for k, v in state.items()}
    getattr(rp, name)[_tuple(case["config"])](*dev.values())
    for k, v in dev.items():
        if not state[k].ndim:
            continue
        want = np.asarray(data[f"{name}/expected/{k}"])
        if k in case["maxulp"]:
            np.testing.assert_array_max_ulp(v.get(), want, maxulp=case["maxulp"][k])
        else:
            np.testing.assert_array_equal(v.get(), want, err_msg=f"{name}: {k}", strict=True)


def complex_case(pkg, case: dict, data, dry: bool = False) -> None:
    """A c64/c128 kernel (tests/test_lang_complex.py) against its oracle: bitwise, except the
    outputs computed with the GPU's math library (``rtol``)."""
    from gpuaot.runtime.devicearray import DeviceArray

    name = case["fn"]
    state = {k: np.array(data[f"{name}/state/{k}"]) for k in case["args"]}
    on = HostArray if dry else DeviceArray
    dev = {k: on(v) if v.ndim else v.item() for k, v in state.items()}
    getattr(pkg, name)[_tuple(case["config"])](*dev.values())
    for k in case["expected"]:
        got = dev[k] if dry else dev[k].get()
        want = np.asarray(data[f"{name}/expected/{k}"])
        if k in case["rtol"]:
            np.testing.assert_allclose(got, want, rtol=case["rtol"][k], err_msg=f"{name}: {k}")
        else:
            np.testing.assert_array_equal(got, want, err_msg=f"{name}: {k}", strict=True)


def scatter_exch(g) -> None:
    """Which thread wins a slot is up to the GPU: each slot holds a value of one claimant."""
    from gpuaot.runtime.devicearray import DeviceArray

    rng = np.random.default_rng(5)
    idx = rng.integers(0, 32, 1000).astype(np.int32)
    vals = np.arange(1000, dtype=np.int32) + 1
    slots, claimed = DeviceArray(np.zeros(32, np.int32)), DeviceArray(np.zeros(32, np.int32))
    g.scatter_exch[8, 128](DeviceArray(idx), DeviceArray(vals), slots, claimed)
    s, c = slots.get(), claimed.get()
    for k in range(32):
        owners = vals[idx == k]
        assert c[k] == (1 if owners.size else 0), k
        assert (s[k] in owners) if owners.size else s[k] == 0, (k, s[k])


def device_exception(g) -> None:
    from gpuaot.runtime.devicearray import DeviceArray

    x = np.ones(1000, np.float32)
    x[777] = -1.0  # block 6 (of 128 threads), thread 9
    try:
        g.check_positive[8, 128](DeviceArray(x), DeviceArray(np.zeros_like(x)))
    except ValueError as e:
        msg = str(e)
    else:
        raise AssertionError("no ValueError")
    for part in (
        "x must be non-negative",
        "gpu_features.kernels.check_positive",
        "gpu_features/kernels.py:",
        "thread (9, 0, 0)",
        "block (6, 0, 0)",
    ):
        assert part in msg, (part, msg)
    x[777] = 1.0  # the record is cleared per launch
    out = DeviceArray(np.zeros_like(x))
    g.check_positive[8, 128](DeviceArray(x), out)
    np.testing.assert_allclose(out.get(), np.sqrt(x), rtol=1e-7)


def stream_launch(example) -> None:
    from gpuaot.runtime.cuda import _check
    from gpuaot.runtime.devicearray import DeviceArray

    driver = _driver()
    stream = _check(driver, driver.cuStreamCreate(1), "cuStreamCreate")  # non-blocking
    n = 1 << 16
    x = np.arange(n, dtype=np.float32)
    d = DeviceArray(np.zeros(n, np.float32))
    example.saxpy[n // 256, 256, stream](np.float32(1), DeviceArray(x), DeviceArray(x), d)
    _check(driver, driver.cuStreamSynchronize(stream), "cuStreamSynchronize")
    np.testing.assert_array_equal(d.get(), 2 * x)
    driver.cuStreamDestroy(stream)


def mixed_devices(example) -> None:
    from gpuaot.runtime.devicearray import DeviceArray

    x = np.ones(64, np.float32)
    try:
        example.saxpy[1, 64](np.float32(1), DeviceArray(x), x, DeviceArray(x))
    except TypeError as e:
        assert "mix CUDA and numpy arrays" in str(e), e
        return
    raise AssertionError("a mixed call was not refused")


def jit_path(jit, arch: str) -> str:
    from gpuaot.runtime.devicearray import DeviceArray

    n = 10_007
    x = np.random.default_rng(1).random(n, dtype=np.float32)
    out = DeviceArray(np.zeros(n, np.float32))
    jit.saxpy[(n + 127) // 128, 128](np.float32(3), DeviceArray(x), DeviceArray(x), out)
    np.testing.assert_array_equal(out.get(), np.float32(3) * x + x)
    return f"bundle has sm_75 only; this GPU is {arch}"


def threads_at_once(example) -> None:
    from gpuaot.runtime.devicearray import DeviceArray

    errors = []

    def work(seed: int) -> None:
        try:
            rng = np.random.default_rng(seed)
            for _ in range(25):
                n = int(rng.integers(1, 50_000))
                x = rng.random(n, dtype=np.float32)
                out = DeviceArray(np.zeros(n, np.float32))
                example.saxpy[(n + 255) // 256, 256](
                    np.float32(2), DeviceArray(x), DeviceArray(x), out
                )
                np.testing.assert_array_equal(out.get(), np.float32(3) * x)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]


class _DLPackOnly:
    def __init__(self, a):
        self.a = a

    def __dlpack__(self, stream=None):
        return self.a.__dlpack__()

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


def foreign_arrays(lib: str, example, conf) -> str:
    try:
        if lib == "cupy":
            import cupy as xp

            def dev(a):
                return xp.asarray(a)

            def host(a):
                return xp.asnumpy(a)
        else:
            import torch

            def dev(a):
                return torch.from_numpy(a).cuda()

            def host(a):
                return a.cpu().numpy()
    except Exception as e:  # noqa: BLE001 - not installed, or no CUDA build
        raise Skip(f"{lib} not usable here ({type(e).__name__}: {e})") from None
    n = 4099
    x = np.random.default_rng(2).random(n, dtype=np.float32)
    for wrap, how in ((lambda a: a, "__cuda_array_interface__"), (_DLPackOnly, "DLPack")):
        out = dev(np.zeros(n, np.float32))
        example.saxpy[(n + 127) // 128, 128](np.float32(2), wrap(dev(x)), wrap(dev(x)), wrap(out))
        if lib == "torch":
            torch.cuda.synchronize()
        np.testing.assert_array_equal(host(out), np.float32(3) * x, err_msg=how)
    base = np.arange(40 * 30, dtype=np.float32).reshape(40, 30)
    view = dev(base)[::3, ::2]
    out = dev(np.zeros(view.shape, np.float32))
    conf.strided_2d[(4, 4), (8, 8)](view, out)
    want = base[::3, ::2] * np.float32(2) + np.arange(view.shape[1], dtype=np.float32)
    np.testing.assert_array_equal(host(out), want)
    try:
        example.saxpy[1, 64](np.float32(1), dev(x)[::2], dev(x)[::2], dev(x)[::2])
    except TypeError as e:
        assert "not C-contiguous" in str(e), e
    else:
        raise AssertionError("a strided view was accepted as a C-contiguous array")
    return "CAI, DLPack, strided 'A' view, C refusal"


# ---------------------------------------------------------------------- benchmark


class Timer:
    """CUDA events on the legacy default stream, which CuPy and numba also launch on."""

    def __init__(self):
        from gpuaot.runtime.cuda import _check

        self.d, self.check = _driver(), _check
        self.start = self.check(self.d, self.d.cuEventCreate(0), "cuEventCreate")
        self.end = self.check(self.d, self.d.cuEventCreate(0), "cuEventCreate")

    def ms(self, fn, repeat: int = 25, inner: int = 1) -> float:
        for _ in range(3):
            fn()
        self.check(self.d, self.d.cuCtxSynchronize(), "cuCtxSynchronize")
        times = []
        for _ in range(repeat):
            self.d.cuEventRecord(self.start, self.d.CUstream(0))
            for _ in range(inner):
                fn()
            self.d.cuEventRecord(self.end, self.d.CUstream(0))
            self.check(self.d, self.d.cuEventSynchronize(self.end), "cuEventSynchronize")
            t = self.check(
                self.d, self.d.cuEventElapsedTime(self.start, self.end), "cuEventElapsedTime"
            )
            times.append(t / inner)
        return statistics.median(times)


def _numba_kernels():
    try:
        from numba import cuda
    except Exception:  # noqa: BLE001
        return None

    @cuda.jit
    def saxpy(a, x, y, out):
        i = cuda.grid(1)
        if i < x.shape[0]:
            out[i] = a * x[i] + y[i]

    @cuda.jit
    def stencil5(u, out):
        j, i = cuda.grid(2)
        n, m = u.shape
        if 0 < i < n - 1 and 0 < j < m - 1:
            out[i, j] = 0.25 * (u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1]) - u[i, j]

    @cuda.jit
    def row_sums(x, out):
        i = cuda.grid(1)
        if i < x.shape[0]:
            acc = 0.0
            for j in range(x.shape[1]):
                acc += x[i, j]
            out[i] = acc

    @cuda.jit
    def empty(x):
        pass

    return {"saxpy": saxpy, "stencil5": stencil5, "row_sums": row_sums, "empty": empty}


def benchmark(kp) -> list[str]:
    from gpuaot.runtime.cuda import _check
    from gpuaot.runtime.devicearray import DeviceArray

    timer = Timer()
    d = _driver()
    nb = _numba_kernels()
    try:
        import cupy as cp
    except Exception:  # noqa: BLE001
        cp = None
    rows = []

    def copy_ms(nbytes: int) -> float:
        a = _check(d, d.cuMemAlloc(nbytes), "cuMemAlloc")
        b = _check(d, d.cuMemAlloc(nbytes), "cuMemAlloc")
        t = timer.ms(lambda: d.cuMemcpyDtoDAsync(b, a, nbytes, d.CUstream(0)))
        d.cuMemFree(a)
        d.cuMemFree(b)
        return t

    def row(name, size, nbytes, ga_fn, nb_fn, cp_fn):
        t_ga = timer.ms(ga_fn)
        t_nb = timer.ms(nb_fn) if nb_fn else None
        t_cp = timer.ms(cp_fn) if cp_fn else None
        t_copy = copy_ms(nbytes)

        def gbs(t):
            return f"{nbytes / t / 1e6:.0f}" if t else "—"

        ratio = f"{t_ga / t_nb:.2f}×" if t_nb else "—"
        rows.append(
            f"| {name} | {size} | {gbs(t_ga)} | {gbs(t_nb)} | {gbs(t_cp)} | {gbs(t_copy)} "
            f"| {ratio} |"
        )

    n = 1 << 24
    x = np.random.default_rng(0).random(n, dtype=np.float32)
    dx, dy, do = DeviceArray(x), DeviceArray(x), DeviceArray(np.zeros(n, np.float32))
    cfg = ((n + 255) // 256, 256)
    a = np.float32(2)
    nb_saxpy = (lambda: nb["saxpy"][cfg](a, dx, dy, do)) if nb else None
    cp_saxpy = None
    if cp is not None:
        cx, cy = cp.asarray(x), cp.asarray(x)
        cp_saxpy = lambda: a * cx + cy  # noqa: E731
    row("saxpy", "16M f32", 3 * 4 * n, lambda: kp.saxpy[cfg](a, dx, dy, do), nb_saxpy, cp_saxpy)

    for side in (2048, 8192):
        u = np.random.default_rng(1).random((side, side), dtype=np.float32)
        du, dout = DeviceArray(u), DeviceArray(np.zeros_like(u))
        cfg2 = ((side + 31) // 32, (side + 7) // 8), (32, 8)
        nb_fn = (lambda du=du, dout=dout, c=cfg2: nb["stencil5"][c](du, dout)) if nb else None
        cp_fn = None
        if cp is not None:
            cu = cp.asarray(u)
            co = cp.zeros_like(cu)

            def cp_fn(cu=cu, co=co):
                co[1:-1, 1:-1] = (
                    0.25 * (cu[:-2, 1:-1] + cu[2:, 1:-1] + cu[1:-1, :-2] + cu[1:-1, 2:])
                    - cu[1:-1, 1:-1]
                )

        row(
            "stencil5",
            f"{side}²",
            2 * 4 * side * side,
            lambda du=du, dout=dout, c=cfg2: kp.stencil5[c](du, dout),
            nb_fn,
            cp_fn,
        )

    r = np.random.default_rng(2).random((8192, 1024), dtype=np.float32)
    dr, ds = DeviceArray(r), DeviceArray(np.zeros(8192, np.float32))
    cfg3 = (8192 // 128, 128)
    nb_fn = (lambda: nb["row_sums"][cfg3](dr, ds)) if nb else None
    cp_fn = None
    if cp is not None:
        cr = cp.asarray(r)
        cp_fn = lambda: cr.sum(axis=1)  # noqa: E731
    row("row_sums", "8192×1024", 4 * r.size, lambda: kp.row_sums[cfg3](dr, ds), nb_fn, cp_fn)

    lines = [
        "| kernel | size | gpuaot GB/s | numba-cuda GB/s | CuPy GB/s | D2D copy GB/s | gpuaot/numba time |",
        "|---|---|---:|---:|---:|---:|---:|",
        *rows,
    ]
    de = DeviceArray(np.zeros(1, np.float32))
    t_ga = timer.ms(lambda: kp.empty[1, 32](de), inner=200) * 1e3
    t_nb = timer.ms(lambda: nb["empty"][1, 32](de), inner=200) * 1e3 if nb else None
    t_cp = None
    if cp is not None:
        k = cp.RawKernel(r'extern "C" __global__ void empty(float* x) {}', "empty")
        ce = cp.zeros(1, cp.float32)
        t_cp = timer.ms(lambda: k((1,), (32,), (ce,)), inner=200) * 1e3
    fmt = lambda t: f"{t:.1f}" if t is not None else "—"  # noqa: E731
    lines += [
        "",
        "| empty kernel launch | gpuaot µs | numba-cuda µs | CuPy µs |",
        "|---|---:|---:|---:|",
        f"| 1 block × 32 | {fmt(t_ga)} | {fmt(t_nb)} | {fmt(t_cp)} |",
    ]
    return lines


# ---------------------------------------------------------------------- main


def device_name() -> tuple[str, str]:
    from gpuaot.runtime.cuda import _check

    d = _driver()
    dev = _check(d, d.cuDeviceGet(0), "cuDeviceGet")
    name = _check(d, d.cuDeviceGetName(64, dev), "cuDeviceGetName")
    name = name.split(b"\0")[0].decode() if isinstance(name, bytes) else str(name)
    attr = d.CUdevice_attribute
    major = _check(
        d, d.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev), "cc"
    )
    minor = _check(
        d, d.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev), "cc"
    )
    return name, f"sm_{major}{minor}"


def dry_run(root: Path) -> int:
    """The recorded conformance cases through the harness on the CPU backend: checks what
    phase 1 recorded and how phase 2 rebuilds arguments. Not a GPU result."""
    import conformance

    checks = Checks()
    data = np.load(root / "cases.npz")
    for case in json.loads((root / "cases.json").read_text()):
        if "skip" not in case:
            checks.run(f"dry-run/{case['id']}", conformance_case, conformance, case, data, True)
    if (root / "complex.json").is_file():
        cdata = np.load(root / "complex.npz")
        for case in json.loads((root / "complex.json").read_text()):
            what = f"dry-run/complex/{case['fn']}"
            checks.run(what, complex_case, conformance, case, cdata, True)
    print(
        f"gpu-check dry run (CPU backend, not a GPU result): {checks.passed}/"
        f"{checks.passed + checks.failed} passed"
    )
    return 0 if not checks.failed else 1


def main(argv: list[str]) -> int:
    args = [a for a in argv[1:] if not a.startswith("--")]
    root = Path(args[0] if args else "gpu-check").resolve()
    sys.path[:0] = [str(REPO), str(root / "pkgs"), str(root / "jit")]
    if "--dry-run-cpu" in argv:
        return dry_run(root)
    from gpuaot.runtime.devicearray import cuda_unavailable

    why = cuda_unavailable()
    if why is not None:
        print(f"gpu-check: skipped: {why}")
        return SKIP
    if not (root / "cases.json").is_file():
        print(f"gpu-check: {root} has no cases.json: run `make gpu-bundles` first")
        return 2
    t_start = time.perf_counter()
    name, arch = device_name()
    import importlib.metadata as md

    try:
        cp_version = md.version("cuda-python")
    except md.PackageNotFoundError:
        cp_version = md.version("cuda-bindings")
    print(
        f"device: {name} ({arch}); cuda-python {cp_version}; numpy {np.__version__}; "
        f"Python {sys.version.split()[0]}"
    )
    import conformance
    import example
    import example_jit
    import gpu_features
    import kernels_pkg

    checks = Checks()
    data = np.load(root / "cases.npz")
    for case in json.loads((root / "cases.json").read_text()):
        if "skip" in case:
            print(f"SKIP conformance/{case['id']}: {case['skip']}")
            continue
        checks.run(f"conformance/{case['id']}", conformance_case, conformance, case, data)
    fdata = np.load(root / "features.npz")
    for case in json.loads((root / "features.json").read_text()):
        checks.run(f"gpu-only/{case['fn']} vs simulate", feature_case, gpu_features, case, fdata)
    checks.run("gpu-only/scatter_exch (one claimant per slot)", scatter_exch, gpu_features)
    import random_pkg

    rdata = np.load(root / "random.npz")
    for case in json.loads((root / "random.json").read_text()):
        checks.run(f"random/{case['fn']} vs simulate", random_case, random_pkg, case, rdata)
    if (root / "warp.json").is_file():
        import warp_pkg

        wdata = np.load(root / "warp.npz")
        for case in json.loads((root / "warp.json").read_text()):
            checks.run(f"warp/{case['fn']} vs simulate", feature_case, warp_pkg, case, wdata)
        checks.run("warp/grid barrier: too large a grid refused", cooperative_too_large, warp_pkg)
    if (root / "complex.json").is_file():
        cdata = np.load(root / "complex.npz")
        for case in json.loads((root / "complex.json").read_text()):
            checks.run(f"complex/{case['fn']}", complex_case, conformance, case, cdata)
    checks.run("exception: type, kernel, file:line, thread, block", device_exception, gpu_features)
    checks.run("stream: launch on a non-default stream", stream_launch, example)
    checks.run("mixed CPU/GPU arguments refused", mixed_devices, example)
    checks.run("PTX JIT path", jit_path, example_jit, arch)
    checks.run("8 threads launching at once", threads_at_once, example)
    for lib in ("cupy", "torch"):
        checks.run(f"{lib} arrays", foreign_arrays, lib, example, conformance)
    try:
        table = benchmark(kernels_pkg)
    except Exception as e:  # noqa: BLE001 - the table is reported, not a case
        table = [f"benchmark failed: {type(e).__name__}: {e}"]
        checks.failed += 1
        checks.failures.append("benchmark")
    print()
    print("\n".join(table))
    total = checks.passed + checks.failed
    print(f"\nwall time: {time.perf_counter() - t_start:.1f} s")
    if checks.failures:
        print(
            f"failed: {', '.join(checks.failures[:20])}{' …' if len(checks.failures) > 20 else ''}"
        )
    print(f"gpu-check: {checks.passed}/{total} passed")
    return 0 if not checks.failed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
