"""gpuaot.random: numba-cuda's xoroshiro128+ states and streams, the same on every path.

    states = create_xoroshiro128p_states(n, seed)      # host, numpy only
    first_draws[grid, block](states, ...)               # CPU backend == simulate, bit for bit

Oracles nobody here wrote: numba-cuda (``init_xoroshiro128p_states_cpu``, and its device
functions under the CUDA simulator, run by ``.venv-bench/bin/python`` in a subprocess; skipped
where that environment is absent, as in CI), numpy (GF(2) matrix products; a vectorised
xoroshiro128+ written here from the published C source), ``simulate``, and ptxas. The
known-answer values were computed once with numba-cuda 0.30.4's ``numba.cuda.random`` and are
written in below so CI checks them without it.
"""

from __future__ import annotations

import ast
import json
import math
import os
import shutil
import subprocess
import time

import numpy as np
import pytest
from click.testing import CliRunner

from gpuaot.cli import main
from gpuaot.random import (
    create_xoroshiro128p_states,
    init_xoroshiro128p_states,
    jump_matrix,
    splitmix64,
    xoroshiro128p_jump,
    xoroshiro128p_next,
)

M64 = (1 << 64) - 1

# ---------------------------------------------------------------------- the built fixture


@pytest.fixture(scope="module")
def rpkg(kit, tmp_path_factory):
    """fixtures/random_pkg, built with ``gpuaot build --no-gpu`` into a temp dir, imported."""
    tmp = tmp_path_factory.mktemp("random")
    root = kit.copy_package(kit.FIXTURES / "random_pkg", tmp)
    args = ["build", str(root), "--no-gpu", "--cache-dir", str(tmp / "cache"), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads(_json_part(result.output))
    assert report["kernels"] == [
        "random_pkg.draws.first_draws",
        "random_pkg.draws.jump_states",
        "random_pkg.pi.monte_carlo_pi",
    ]
    pkg = kit.import_package(root)
    yield pkg
    kit.unload("random_pkg")


def _json_part(output: str) -> str:
    return output[output.index("{") : output.rindex("}") + 1]


DRAW_DTYPES = (np.uint64, np.float32, np.float64, np.float32, np.float64)
DRAW_NAMES = ("raw", "u32", "u64", "n32", "n64")


def draws(launch, n: int, rounds: int, seed: int) -> tuple[np.ndarray, dict]:
    """``first_draws`` through ``launch``: the states after, and each kind of draw."""
    states = create_xoroshiro128p_states(n, seed)
    outs = [np.zeros((n, rounds), d) for d in DRAW_DTYPES]
    launch(states, *outs)
    return states, dict(zip(DRAW_NAMES, outs))


# ---------------------------------------------------------------------- numba-cuda, the oracle

# Run twice: for the states compiled by numba (@njit: its uint64 casts wrap a negative seed),
# for the draws with NUMBA_ENABLE_CUDASIM=1 (numba's device functions, as Python), drawn by
# the fixture's own first_draws source given to numba's cuda.jit.
ORACLE = r"""
import json, sys
import warnings; warnings.simplefilter("ignore")
import numpy as np
from numba import cuda
from numba.cuda import random as nr

spec = json.loads(sys.argv[1])
out = {}
for k, (n, seed, sub) in enumerate(spec.get("inits", [])):
    st = np.empty(n, dtype=nr.xoroshiro128p_dtype)
    nr.init_xoroshiro128p_states_cpu(st, np.uint64(seed) if seed >= 2**63 else seed, sub)
    out[f"init{k}"] = st.view(np.uint64).reshape(-1, 2)
if "draws" in spec:
    found = {"cuda": cuda, "nr": nr}
    exec(spec["kernel"], found)
    first_draws = cuda.jit(found["first_draws"])
    n, rounds, seed = spec["draws"]
    states = nr.create_xoroshiro128p_states(n, seed)
    outs = [np.zeros((n, rounds), d) for d in ("u8", "f4", "f8", "f4", "f8")]
    first_draws[1, n](states, *outs)
    out["states"] = states.copy_to_host().view(np.uint64).reshape(-1, 2)
    out.update(zip(("raw", "u32", "u64", "n32", "n64"), outs))
np.savez(sys.argv[2], **out)
"""
INITS = [
    (1, 0, 0),
    (5, 1, 0),
    (300, 12345, 0),
    (7, -1, 3),
    (4, M64, 0),
    (3, 2**63, 1000),
    (0, 9, 0),
]
DRAWS = (64, 8, 1)


def numba_source(path, name: str) -> str:
    """A fixture kernel as numba-cuda source: the same body, undecorated and unannotated,
    with numba's spellings of ``ga.grid`` and ``gpuaot.random`` (imported as ``rnd``)."""
    tree = ast.parse(path.read_text())
    (fn,) = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == name]
    fn.decorator_list = []
    for a in fn.args.args:
        a.annotation = None
    return ast.unparse(fn).replace("ga.grid(", "cuda.grid(").replace("rnd.", "nr.")


