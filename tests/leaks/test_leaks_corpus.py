"""Findings on the gcc-built corpus, each compared with nm's view of the same file."""

from __future__ import annotations

import struct
import subprocess
import zipfile
from pathlib import Path

import pytest
from conftest import nm_leaks
from leaks_elfwriter import Sym, write_elf

from gpuaot.leaks import scan_paths


def ours(result, section: str, file: str | None = None) -> list[tuple[str, bool]]:
    return sorted(
        (f.symbol + (f.version or ""), f.defined)
        for f in result.findings
        if f.section == section and (file is None or f.file == file)
    )


def assert_matches_nm(path: Path, result=None) -> None:
    result = result or scan_paths([str(path)])
    assert ours(result, ".dynsym") == nm_leaks(path, dynamic=True)
    assert ours(result, ".symtab") == nm_leaks(path, dynamic=False)


ALL_SINGLE_FILES = [
    "kernel_host.o",
    "clean.o",
    "nvcc_style.o",
    "device_names.o",
    "libkernel_host.so",
    "libkernel_host_noplt.so",
    "libkernel_host_stripped.so",
    "libexported.so",
    "libexported_full.so",
    "libhidden.so",
    "libhidden_stripped.so",
    "libweak.so",
    "libversioned.so",
    "libnvcc_style.so",
    "libdevice_names.so",
    "libclean.so",
    "libunresolved.so",
    "main_leak",
    "uses_dep.so",
]


@pytest.mark.parametrize("name", ALL_SINGLE_FILES)
def test_every_corpus_file_agrees_with_nm(corpus, name):
    assert_matches_nm(corpus[name])


def test_leak_only_in_dynsym(corpus):
    path = corpus["libexported.so"]
    result = scan_paths([str(path)])
    assert [(f.symbol, f.section, f.defined, f.binding) for f in result.findings] == [
        ("gpu_exported_entry", ".dynsym", True, "GLOBAL")
    ]
    assert nm_leaks(path, dynamic=False) == []  # objcopy took it out of .symtab
    assert nm_leaks(path, dynamic=True) == [("gpu_exported_entry", True)]
    assert result.exit_code == 1


def test_leak_only_in_symtab_static_and_hidden(corpus):
    path = corpus["libhidden.so"]
    result = scan_paths([str(path)])
    got = sorted((f.symbol, f.section, f.binding, f.type) for f in result.findings)
    assert got == [
        ("gpu_hidden_helper", ".symtab", "LOCAL", "FUNC"),
        ("gpu_static_helper", ".symtab", "LOCAL", "FUNC"),
    ]
    assert nm_leaks(path, dynamic=True) == []
    assert_matches_nm(path, result)


def test_stripped_object_keeps_only_dynsym_leaks(corpus):
    stripped = scan_paths([str(corpus["libkernel_host_stripped.so"])])
    assert sorted((f.symbol, f.section, f.defined) for f in stripped.findings) == [
        ("gpu_malloc", ".dynsym", False),
        ("gpu_report_exception", ".dynsym", False),
    ]
    assert nm_leaks(corpus["libkernel_host_stripped.so"], dynamic=False) == []
    # Stripping the symtab-only leak leaves nothing to find, and nm agrees.
    hidden = scan_paths([str(corpus["libhidden_stripped.so"])])
    assert hidden.findings == [] and hidden.exit_code == 0
    assert nm_leaks(corpus["libhidden_stripped.so"], dynamic=False) == []


def test_undefined_weak_reference(corpus):
    result = scan_paths([str(corpus["libweak.so"])])
    got = sorted((f.symbol, f.section, f.defined, f.binding) for f in result.findings)
    assert got == [
        ("gpu_optional_hook", ".dynsym", False, "WEAK"),
        ("gpu_optional_hook", ".symtab", False, "WEAK"),
    ]
    assert_matches_nm(corpus["libweak.so"], result)


