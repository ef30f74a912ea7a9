"""The compilation cache (DESIGN invariant 3): a rebuild compiles nothing, an edit recompiles
exactly the entry points whose code changed, a corrupt entry is rebuilt, not trusted.

Builds go through the CLI (``--json``: ``compiled`` / ``cached`` counts) on a copy of
fixtures/example: kernels saxpy (calls @device axpy), matmul, stencil5 (uses constant HALF),
scale_rows (calls @device softplus), row_sums; host functions dot and norm2 (calls dot).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from gpuaot.bundle import cpus
from gpuaot.cli import main

N_UNITS = 7  # 5 kernels + 2 host functions
LEVELS = cpus.default_levels(cpus.machine())  # one object per unit and CPU level
N_OBJECTS = N_UNITS * len(LEVELS)


@pytest.fixture
def pkg(kit, tmp_path):
    root = kit.copy_package(kit.FIXTURES / "example", tmp_path / "src")
    cache = tmp_path / "cache"

    def build(*extra: str) -> dict:
        result = CliRunner().invoke(
            main, ["build", str(root), "--no-gpu", "--cache-dir", str(cache), "--json", *extra]
        )
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def edit(module: str, old: str, new: str) -> None:
        path = root / module
        text = path.read_text()
        assert text.count(old) == 1, old
        path.write_text(text.replace(old, new))

    def entries() -> set:
        """The compiled objects (not the build records, which say a build is up to date, nor
        the lowered units' IR, which a rebuild reuses without lowering)."""
        return {
            p
            for p in cache.rglob("*")
            if p.is_file() and not _bookkeeping(p.relative_to(cache).parts[0])
        }

    return root, cache, build, edit, entries


def _bookkeeping(namespace: str) -> bool:
    return namespace == "records" or namespace.startswith("lowered-")


def forget_records(cache) -> None:
    """Drop the build records, so the next build reads the object cache (an intact bundle with
    a matching record is up to date without it)."""
    import shutil

    shutil.rmtree(cache / "records", ignore_errors=True)


EPS = np.finfo(np.float32).eps


def assert_fused_close(out, ref, scale: float, eps=EPS) -> None:
    """numpy's unfused result up to FMA contraction (the default): a rounding of the products."""
    np.testing.assert_allclose(out, ref, rtol=eps, atol=eps * scale)


def test_second_build_compiles_nothing(pkg):
    root, cache, build, edit, entries = pkg
    first = build()
    assert (first["compiled"], first["cached"]) == (N_OBJECTS, 0)
    n_entries = len(entries())
    assert n_entries == N_OBJECTS + 2  # and the CPU runtime's and the worker pool's objects
    second = build()
    assert (second["compiled"], second["cached"]) == (0, N_OBJECTS)
    assert len(entries()) == n_entries
    # Host and device entries never share a directory, nor do CPU levels: a CPU-only build
    # writes one host-<level>/ per level, the baseline's for the shared runtime, and the
    # C compiler's worker pool in host-pool/.
    base = cpus.BASELINE[cpus.machine()]
    want = {
        f"host-{cpus.level(n, cpus.machine()).tag}" for n in [*(lv.name for lv in LEVELS), base]
    }
    assert {p.name for p in cache.iterdir()} == want | {"records", "host-pool", "lowered-cpu"}
    for lv in LEVELS:
        assert sum(1 for p in (cache / f"host-{lv.tag}").rglob("*") if p.is_file()) == N_UNITS


@pytest.mark.parametrize(
    "module, old, new, recompiled",
    [
        # a @device helper's body: only the kernel that calls it
        ("util.py", "return a * x + y", "return y + a * x", {"saxpy"}),
        ("util.py", "if x < 20.0 else x", "if x < 30.0 else x", {"scale_rows"}),
        # a module constant: the kernel that reads it
        ("util.py", "HALF = SCALE / 5", "HALF = SCALE / 4", {"stencil5"}),
        # a host function: itself and the host function that calls it
        ("reductions.py", "s += x[i] * y[i]", "s = s + y[i] * x[i]", {"dot", "norm2"}),
        # a kernel's own body
        (
            "kernels.py",
            "acc += A[row, k] * B[k, col]",
            "acc = A[row, k] * B[k, col] + acc",
            {"matmul"},
        ),
        # comments, blank lines and docstrings change no code
        ("util.py", "@ga.device\ndef axpy", "# a comment\n\n\n@ga.device\ndef axpy", set()),
    ],
    ids=["device-axpy", "device-softplus", "constant", "host-dot", "kernel-matmul", "comment"],
)
def test_edit_recompiles_exactly_the_callers(pkg, kit, monkeypatch, module, old, new, recompiled):
    root, cache, build, edit, entries = pkg
    build()
    before = entries()
    edit(module, old, new)
    r = build()
    n = len(recompiled) * len(LEVELS)
    assert (r["compiled"], r["cached"]) == (n, N_OBJECTS - n)
    assert len(entries() - before) == n  # one new object per recompiled unit and level
    assert build()["compiled"] == 0

    # The rebuilt bundle is current and computes the edited code's results.
    mod = kit.import_package(root, monkeypatch)
    x = np.linspace(-2, 2, 300, dtype=np.float32)
    y = np.linspace(5, 6, 300, dtype=np.float32)
    out = np.zeros_like(x)
    mod.saxpy[3, 128](np.float32(2), x, y, out)
    assert_fused_close(out, np.float32(2) * x + y, 4.0)
    v = np.linspace(0, 1, 11)
    acc = 0.0
    for a in v.tolist():
        acc += a * a
    assert_fused_close(mod.dot(v, v), acc, len(v) * acc, np.finfo(np.float64).eps)
    kit.unload("example")


def test_truncated_entry_is_rebuilt(pkg, kit, monkeypatch):
    root, cache, build, edit, entries = pkg
    build()
    before = entries()
    edit("util.py", "return a * x + y", "return y + a * x")
    build()
    new = entries() - before  # the objects of the edited saxpy, one per level
    assert len(new) == len(LEVELS)
    saxpy_entry = sorted(new)[0]
    good = saxpy_entry.read_bytes()
    saxpy_entry.write_bytes(good[: len(good) // 2])
    forget_records(cache)
    r = build()
    assert (r["compiled"], r["cached"]) == (1, N_OBJECTS - 1)
    assert saxpy_entry.read_bytes() == good  # rewritten, byte for byte
    assert build()["compiled"] == 0

    mod = kit.import_package(root, monkeypatch)
    x = np.linspace(-2, 2, 300, dtype=np.float32)
    out = np.zeros_like(x)
    mod.saxpy[3, 128](np.float32(2), x, x, out)
    assert_fused_close(out, x + np.float32(2) * x, 4.0)
    kit.unload("example")


@pytest.mark.parametrize("damage", ["empty", "garbage", "flipped-byte"])
def test_every_corrupt_entry_is_rebuilt(pkg, damage):
    root, cache, build, edit, entries = pkg
    build()
    originals = {p: p.read_bytes() for p in entries()}
    for p, data in originals.items():
        if damage == "empty":
            p.write_bytes(b"")
        elif damage == "garbage":
            p.write_bytes(b"not a cache entry\n" + data[:100])
        else:
            b = bytearray(data)
            b[len(b) // 2] ^= 0x40
            p.write_bytes(bytes(b))
    forget_records(cache)
    r = build()
    assert (r["compiled"], r["cached"]) == (N_OBJECTS, 0)
    assert {p: p.read_bytes() for p in entries()} == originals


def test_adding_a_level_compiles_only_that_level(pkg):
    root, cache, build, edit, entries = pkg
    low, high = LEVELS[0].name, LEVELS[-1].name
    one = build("--cpu", low)
    assert one["cpu_variants"] == [low] and (one["compiled"], one["cached"]) == (N_UNITS, 0)
    two = build("--cpu", f"{high},{low}")
    assert two["cpu_variants"] == [low, high]
    assert (two["compiled"], two["cached"]) == (N_UNITS, N_UNITS)  # only the new level
    assert build("--cpu", f"{low},{high}")["compiled"] == 0


def test_another_libdevice_misses_the_ptx_cache(kit, tmp_path, monkeypatch):
    """libdevice's sha256 keys the PTX: another libdevice recompiles every kernel's PTX (the
    same bytes at another path do not); ptxas's cubins from unchanged PTX stay cached."""
    from gpuaot.compiler.targets import nvtools

    root = kit.write_package(
        tmp_path / "twokernels",
        {
            "k.py": "import gpuaot as ga\nfrom gpuaot import Array, f32\n\n\n"
            "@ga.kernel\ndef twice(x: Array[f32]):\n    i = ga.grid(1)\n"
            "    if i < x.shape[0]:\n        x[i] = x[i] * 2.0\n\n\n"
            "@ga.kernel\ndef inc(x: Array[f32]):\n    i = ga.grid(1)\n"
            "    if i < x.shape[0]:\n        x[i] = x[i] + 1.0\n"
        },
    )
    cache = tmp_path / "cache"

    def build() -> dict:
        forget_records(cache)
        args = [str(root), "--no-cpu", "--arch", "sm_80", "--cache-dir", str(cache), "--json"]
        result = CliRunner().invoke(main, ["build", *args])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def ptx_entries() -> int:
        return sum(1 for p in (cache / "device" / "ptx-sm_80").rglob("*") if p.is_file())

    real = nvtools.find_libdevice()
    assert build()["compiled"] == 2 and ptx_entries() == 2
    same = tmp_path / "same" / real.name
    same.parent.mkdir()
    same.write_bytes(real.read_bytes())
    monkeypatch.setattr(nvtools, "find_libdevice", lambda: same)
    assert (build()["compiled"], ptx_entries()) == (0, 2)
    other = tmp_path / "other" / real.name
    other.parent.mkdir()
    other.write_bytes(real.read_bytes() + b"\0" * 4)  # another release, as far as keys go
    monkeypatch.setattr(nvtools, "find_libdevice", lambda: other)
    again = build()
    assert (again["compiled"], again["cached"], ptx_entries()) == (2, 0, 4)
    cubins = sum(1 for p in (cache / "device" / "sm_80").rglob("*") if p.is_file())
    assert cubins == 2  # the same PTX, so the same cubins
