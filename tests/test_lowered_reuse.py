"""Lowered units are reused across builds (``Target.lower_units``): a rebuild after an edit
types every unit but lowers only those whose typed tree changed, and the bundle is byte for
byte what a build from an empty cache writes.

The reuse is keyed by a typed function's fingerprint (``frontend.fingerprint``), so its
soundness is the property "equal fingerprints ⇒ equal IR". The mutation fuzzer's sources
(one to three random edits of a conformance module and of the modules the others import)
check it: every unit of every case, typed and lowered for the CPU and the GPU, is filed under
its fingerprint, and a fingerprint met twice must have lowered to the same IR both times.
"""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest
from test_mutation_fuzz import write_case

from gpuaot.compiler import record
from gpuaot.compiler.discover import discover
from gpuaot.compiler.driver import BuildOptions, build_package, type_units
from gpuaot.compiler.frontend import fingerprint
from gpuaot.compiler.frontend.typed import Builtin
from gpuaot.compiler.targets import select
from gpuaot.compiler.targets.base import Target
from gpuaot.errors import Diagnostics

CASES = int(os.environ.get("GPUAOT_REUSE_CASES", "60"))

KERNELS = """\
import gpuaot as ga
from gpuaot import Array, f32
from .util import SCALE, twice

@ga.kernel
def first(x: Array[f32], out: Array[f32]):
    i = ga.grid(1)
    if i < x.shape[0]:
        out[i] = twice(x[i]) + 1.0

@ga.kernel
def second(x: Array[f32], out: Array[f32]):
    i = ga.grid(1)
    if i < x.shape[0]:
        out[i] = x[i] * SCALE

@ga.kernel
def third(x: Array[f32], out: Array[f32]):
    i = ga.grid(1)
    if i < x.shape[0]:
        if x[i] < 0:
            raise ValueError("negative")
        out[i] = x[i]
"""
UTIL = """\
import gpuaot as ga

SCALE = 2.5

@ga.device
def twice(v):
    return v + v
"""


def test_equal_fingerprints_lower_to_equal_ir(tmp_path, monkeypatch):
    seen: dict[tuple[str, str], str] = {}
    units = 0
    for n in range(CASES):
        case = tmp_path / f"case{n}"
        case.mkdir()
        monkeypatch.chdir(case)  # diagnostics (and raise sites) name files relative to here
        root, target, _, done = write_case(n, case)
        diag = Diagnostics()
        try:
            opts = BuildOptions.resolve(str(root), cpu_levels="x86-64-v3", arch="sm_80")
            pkg = discover(str(root), diag)
        except Exception:  # a mutation the package walk refuses: nothing to lower
            continue
        for debug in (False, True):
            opts.debug = debug
            for t in select(opts):
                typed, _ = type_units(pkg, opts, t, Diagnostics())
                for u in typed:
                    fp = fingerprint.typed_fingerprint(u.tf)
                    t.lower(u)
                    assert fp is not None, u.func.qualname
                    ir = seen.setdefault((t.name, fp), u.ir)
                    assert ir == u.ir, f"case {n} ({', '.join(done)} in {target}): {u.symbol}"
                    units += 1
    assert units > 10 * CASES  # the cases typed (most mutations keep most units)
    assert len(seen) < units  # and fingerprints met again were compared


def test_an_object_with_no_stable_text_is_never_reused():
    class Opaque:
        pass

    assert (
        fingerprint._value(Builtin("k", (1, "a", 0.5)), [], {}) == "B(k,(1,'a',f000000000000e03f))"
    )
    with pytest.raises(fingerprint._Unstable):
        fingerprint._value(Builtin("k", Opaque()), [], {})


@pytest.fixture
def pkg(kit, tmp_path):
    return kit.write_package(tmp_path / "reuse", {"kernels.py": KERNELS, "util.py": UTIL})


def _lowered(monkeypatch) -> list[str]:
    """The qualnames each later build lowers (rather than reuses)."""
    names: list[str] = []
    real = Target.lower_units

    def counting(self, units, ctx):
        calls = []
        lower = self.lower

        def spy(u):
            calls.append(u.func.qualname)
            lower(u)

        self.lower = spy
        try:
            real(self, units, ctx)
        finally:
            del self.lower
        names.extend(calls)

    monkeypatch.setattr(Target, "lower_units", counting)
    return names