def test_versioned_symbols(corpus):
    path = corpus["libversioned.so"]
    result = scan_paths([str(path)])
    assert ours(result, ".dynsym") == [
        ("gpu_ver@@VERS_2", True),
        ("gpu_ver@VERS_1", True),
        ("gpu_versioned@@VERS_1", True),
    ]
    # ld stores non-default versions in the .symtab name itself; the stored name is matched.
    assert ("gpu_ver@VERS_1", True) in ours(result, ".symtab")
    assert_matches_nm(path, result)


def test_relocatable_object_reference(corpus):
    result = scan_paths([str(corpus["kernel_host.o"])])
    assert sorted((f.symbol, f.section, f.defined) for f in result.findings) == [
        ("gpu_malloc", ".symtab", False),
        ("gpu_report_exception", ".symtab", False),
    ]
    assert_matches_nm(corpus["kernel_host.o"], result)


def test_every_default_glob_and_near_misses(corpus):
    result = scan_paths([str(corpus["device_names.o"])])
    assert sorted((f.symbol, f.pattern) for f in result.findings) == [
        ("__assertfail", "__assertfail"),
        ("__nv_sinf", "__nv_*"),
        ("__nvvm_reflect", "__nvvm_*"),
        ("gpu_ok_allowed", "gpu_*"),
        ("julia.gpu.state_getter", "julia.gpu.*"),
        ("llvm.nvvm.barrier0", "llvm.nvvm.*"),
    ]
    names = {n for n, _ in subprocess_nm(corpus["device_names.o"])}
    # The near misses really are in the object: the gate saw them and let them pass.
    assert {"gpu", "GPU_upper", "__assertfail_not", "llvm.nvvmx", "not_gpu_prefixed"} <= names


def subprocess_nm(path):
    from conftest import nm_symbols

    return nm_symbols(path)


def test_nvcc_style_mangled_names_pass(corpus):
    for name in ("nvcc_style.o", "libnvcc_style.so"):
        result = scan_paths([str(corpus[name])])
        assert result.findings == [] and result.exit_code == 0
        names = [n for n, _ in subprocess_nm(corpus[name])]
        assert any(n.startswith("_Z") and "__nv_" in n for n in names), names


def test_clean_library(corpus):
    result = scan_paths([str(corpus["libclean.so"])])
    assert result.findings == [] and result.errors == [] and result.exit_code == 0
    assert result.scanned == [str(corpus["libclean.so"])]
    assert nm_leaks(corpus["libclean.so"], True) == nm_leaks(corpus["libclean.so"], False) == []


def test_executable(corpus):
    result = scan_paths([str(corpus["main_leak"])])
    assert [(f.symbol, f.section, f.defined) for f in result.findings] == [
        ("gpu_init_device", ".symtab", True)
    ]


def nm_archive(path: Path) -> dict[str, list[tuple[str, bool]]]:
    """nm's per-member view of an archive."""
    out: dict[str, list] = {}
    member = None
    text = subprocess.run(["nm", "--no-sort", str(path)], capture_output=True, text=True).stdout
    for line in text.splitlines():
        if line.endswith(":") and " " not in line:
            member = line[:-1]
            out[member] = []
            continue
        parts = line.split()
        if member and len(parts) in (2, 3):
            letter, name = parts[-2], parts[-1]
            out[member].append((name, letter not in ("U", "w", "v")))
    return out


def test_archive_members_match_nm(corpus):
    import fnmatch

    from conftest import DEFAULT_GLOBS

    path = corpus["libmixed.a"]
    result = scan_paths([str(path)])
    assert result.scanned == [
        f"{path}!{m}" for m in ("kernel_host.o", "clean.o", "a_member_with_a_very_long_name.o")
    ]
    for member, syms in nm_archive(path).items():
        want = sorted(
            (n, d) for n, d in syms if any(fnmatch.fnmatchcase(n, g) for g in DEFAULT_GLOBS)
        )
        assert ours(result, ".symtab", f"{path}!{member}") == want
    assert {f.file for f in result.findings} == {f"{path}!kernel_host.o"}
    assert all(f.member == "kernel_host.o" and f.path == str(path) for f in result.findings)


