"""Valid Python never breaks the compiler: any source encoding, non-ASCII names, deep nesting.

# -*- coding: latin-1 -*-          builds, and its bundle loads fresh (one hash definition)
def ядро(...)                      builds for the CPU and for sm_80, and runs
m.a__b  and  m__a.b                two symbols, both run right
x = ------…1 (CPython's limit)     a located "nested too deeply", exit 2, never RecursionError
"""

from __future__ import annotations

import inspect
import itertools
import random
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gpuaot.bundle.manifest import source_sha256
from gpuaot.cli import main
from gpuaot.compiler.driver import BuildOptions, build_package
from gpuaot.compiler.frontend import names
from gpuaot.compiler.frontend.nesting import MAX_DEPTH
from gpuaot.lang.types import SCALARS, array_of, f32, i64, tuple_of
from gpuaot.runtime.errors import StaleBundleError

SYMBOL = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")  # what PTX takes (and ELF, and dlsym)

KERNEL = """\
import gpuaot as ga
from gpuaot import Array, f32


@ga.kernel
def scale(x: Array[f32], out: Array[f32]):
    i = ga.grid(1)
    if i < x.shape[0]:
        out[i] = x[i] * 3.0
"""


def _write(root: Path, files: dict[str, str | bytes]) -> Path:
    root.mkdir(parents=True)
    for rel, content in {"__init__.py": "", **files}.items():
        data = content if isinstance(content, bytes) else content.encode("utf-8")
        (root / rel).write_bytes(data)
    return root


def _cli_build(root: Path, cache: Path, *extra: str):
    args = ["build", str(root), "--no-gpu", "--cpu", "x86-64-v3", "--jobs", "1"]
    result = CliRunner().invoke(main, [*args, "--cache-dir", str(cache), *extra])
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def _gpu_build(root: Path, cache: Path):
    opts = BuildOptions.resolve(
        str(root), arch="sm_80", cpu_levels="x86-64-v3", cache_dir=str(cache), jobs=1
    )
    return build_package(opts)


def _run_scale(pkg, kernel) -> None:
    x = np.linspace(-2, 2, 100, dtype=np.float32)
    out = np.zeros_like(x)
    kernel[4, 32](x, out)
    np.testing.assert_array_equal(out, x * np.float32(3))


# ---------------------------------------------------------------------- encodings

LATIN1 = (
    b"# -*- coding: latin-1 -*-\n# caf\xe9, na\xefve: latin-1 bytes in a comment\n"
    + KERNEL.encode()
    + b'\n\n@ga.kernel\ndef check(x: Array[f32]):\n    if x[0] < 0.0:\n        raise ValueError("n\xe9gatif")\n'
)
BOM_CRLF = b"\xef\xbb\xbf" + KERNEL.encode().replace(b"\n", b"\r\n")


@pytest.mark.parametrize("source", [LATIN1, BOM_CRLF], ids=["latin-1 cookie", "BOM and CRLF"])
def test_any_source_encoding_builds_and_loads_fresh(kit, tmp_path, monkeypatch, source):
    root = _write(tmp_path / "enc", {"__init__.py": "from .k import scale\n", "k.py": source})
    result = kit.build(root, cache_dir=tmp_path / "cache")
    recorded = result.manifest["modules"]["enc.k"]["sha256"]
    # One definition on both sides: the run time hashes the file with source_sha256 too.
    assert recorded == source_sha256(source)
    pkg = kit.import_package(root, monkeypatch)
    _run_scale(pkg, pkg.scale)  # no StaleBundleError

    messages = {
        site["message"]
        for k in result.manifest["kernels"]
        for spec in k["specializations"]
        for site in spec["cpu"]["sites"]
    }
    assert messages == ({"négatif"} if source is LATIN1 else set())  # decoded as latin-1
    with open(root / "k.py", "ab") as f:
        f.write(b"# an edit after the build\n")
    kit.unload("enc")
    pkg = kit.import_package(root, monkeypatch)
    with pytest.raises(StaleBundleError, match=r"enc/k\.py changed"):
        _run_scale(pkg, pkg.scale)
    kit.unload("enc")


UNDECODABLE = {
    "bad byte in a comment": (b"import gpuaot as ga\n# caf\xe9\n", 2, 6, "not valid utf-8"),
    "bad byte on line 1": (b"# caf\xe9\nimport gpuaot as ga\n", 1, 1, "encoding declaration"),
    "BOM with a latin-1 cookie": (b"\xef\xbb\xbf# coding: latin-1\nx = 1\n", 1, 1, "utf-8"),
    "unknown encoding": (b"#!/usr/bin/env python\n# coding: bogus\n", 2, 1, "unknown encoding"),
    "not a text encoding": (b"# coding: hex\nx = 1\n", 1, 1, "not a text encoding"),
    "ascii cookie": (b"# coding: ascii\nx = 1  # \xc3\xa9\n", 2, 10, "not valid ascii"),
    "null byte": (b"import gpuaot as ga\nx = 1\x00\n", 2, 6, "null bytes"),
}


