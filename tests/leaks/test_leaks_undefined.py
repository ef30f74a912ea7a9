"""``--undefined``: references no DT_NEEDED library defines, found as ld.so would."""

from __future__ import annotations

import shutil
import subprocess

from gpuaot.leaks import scan_paths
from gpuaot.leaks.elf import ElfFile
from gpuaot.leaks.undefined import Resolver, ldconfig_p, parse_ld_cache


def unresolved(result) -> list[tuple[str, str]]:
    return sorted(
        (f.rule, f.symbol)
        for f in result.findings
        if f.rule in ("unresolved-symbol", "missing-library")
    )


def test_missing_function_reported_printf_not(corpus):
    path = corpus["libunresolved.so"]
    result = scan_paths([str(path)], undefined=True)
    assert unresolved(result) == [("unresolved-symbol", "missing_function")]
    (f,) = result.findings
    assert f.defined is False and f.section == ".dynsym" and f.referenced_by == ["report"]
    # The oracle: nm -D lists printf as undefined too, and libc (NEEDED) defines it.
    undefined = {n.split("@")[0] for n, d in _nm_dyn(path) if not d}
    assert {"printf", "missing_function", "optional_function"} <= undefined
    assert result.exit_code == 1
    assert scan_paths([str(path)]).exit_code == 0  # without --undefined nothing is forbidden


def _nm_dyn(path):
    from conftest import nm_symbols

    return nm_symbols(path, dynamic=True)


def test_weak_and_clean_not_reported(corpus):
    result = scan_paths(
        [str(corpus["libclean.so"]), str(corpus["libunresolved.so"])], undefined=True
    )
    names = [s for _, s in unresolved(result)]
    assert "optional_function" not in names  # weak: the loader tolerates it
    assert not any(f.file.endswith("libclean.so") for f in result.findings)


def test_forbidden_and_undefined_reported_once(corpus):
    result = scan_paths([str(corpus["libkernel_host.so"])], undefined=True)
    dyn = [(f.symbol, f.rule) for f in result.findings if f.section == ".dynsym"]
    assert sorted(dyn) == [
        ("gpu_malloc", "forbidden-symbol"),
        ("gpu_report_exception", "forbidden-symbol"),
    ]


def test_missing_needed_library_on_disk(corpus):
    # On disk uses_dep.so's RUNPATH ($ORIGIN/../pkg.libs) holds nothing: libdep is missing.
    result = scan_paths([str(corpus["uses_dep.so"])], undefined=True)
    assert unresolved(result) == [
        ("missing-library", "libdep-1a2b3c4d.so"),
        ("unresolved-symbol", "dep_function"),
        ("unresolved-symbol", "missing_function"),
    ]


def test_runpath_origin_on_disk(corpus, tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg.libs").mkdir()
    shutil.copy(corpus["uses_dep.so"], tmp_path / "pkg" / "uses_dep.so")
    shutil.copy(corpus["libdep-1a2b3c4d.so"], tmp_path / "pkg.libs" / "libdep-1a2b3c4d.so")
    result = scan_paths([str(tmp_path / "pkg" / "uses_dep.so")], undefined=True)
    assert unresolved(result) == [("unresolved-symbol", "missing_function")]


def test_ld_library_path_is_searched(corpus, monkeypatch):
    monkeypatch.setenv("LD_LIBRARY_PATH", str(corpus["libdep-1a2b3c4d.so"].parent))
    result = scan_paths([str(corpus["uses_dep.so"])], undefined=True)
    assert unresolved(result) == [("unresolved-symbol", "missing_function")]


def test_wheel_libs_directory_resolves(corpus):
    whl = corpus["leaky-0.1-cp311-cp311-linux_x86_64.whl"]
    result = scan_paths([str(whl)], undefined=True)
    member = [(f.rule, f.symbol) for f in result.findings if f.file == f"{whl}!pkg/_uses_dep.so"]
    # dep_function comes from the wheel's own pkg.libs/; missing_function from nowhere.
    assert member == [("unresolved-symbol", "missing_function")]


def test_allow_exempts_unresolved(corpus):
    result = scan_paths([str(corpus["libunresolved.so"])], undefined=True, allow=["missing_*"])
    assert result.findings == []


def test_wrong_class_library_is_passed_over(corpus, tmp_path, has):
    """A 32-bit libdep first in LD_LIBRARY_PATH is skipped, as ld.so skips it."""
    lib32 = has("libkernel_host32.so")
    (tmp_path / "libc.so.6").write_bytes(lib32.read_bytes())
    resolver = Resolver(env={"LD_LIBRARY_PATH": str(tmp_path)})
    elf = ElfFile(corpus["libunresolved.so"].read_bytes(), "libunresolved.so")
    from gpuaot.leaks.inputs import Origin

    lib = resolver.find("libc.so.6", elf, Origin(str(corpus["libunresolved.so"].parent)))
    assert lib is not None and lib.where != str(tmp_path / "libc.so.6")
    assert "printf" in lib.exports


def test_ld_cache_parser_agrees_with_ldconfig():
    parsed = parse_ld_cache("/etc/ld.so.cache")
    if not parsed or shutil.which("ldconfig") is None:
        import pytest

        pytest.skip("no glibc ld.so.cache here")
    assert parsed == ldconfig_p()


def test_versions_are_honoured(corpus):
    """printf@GLIBC_2.2.5 is satisfied by libc's versioned definition (readelf shows both)."""
    resolver = Resolver(env={})
    from gpuaot.leaks.inputs import Origin

    elf = ElfFile(corpus["libclean.so"].read_bytes(), "libclean.so")
    lib = resolver.find("libc.so.6", elf, Origin(str(corpus["libclean.so"].parent)))
    assert lib is not None
    versions = lib.exports["printf"]
    text = subprocess.run(
        ["readelf", "-V", str(corpus["libclean.so"])], capture_output=True, text=True
    ).stdout
    wanted = {w for w in text.split() if w.startswith("GLIBC_")}
    assert wanted & versions  # the reference's version is among the definition's