def test_clean_archive(corpus):
    result = scan_paths([str(corpus["libclean.a"])])
    assert result.exit_code == 0 and len(result.scanned) == 2


def test_wheel_members_named_wheel_bang_member(corpus):
    whl = corpus["leaky-0.1-cp311-cp311-linux_x86_64.whl"]
    result = scan_paths([str(whl)])
    files = {f.file for f in result.findings}
    assert files == {f"{whl}!pkg/_kernels.so", f"{whl}!pkg/libmixed.a!kernel_host.o"}
    # The member is the same library as on disk: same findings as nm sees there.
    kernels = ours(result, ".dynsym", f"{whl}!pkg/_kernels.so")
    assert kernels == nm_leaks(corpus["libkernel_host.so"], dynamic=True)
    assert f"{whl}!pkg/_clean.so" in result.scanned
    assert not any(s.endswith("__init__.py") for s in result.scanned)
    clean = scan_paths([str(corpus["clean-0.1-cp311-cp311-linux_x86_64.whl"])])
    assert clean.exit_code == 0 and len(clean.scanned) == 2


def test_directory_walk_finds_elf_by_magic_not_name(corpus, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "README.so").write_text("not an ELF file, despite its name\n")
    (tmp_path / "sub" / "data.bin").write_bytes((corpus["libexported.so"]).read_bytes())
    (tmp_path / "notes.txt").write_text("hello")
    result = scan_paths([str(tmp_path)])
    assert result.scanned == [str(tmp_path / "sub" / "data.bin")]
    assert [f.symbol for f in result.findings] == ["gpu_exported_entry"]
    assert result.errors == []  # non-ELF files met in a walk are not errors


def test_directory_walk_does_not_follow_symlinks(corpus, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "libleak.so").write_bytes(corpus["libexported.so"].read_bytes())
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "libclean.so").write_bytes(corpus["libclean.so"].read_bytes())
    (tree / "link_out.so").symlink_to(outside / "libleak.so")
    (tree / "dirlink").symlink_to(outside, target_is_directory=True)
    (tree / "link_in.so").symlink_to(tree / "libclean.so")
    result = scan_paths([str(tree)])
    assert result.scanned == [str(tree / "libclean.so")]
    assert result.findings == []
    # Named explicitly, a link is followed: the user asked for that file.
    assert scan_paths([str(tree / "link_out.so")]).exit_code == 1


def test_directory_walk_scans_archives_and_wheels(corpus, tmp_path):
    for name in ("libmixed.a", "leaky-0.1-cp311-cp311-linux_x86_64.whl"):
        (tmp_path / name).write_bytes(corpus[name].read_bytes())
    result = scan_paths([str(tmp_path)])
    assert f"{tmp_path / 'libmixed.a'}!kernel_host.o" in {f.file for f in result.findings}
    assert f"{tmp_path / 'leaky-0.1-cp311-cp311-linux_x86_64.whl'}!pkg/_kernels.so" in {
        f.file for f in result.findings
    }


# -- 32-bit, big-endian, foreign and device images ----------------------------------------------


def test_32bit_objects(has):
    for name in ("kernel_host32.o", "libkernel_host32.so"):
        path = has(name)
        result = scan_paths([str(path)])
        assert {f.symbol for f in result.findings} == {"gpu_malloc", "gpu_report_exception"}
        assert_matches_nm(path, result)


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("endian", ["<", ">"])
def test_written_images_agree_with_nm(tmp_path, bits, endian):
    syms = [
        Sym("gpu_leak", size=4),
        Sym("__nv_sinf", type=0, defined=False),
        Sym("gpu_local", bind=0, size=2),
        Sym("helper", size=8, value=4),
        Sym("_Z9__nv_stubv", size=1, value=12),
        Sym("gpu_weak", bind=2, type=0, defined=False),
    ]
    machine = 21 if endian == ">" else 62  # PowerPC64 big-endian, x86-64 little
    path = tmp_path / f"w{bits}{endian == '>'}.o"
    path.write_bytes(
        write_elf(
            bits=bits,
            endian=endian,
            machine=machine,
            symbols=syms,
            relocs=[(5, "__nv_sinf")],
            dynamic=True,
        )
    )
    result = scan_paths([str(path)])
    assert ours(result, ".symtab") == [
        ("__nv_sinf", False),
        ("gpu_leak", True),
        ("gpu_local", True),
        ("gpu_weak", False),
    ]
    assert_matches_nm(path, result)
    ref = next(f for f in result.findings if f.symbol == "__nv_sinf" and f.section == ".symtab")
    assert ref.referenced_by == ["helper"]  # relocation at 5 lies in helper [4, 12)


