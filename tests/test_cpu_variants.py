"""CPU variants (SPEC §3, §4): one bundle, a variant per CPU level, the best one bound at run
time, never an illegal instruction.

Oracles: ``objdump -d`` (which registers each variant's code uses), the kernel's own view of
this CPU (``/proc/cpuinfo`` flags against the bundle's CPUID probe), numpy (every variant
computes the same results), and the CLI's exit codes. The runs on other CPUs (qemu) are in
``test_cpu_qemu.py``; the conformance suite runs on every variant here
(``test_conformance.py``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner
from cpu_levels_kit import run_check

from gpuaot.bundle import abi, cpus
from gpuaot.cli import main

ARCH = cpus.machine()
DEFAULTS = [lv.name for lv in cpus.default_levels(ARCH)]
x86_only = pytest.mark.skipif(ARCH != "x86_64", reason="x86-64 levels")


@pytest.fixture(scope="module")
def example(built):
    return built("example")


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


# ---------------------------------------------------------------------- levels


def test_parse_levels_sorts_dedups_and_names_the_known_ones():
    got = cpus.parse_levels("x86-64-v4, native,x86-64-v2,x86-64-v4", "x86_64")
    assert [getattr(lv, "name", lv) for lv in got] == ["x86-64-v2", "x86-64-v4", "native"]
    assert [lv.name for lv in cpus.parse_levels(["armv8.2-a", "armv8-a"], "aarch64")] == [
        "armv8-a",
        "armv8.2-a",
    ]
    for bad, why in [
        ("", "needs one or more levels"),
        (" , ", "needs one or more levels"),
        ("x86-64,,x86-64-v2", "an empty level"),
        ("x86-64-v5", "not a known CPU level"),
        ("armv8-a", "a level for aarch64, not x86_64"),
    ]:
        with pytest.raises(ValueError, match=why) as e:
            cpus.parse_levels(bad, "x86_64")
        assert "x86-64-v2, x86-64-v3, x86-64-v4, native" in str(e.value) or "empty" in why


def test_each_level_requires_the_one_below():
    for arch in ("x86_64", "aarch64"):
        levels = [lv for lv in cpus.LEVELS if lv.arch == arch]
        for lower, higher in zip(levels, levels[1:]):
            assert set(lower.requires) < set(higher.requires), (lower.name, higher.name)
        assert set(levels[-1].requires) <= cpus.detectable(arch)  # every one is checked


def _words(values: dict[str, int]) -> list[int]:
    w = [0] * len(cpus.PROBE_WORDS)
    for name, value in values.items():
        w[cpus.PROBE_WORDS.index(name)] = value
    return w


def _bits(*names: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in names:
        word, bit = cpus.X86_BITS[n]
        out[word] = out.get(word, 0) | 1 << bit
    return out


V4_CPU = _bits(*cpus.level("x86-64-v4", "x86_64").requires)
OSXSAVE = 1 << 27


def _v4_words(xcr0: int, osxsave: bool = True) -> list[int]:
    w = dict(V4_CPU)
    if osxsave:
        w["1.ecx"] |= OSXSAVE
    return _words({"max_leaf": 7, "max_ext": 0x80000001, "xcr0.lo": xcr0, **w})


def test_avx_counts_only_when_the_os_saves_its_registers():
    """XCR0 decides: a CPU with AVX-512 is v4 only where the OS enables opmask and zmm
    state, v3 where it saves ymm only, and v2 where it has not set OSXSAVE at all."""
    full = cpus.x86_features(_v4_words(0xE7))
    assert cpus.best_level_name(full, "x86_64") == "x86-64-v4"
    ymm_only = cpus.x86_features(_v4_words(0x7))
    assert "avx2" in ymm_only and "avx512f" not in ymm_only
    assert cpus.best_level_name(ymm_only, "x86_64") == "x86-64-v3"
    sse_only = cpus.x86_features(_v4_words(0x3))
    assert "avx" not in sse_only and "fma" not in sse_only and "sse4.2" in sse_only
    no_osxsave = cpus.x86_features(_v4_words(0xE7, osxsave=False))
    assert cpus.best_level_name(no_osxsave, "x86_64") == "x86-64-v2"
    assert cpus.best_level_name(frozenset({"sse", "sse2"}), "x86_64") == "below x86-64"


def test_aarch64_hwcaps():
    hw = sum(1 << cpus.ARM_BITS[n][1] for n in cpus.level("armv8.2-a", "aarch64").requires)
    assert cpus.best_level_name(cpus.arm_features(hw, 0), "aarch64") == "armv8.2-a"
    base = (1 << 0) | (1 << 1)  # HWCAP_FP | HWCAP_ASIMD
    assert cpus.best_level_name(cpus.arm_features(base, 0), "aarch64") == "armv8-a"


# /proc/cpuinfo flag for each LLVM feature name where the two differ.
_CPUINFO = {
    "sse3": "pni",
    "sse4.1": "sse4_1",
    "sse4.2": "sse4_2",
    "sahf": "lahf_lm",
    "lzcnt": "abm",
    "bmi": "bmi1",
    "pclmul": "pclmulqdq",
    "rdrnd": "rdrand",
    "prfchw": "3dnowprefetch",
    "avxvnni": "avx_vnni",
    "avx512vbmi2": "avx512_vbmi2",
    "avx512vnni": "avx512_vnni",
    "avx512bitalg": "avx512_bitalg",
    "avx512vpopcntdq": "avx512_vpopcntdq",
    "avx512bf16": "avx512_bf16",
    "avx512fp16": "avx512_fp16",
    "amx-bf16": "amx_bf16",
    "amx-tile": "amx_tile",
    "amx-int8": "amx_int8",
    "crc32": "sse4_2",
    "sha": "sha_ni",
}
# Features Linux clears from /proc/cpuinfo although CPUID reports them: the kernel hides RDSEED
# on AMD parts whose RDSEED is unreliable (arch/x86/kernel/cpu/amd.c), so there the bundle's
# CPUID probe and Linux disagree by design.
_LINUX_MASKS = {"rdseed"}


@x86_only
def test_probe_agrees_with_the_kernel(example):
    """The bundle's CPUID/XGETBV probe against Linux's own reading of this CPU."""
    from gpuaot.runtime.bundle import load_bundle
    from gpuaot.runtime.cpu_variant import cpu_features

    example.module  # noqa: B018 - imported, so the bundle can be found
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = set(next(ln for ln in f if ln.startswith("flags")).split(":")[1].split())
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo flags")
    have = cpu_features(load_bundle("example").lib)
    checked = 0
    for name in cpus.X86_BITS:
        flag = _CPUINFO.get(name, name.replace(".", "_"))
        if name in ("xsave",) or flag not in flags and name not in have:
            continue  # absent in both
        if name in _LINUX_MASKS and flag not in flags:
            continue  # CPUID has it, Linux hid it
        assert (name in have) == (flag in flags), (name, flag)
        checked += 1
    assert checked >= 20  # the comparison is real: this CPU has at least the v2 features


# ---------------------------------------------------------------------- the bundle


def test_manifest_records_every_variant(example):
    m = example.manifest
    assert [v["level"] for v in m["cpu_variants"]] == DEFAULTS
    for v in m["cpu_variants"]:
        lv = cpus.level(v["level"], ARCH)
        assert v["portable"] is True and v["cpu"] == lv.llvm_cpu and v["tag"] == lv.tag
        assert v["requires"] == list(lv.requires)
    entries = [s["cpu"] for k in m["kernels"] for s in k["specializations"]]
    entries += m["host_functions"]
    for e in entries:
        assert sorted(e["symbols"]) == sorted(DEFAULTS)
        for level, sym in e["symbols"].items():
            assert sym.endswith("." + cpus.level(level, ARCH).tag)


def _functions(bundle) -> dict[str, str]:
    """``objdump -d``: each function's disassembly, by symbol."""
    if shutil.which("objdump") is None:
        pytest.skip("binutils (objdump) not installed")
    out = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(bundle)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    funcs: dict[str, str] = {}
    name = None
    for line in out.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if m:
            name = m.group(1)
            funcs[name] = ""
        elif name is not None:
            funcs[name] += line + "\n"
    return funcs


