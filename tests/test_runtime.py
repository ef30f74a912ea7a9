"""Run time on the CPU backend (SPEC §3): argument checks before launch, device exceptions
raised again as Python exceptions (type, message, kernel, file:line, thread, block), debug
bounds checks, and GPU-only kernels.

Expected lines are found in the fixtures' source text; expected threads and blocks are
computed from the launch configuration.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

i64, f32, f64 = np.int64, np.float32, np.float64


def line_of(path, needle: str) -> int:
    lines = path.read_text().splitlines()
    (n,) = [k + 1 for k, line in enumerate(lines) if needle in line]
    return n


@pytest.fixture(scope="module")
def conf(built):
    return built("conformance")


# ---------------------------------------------------------------------- argument checks


def _int_ops_args(n=50):
    return (np.arange(n, dtype=i64), np.ones(n, i64), np.full((10, n), -7, i64))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda a, b, o: (a.astype(np.int32), b, o),
            r"argument 'a' has dtype int32, expected int64",
        ),
        (lambda a, b, o: (a, b.astype(f64), o), r"argument 'b' has dtype float64"),
        (lambda a, b, o: (a, b.astype(">i8"), o), r"argument 'b' has dtype >i8"),
        (lambda a, b, o: (a.reshape(5, 10), b, o), r"argument 'a' has 2 dimensions, expected 1"),
        (lambda a, b, o: (a, b, o[0]), r"argument 'out' has 1 dimensions, expected 2"),
        (lambda a, b, o: (a, b, o[:, ::2]), r"argument 'out' is not C-contiguous"),
        (lambda a, b, o: (a[::-1], b, o), r"argument 'a' is not C-contiguous"),
        (lambda a, b, o: (a, b, np.asfortranarray(o)), r"argument 'out' is not C-contiguous"),
        (lambda a, b, o: (a, b), r"takes 3 arguments, got 2"),
        (lambda a, b, o: (a, b, o, o), r"takes 3 arguments, got 4"),
        (lambda a, b, o: (a, 3, o), r"argument 'b' must be an array"),
        (lambda a, b, o: (a.tolist(), b, o), r"argument 'a' must be an array"),
    ],
    ids=[
        "dtype",
        "dtype-float",
        "byte-order",
        "rank",
        "rank-out",
        "strided",
        "reversed",
        "fortran",
        "too-few",
        "too-many",
        "scalar-for-array",
        "list-for-array",
    ],
)
def test_bad_arguments_raise_before_launch(conf, mutate, message):
    a, b, out = _int_ops_args()
    args = mutate(a, b, out)
    with pytest.raises(TypeError, match=message):
        conf.module.int_ops[2, 32](*args)
    assert (out == -7).all()  # nothing ran


def test_bad_scalar_arguments(conf):
    out = np.zeros(8, i64)
    with pytest.raises(TypeError, match=r"argument 'target' is i64; got a float"):
        conf.module.raise_at[1, 8](1.5, out)
    with pytest.raises(TypeError, match=r"argument 'target' must be a i64 scalar, got an array"):
        conf.module.raise_at[1, 8](np.zeros(1, i64), out)
    with pytest.raises(TypeError, match=r"argument 'target' must be a number"):
        conf.module.raise_at[1, 8]("3", out)
    with pytest.raises(TypeError, match=r"argument 'v' is f64|must be a number"):
        conf.module.h_fill(np.zeros((2, 2)), "x")
    assert (out == 0).all()


def test_strided_views_are_fine_for_A_layout(conf):
    """The same non-contiguous view a "C" parameter refuses, an "A" parameter takes."""
    base = np.arange(40 * 30, dtype=f32).reshape(40, 30)
    x = base[::3, ::-2]
    out = np.zeros(x.shape, f32)
    conf.module.strided_2d[(2, 2), (8, 8)](x, out)
    np.testing.assert_array_equal(out, x * f32(2) + np.arange(x.shape[1], dtype=f32))


def test_specialisation_is_chosen_by_the_arrays(conf):
    k = conf.module.scale_any
    with pytest.raises(TypeError, match=r"no specialisation matches \(int, int64\[1-D\]"):
        k[1, 8](3, np.zeros(3, i64), np.zeros(3, i64))
    with pytest.raises(TypeError, match=r"no specialisation matches"):
        k[1, 8](3, np.zeros(3, f32), np.zeros(3, f64))  # mixed: matches none
    specs = next(e for e in conf.manifest["kernels"] if e["name"] == "scale_any")
    for level in (v["level"] for v in conf.manifest["cpu_variants"]):
        symbols = [s["cpu"]["symbols"][level] for s in specs["specializations"]]
        assert len(set(symbols)) == 3  # one entry point per signature


class FakeCudaArray:
    """Enough of ``__cuda_array_interface__`` for the launcher to see a GPU array."""

    def __init__(self, n):
        self.__cuda_array_interface__ = {
            "shape": (n,),
            "typestr": "<i8",
            "data": (0, False),
            "version": 3,
            "strides": None,
        }


def test_mixed_cuda_and_numpy_arrays(conf):
    a, b, out = _int_ops_args()
    with pytest.raises(TypeError, match=r"mix CUDA and numpy arrays"):
        conf.module.int_ops[2, 32](a, FakeCudaArray(50), out)
    with pytest.raises(TypeError, match=r"pass numpy arrays, not CUDA arrays"):
        conf.module.h_sum(FakeCudaArray(5))
    assert (out == -7).all()


def test_bad_launch_configurations(conf):
    a, b, out = _int_ops_args()
    k = conf.module.int_ops
    for config in [(0, 32), (2, 0), (2, (1, 2, 3, 4)), (2, "x"), (2, 1.5), ((2, "3"), 4)]:
        with pytest.raises(TypeError):
            k[config](a, b, out)
    with pytest.raises(TypeError, match=r"launch as kernel\[grid, block\]"):
        k[2](a, b, out)
    with pytest.raises(TypeError, match=r"launched on a grid"):
        k(a, b, out)
    assert (out == -7).all()
    k[2, 32, 0](a, b, out)  # a stream argument is accepted (and means nothing on the CPU)
    np.testing.assert_array_equal(out[0], a + b)


def test_host_argument_checks(conf):
    m = conf.module
    with pytest.raises(TypeError, match=r"takes 2 arguments, got 1"):
        m.h_dot(np.ones(3))
    with pytest.raises(TypeError, match=r"argument 'x' has dtype float32"):
        m.h_sum(np.ones(3, f32))
    with pytest.raises(TypeError, match=r"argument 'x' has 2 dimensions"):
        m.h_sum(np.ones((3, 3)))


# ---------------------------------------------------------------------- device exceptions


@pytest.mark.parametrize(
    "target, config",
    [(77, (4, 32)), (0, (4, 32)), (4500, (40, 128))],
    ids=["one-thread", "first-thread", "thread-pool"],
)
def test_raise_in_exactly_one_thread(conf, target, config):
    """The raising thread's indices, whether blocks run inline or over the thread pool."""
    grid, block = config
    path = conf.root / "errs.py"
    line = line_of(path, 'raise ValueError("hit the target")')
    out = np.zeros(grid * block, i64)
    with pytest.raises(ValueError) as info:
        conf.module.raise_at[grid, block](target, out)
    msg = str(info.value)
    assert msg.startswith("hit the target")
    assert "kernel 'conformance.errs.raise_at'" in msg
    assert f"conformance/errs.py:{line}" in msg
    assert f"thread ({target % block}, 0, 0)" in msg
    assert f"block ({target // block}, 0, 0)" in msg
    # simulate raises the same type with the same message
    with pytest.raises(ValueError, match="^hit the target$"):
        conf.module.raise_at.simulate[grid, block](target, np.zeros(grid * block, i64))
    # the exception record is per launch: the next launch runs clean
    conf.module.raise_at[grid, block](-1, out)
    np.testing.assert_array_equal(out, np.arange(grid * block) * 2)