def test_em_cuda_image_is_a_finding(tmp_path, corpus):
    cubin = tmp_path / "kernels.cubin"
    cubin.write_bytes(write_elf(machine=190, symbols=[Sym("saxpy", size=4)]))
    # A host object relabelled EM_CUDA: its gpu_* symbols are not repeated, one finding says it.
    data = bytearray(corpus["kernel_host.o"].read_bytes())
    struct.pack_into("<H", data, 18, 190)
    relabelled = tmp_path / "relabelled.o"
    relabelled.write_bytes(bytes(data))
    result = scan_paths([str(cubin), str(relabelled)])
    assert [(f.file, f.rule) for f in result.findings] == [
        (str(cubin), "device-machine"),
        (str(relabelled), "device-machine"),
    ]
    assert result.exit_code == 1
    assert "EM_CUDA" in result.findings[0].message


def test_no_section_headers_reads_dynamic_segment(corpus, tmp_path):
    """sstrip-style images have no section headers; the loader still binds their .dynsym."""
    data = bytearray(corpus["libkernel_host_stripped.so"].read_bytes())
    struct.pack_into("<Q", data, 0x28, 0)  # e_shoff
    struct.pack_into("<HH", data, 0x3C, 0, 0)  # e_shnum, e_shstrndx
    path = tmp_path / "sstripped.so"
    path.write_bytes(bytes(data))
    result = scan_paths([str(path)])
    assert sorted((f.symbol, f.section) for f in result.findings) == [
        ("gpu_malloc", ".dynsym"),
        ("gpu_report_exception", ".dynsym"),
    ]
    # nm gives up without section headers; readelf --use-dynamic is the oracle here.
    text = subprocess.run(
        ["readelf", "-D", "-s", "-W", str(path)], capture_output=True, text=True
    ).stdout
    names = sorted(
        line.split()[-1]
        for line in text.splitlines()
        if line.strip()[:1].isdigit() and " gpu_" in line
    )
    assert names == ["gpu_malloc", "gpu_report_exception"]


def test_zip_member_that_is_an_archive_inside_a_wheel(corpus):
    whl = corpus["leaky-0.1-cp311-cp311-linux_x86_64.whl"]
    with zipfile.ZipFile(whl) as zf:
        assert "pkg/libmixed.a" in zf.namelist()
    result = scan_paths([str(whl)])
    inner = [f for f in result.findings if f.file.endswith("!pkg/libmixed.a!kernel_host.o")]
    assert {f.symbol for f in inner} == {"gpu_malloc", "gpu_report_exception"}
    assert all(f.member == "pkg/libmixed.a!kernel_host.o" for f in inner)


def test_mapped_and_read_files_give_the_same_answer(corpus, monkeypatch):
    """Large files are memory-mapped, small ones read: both paths, same findings."""
    import gpuaot.leaks.inputs as inputs

    directory = str(next(iter(corpus.values())).parent)
    read = scan_paths([directory], undefined=True)
    monkeypatch.setattr(inputs, "MMAP_THRESHOLD", 0)
    mapped = scan_paths([directory], undefined=True)
    key = [
        (f.file, f.symbol, f.section, f.rule, tuple(f.referenced_by), tuple(f.locations))
        for f in read.findings
    ]
    assert key == [
        (f.file, f.symbol, f.section, f.rule, tuple(f.referenced_by), tuple(f.locations))
        for f in mapped.findings
    ]
    assert len(read.findings) > 50 and read.scanned == mapped.scanned