def _build(root, cache, out):
    opts = BuildOptions.resolve(
        str(root), cpu_levels="x86-64-v2", arch="sm_80", cache_dir=str(cache), out_dir=str(out)
    )
    return build_package(opts)


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "module, old, new, relowered",
    [
        ("kernels.py", "twice(x[i]) + 1.0", "twice(x[i]) + 2.0", {"first"}),
        ("util.py", "return v + v", "return v * 2", {"first"}),  # the helper's one caller
        ("util.py", "SCALE = 2.5", "SCALE = 3.5", {"second"}),  # the constant's one reader
        ("kernels.py", '"negative"', '"below zero"', {"third"}),  # a raise site's message
        ("util.py", "import gpuaot as ga\n", "import gpuaot as ga\n\n# a comment\n", set()),
    ],
)
def test_a_rebuild_lowers_only_what_changed(
    pkg, tmp_path, monkeypatch, module, old, new, relowered
):
    cache = tmp_path / "cache"
    _build(pkg, cache, tmp_path / "o1")
    lowered = _lowered(monkeypatch)
    path = pkg / module
    path.write_text(path.read_text().replace(old, new))
    res = _build(pkg, cache, tmp_path / "o2")
    # once per target (CPU, GPU); the comment moves the helper's and the constant's lines,
    # which no IR records, and changes nothing
    assert sorted(lowered) == sorted(f"reuse.kernels.{k}" for k in relowered for _ in range(2))
    monkeypatch.undo()
    cold = _build(pkg, tmp_path / "cold-cache", tmp_path / "o3")
    assert sha(res.bundle) == sha(cold.bundle)


def test_a_compiler_change_lowers_everything_again(pkg, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    _build(pkg, cache, tmp_path / "o1")
    lowered = _lowered(monkeypatch)
    monkeypatch.setattr(record, "_compiler_sources", lambda: "another compiler")
    _build(pkg, cache, tmp_path / "o2")
    assert sorted(set(lowered)) == [f"reuse.kernels.{k}" for k in ("first", "second", "third")]
    assert len(lowered) == 6


def test_lowering_reads_no_node_location():
    """The fingerprint leaves the nodes' positions out, so the code that lowers (and the
    operations' lowering rules) must not read them: a raise site's location comes from the
    typed function's ``sites``, which the fingerprint keeps."""
    import re
    from pathlib import Path

    compiler = Path(fingerprint.__file__).resolve().parents[1]
    files = [*(compiler / "lower").glob("*.py"), *(compiler / "targets").rglob("*.py")]
    files += (compiler / "ops").glob("*.py")
    reads = re.compile(r"\b(lineno|end_lineno|col_offset|end_col_offset)\b|\.loc\(")
    found = [f"{p.name}:{k}" for p in files for k, line in enumerate(p.read_text().splitlines(), 1)
             if reads.search(line)]  # fmt: skip
    assert found == [], "lowering reads a location: add the positions to the fingerprint"


@pytest.mark.parametrize(
    "name", ["example", "conformance", "random_pkg", "warp_pkg", "gpu_features"]
)
def test_a_rebuild_that_reuses_every_unit_writes_the_same_bundle(kit, name, tmp_path, monkeypatch):
    """Every fixture package, built again with its lowered units all taken from the cache
    (the build record dropped, so the build runs): nothing is lowered, and the bundle is
    byte for byte the first one."""
    root = kit.copy_package(kit.FIXTURES / name, tmp_path / "src")
    cache = tmp_path / "cache"
    first = _build(root, cache, tmp_path / "out")
    shutil.rmtree(cache / record.NAMESPACE)
    lowered = _lowered(monkeypatch)
    again = _build(root, cache, tmp_path / "out")
    assert not again.up_to_date and lowered == []
    assert sha(again.bundle) == sha(first.bundle)


@pytest.mark.parametrize(
    "entry", [b"not json", b'{"ir": "x"}', b'{"symbol": 1, "ir": "", "sites": 3}']
)
def test_an_entry_that_is_not_a_lowered_unit_is_lowered_again(pkg, tmp_path, monkeypatch, entry):
    """An entry whose checksum holds but whose content is no lowered unit (another version's,
    a bug's) is not trusted: the unit is lowered, the entry rewritten, the bundle the same."""
    from gpuaot.compiler.cache import Cache

    cache = tmp_path / "cache"
    first = _build(pkg, cache, tmp_path / "out")
    shutil.rmtree(cache / record.NAMESPACE)
    store = Cache(cache)
    for path in (cache / "lowered-cpu").rglob("*"):
        if path.is_file():
            store.put("lowered-cpu", path.name, entry)
    lowered = _lowered(monkeypatch)
    again = _build(pkg, cache, tmp_path / "out")
    assert sorted(lowered) == [f"reuse.kernels.{k}" for k in ("first", "second", "third")]
    assert sha(again.bundle) == sha(first.bundle)