def test_raise_from_a_device_helper(conf):
    path = conf.root / "errs.py"
    line = line_of(path, 'raise OverflowError("negative input")')
    x = np.arange(64, dtype=i64)
    x[45] = -1  # only thread 45: block 1, thread 13 with 32-thread blocks
    with pytest.raises(OverflowError) as info:
        conf.module.deep_raise[2, 32](x, np.zeros(64, i64))
    msg = str(info.value)
    assert msg.startswith("negative input (")
    assert f"conformance/errs.py:{line}" in msg
    assert "thread (13, 0, 0), block (1, 0, 0)" in msg
    assert "kernel 'conformance.errs.deep_raise'" in msg


def test_implicit_zero_division(conf):
    a = np.arange(1, 65, dtype=i64)
    b = np.ones(64, i64)
    b[33] = 0
    with pytest.raises(ZeroDivisionError, match=r"integer division or modulo by zero") as info:
        conf.module.implicit_div[2, 32](a, b, np.zeros((2, 64), i64))
    assert "thread (1, 0, 0), block (1, 0, 0)" in str(info.value)


def test_raise_in_host_function(conf):
    line = line_of(conf.root / "errs.py", 'raise ValueError("negative")')
    with pytest.raises(ValueError) as info:
        conf.module.h_checked_sqrt(-4.0)
    msg = str(info.value)
    assert msg.startswith("negative (in host function 'conformance.errs.h_checked_sqrt'")
    assert f"conformance/errs.py:{line}" in msg
    assert "thread" not in msg
    assert conf.module.h_checked_sqrt(2.25) == 1.5