def _mnemonics(text: str) -> list[str]:
    return [ln.split("\t")[1].split()[0] for ln in text.splitlines() if ln.count("\t") >= 1]


@x86_only
def test_each_variant_uses_only_its_levels_registers(example):
    """v2 code has no AVX instruction at all (no VEX/EVEX ``v…`` mnemonic, no ymm/zmm); v3
    code no AVX-512 (no zmm, no opmask); shared code (runtime, probe) is baseline."""
    funcs = _functions(example.bundle)
    by_level = {
        lv: {n: t for n, t in funcs.items() if n.endswith("." + cpus.level(lv, ARCH).tag)}
        for lv in DEFAULTS
    }
    for lv, fs in by_level.items():
        assert len(fs) >= 7, (lv, sorted(fs))  # the 7 entry points at least, with their helpers
    v2 = "".join(by_level["x86-64-v2"].values())
    assert not re.search(r"%[yz]mm", v2)
    assert not [m for m in _mnemonics(v2) if m.startswith("v")]
    v3 = "".join(by_level["x86-64-v3"].values())
    assert re.search(r"%ymm", v3)  # the check sees vector code: v3 does use AVX2
    assert not re.search(r"%zmm|%k[0-7]", v3)
    pool = {f"{abi.POOL_PREFIX}{f}" for f in ("size", "init", "max_jobs", "work", "run", "stop")}
    shared = {"gpuaot_rt_report_exception", cpus.PROBE_SYMBOL} | pool  # (the pool: C, by cc)
    for name in shared:
        assert name in funcs
        assert not [m for m in _mnemonics(funcs[name]) if m.startswith("v")], name
    assert "cpuid" in _mnemonics(funcs[cpus.PROBE_SYMBOL])
    # every gpuaot function belongs to a variant or is one of the shared ones
    ours = [n for n in funcs if n.startswith("gpuaot")]
    tagged = {n for fs in by_level.values() for n in fs}
    assert set(ours) - tagged == shared