@pytest.mark.parametrize("case", list(UNDECODABLE), ids=list(UNDECODABLE))
def test_undecodable_source_is_a_located_error(tmp_path, monkeypatch, case):
    data, line, col, message = UNDECODABLE[case]
    _write(tmp_path / "undec", {"k.py": KERNEL, "bad.py": data})
    monkeypatch.chdir(tmp_path)
    result = _cli_build(Path("undec"), tmp_path / "cache")
    assert result.exit_code == 2, result.output
    assert f"undec/bad.py:{line}:{col}: error: " in result.output, result.output
    assert message in result.output


def test_source_sha256_never_raises_and_needs_no_llvmlite():
    """The run time's side: stdlib only, and stale (not an exception) for a broken file."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["llvmlite"] = None  # any import of it fails
        from gpuaot.bundle.manifest import source_sha256
        import hashlib
        lf, crlf = b"x = 1\\ny = 2\\n", b"x = 1\\r\\ny = 2\\r\\n"
        assert source_sha256(lf) == source_sha256(crlf) == hashlib.sha256(lf).hexdigest()
        assert source_sha256(b"\\xef\\xbb\\xbf" + lf) == source_sha256(lf)
        latin = "# coding: latin-1\\n# é\\n"
        assert source_sha256(latin.encode("latin-1")) == hashlib.sha256(latin.encode()).hexdigest()
        for broken in (b"# \\xff\\n", b"# coding: bogus\\n", b"# coding: hex\\n"):
            assert len(source_sha256(broken)) == 64
        assert "llvmlite" not in [m for m in sys.modules if sys.modules[m] is not None]
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------- non-ASCII names

UNICODE_MODULE = """\
import gpuaot as ga
from gpuaot import Array, f32, f64


@ga.device
def удвоить(значение):
    return значение * 2.0


@ga.kernel
def ядро(вход: Array[f32], выход: Array[f32]):
    i = ga.grid(1)
    if i < вход.shape[0]:
        выход[i] = удвоить(вход[i]) + 1.0


@ga.kernel(signatures=[(Array[f32], Array[f32]), (Array[f64], Array[f64])])
def σ(x, y):
    i = ga.grid(1)
    if i < x.shape[0]:
        y[i] = -x[i]


@ga.host
def сумма(x: Array[f64]) -> f64:
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i]
    return s
"""
PAIR_A = """\
import gpuaot as ga
from gpuaot import Array, f32


@ga.kernel
def a__b(out: Array[f32]):
    out[0] = 1.0