# ---------------------------------------------------------------------- debug builds


DEBUG_PKG = {
    "kern.py": """
        import gpuaot as ga
        from gpuaot import Array, f32, i64

        @ga.kernel
        def shift_left(x: Array[f32], out: Array[f32]):
            i = ga.grid(1)
            if i < out.shape[0]:
                out[i] = x[i + 1]

        @ga.kernel
        def shift_right(x: Array[f32], out: Array[f32]):
            i = ga.grid(1)
            if i < out.shape[0]:
                out[i] = x[i - 1] if i > 0 else x[i]

        @ga.kernel
        def neg_index(x: Array[f32], out: Array[f32]):
            i = ga.grid(1)
            if i < out.shape[0]:
                out[i] = x[i - 1]

        @ga.kernel
        def grid2(m: Array[i64, 2], cols: i64):
            r, c = ga.grid(2)
            if r < m.shape[0] and c < cols:
                m[r, c] = r * 100 + c

        @ga.kernel
        def raise_at3(t: Array[i64]):
            x, y, z = ga.grid(3)
            if x == t[0] and y == t[1] and z == t[2]:
                raise LookupError("found it")

        @ga.kernel
        def bare_raise(x: Array[f32]):
            if x[ga.grid(1)] < 0:
                raise ValueError

        @ga.host
        def host_get(x: Array[f32], k: i64) -> f32:
            return x[k]

        @ga.kernel
        def checked(x: Array[f32], out: Array[f32]):
            i = ga.grid(1)
            if i < x.shape[0]:
                assert x[i] >= 0, "x must not be negative"
                out[i] = x[i] * 2
        """,
}


@pytest.fixture(scope="module")
def debug_pkgs(kit, tmp_path_factory):
    """The same sources built twice: with --debug and without, as two packages."""
    out = {}
    for name, debug in (("dbgpkg", True), ("relpkg", False)):
        root = kit.write_package(
            tmp_path_factory.mktemp(name) / name,
            {k: textwrap.dedent(v).lstrip() for k, v in DEBUG_PKG.items()},
        )
        kit.build(root, cache_dir=tmp_path_factory.getbasetemp() / "cache", debug=debug)
        out[name] = root
    return out


