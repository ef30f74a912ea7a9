"""Who references a leak: relocations in .o files, PLT/GOT call sites in linked objects."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

from gpuaot.leaks import scan_paths
from gpuaot.leaks.elf import ElfFile
from gpuaot.leaks.rules import Rules
from gpuaot.leaks.scan import Scanner

SOURCE = ROOT / "fixtures" / "elf" / "kernel_host.c"


def call_line(callee: str) -> str:
    """kernel_host.c:N of the line that calls ``callee`` (marked CALL in the source)."""
    for n, line in enumerate(SOURCE.read_text().splitlines(), 1):
        if f"{callee}(" in line and "CALL" in line:
            return f"kernel_host.c:{n}"
    raise AssertionError(callee)


def by_symbol(result, section: str) -> dict[str, tuple[list[str], list[str]]]:
    return {
        f.symbol: (f.referenced_by, f.locations) for f in result.findings if f.section == section
    }


def test_relocatable_object_names_the_function_and_line(corpus):
    got = by_symbol(scan_paths([str(corpus["kernel_host.o"])]), ".symtab")
    assert got == {
        "gpu_report_exception": (["launch"], [call_line("gpu_report_exception")]),
        "gpu_malloc": (["alloc_buffer"], [call_line("gpu_malloc")]),
    }


def test_relocation_offsets_agree_with_readelf(corpus):
    """The function holding each relocation is the oracle's too: readelf -r and nm."""
    path = corpus["kernel_host.o"]
    relocs = subprocess.run(["readelf", "-rW", str(path)], capture_output=True, text=True).stdout
    offsets = [
        int(line.split()[0], 16) for line in relocs.splitlines() if "gpu_report_exception" in line
    ]
    syms = subprocess.run(["nm", "-S", str(path)], capture_output=True, text=True).stdout
    funcs = {}
    for line in syms.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "Tt":
            funcs[parts[3]] = (int(parts[0], 16), int(parts[1], 16))
    holders = {name for off in offsets for name, (lo, n) in funcs.items() if lo <= off < lo + n}
    assert holders == {"launch"}


@pytest.mark.parametrize("name", ["libkernel_host.so", "libkernel_host_noplt.so"])
def test_linked_object_names_the_caller_through_plt_or_got(corpus, name):
    got = by_symbol(scan_paths([str(corpus[name])]), ".dynsym")
    assert got == {
        "gpu_report_exception": (["launch"], [call_line("gpu_report_exception")]),
        "gpu_malloc": (["alloc_buffer"], [call_line("gpu_malloc")]),
    }


def test_plt_route_is_really_a_plt_call(corpus):
    """objdump agrees: launch calls the PLT stub (-fno-plt calls through the GOT instead)."""
    dis = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(corpus["libkernel_host.so"])],
        capture_output=True,
        text=True,
    ).stdout
    body = dis.split("<launch>:", 1)[1].split("\n\n", 1)[0]
    assert "gpu_report_exception@plt" in body


def test_stripped_object_names_exported_callers(corpus):
    got = by_symbol(scan_paths([str(corpus["libkernel_host_stripped.so"])]), ".dynsym")
    assert got == {"gpu_report_exception": (["launch"], []), "gpu_malloc": (["alloc_buffer"], [])}


def test_symtab_twin_shares_the_dynsym_attribution(corpus):
    got = by_symbol(scan_paths([str(corpus["libkernel_host.so"])]), ".symtab")
    assert got["gpu_report_exception"][0] == ["launch"]


def test_direct_calls_to_local_leaks(corpus):
    got = by_symbol(scan_paths([str(corpus["libhidden.so"])]), ".symtab")
    assert got["gpu_static_helper"][0] == ["host_entry"]
    assert got["gpu_hidden_helper"][0] == ["host_entry"]


def test_executable_caller_and_line(corpus):
    (f,) = scan_paths([str(corpus["main_leak"])]).findings
    assert f.referenced_by == ["main"]
    assert f.locations and f.locations[0].startswith("main_leak.c:")


def test_weak_reference_through_the_got(corpus):
    got = by_symbol(scan_paths([str(corpus["libweak.so"])]), ".dynsym")
    assert got["gpu_optional_hook"][0] == ["maybe_call"]


def test_clean_file_pays_no_attribution(corpus, monkeypatch):
    import gpuaot.leaks.attribute as attribute_module

    calls = []
    real = attribute_module.attribute
    monkeypatch.setattr(attribute_module, "attribute", lambda *a, **k: calls.append(a) or real(*a))
    scan_paths([str(corpus["libclean.so"]), str(corpus["libnvcc_style.so"])])
    assert calls == []
    scan_paths([str(corpus["libweak.so"])])
    assert len(calls) == 1


def test_attribution_can_be_turned_off(corpus):
    result = Scanner(Rules.default(), attribute=False).scan([str(corpus["kernel_host.o"])])
    assert result.findings and all(f.referenced_by == [] for f in result.findings)


def test_reader_agrees_with_readelf_on_the_sections(corpus):
    """The reader (pyelftools underneath) sees the section table readelf sees: names, sizes."""
    path: Path = corpus["libversioned.so"]
    elf = ElfFile(path.read_bytes(), str(path))
    text = subprocess.run(["readelf", "-SW", str(path)], capture_output=True, text=True).stdout
    rows = [
        line.split("]", 1)[1].split()
        for line in text.splitlines()
        if line.strip().startswith("[") and "]" in line and "Nr]" not in line
    ]
    assert [r[0] for r in rows if r[0] != "NULL"] == [s.name for s in elf.sections[1:]]
    assert [int(r[4], 16) for r in rows if r[0] != "NULL"] == [s.size for s in elf.sections[1:]]
    dyn = subprocess.run(
        ["readelf", "-dW", str(corpus["libclean.so"])], capture_output=True, text=True
    ).stdout
    needed = [line.rsplit("[", 1)[1].rstrip("]") for line in dyn.splitlines() if "(NEEDED)" in line]
    clean = ElfFile(corpus["libclean.so"].read_bytes(), "libclean.so")
    assert clean.needed == needed == ["libc.so.6"]