"""
PAIR_B = PAIR_A.replace("def a__b", "def b").replace("1.0", "2.0")
UNICODE_PACKAGE = {
    "__init__.py": "from .модуль import ядро, σ, сумма\nfrom .m import a__b\nfrom .m__a import b\n",
    "модуль.py": UNICODE_MODULE,
    "m.py": PAIR_A,  # m.a__b and m__a.b: one symbol under the old mangling
    "m__a.py": PAIR_B,
}


def _entries(manifest: dict) -> dict[str, list[dict]]:
    return {k["qualname"]: k["specializations"] for k in manifest["kernels"]}


def test_non_ascii_names_build_and_run_on_the_cpu(kit, tmp_path, monkeypatch):
    root = _write(tmp_path / "uni", UNICODE_PACKAGE)
    result = kit.build(root, cache_dir=tmp_path / "cache")
    kernels = _entries(result.manifest)
    assert set(kernels) == {"uni.модуль.ядро", "uni.модуль.σ", "uni.m.a__b", "uni.m__a.b"}
    symbols = [s for sp in kernels.values() for spec in sp for s in spec["cpu"]["symbols"].values()]
    symbols += [s for h in result.manifest["host_functions"] for s in h["symbols"].values()]
    assert len(set(symbols)) == len(symbols) == 6 * len(result.manifest["cpu_variants"])
    for s in symbols:
        assert re.fullmatch(r"gpuaot_(cpu|host)_[A-Za-z0-9_$]+\.x86_64_v\d", s), s
    assert [h["qualname"] for h in result.manifest["host_functions"]] == ["uni.модуль.сумма"]

    pkg = kit.import_package(root, monkeypatch)
    x = np.linspace(-1, 1, 50, dtype=np.float32)
    out = np.zeros_like(x)
    pkg.ядро[2, 32](x, out)
    np.testing.assert_array_equal(out, x * np.float32(2) + np.float32(1))
    for dtype in (np.float32, np.float64):
        y = np.zeros(50, dtype)
        pkg.σ[2, 32](x.astype(dtype), y)
        np.testing.assert_array_equal(y, -x.astype(dtype))
    assert pkg.сумма(np.arange(10, dtype=np.float64)) == 45.0
    pair = np.zeros(1, np.float32)
    pkg.a__b[1, 1](pair)
    assert pair[0] == 1.0
    pkg.b[1, 1](pair)
    assert pair[0] == 2.0
    kit.unload("uni")

    shown = CliRunner().invoke(main, ["inspect", str(result.bundle)])
    assert shown.exit_code == 0, shown.output
    assert "uni.модуль.ядро(вход: Array[f32, 1], выход: Array[f32, 1])" in shown.output
    assert "$u" not in shown.output  # users see Python names, never mangled ones


def test_non_ascii_names_build_for_the_gpu(tmp_path, monkeypatch):
    """ptxas assembles every kernel during the build: a name it refused would fail it."""
    root = _write(tmp_path / "uni", UNICODE_PACKAGE)
    result = _gpu_build(root, tmp_path / "cache")
    kernels = _entries(result.manifest)
    gpu = {q: [spec["gpu"]["symbol"] for spec in sp] for q, sp in kernels.items()}
    assert gpu["uni.модуль.ядро"] == [
        "uni__$u043c$u043e$u0434$u0443$u043b$u044c__" + "$u044f$u0434$u0440$u043e_s0"
    ]
    assert gpu["uni.m.a__b"] == ["uni__m__a$u005f$u005fb_s0"]
    assert gpu["uni.m__a.b"] == ["uni__m$u005f$u005fa__b_s0"]
    assert gpu["uni.модуль.σ"] == [
        "uni__$u043c$u043e$u0434$u0443$u043b$u044c__$u03c3$sArray_f32_1_Array_f32_1_s0",
        "uni__$u043c$u043e$u0434$u0443$u043b$u044c__$u03c3$sArray_f64_1_Array_f64_1_s1",
    ]
    every = [s for symbols in gpu.values() for s in symbols]
    assert len(set(every)) == len(every) and all(SYMBOL.match(s) for s in every)

    monkeypatch.chdir(tmp_path)  # emit finds the package by name
    ptx = CliRunner().invoke(
        main, ["emit", "uni.модуль:ядро", "--stage", "ptx", "--target", "sm_80"]
    )
    assert ptx.exit_code == 0, ptx.output
    assert f".visible .entry {gpu['uni.модуль.ядро'][0]}(" in ptx.output


# ---------------------------------------------------------------------- mangling


def _parts():
    alphabet = ["a", "B", "_", "я", "1", "𝔘"]
    return ["".join(p) for n in (1, 2, 3) for p in itertools.product(alphabet, repeat=n)]


def test_qualname_mangling_is_injective_and_safe():
    parts = _parts()
    qualnames = {".".join(q) for q in itertools.product(parts[:60], repeat=2)}
    rng = random.Random(7)
    qualnames |= {
        ".".join(rng.choice(parts) for _ in range(rng.randint(1, 4))) for _ in range(20000)
    }
    mangled = {names.mangle_qualname(q): q for q in qualnames}
    assert len(mangled) == len(qualnames)
    assert all(SYMBOL.match(m) for m in mangled)
    assert names.mangle_qualname("example.kernels.block_sum") == "example__kernels__block_sum"
    assert names.mangle_qualname("m.a__b") != names.mangle_qualname("m__a.b")
    assert names.mangle_qualname("3d.k") == "$u0033d__k"  # PTX names cannot start with a digit


def _types(depth: int = 2):
    scalars = list(SCALARS.values())
    arrays = [array_of(s, n, lay) for s in (f32, i64) for n in (1, 2) for lay in "CA"]
    out = scalars + arrays
    if depth:
        inner = _types(depth - 1)
        out += [tuple_of(list(c)) for n in (1, 2) for c in itertools.product(inner[:8], repeat=n)]
    return out


def test_symbols_are_injective_across_kinds_signatures_and_types():
    types = _types()
    rng = random.Random(11)
    arg_lists = {tuple(rng.choice(types) for _ in range(rng.randint(0, 3))) for _ in range(5000)}
    arg_lists |= {((tuple_of([f32, i64]), f32)), (tuple_of([f32, i64, f32]),), (f32, i64, f32)}
    mangled = {names.mangle_types(a) for a in arg_lists}
    assert len(mangled) == len(arg_lists)  # e.g. ((f32, i64), f32) vs (f32, i64, f32)

    # Distinct units: a kernel or host function without signatures is its qualname; one of
    # several signatures, or a device specialisation, is its qualname and argument types.
    units = set()
    for qualname in ["m.k", "m.k.f32", "m.k$sf32", "m__k", "m.k_s0", "m.k.Array_f32_1"]:
        units.add((qualname, "kernel", False, ()))
        units.add((qualname, "host", False, ()))
        for args in [(f32,), (f32, f32), (), (array_of(f32, 1, "C"),)]:
            units.add((qualname, "kernel", True, args))
            units.add((qualname, "device", False, args))
    symbols = {}
    for qualname, kind, several, args in units:
        sym = names.function_symbol(qualname, kind, args, several)
        assert SYMBOL.match(sym.replace(".", "")), sym
        entry = "kernel" if kind == "host" else kind  # the CPU prefix tells these apart
        other = symbols.setdefault(sym, (qualname, entry, several, args))
        assert other == (qualname, entry, several, args), sym
    entries = {names.gpu_entry_symbol(s, n) for s in symbols for n in (0, 1, 12)}
    assert len(entries) == 3 * len(symbols)


def test_repeated_signature_is_a_located_error(tmp_path, monkeypatch):
    source = KERNEL.replace(
        "@ga.kernel\ndef scale(x: Array[f32], out: Array[f32]):",
        "@ga.kernel(signatures=[(Array[f32], Array[f32]), (Array[f32], Array[f32])])\n"
        "def scale(x, out):",
    )
    _write(tmp_path / "rep", {"k.py": source})
    monkeypatch.chdir(tmp_path)
    result = _cli_build(Path("rep"), tmp_path / "cache")
    assert result.exit_code == 2, result.output
    assert "rep/k.py:5:50: error: signature 2 of 'scale' repeats signature 1" in result.output
    assert "note: first: rep/k.py:5:24" in result.output
    assert "multiple definition" not in result.output


def test_a_symbol_collision_is_located_at_both_places(tmp_path, monkeypatch):
    """Whatever names a future change makes, two units never reach the linker with one."""
    from gpuaot.compiler.frontend.typed import TypedFunction

    monkeypatch.setattr(TypedFunction, "symbol", property(lambda tf: "one_name"))
    _write(tmp_path / "clash", {"k.py": KERNEL, "k2.py": KERNEL})
    monkeypatch.chdir(tmp_path)
    result = _cli_build(Path("clash"), tmp_path / "cache")
    assert result.exit_code == 2, result.output
    assert (
        "clash/k2.py:6:1: error: 'clash.k2.scale' and 'clash.k.scale' would get one symbol"
        in result.output
    )
    assert "note: clash.k.scale: clash/k.py:6:1" in result.output
    assert "multiple definition" not in result.output


def test_diagnostic_columns_count_characters(tmp_path, monkeypatch):
    source = KERNEL.replace("out[i] = x[i] * 3.0", "значение = неизвестно + x[i]")
    _write(tmp_path / "cols", {"k.py": source})
    monkeypatch.chdir(tmp_path)
    result = _cli_build(Path("cols"), tmp_path / "cache")
    assert result.exit_code == 2
    line = source.splitlines().index("        значение = неизвестно + x[i]") + 1
    col = "        значение = неизвестно + x[i]".index("неизвестно") + 1
    assert f"cols/k.py:{line}:{col}: error: unknown name 'неизвестно'" in result.output


# ---------------------------------------------------------------------- nesting


def _unary_module(depth: int) -> str:
    return (
        "import gpuaot as ga\nfrom gpuaot import Array, i64\n\n\n@ga.kernel\n"
        "def k(a: Array[i64], out: Array[i64]):\n    x = a[0]\n"
        f"    out[0] = {'-' * depth}x\n"
    )


def _elif_module(arms: int) -> str:
    body = "".join(f"    elif x == {j}:\n        out[0] = {j}\n" for j in range(1, arms))
    return (
        "import gpuaot as ga\nfrom gpuaot import Array, i64\n\n\n@ga.kernel\n"
        "def k(a: Array[i64], out: Array[i64]):\n    x = a[0]\n"
        f"    if x == 0:\n        out[0] = 0\n{body}"
    )


def _cpython_limit(template: str) -> int:
    """The deepest ``template % depth`` a fresh CPython compiles (bisected in one process)."""
    code = inspect.getsource(globals()[template]) + textwrap.dedent(
        f"""
        lo, hi = 1, 20000
        while lo < hi:
            mid = (lo + hi + 1) // 2
            try:
                compile({template}(mid), "k.py", "exec")
                lo = mid
            except (SyntaxError, RecursionError, MemoryError):
                hi = mid - 1
        print(lo)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout)