@pytest.fixture
def dbg(kit, debug_pkgs, monkeypatch):
    mods = {}
    for name, root in debug_pkgs.items():
        kit.import_package(root, monkeypatch)
        mods[name] = __import__(f"{name}.kern", fromlist=["kern"])
    yield mods
    for name in debug_pkgs:
        kit.unload(name)


def test_debug_bounds_check_raises_index_error(dbg, debug_pkgs):
    line = line_of(debug_pkgs["dbgpkg"] / "kern.py", "out[i] = x[i + 1]")
    x = np.arange(100, dtype=f32)
    with pytest.raises(IndexError) as info:
        dbg["dbgpkg"].shift_left[4, 32](x, np.zeros(100, f32))  # only i = 99 reads x[100]
    msg = str(info.value)
    assert msg.startswith("index out of bounds (in kernel 'dbgpkg.kern.shift_left'")
    assert f"dbgpkg/kern.py:{line}" in msg
    assert "thread (3, 0, 0), block (3, 0, 0)" in msg
    # in bounds, the debug build computes what numpy computes
    out = np.zeros(99, f32)
    dbg["dbgpkg"].shift_left[4, 32](x, out)
    np.testing.assert_array_equal(out, x[1:])
    out = np.zeros(100, f32)
    dbg["dbgpkg"].shift_right[4, 32](x, out)
    np.testing.assert_array_equal(out, np.concatenate([x[:1], x[:-1]]))


def test_debug_bounds_check_negative_and_2d(dbg):
    with pytest.raises(IndexError, match=r"thread \(0, 0, 0\), block \(0, 0, 0\)"):
        dbg["dbgpkg"].neg_index[4, 32](np.ones(100, f32), np.zeros(100, f32))
    m = np.zeros((5, 6), i64)
    dbg["dbgpkg"].grid2[(1, 1), (8, 8)](m, 6)
    r, c = np.indices(m.shape)
    np.testing.assert_array_equal(m, r * 100 + c)
    with pytest.raises(IndexError, match=r"thread \(\d, \d, 0\), block \(0, 0, 0\)"):
        dbg["dbgpkg"].grid2[(1, 1), (8, 8)](m, 7)


def test_release_build_has_no_checks(dbg):
    x = np.arange(200, dtype=f32)
    out = np.zeros(99, f32)
    dbg["relpkg"].shift_left[4, 32](x[:100].copy(), out)  # reads x[100]: unchecked
    np.testing.assert_array_equal(out, x[1:100])
    y = np.array([1, -2, 3, -4], f32)
    out = np.zeros(4, f32)
    dbg["relpkg"].checked[1, 4](y, out)  # asserts are compiled in debug builds only
    np.testing.assert_array_equal(out, y * 2)


def test_debug_assert(dbg, debug_pkgs):
    line = line_of(debug_pkgs["dbgpkg"] / "kern.py", "assert x[i] >= 0")
    y = np.array([1, 2, 3, -4, 5, 6], f32)
    with pytest.raises(AssertionError) as info:
        dbg["dbgpkg"].checked[2, 4](y, np.zeros(6, f32))
    msg = str(info.value)
    assert msg.startswith("x must not be negative (in kernel 'dbgpkg.kern.checked'")
    assert f"dbgpkg/kern.py:{line}" in msg
    assert "thread (3, 0, 0), block (0, 0, 0)" in msg
    with pytest.raises(AssertionError, match="^x must not be negative$"):
        dbg["dbgpkg"].checked.simulate[2, 4](y, np.zeros(6, f32))
    out = np.zeros(6, f32)
    dbg["dbgpkg"].checked[2, 4](np.abs(y), out)
    np.testing.assert_array_equal(out, np.abs(y) * 2)


# ---------------------------------------------------------------------- GPU-only kernels