def runnable_here(example) -> list[str]:
    from gpuaot.runtime.bundle import load_bundle
    from gpuaot.runtime.cpu_variant import cpu_features

    example.module  # noqa: B018 - imported, so the bundle can be found
    have = cpu_features(load_bundle("example").lib)
    return [v["level"] for v in example.manifest["cpu_variants"] if set(v["requires"]) <= have]


def test_default_binds_the_highest_variant_this_cpu_runs(example):
    from gpuaot.runtime.bundle import load_bundle

    levels = runnable_here(example)
    assert levels, "this CPU runs none of the default levels"
    r = run_check(example.root.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"level {levels[-1]}\n" in r.stdout and "ok 7/7" in r.stdout
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        if " avx512vl" in f.read() and ARCH == "x86_64":
            assert levels[-1] == "x86-64-v4"  # no speed lost here: the v4 code runs
    # in this process too, bound at the first call
    x = np.arange(10, dtype=np.float32)
    out = np.zeros_like(x)
    example.module.saxpy[1, 16](np.float32(3), x, x, out)
    assert load_bundle("example").cpu_level == levels[-1]


def test_every_variant_this_cpu_runs_matches_numpy(example):
    for level in runnable_here(example):
        r = run_check(example.root.parent, {"GPUAOT_CPU": level})
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"level {level}\n" in r.stdout and "ok 7/7" in r.stdout, r.stdout


def test_pinning_a_level_the_bundle_lacks_is_a_clear_error(example, monkeypatch):
    import gpuaot
    from gpuaot.runtime import bundle as rb

    r = run_check(example.root.parent, {"GPUAOT_CPU": "x86-64"})
    assert r.returncode == 3, r.stdout + r.stderr
    held = ", ".join(DEFAULTS)
    assert f"GPUAOT_CPU=x86-64: the example bundle has no such CPU variant (it holds {held})" in (
        r.stdout
    )
    assert "Traceback" not in r.stderr
    example.module  # noqa: B018
    monkeypatch.setenv("GPUAOT_CPU", "bogus")
    rb.forget("example")
    x = np.zeros(4, np.float32)
    with pytest.raises(gpuaot.UnsupportedCPUError, match="GPUAOT_CPU=bogus"):
        example.module.saxpy[1, 4](np.float32(1), x, x, x)
    with pytest.raises(RuntimeError, match="GPUAOT_CPU=bogus"):
        example.module.dot(np.zeros(2), np.zeros(2))
    monkeypatch.delenv("GPUAOT_CPU")
    rb.forget("example")
    example.module.saxpy[1, 4](np.float32(1), x, x, x)  # unpinned: runs again


# ---------------------------------------------------------------------- build options


@pytest.fixture
def example_copy(kit, tmp_path):
    return kit.copy_package(kit.FIXTURES / "example", tmp_path / "src")


def _build(root, cache, *extra):
    return _cli("build", str(root), "--no-gpu", "--cache-dir", str(cache), "--json", *extra)


@x86_only
def test_native_is_marked_non_portable_and_runs_here(example_copy, tmp_path):
    r = _build(example_copy, tmp_path / "cache", "--cpu", "native")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["cpu_variants"] == ["native"]
    bundle = next((example_copy / "_gpuaot").glob("*.so"))
    text = _cli("inspect", str(bundle))
    assert (
        text.exit_code == 0
        and "NON-PORTABLE" in text.output
        and "cpu variants: native" in text.output
    )
    (v,) = json.loads(_cli("inspect", "--json", str(bundle)).stdout)["cpu_variants"]
    assert v["portable"] is False and v["level"] == "native"
    import llvmlite.binding as llvm

    assert v["cpu"] == llvm.get_host_cpu_name()
    assert set(v["requires"]) >= set(cpus.level("x86-64-v2", ARCH).requires)
    assert set(v["requires"]) <= cpus.detectable(ARCH)
    run = run_check(example_copy.parent)
    assert run.returncode == 0 and "level native\n" in run.stdout, run.stdout + run.stderr
    # and a default build says nothing of the kind
    r = _build(example_copy, tmp_path / "cache")
    assert "NON-PORTABLE" not in _cli("inspect", str(bundle)).output


@pytest.mark.parametrize(
    "value, why",
    [
        ("", "needs one or more levels"),
        ("x86-64-v9", "'x86-64-v9' is not a known CPU level"),
        ("armv8-a" if ARCH == "x86_64" else "x86-64-v3", "is a level for"),
        ("x86-64-v2,,x86-64-v3", "an empty level"),
    ],
    ids=["empty", "unknown", "other-arch", "empty-item"],
)
def test_bad_levels_are_usage_errors_and_keep_the_bundle(example_copy, tmp_path, value, why):
    assert _build(example_copy, tmp_path / "cache").exit_code == 0
    bundle = next((example_copy / "_gpuaot").glob("*.so"))
    before = bundle.read_bytes(), bundle.stat().st_mtime_ns
    r = CliRunner().invoke(main, ["build", str(example_copy), "--no-gpu", "--cpu", value])
    assert r.exit_code == 2, r.output
    (line,) = r.output.strip().splitlines()  # one line, no traceback
    assert line.startswith("error: ") and why in line, line
    assert (bundle.read_bytes(), bundle.stat().st_mtime_ns) == before
    assert sorted(p.name for p in bundle.parent.iterdir()) == [bundle.name]


@x86_only
def test_pyproject_sets_the_levels_and_the_command_line_wins(example_copy, tmp_path):
    (example_copy.parent / "pyproject.toml").write_text(
        '[tool.gpuaot]\ncpu = ["x86-64-v3", "x86-64-v2"]\n'
    )
    r = _build(example_copy, tmp_path / "cache")
    assert json.loads(r.stdout)["cpu_variants"] == ["x86-64-v2", "x86-64-v3"]
    r = _build(example_copy, tmp_path / "cache", "--cpu", "x86-64-v4")
    assert json.loads(r.stdout)["cpu_variants"] == ["x86-64-v4"]
    (example_copy.parent / "pyproject.toml").write_text('[tool.gpuaot]\ncpu = "x86-64-v5"\n')
    r = _build(example_copy, tmp_path / "cache")
    assert r.exit_code == 2 and "'x86-64-v5' is not a known CPU level" in r.output


@x86_only
def test_emit_asm_for_a_level(kit, monkeypatch):
    monkeypatch.syspath_prepend(str(kit.FIXTURES))
    fn = "example.kernels:saxpy"
    v2 = _cli("emit", fn, "--stage", "asm", "--cpu", "x86-64-v2")
    v3 = _cli("emit", fn, "--stage", "asm", "--cpu", "x86-64-v3")
    assert v2.exit_code == 0 and v3.exit_code == 0
    assert "%xmm" in v2.output and not re.search(r"%[yz]mm|\bv[a-z]+ps\b", v2.output)
    assert "%ymm" in v3.output
    bad = _cli("emit", fn, "--stage", "asm", "--cpu", "x86-64-v2,x86-64-v3")
    assert bad.exit_code == 2 and "one level" in bad.output