def test_nesting_within_the_limit_builds_and_runs(kit, tmp_path, monkeypatch):
    """Twice what gpuaot 0.1 typed (about 450 levels) still builds, for the CPU and the GPU."""
    deep = MAX_DEPTH - 10
    files = {
        "__init__.py": "from .u import k\n",
        "u.py": _unary_module(deep),
        "e.py": _elif_module(deep // 2).replace("def k(", "def chain("),
        "c.py": _unary_module(1)
        .replace("-x", "C")
        .replace("import", f"C = {'-' * deep}7\nimport", 1),
    }
    root = _write(tmp_path / "deep", files)
    kit.build(root, cache_dir=tmp_path / "cache")
    pkg = kit.import_package(root, monkeypatch)
    out = np.zeros(1, np.int64)
    pkg.k[1, 1](np.array([5], np.int64), out)
    assert out[0] == (-5 if deep % 2 else 5)
    kit.unload("deep")
    _gpu_build(root, tmp_path / "cache")


@pytest.mark.parametrize("template", ["_unary_module", "_elif_module"])
def test_nesting_at_cpythons_limit_is_a_located_error(tmp_path, monkeypatch, template):
    limit = _cpython_limit(template)
    assert limit > MAX_DEPTH  # the check is below CPython's limit, so reachable
    make = globals()[template]
    monkeypatch.chdir(tmp_path)
    for depth, message in [
        (MAX_DEPTH + 10, "nested too deeply: gpuaot takes up to"),
        (limit, "nested too deeply: gpuaot takes up to"),  # CPython takes it: so do we
        # CPython refuses it; gpuaot's parse, a frame or two shallower, may not yet
        (limit + 1, "nested too deeply"),
        (limit * 4, "nested too deeply for Python's parser"),
    ]:
        name = f"deep{depth}"
        _write(tmp_path / name, {"k.py": make(depth)})
        result = _cli_build(Path(name), tmp_path / "cache")
        assert result.exit_code == 2, result.output
        assert re.search(rf"{name}/k\.py:\d+:\d+: error: {message}", result.output), result.output
        assert result.output.count(": error: ") == 1, result.output


def test_deep_annotations_and_constants_are_located_errors(tmp_path, monkeypatch):
    deep = "-" * 2500
    source = (
        f"import gpuaot as ga\nfrom gpuaot import Array, f32\n\nC = {deep}1\n\n\n"
        f'@ga.kernel\ndef k(x: Array[f32], z: "{deep}f32"):\n    x[0] = z\n'
    )
    _write(tmp_path / "ann", {"k.py": source})
    monkeypatch.chdir(tmp_path)
    result = _cli_build(Path("ann"), tmp_path / "cache")
    assert result.exit_code == 2, result.output
    assert "ann/k.py:4:" in result.output and "nested too deeply" in result.output
    assert "ann/k.py:8:" in result.output and "cannot read the annotation" in result.output


def test_the_depth_check_flags_exactly_the_statements_past_the_limit():
    """``too_deep`` measures a level at a time and looks for the place only past the limit:
    on random trees, at and around a small limit, it flags what a depth-first walk that keeps
    every node's depth flags, at the same node."""
    import ast
    import random

    from gpuaot.compiler.frontend.nesting import too_deep

    def reference(tree, limit):
        out = []
        for stmt in tree.body:
            stack = [(stmt, 0, stmt)]
            while stack:
                node, depth, located = stack.pop()
                located = node if hasattr(node, "lineno") else located
                if depth > limit:
                    out.append((stmt, located))
                    break
                stack.extend((c, depth + 1, located) for c in ast.iter_child_nodes(node))
        return out

    rng = random.Random(5)
    parts = ["-{}", "({} + 1)", "f({})", "[{}]", "x[{}]", "({} if a else 2)", "(lambda: {})"]
    for _ in range(300):
        lines = []
        for _ in range(rng.randint(1, 4)):
            expr = "1"
            for _ in range(rng.randint(0, 14)):
                expr = rng.choice(parts).format(expr)
            lines.append(
                rng.choice(["y = {}", "if {}:\n    pass", "for q in {}:\n    z = 0"]).format(expr)
            )
        tree = ast.parse("\n".join(lines))
        for limit in range(3, 16):
            assert too_deep(tree, limit) == reference(tree, limit)