GPU_ONLY_PKG = {
    "kern.py": """
        import gpuaot
        import gpuaot as ga
        from gpuaot import Array, f32

        @ga.kernel
        def block_sum(x: Array[f32], out: Array[f32]):
            buf = ga.shared_array(f32, 32)
            t = ga.thread_idx.x
            i = ga.grid(1)
            buf[t] = x[i] if i < x.shape[0] else f32(0)
            ga.syncthreads()
            if t == 0:
                s = f32(0)
                for k in range(32):
                    s += buf[k]
                out[ga.block_idx.x] = s

        @ga.kernel
        def barrier_only(x: Array[f32]):
            i = ga.grid(1)
            gpuaot.syncthreads()
            x[i] = 1

        @ga.device_only
        def fast(v):
            return v * 2

        @ga.kernel
        def uses_fast(x: Array[f32]):
            i = ga.grid(1)
            if i < x.shape[0]:
                x[i] = fast(x[i])

        @ga.kernel
        def cpu_fine(x: Array[f32]):
            i = ga.grid(1)
            if i < x.shape[0]:
                x[i] = x[i] + 1
        """,
}


@pytest.fixture(scope="module")
def gpu_only_pkg(kit, tmp_path_factory):
    src = {k: textwrap.dedent(v).lstrip() for k, v in GPU_ONLY_PKG.items()}
    root = kit.write_package(tmp_path_factory.mktemp("gpuonly") / "gpuonly", src)
    res = kit.build(root, cache_dir=tmp_path_factory.getbasetemp() / "cache")
    return root, res


def test_gpu_only_kernel_on_cpu_names_the_reason(kit, gpu_only_pkg, monkeypatch):
    root, res = gpu_only_pkg
    kit.import_package(root, monkeypatch)
    kern = __import__("gpuonly.kern", fromlist=["kern"])
    x = np.ones(64, f32)
    cases = [
        (
            kern.block_sum,
            (x, np.zeros(2, f32)),
            "ga.shared_array(f32, 32)",
            "ga.shared_array",
            "'shared_array' has no CPU implementation",
        ),
        (
            kern.barrier_only,
            (x,),
            "gpuaot.syncthreads()",
            "gpuaot.syncthreads",
            "'syncthreads' has no CPU implementation",
        ),
        (
            kern.uses_fast,
            (x,),
            "fast(x[i])",
            "fast(",
            "'gpuonly.kern.fast' has no CPU implementation",
        ),
    ]
    for k, args, marker, col_marker, message in cases:
        line = line_of(root / "kern.py", marker)
        col = (root / "kern.py").read_text().splitlines()[line - 1].index(col_marker) + 1
        with pytest.raises(TypeError) as info:
            k[2, 32](*args)
        msg = str(info.value)
        assert msg.startswith(f"kernel 'gpuonly.kern.{k.__name__}' has no CPU implementation: ")
        assert message in msg
        assert f"kern.py:{line}:{col}" in msg
    assert (x == 1).all()
    gpu_only = sorted(
        k["name"]
        for k in res.manifest["kernels"]
        if all(s["gpu_only"] for s in k["specializations"])
    )
    assert gpu_only == ["barrier_only", "block_sum", "uses_fast"]
    # The CPU-capable kernel of the same package runs; simulate runs the GPU-only ones.
    kern.cpu_fine[2, 32](x)
    np.testing.assert_array_equal(x, np.full(64, 2, f32))
    y = np.arange(64, dtype=f32)
    out = np.zeros(2, f32)
    kern.block_sum.simulate[2, 32](y, out)
    np.testing.assert_array_equal(out, y.reshape(2, 32).sum(axis=1))
    kit.unload("gpuonly")