@pytest.fixture(scope="module")
def numba_oracle(kit, tmp_path_factory):
    python = kit.REPO / ".venv-bench" / "bin" / "python"
    if not python.is_file():
        pytest.skip("no .venv-bench (numba-cuda): the numba oracle tests need it")
    probe = subprocess.run([str(python), "-c", "import numba.cuda.random"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("numba-cuda does not import in .venv-bench")
    tmp = tmp_path_factory.mktemp("numba")
    found = {}
    kernel = numba_source(kit.FIXTURES / "random_pkg" / "draws.py", "first_draws")
    assert "ga." not in kernel and "rnd." not in kernel, kernel
    draw_spec = {"draws": DRAWS, "kernel": kernel}
    for k, (spec, sim) in enumerate([({"inits": INITS}, "0"), (draw_spec, "1")]):
        out = tmp / f"oracle{k}.npz"
        proc = subprocess.run(
            [str(python), "-c", ORACLE, json.dumps(spec), str(out)],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "NUMBA_ENABLE_CUDASIM": sim},
        )
        assert proc.returncode == 0, proc.stderr
        found.update(np.load(out))
    return found


def test_states_are_numbas(numba_oracle):
    for k, (n, seed, sub) in enumerate(INITS):
        got = create_xoroshiro128p_states(n, seed, sub)
        np.testing.assert_array_equal(got, numba_oracle[f"init{k}"], err_msg=str((n, seed, sub)))


@pytest.mark.parametrize("path", ["cpu", "simulate"])
def test_streams_are_numbas(rpkg, numba_oracle, path):
    """Raw, uniform and f64 normal draws: numba's bits; f32 normals: within one ulp (numba
    rounds the log to f32 before the square root, gpuaot rounds once at the end)."""
    n, rounds, seed = DRAWS
    kernel = rpkg.first_draws if path == "cpu" else rpkg.first_draws.simulate
    states, got = draws(lambda *a: kernel[2, n // 2](*a), n, rounds, seed)
    np.testing.assert_array_equal(states, numba_oracle["states"])
    for name in ("raw", "u32", "u64", "n64"):
        np.testing.assert_array_equal(got[name], numba_oracle[name], err_msg=name)
    np.testing.assert_array_max_ulp(got["n32"], numba_oracle["n32"], maxulp=1)


# ---------------------------------------------------------------------- known answers

# From numba-cuda's init_xoroshiro128p_states_cpu, (seed, subsequence_start) -> states[:3].
KNOWN_STATES = {
    (0, 0): [
        (0xE220A8397B1DCDAF, 0xE220A8397B1DCDAF),
        (0x12513CE25BE05EB1, 0x70D189C276BA17A4),
        (0x65853D86B6EBE9B4, 0x062A041B9ACDA8DA),
    ],
    (1, 0): [
        (0x910A2DEC89025CC1, 0x910A2DEC89025CC1),
        (0x73C19A5348FC9098, 0x6C96C932F21D71EE),
        (0x0B3D0CD6DDFA7A4C, 0xD3C2C33E9B8E707A),
    ],
    (1, 3): [
        (0x3B80C389FCD31EE7, 0xB43C70624D182BBB),
        (0x17E0E052C5094B78, 0x8341792FB49D7386),
        (0x0FAD30181771253D, 0x48A822E88430407B),
    ],
}
# From numba-cuda's device functions under its simulator: first_draws for 2 states of seed 1,
# 3 rounds (next, uniform f32, uniform f64, normal f32, normal f64 each round).
KNOWN_DRAWS = {
    "raw": [
        [0x22145BD91204B982, 0x796AB03DBAFC33B6, 0xE3563C39A1D4A1F1],
        [0xE05863863B1A0286, 0x3C0253D987C5CCD8, 0x009C2FCD3E70B3F9],
    ],
    "u32": [
        ["0x1.8322140000000p-2", "0x1.16b3120000000p-1", "0x1.c0b31a0000000p-1"],
        ["0x1.aea7a40000000p-3", "0x1.10e1520000000p-1", "0x1.f4eda40000000p-1"],
    ],
    "u64": [
        ["0x1.d82b7d5b4fe38p-3", "0x1.6c064637e20fep-1", "0x1.abc5b9c056fa0p-4"],
        ["0x1.ad23a34de37a2p-2", "0x1.32a8258773505p-1", "0x1.391890235714cp-2"],
    ],
    "n32": [[-0.035259541, 1.0042812, 0.70092207], [-0.20831373, 2.0582385, 0.56072515]],
    "n64": [
        [-0.47684343769733817, 0.6978310499797244, 0.15426355385192045],
        [-1.7033355911810024, 0.9026424598540503, -0.20693436087171554],
    ],
}


@pytest.mark.parametrize("key", sorted(KNOWN_STATES))
def test_known_states(key):
    seed, sub = key
    got = create_xoroshiro128p_states(3, seed, sub)
    assert got.dtype == np.uint64 and got.shape == (3, 2)
    assert [tuple(map(int, row)) for row in got] == KNOWN_STATES[key]
    if sub == 0:
        assert splitmix64(seed) == KNOWN_STATES[key][0]


@pytest.mark.parametrize("path", ["cpu", "simulate"])
def test_known_draws(rpkg, path):
    kernel = rpkg.first_draws if path == "cpu" else rpkg.first_draws.simulate
    _, got = draws(lambda *a: kernel[1, 2](*a), 2, 3, 1)
    assert got["raw"].tolist() == KNOWN_DRAWS["raw"]
    for name in ("u32", "u64"):
        want = np.array([[float.fromhex(v) for v in row] for row in KNOWN_DRAWS[name]])
        np.testing.assert_array_equal(got[name], want.astype(got[name].dtype), err_msg=name)
    np.testing.assert_allclose(got["n32"], KNOWN_DRAWS["n32"], rtol=3e-7)
    np.testing.assert_allclose(got["n64"], KNOWN_DRAWS["n64"], rtol=1e-13)


# ---------------------------------------------------------------------- CPU backend == simulate


def test_cpu_backend_equals_simulate_bit_for_bit(rpkg):
    a_states, a = draws(lambda *x: rpkg.first_draws[4, 32](*x), 128, 16, 2024)
    b_states, b = draws(lambda *x: rpkg.first_draws.simulate[4, 32](*x), 128, 16, 2024)
    np.testing.assert_array_equal(a_states, b_states)
    for name in DRAW_NAMES:
        assert a[name].tobytes() == b[name].tobytes(), name

    hits = {}
    for path, kernel in (("cpu", rpkg.monte_carlo_pi), ("sim", rpkg.monte_carlo_pi.simulate)):
        states = create_xoroshiro128p_states(64, 5)
        hits[path] = np.zeros(64, np.int64)
        kernel[1, 64](states, 40, hits[path])
    np.testing.assert_array_equal(hits["cpu"], hits["sim"])


def test_host_function_draws_the_same_stream(rpkg):
    states = create_xoroshiro128p_states(3, 77)
    want = create_xoroshiro128p_states(3, 77)
    mean = sum(float(rpkg_uniform64(want, 2)) for _ in range(1000)) / 1000
    assert rpkg.mean_uniform(states, 2, 1000) == pytest.approx(mean, rel=1e-12)
    np.testing.assert_array_equal(states, want)  # advanced by the same 1000 steps


def rpkg_uniform64(states, i):
    from gpuaot.random import xoroshiro128p_uniform_float64

    return xoroshiro128p_uniform_float64(states, i)  # plain Python: runs the source


# ---------------------------------------------------------------------- the algorithm, in numpy


def reference_next(s: np.ndarray) -> np.ndarray:
    """xoroshiro128plus.c's next() on every row of ``s`` (in place); returns s0 + s1."""
    with np.errstate(over="ignore"):
        s0, s1 = s[:, 0].copy(), s[:, 1].copy()
        result = s0 + s1
        s1 ^= s0
        s[:, 0] = ((s0 << np.uint64(55)) | (s0 >> np.uint64(9))) ^ s1 ^ (s1 << np.uint64(14))
        s[:, 1] = (s1 << np.uint64(36)) | (s1 >> np.uint64(28))
    return result


def test_draws_follow_the_published_algorithm(rpkg):
    """Every draw against numpy: next() from the C source, (x >> 11) * 2**-53, its f32
    rounding, Box-Muller over two f32 uniforms (normals within 2 ulp: numpy's own log/cos)."""
    n, rounds = 256, 12
    states, got = draws(lambda *a: rpkg.first_draws[2, 128](*a), n, rounds, 99)
    s = create_xoroshiro128p_states(n, 99)

    def uniform32():
        return ((reference_next(s) >> np.uint64(11)) * 2.0**-53).astype(np.float32)

    two_pi = 2 * math.pi
    for k in range(rounds):
        np.testing.assert_array_equal(got["raw"][:, k], reference_next(s))
        np.testing.assert_array_equal(got["u32"][:, k], uniform32())
        np.testing.assert_array_equal(
            got["u64"][:, k], (reference_next(s) >> np.uint64(11)) * 2.0**-53
        )
        u1, u2 = uniform32(), uniform32()
        r = np.sqrt(-2.0 * np.log(u1.astype(np.float64)))
        want32 = (r * np.cos((np.float32(two_pi) * u2).astype(np.float64))).astype(np.float32)
        np.testing.assert_array_max_ulp(got["n32"][:, k], want32, maxulp=1)
        u1, u2 = uniform32(), uniform32()
        u1, u2 = u1.astype(np.float64), u2.astype(np.float64)
        want64 = np.sqrt(-2.0 * np.log(u1)) * np.cos(two_pi * u2)
        np.testing.assert_array_max_ulp(got["n64"][:, k], want64, maxulp=2)
    np.testing.assert_array_equal(states, s)


# ---------------------------------------------------------------------- jumps over GF(2)


def _bits(states: np.ndarray) -> np.ndarray:
    """(m, 2) uint64 -> (m, 128) 0/1, bit g of s0 then bit g of s1."""
    g = np.arange(64, dtype=np.uint64)
    return np.concatenate([(states[:, w, None] >> g) & np.uint64(1) for w in (0, 1)], axis=1)


def _unit_states() -> np.ndarray:
    units = np.zeros((128, 2), np.uint64)
    for g in range(128):
        units[g, g // 64] = np.uint64(1) << np.uint64(g % 64)
    return units


def test_jump_is_2_to_the_64_steps():
    """T (one next(), from the device function run as Python) raised to 2**64 by 64 integer
    matrix squarings mod 2 is J (the host's jump matrix, from the jump polynomial)."""
    units = _unit_states()
    stepped = units.copy()
    for g in range(128):
        xoroshiro128p_next(stepped, g)
    t = _bits(stepped).T.astype(np.int64)  # column g: the image of bit g
    for _ in range(64):
        t = (t @ t) % 2
    j = _bits(jump_matrix(0).columns).T
    assert np.array_equal(t, j)
    # ... and the device jump function is the same map.
    jumped = units.copy()
    for g in range(128):
        xoroshiro128p_jump(jumped, g)
    assert np.array_equal(_bits(jumped).T, j)
    # The powers the host keeps are J squared again and again.
    j4 = (j.astype(np.int64) @ j % 2) @ (j @ j % 2) % 2
    assert np.array_equal(_bits(jump_matrix(2).columns).T, j4)


def test_each_state_is_the_previous_jumped():
    """states[i + 1] = J states[i]: thread i + 1's stream is thread i's advanced 2**64 steps."""
    states = create_xoroshiro128p_states(1000, 3)
    j = _bits(jump_matrix(0).columns).T.astype(np.int64)
    nxt = (j @ _bits(states[:-1]).T.astype(np.int64)) % 2
    assert np.array_equal(nxt.T, _bits(states[1:]))
    assert len({tuple(r) for r in states.tolist()}) == 1000


def test_subsequence_start_skips_whole_states():
    np.testing.assert_array_equal(
        create_xoroshiro128p_states(50, 8, 21), create_xoroshiro128p_states(71, 8)[21:]
    )
    far = create_xoroshiro128p_states(2, 8, 2**64 - 1)
    j = _bits(jump_matrix(0).columns).T.astype(np.int64)
    assert np.array_equal((j @ _bits(far[:1]).T % 2).T, _bits(far[1:]))


@pytest.mark.parametrize("path", ["cpu", "simulate"])
def test_jump_kernel_is_the_next_subsequence(rpkg, path):
    kernel = rpkg.jump_states if path == "cpu" else rpkg.jump_states.simulate
    states = create_xoroshiro128p_states(16, 6)
    kernel[1, 16](states)
    np.testing.assert_array_equal(states, create_xoroshiro128p_states(16, 6, 1))


# ---------------------------------------------------------------------- statistics

N = 1000  # states; 1000 draws each of every kind: 10**6 per kind


@pytest.fixture(scope="module")
def million(rpkg):
    return draws(lambda *a: rpkg.first_draws[8, 125](*a), N, 1000, 31337)[1]


def test_uniforms_are_in_range(million):
    u64, u32 = million["u64"], million["u32"]
    assert u64.min() >= 0.0 and u64.max() < 1.0
    assert u32.min() >= 0.0 and u32.max() <= 1.0
    for u in (u64, u32):
        n = u.size  # mean 1/2, variance 1/12: within 5 standard errors
        assert abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / n)
        assert abs(u.var() - 1 / 12) < 5 * math.sqrt(1 / 180 / n)
        counts = np.bincount((u.ravel() * 100).astype(np.int64).clip(0, 99), minlength=100)
        chi2 = ((counts - n / 100) ** 2 / (n / 100)).sum()
        assert chi2 < 160  # 99 degrees of freedom: p < 1e-4 above 160


def test_normal_moments(million):
    for name in ("n32", "n64"):
        z = million[name].astype(np.float64).ravel()
        n = z.size
        assert np.isfinite(z).all()
        assert abs(z.mean()) < 5 / math.sqrt(n), name
        assert abs(z.var() - 1) < 5 * math.sqrt(2 / n), name
        assert abs((z**3).mean()) < 5 * math.sqrt(15 / n), name  # skewness 0
        assert abs((z**4).mean() - 3) < 5 * math.sqrt(96 / n), name  # kurtosis 3
        # Kolmogorov-Smirnov against the normal CDF; 1.95 / sqrt(n) is p = 0.001.
        zs = np.sort(z)[::100]
        cdf = 0.5 * (1 + np.vectorize(math.erf)(zs / math.sqrt(2)))
        emp = (np.arange(len(zs)) * 100 + 1) / n
        assert np.abs(cdf - emp).max() < 1.95 / math.sqrt(n) + 100 / n, name


def test_monte_carlo_pi(rpkg):
    states = create_xoroshiro128p_states(4096, 2)
    hits = np.zeros(4096, np.int64)
    rpkg.monte_carlo_pi[32, 128](states, 250, hits)
    n = 4096 * 250
    p = hits.sum() / n
    assert abs(4 * p - math.pi) < 4 * 5 * math.sqrt(p * (1 - p) / n)


# ---------------------------------------------------------------------- the host API


def test_a_million_states_well_under_a_second():
    create_xoroshiro128p_states(10, 1)  # the jump matrices, once
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        states = create_xoroshiro128p_states(10**6, 42)
        best = min(best, time.perf_counter() - t)
    assert best < 1.0, f"{best:.3f} s"
    j = _bits(jump_matrix(0).columns).T.astype(np.int64)
    last = (j @ _bits(states[-2:-1]).T % 2).T
    assert np.array_equal(last, _bits(states[-1:]))


def test_init_fills_in_place_and_checks_its_arguments():
    states = np.zeros((6, 2), np.uint64)
    assert init_xoroshiro128p_states(states, 4, 2) is None
    np.testing.assert_array_equal(states, create_xoroshiro128p_states(6, 4, 2))
    view = np.zeros((6, 4), np.uint64)[:, 1:3]  # not contiguous: filled all the same
    init_xoroshiro128p_states(view, 4, 2)
    np.testing.assert_array_equal(view, states)
    assert create_xoroshiro128p_states(np.int32(3), np.uint64(4)).shape == (3, 2)
    for bad, err in [
        ((np.zeros((3, 2), np.int64), 1), "uint64 array of shape"),
        ((np.zeros(6, np.uint64), 1), "uint64 array of shape"),
        (([[0, 0]], 1), "numpy array"),
        ((np.zeros((3, 2), np.uint64), 1.5), "seed must be an integer"),
    ]:
        with pytest.raises(TypeError, match=err):
            init_xoroshiro128p_states(*bad)
    with pytest.raises(ValueError, match="seed must be in"):
        create_xoroshiro128p_states(1, 2**64)
    with pytest.raises(ValueError, match="subsequence_start must be in"):
        create_xoroshiro128p_states(1, 0, -1)
    with pytest.raises(ValueError, match="n must be 0 or more"):
        create_xoroshiro128p_states(-1, 0)
    with pytest.raises(TypeError, match="n must be an integer"):
        create_xoroshiro128p_states(2.0, 0)
    # A negative seed wraps as numba's uint64(seed).
    np.testing.assert_array_equal(
        create_xoroshiro128p_states(3, -1), create_xoroshiro128p_states(3, M64)
    )


# ---------------------------------------------------------------------- GPU: ptxas


def test_ptx_assembles_for_every_default_arch(kit, tmp_path):
    from gpuaot.compiler.driver import DEFAULT_ARCHS
    from gpuaot.compiler.targets.nvtools import find_cuobjdump, find_libdevice, find_ptxas
    from gpuaot.errors import BuildError

    try:
        find_ptxas(), find_libdevice()
    except BuildError as e:
        pytest.skip(str(e))
    root = kit.copy_package(kit.FIXTURES / "random_pkg", tmp_path)
    args = ["build", str(root), "--out", str(tmp_path / "out"), "--json"]
    result = CliRunner().invoke(main, [*args, "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    report = json.loads(_json_part(result.output))
    assert report["architectures"] == list(DEFAULT_ARCHS) and report["gpu_only"] == []
    tool = find_cuobjdump()
    if tool is not None:
        listing = subprocess.run(
            [str(tool), "-lelf", report["bundle"]], capture_output=True, text=True, check=True
        ).stdout
        for arch in DEFAULT_ARCHS:
            assert listing.count(f".{arch}.cubin") == len(report["kernels"]), listing
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
