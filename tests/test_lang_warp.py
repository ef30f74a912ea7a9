"""numba-cuda's warp API (``syncwarp``, the ``*_sync`` shuffles, votes and matches,
``activemask``, ``lanemask_lt``) and dynamic shared memory (``shared_array(dtype, 0)`` with
``kernel[grid, block, stream, nbytes]``), without a GPU: ptxas assembles fixtures/warp_pkg for
every default architecture, the PTX holds the instructions they promise (ptxas's input, not
our IR), the CPU build says why each kernel is GPU-only, and ``simulate`` gives numpy's
answer, partial member masks included.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import gpuaot as ga
from gpuaot import Array, i32
from gpuaot.cli import main

ARCHS = ["sm_75", "sm_80", "sm_90"]
W = 32


@pytest.fixture(scope="module")
def warp_pkg(tmp_path_factory, kit):
    from gpuaot.compiler.driver import BuildOptions, build_package

    if shutil.which("ptxas") is None:
        pytest.skip("ptxas not found")
    root = tmp_path_factory.mktemp("warp")
    pkg = kit.copy_package(kit.FIXTURES / "warp_pkg", root)
    result = build_package(BuildOptions.resolve(str(pkg), cache_dir=str(root / "cache")))
    return root, pkg, result


@pytest.fixture
def w(warp_pkg, kit, monkeypatch):
    _, pkg, _ = warp_pkg
    yield kit.import_package(pkg, monkeypatch)
    kit.unload("warp_pkg")


def _emit(root, monkeypatch, fn: str, *args: str):
    monkeypatch.chdir(root)
    return CliRunner().invoke(main, ["emit", f"warp_pkg.kernels:{fn}", *args])


# ------------------------------------------------------------------ the build


def test_ptxas_assembles_every_kernel_for_every_default_arch(warp_pkg):
    _, _, result = warp_pkg
    m = result.manifest
    specs = {k["name"]: k["specializations"] for k in m["kernels"]}
    assert len(specs) == 10
    for img in m["images"]:
        assert sorted((e["kind"], e["arch"]) for e in img["entries"]) == sorted(
            [("elf", a) for a in ARCHS] + [("ptx", "sm_75")]
        )
    gpu_only = {n for n, (s,) in specs.items() if s["gpu_only"]}
    assert gpu_only == set(specs) - {"scale"}
    assert all(specs[n][0]["gpu"] is not None for n in specs)


@pytest.mark.parametrize(
    "fn,wanted",
    [
        (
            "shuffles",
            [
                "shfl.sync.idx.b32",
                "shfl.sync.up.b32",
                "shfl.sync.down.b32",
                "shfl.sync.bfly.b32",
                "bar.warp.sync \t-1;",
            ],
        ),
        (
            "votes",
            ["vote.sync.ballot.b32", "vote.sync.all.pred", "vote.sync.any.pred", "vote.sync.uni"],
        ),
        ("matches", ["match.any.sync.b64", "match.all.sync.b64", "match.any.sync.b32"]),
        ("half_warps", ["65535;", "-65536;"]),  # the member masks reach the instructions
        ("compact", ["%lanemask_lt", "vote.sync.ballot.b32", "popc.b32"]),
        ("active_lanes", ["activemask.b32"]),
        ("dyn_reverse", [".extern .shared .align 16 .b8 gpuaot_dynamic_shared[];"]),
        ("grid_prefix", ["atom.global.add.u32 \t%r", "[gpuaot_grid_barrier]", "membar.gl;"]),
    ],
)
def test_the_ptx_has_the_instructions(warp_pkg, monkeypatch, fn, wanted):
    root, _, _ = warp_pkg
    result = _emit(root, monkeypatch, fn, "--stage", "ptx", "--target", "sm_75")
    assert result.exit_code == 0, result.output
    for want in wanted:
        assert want in result.output, want


def test_shuffle_up_clamps_at_lane_zero_and_the_others_at_31(warp_pkg, monkeypatch):
    root, _, _ = warp_pkg
    ptx = _emit(root, monkeypatch, "shuffles", "--stage", "ptx", "--target", "sm_75").output
    lines = [ln for ln in ptx.splitlines() if "shfl.sync" in ln]
    assert [ln.split(",")[-2].strip() for ln in lines if ".up." in ln] == ["0"]
    assert {ln.split(",")[-2].strip() for ln in lines if ".up." not in ln} == {"31"}


def test_dynamic_shared_sizes_the_array_from_the_launch(warp_pkg, monkeypatch):
    root, _, _ = warp_pkg
    ptx = _emit(root, monkeypatch, "dyn_reverse", "--stage", "ptx", "--target", "sm_80").output
    assert "%dynamic_smem_size" in ptx
    assert ".shared .align 16 .b8 shared" not in ptx  # no static shared array at all


@pytest.mark.parametrize(
    "fn,name",
    [
        ("warp_reduce", "shfl_down_sync"),
        ("votes", "ballot_sync"),
        ("matches", "match_any_sync"),
        ("compact", "ballot_sync"),
        ("active_lanes", "activemask"),
        ("dyn_reverse", "shared_array"),
        ("grid_prefix", "grid_sync"),
    ],
)
def test_a_cpu_build_says_why_they_are_gpu_only(warp_pkg, monkeypatch, fn, name):
    root, _, _ = warp_pkg
    result = _emit(root, monkeypatch, fn, "--stage", "ir")
    assert result.exit_code == 2
    assert f"error: '{name}' has no CPU implementation" in result.output
    assert "warp_pkg/kernels.py:" in result.output
    assert "Traceback" not in result.output


BAD = [
    ("ga.shfl_sync(x, 1)", "shfl_sync() takes (mask, value, lane)"),
    ("ga.shfl_up_sync(1.5, x, 1)", "the member mask of shfl_up_sync() must be an integer"),
    ("ga.shfl_down_sync(-1, x, 1.0)", "the lane argument of shfl_down_sync() must be an integer"),
    ("ga.ballot_sync(x > 0)", "ballot_sync() takes (mask, predicate)"),
    ("ga.match_any_sync(-1, i16(x))", "shuffles move 32- or 64-bit values, not i16"),
    ("ga.syncwarp(-1, 2)", "syncwarp() takes an optional member mask"),
    ("ga.lanemask_lt(1)", "lanemask_lt() takes no arguments"),
    ("ga.this_grid()", "this_grid() is only usable as this_grid().sync(), the grid barrier"),
    ("ga.this_grid().sync(1)", "this_grid().sync() takes no arguments"),
]


@pytest.mark.parametrize("expr,message", BAD, ids=[b[0] for b in BAD])
def test_typing_errors_are_located(tmp_path, kit, monkeypatch, expr, message):
    src = (
        "import gpuaot as ga\nfrom gpuaot import Array, i16, i64\n\n\n@ga.kernel\n"
        f"def k(x: i64, out: Array[i64]):\n    out[0] = {expr}\n"
    )
    kit.write_package(tmp_path / "badwarp", {"mod.py": src})
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        main, ["emit", "badwarp.mod:k", "--stage", "ir", "--target", "sm_75"]
    )
    assert result.exit_code == 2, result.output
    assert f"badwarp/mod.py:7:14: error: {message}" in result.output
    assert "Traceback" not in result.output


# ------------------------------------------------------------------ simulate vs numpy


def _lanes(n: int) -> np.ndarray:
    return np.arange(n) % W


def _warp_src(values: np.ndarray, src: np.ndarray) -> np.ndarray:
    """values[base + src] per thread (src a lane in 0..31, or -1: its own value)."""
    n = values.shape[0]
    base = np.arange(n) - _lanes(n)
    own = src < 0
    return np.where(own, values, values[np.where(own, 0, base + src)])


def test_shuffles(w):
    rng = np.random.default_rng(3)
    n = 128
    x = rng.random(n, dtype=np.float32)
    y = rng.standard_normal(n)
    out = np.zeros(4 * n, np.float32)
    out64 = np.zeros(2 * n)
    w.shuffles.simulate[2, 64](x, y, out, out64)
    lane = _lanes(n)
    got = out.reshape(n, 4)
    np.testing.assert_array_equal(got[:, 0], _warp_src(x, 31 - lane))
    np.testing.assert_array_equal(got[:, 1], _warp_src(x, np.where(lane >= 3, lane - 3, -1)))
    np.testing.assert_array_equal(got[:, 2], _warp_src(x, np.where(lane + 5 < W, lane + 5, -1)))
    np.testing.assert_array_equal(got[:, 3], _warp_src(x, lane ^ 6))
    got64 = out64.reshape(n, 2)
    np.testing.assert_array_equal(got64[:, 0], _warp_src(y, (lane + 33) & 31))
    np.testing.assert_array_equal(got64[:, 1], _warp_src(y, lane ^ 1))


def test_warp_reduce_is_the_shuffle_tree(w):
    rng = np.random.default_rng(4)
    x = rng.random(200, dtype=np.float32)
    out = np.zeros(8, np.float32)
    w.warp_reduce.simulate[4, 64](x, out)  # 256 threads: the last warps read zeros
    v = np.zeros(256, np.float32)
    v[:200] = x
    v = v.reshape(8, W)
    for off in (16, 8, 4, 2, 1):
        shifted = np.concatenate([v[:, off:], v[:, W - off :]], axis=1)  # past 31: own value
        v = v + shifted
    np.testing.assert_array_equal(out, v[:, 0])
    np.testing.assert_allclose(out, np.pad(x, (0, 56)).reshape(8, W).sum(axis=1), 1e-5)


def test_votes(w):
    x = np.random.default_rng(5).integers(-3, 4, 96).astype(np.int32)
    x[64:] = 2  # a warp where every predicate holds
    out = np.zeros(4 * 96, np.uint32)
    w.votes.simulate[3, 32](x, out)
    got = out.reshape(96, 4)
    for warp in range(3):
        v = x[W * warp : W * warp + W]
        p = v > 0
        ballot = int(np.sum(p.astype(np.uint64) << np.arange(W, dtype=np.uint64)))
        want = [ballot, int(p.all()), int((v != 0).any()), int(p.all() or not p.any())]
        assert (got[W * warp : W * warp + W] == want).all(), (warp, want)


def test_matches_compare_bits(w):
    rng = np.random.default_rng(6)
    x = rng.integers(0, 3, 64).astype(np.int64)
    x[32:] = -7  # a warp where every value matches
    f = np.tile(np.array([0.0, -0.0, np.nan, 1.5], np.float32), 16)
    out = np.zeros(4 * 64, np.uint32)
    w.matches.simulate[1, 64](x, f, out)
    got = out.reshape(64, 4).astype(np.int64)
    for i in range(64):
        warp = x[i - i % W : i - i % W + W]
        same = warp == x[i]
        assert got[i, 0] == int(np.sum(same.astype(np.int64) << np.arange(W))), i
        full = bool(same.all())
        assert got[i, 1:3].tolist() == [0xFFFFFFFF if full else 0, int(full)], i
    # -0.0 is not 0.0, and a NaN matches the lanes holding the same NaN: bit compares.
    assert set(got[:, 3].tolist()) == {0x11111111 << k for k in range(4)}
    assert got[1, 3] == 0x22222222 and got[2, 3] == 0x44444444


def test_partial_masks_half_warps(w):
    x = np.random.default_rng(7).integers(-2, 9, 64).astype(np.int32)
    x[48:] = np.abs(x[48:]) + 1  # the second warp's upper half: every predicate holds
    out = np.zeros(128, np.int32)
    w.half_warps.simulate[1, 64](x, out)
    got = out.reshape(64, 2)
    lane = _lanes(64)
    low = lane < 16
    np.testing.assert_array_equal(got[low, 0], _warp_src(x, lane ^ 1)[low])
    np.testing.assert_array_equal(got[~low, 0], _warp_src(x, np.full(64, 16))[~low])
    for warp in range(2):
        v = x[W * warp : W * warp + W]
        ballot = int(np.sum((v[:16] > 0).astype(np.int64) << np.arange(16)))
        assert (got[W * warp : W * warp + 16, 1] == ballot).all()
        assert (got[W * warp + 16 : W * warp + W, 1] == int((v[16:] > 0).all())).all()


def test_compact_with_lanemask_lt(w):
    x = np.random.default_rng(8).integers(0, 100, 96).astype(np.int32)
    out = np.full(96, -1, np.int32)
    count = np.zeros(3, np.int32)
    w.compact.simulate[3, 32](x, out, count)
    for warp in range(3):
        v = x[W * warp : W * warp + W]
        kept = v[v % 3 == 0]
        assert count[warp] == kept.size
        np.testing.assert_array_equal(out[W * warp : W * warp + kept.size], kept)
        assert (out[W * warp + kept.size : W * warp + W] == -1).all()


def test_dynamic_shared_memory(w):
    x = np.random.default_rng(9).random(96, dtype=np.float32)
    out = np.zeros(96, np.float32)
    bits = np.zeros(96 + 3, np.uint32)
    w.dyn_reverse.simulate[3, 32, 0, 4 * 32 + 6](x, out, bits)  # 134 bytes: 33 f32s
    np.testing.assert_array_equal(out, x.reshape(3, 32)[:, ::-1].ravel())
    np.testing.assert_array_equal(bits[:96], x.view(np.uint32))  # both arrays view one buffer
    assert bits[96:].tolist() == [33, 33, 33]  # nbytes // itemsize, as numba's shape


def test_activemask_has_no_simulate_meaning(w):
    with pytest.raises(RuntimeError, match="activemask\\(\\) has no simulate meaning"):
        w.active_lanes.simulate[1, 32](np.zeros(32, np.uint32))


@ga.kernel
def _leaves_a_lane_out(out: Array[i32]):
    i = ga.grid(1)
    out[i] = ga.shfl_sync(0x0000FFFF, i32(i), 0)


@ga.kernel
def _reads_outside_the_mask(out: Array[i32]):
    i = ga.grid(1)
    if ga.lane_id() < 16:
        out[i] = ga.shfl_sync(0x0000FFFF, i32(i), 20)


@ga.kernel
def _partial_warp(out: Array[i32]):
    i = ga.grid(1)
    out[i] = i32(ga.ballot_sync(0xFFFFFFFF, True))
    out[i] += ga.shfl_down_sync(0xFFFFFFFF, i32(i), 4) * 1000


def test_undefined_masks_are_errors_under_simulate():
    out = np.zeros(32, np.int32)
    with pytest.raises(RuntimeError, match="lane 16 calls it with member mask 0x0000ffff"):
        _leaves_a_lane_out.simulate[1, 32](out)
    with pytest.raises(
        RuntimeError, match="lane [0-9]+ reads lane 20, which member mask 0x0000ffff"
    ):
        _reads_outside_the_mask.simulate[1, 32](out)


def test_a_full_mask_on_a_partial_warp_names_the_threads_there():
    out = np.zeros(40, np.int32)
    _partial_warp.simulate[1, 40](out)  # the second warp has 8 threads
    i = np.arange(40)
    ballot = np.where(i < 32, 0xFFFFFFFF, 0xFF).astype(np.uint32).view(np.int32)
    src = np.where((i % 32 + 4 < 32) & (i + 4 < 40), i + 4, i)
    np.testing.assert_array_equal(out, ballot + src * 1000)


# ------------------------------------------------------------------ the launch configuration


def test_four_item_launch_configuration(w):
    x = np.arange(10, dtype=np.float32)
    out = np.zeros(10, np.float32)
    w.scale[1, 16, None, 64](np.float32(2), x, out)  # CPU launch: nbytes is accepted, unused
    np.testing.assert_array_equal(out, 2 * x)
    out[:] = 0
    w.scale.simulate[1, 16, 0, 0](np.float32(3), x, out)
    np.testing.assert_array_equal(out, 3 * x)
    for bad in (-1, 1.5, True, "8"):
        with pytest.raises(TypeError, match="dynamic shared memory size"):
            w.scale[1, 16, 0, bad]
    with pytest.raises(TypeError, match="kernel\\[grid, block, stream, nbytes\\]"):
        w.scale[1, 16, 0, 0, 0]


# ------------------------------------------------------------------ the grid barrier


def test_only_the_grid_barrier_kernel_is_cooperative(warp_pkg):
    _, _, result = warp_pkg
    gpu = {k["name"]: k["specializations"][0]["gpu"] for k in result.manifest["kernels"]}
    assert {n for n, g in gpu.items() if "cooperative" in g} == {"grid_prefix"}
    assert gpu["grid_prefix"]["cooperative"] is True


def test_the_grid_barrier_waits_for_every_block(warp_pkg, monkeypatch):
    root, _, _ = warp_pkg
    ptx = _emit(root, monkeypatch, "grid_prefix", "--stage", "ptx", "--target", "sm_90").output
    body = ptx[ptx.index(".entry") :]
    # Two barriers, each: bar.sync, fence, one add per block, a spin on the counter, fence.
    assert body.count("atom.global.add.u32") == 2
    assert body.count("bar.sync \t0;") == 4
    assert body.count("membar.gl;") == 4
    assert "-2147483647" in body or "0x80000001" in body.lower()  # 0x80000000 - (blocks - 1)


def test_grid_prefix_under_simulate(w):
    x = np.random.default_rng(10).random(4 * 16, dtype=np.float32)
    partial = np.zeros(4, np.float32)
    out = np.zeros(64, np.float32)
    w.grid_prefix.simulate[4, 16](x, partial, out)  # every block waits for every other
    sums = np.cumsum(x.reshape(4, 16), axis=1, dtype=np.float32)[:, -1]  # in order, as the loop
    want = np.repeat(np.concatenate([[0], np.cumsum(sums[:3], dtype=np.float32)]), 16)
    np.testing.assert_array_equal(out, want.astype(np.float32))
    assert partial[0] == -1 and (partial[1:] == sums[1:]).all()  # after the second barrier


class _FakeDriver:
    """The driver calls the co-residency check makes, with a device of 2 SMs."""

    class CUdevice_attribute:
        CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH = "coop"
        CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = "sms"

    def __init__(self, coop=1):
        self.attrs = {"coop": coop, "sms": 2}
        self.calls = []

    def cuCtxGetDevice(self):
        return (0, "dev")

    def cuDeviceGetAttribute(self, attr, dev):
        return (0, self.attrs[attr])

    def cuOccupancyMaxActiveBlocksPerMultiprocessor(self, fn, threads, nbytes):
        self.calls.append((threads, nbytes))
        return (0, 3 if threads <= 256 else 1)


def test_a_grid_too_large_to_be_resident_is_a_clear_error():
    from gpuaot.runtime import cuda

    loaded = cuda._Loaded("module", "function", None)
    drv = _FakeDriver()
    cuda._check_co_resident(drv, loaded, "k", (6, 1, 1), (256, 1, 1), 0)  # 3 x 2 SMs: fits
    with pytest.raises(ValueError, match="its 7 blocks must all be resident at once") as e:
        cuda._check_co_resident(drv, loaded, "k", (7, 1, 1), (16, 16, 1), 0)
    assert "at most 6 blocks of 256 threads (3 per SM x 2 SMs)" in str(e.value)
    assert drv.calls == [(256, 0)]  # asked once per block size and shared memory
    with pytest.raises(ValueError, match="at most 2 blocks of 512 threads"):
        cuda._check_co_resident(drv, loaded, "k", (3, 1, 1), (512, 1, 1), 0)
    with pytest.raises(cuda.CudaError, match="cannot launch cooperative kernels"):
        cuda._check_co_resident(
            _FakeDriver(coop=0), cuda._Loaded(1, 2, None), "k", (1, 1, 1), (1, 1, 1), 0
        )


def test_the_cubins_hold_the_warp_instructions_for_every_arch(warp_pkg):
    """What ptxas made of them (cuobjdump -sass of the bundle), per architecture."""
    import subprocess

    from gpuaot.compiler.targets.nvtools import find_cuobjdump

    tool = find_cuobjdump()
    if tool is None:
        pytest.skip("cuobjdump wheel (nvidia-cuda-cuobjdump) not installed")
    _, _, result = warp_pkg
    proc = subprocess.run([str(tool), "-sass", str(result.bundle)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    per_arch: dict[str, str] = {}
    for part in proc.stdout.split("arch = ")[1:]:
        arch = part.split()[0]
        per_arch[arch] = per_arch.get(arch, "") + part
    assert set(per_arch) == set(ARCHS)
    for arch, sass in per_arch.items():
        for op in ("SHFL.UP", "SHFL.BFLY", "SHFL.IDX", "VOTE.ANY", "MATCH.ANY.U64", "ATOMG.E.ADD"):
            assert op in sass, (arch, op)
    # sm_75's ptxas builds vote.all/uni out of ballots and match.all out of match.any.
    for arch in ("sm_80", "sm_90"):
        for op in ("MATCH.ALL.U64", "VOTE.ALL", "VOTE.EQ"):
            assert op in per_arch[arch], (arch, op)


def test_the_schema_takes_cooperative_as_true_or_absent(warp_pkg):
    import copy

    from gpuaot.bundle.schema import ManifestError, validate

    _, _, result = warp_pkg
    m = copy.deepcopy(result.manifest)
    size = max(i["offset"] + i["size"] for i in m["images"])
    validate(m, size)
    (n,) = [k for k, kern in enumerate(m["kernels"]) if kern["name"] == "grid_prefix"]
    m["kernels"][n]["specializations"][0]["gpu"]["cooperative"] = 1
    with pytest.raises(ManifestError, match=f"kernels\\[{n}\\].specializations\\[0\\].gpu.coop"):
        validate(m, size)