@pytest.mark.parametrize("pkg", ["dbgpkg", "relpkg"])
def test_raise_in_3d_launch(dbg, debug_pkgs, pkg):
    """Exactly one thread of a 3-D grid of 3-D blocks raises: all six indices come back."""
    grid, block = (2, 3, 2), (4, 2, 3)
    target = (5, 4, 3)  # absolute (x, y, z)
    line = line_of(debug_pkgs[pkg] / "kern.py", 'raise LookupError("found it")')
    with pytest.raises(LookupError) as info:
        dbg[pkg].raise_at3[grid, block](np.array(target, i64))
    tid = tuple(t % b for t, b in zip(target, block))
    bid = tuple(t // b for t, b in zip(target, block))
    msg = str(info.value)
    assert msg.startswith(f"found it (in kernel '{pkg}.kern.raise_at3' at {pkg}/kern.py:{line}")
    assert msg.endswith(f"thread {tid}, block {bid})"), msg
    dbg[pkg].raise_at3[grid, block](np.array([8, 0, 0], i64))  # out of the grid: no raise


def test_bare_raise_without_message(dbg):
    with pytest.raises(ValueError, match=r"^\(in kernel 'dbgpkg.kern.bare_raise' at "):
        dbg["dbgpkg"].bare_raise[1, 4](np.array([1, 2, -3, 4], f32))
    with pytest.raises(ValueError, match=r"^$"):
        dbg["dbgpkg"].bare_raise.simulate[1, 4](np.array([1, 2, -3, 4], f32))


def test_debug_bounds_check_in_host_function(dbg, debug_pkgs):
    x = np.arange(5, dtype=f32)
    assert dbg["dbgpkg"].host_get(x, 4) == f32(4)
    line = line_of(debug_pkgs["dbgpkg"] / "kern.py", "return x[k]")
    with pytest.raises(IndexError) as info:
        dbg["dbgpkg"].host_get(x, 5)
    msg = str(info.value)
    assert msg == (
        f"index out of bounds (in host function 'dbgpkg.kern.host_get' at dbgpkg/kern.py:{line})"
    )
    with pytest.raises(IndexError):
        dbg["dbgpkg"].host_get(x, -1)


# ---------------------------------------------------------------------- concurrency


def test_concurrent_launches_from_python_threads(conf):
    """Eight Python threads launch at once; every other one raises: each launch sees only
    its own exception, and every clean launch computes its own result."""
    from concurrent.futures import ThreadPoolExecutor

    n = 6000  # above the launcher's inline threshold: the blocks go to its helpers
    kernel = conf.module.raise_at  # imported once, before the threads

    def job(k):
        out = np.zeros(n, i64)
        target = 1000 + k if k % 2 else -1
        try:
            kernel[47, 128](target, out)
        except ValueError as e:
            return k, str(e)
        return k, out

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(job, range(16)))
    for k, r in results:
        if k % 2:
            t = 1000 + k
            assert isinstance(r, str) and f"thread ({t % 128}, 0, 0), block ({t // 128}, 0, 0)" in r
        else:
            np.testing.assert_array_equal(r, np.arange(n) * 2)


@pytest.mark.parametrize("threads", ["1", "3", "16"])
def test_any_worker_count_gives_the_same_result(conf, monkeypatch, threads):
    monkeypatch.setenv("GPUAOT_NUM_THREADS", threads)
    rng = np.random.default_rng(int(threads))
    x = rng.integers(0, 1000, 20000).astype(i64)
    bins = np.zeros(17, i64)
    conf.module.histogram[79, 256](x, bins)
    np.testing.assert_array_equal(bins, np.bincount(x % 17, minlength=17))
    order, counter = np.full(20000, -1, i64), np.zeros(1, i64)
    conf.module.tickets[79, 256](order, counter)
    assert counter[0] == 20000
    np.testing.assert_array_equal(np.sort(order), np.arange(20000))


def test_zero_range_step_raises(conf):
    """range(a, b, 0) with a run-time step: Python's ValueError, not an endless loop."""
    line = line_of(conf.root / "control.py", "for j in range(start, stop, step):")
    with pytest.raises(ValueError) as info:
        conf.module.dynamic_range[1, 1](5, 0, 0, np.zeros(8, i64), np.zeros(1, i64))
    msg = str(info.value)
    assert msg.startswith("range() arg 3 must not be zero (in kernel 'conformance.control.")
    assert f"conformance/control.py:{line}" in msg
