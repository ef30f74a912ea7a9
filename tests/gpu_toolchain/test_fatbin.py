"""make_fatbin (nvFatbin) and list_fatbin, with cuobjdump as the oracle."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from gpu_toolchain_kit import ARCHS, cuobjdump_list

from gpuaot.bundle.fatbin import (
    FATBIN_MAGIC,
    FatbinFormatError,
    list_fatbin,
    make_fatbin,
)
from gpuaot.errors import BuildError

REPO = Path(__file__).resolve().parents[2]
EXPECTED = [("ptx", "sm_75")] + [("elf", arch) for arch in ARCHS]


@pytest.fixture(scope="module")
def fatbin(device_images) -> bytes:
    ptx, cubins = device_images
    return make_fatbin(ptx, cubins)


@pytest.fixture(scope="module")
def plain_fatbin(device_images) -> bytes:
    ptx, cubins = device_images
    return make_fatbin(ptx, cubins, compress=False)


def test_list_fatbin_lists_the_four_images(fatbin: bytes) -> None:
    entries = list_fatbin(fatbin)
    assert [(e.kind, e.arch) for e in entries] == EXPECTED
    assert all(e.identifier == "gpuaot" and e.is_64bit and not e.debug for e in entries)
    assert entries[0].code_version == (6, 3)  # the PTX ISA of sm_75 PTX from LLVM 22


def test_cuobjdump_lists_the_same_images(fatbin: bytes, cuobjdump: Path, tmp_path: Path) -> None:
    path = tmp_path / "k.fatbin"
    path.write_bytes(fatbin)
    listed = cuobjdump_list(cuobjdump, path)
    assert listed == [("PTX", "gpuaot.sm_75.ptx")] + [("ELF", f"gpuaot.{a}.cubin") for a in ARCHS]
    assert [(kind.lower(), name.split(".")[1]) for kind, name in listed] == [
        (e.kind, e.arch) for e in list_fatbin(fatbin)
    ]


def test_make_fatbin_is_deterministic(device_images, fatbin: bytes) -> None:
    ptx, cubins = device_images
    assert make_fatbin(ptx, cubins) == fatbin


def test_fatbin_and_object_are_deterministic_across_processes(tmp_path: Path) -> None:
    # A fresh process has different heap addresses: catches uninitialised padding bytes.
    script = textwrap.dedent(
        """
        import hashlib
        from gpu_toolchain_kit import saxpy_module
        from gpuaot.bundle.embed import embed_object
        from gpuaot.bundle.fatbin import make_fatbin
        from gpuaot.compiler.targets.nvptx import compile_ptx
        from gpuaot.compiler.targets.nvtools import ptx_to_cubin
        ptx = compile_ptx(str(saxpy_module()), ["saxpy", "expf_kernel"], "sm_75")
        blob = make_fatbin(("sm_75", ptx), [(a, ptx_to_cubin(ptx, a)) for a in ("sm_75", "sm_80")])
        print(hashlib.sha256(blob).hexdigest(), hashlib.sha256(embed_object(b"{}", blob)).hexdigest())
        """
    )
    env_path = f"{Path(__file__).parent}"
    runs = {
        subprocess.run(
            [sys.executable, "-c", f"import sys; sys.path.insert(0, {env_path!r})\n{script}"],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(runs) == 1 and len(next(iter(runs))) == 64 + 1 + 64


def test_uncompressed_payloads_are_the_cubins(
    device_images, plain_fatbin: bytes, cuobjdump: Path, tmp_path: Path
) -> None:
    _, cubins = device_images
    entries = list_fatbin(plain_fatbin)
    assert not any(e.compressed for e in entries)
    # Our offsets point at exactly the bytes cuobjdump extracts.
    path = tmp_path / "plain.fatbin"
    path.write_bytes(plain_fatbin)
    subprocess.run([str(cuobjdump), "-xelf", "all", str(path)], cwd=tmp_path, check=True)
    for entry, (arch, cubin) in zip(entries[1:], cubins):
        payload = plain_fatbin[entry.payload_offset : entry.payload_offset + len(cubin)]
        assert payload == cubin
        assert (tmp_path / f"gpuaot.{arch}.cubin").read_bytes() == cubin
    ptx_entry = entries[0]
    subprocess.run([str(cuobjdump), "-xptx", "all", str(path)], cwd=tmp_path, check=True)
    extracted = (tmp_path / "gpuaot.sm_75.ptx").read_bytes()
    stored = plain_fatbin[ptx_entry.payload_offset : ptx_entry.payload_offset + ptx_entry.size]
    assert stored.rstrip(b"\0") == extracted.rstrip(b"\0")


def test_compressed_flag_matches_cuobjdump(fatbin: bytes, cuobjdump: Path, tmp_path: Path) -> None:
    path = tmp_path / "k.fatbin"
    path.write_bytes(fatbin)
    dump = subprocess.run(
        [str(cuobjdump), str(path)], capture_output=True, text=True, check=True
    ).stdout
    blocks = dump.split("Fatbin ")[1:]  # one block per image, in order
    entries = list_fatbin(fatbin)
    assert len(blocks) == len(entries)
    for block, entry in zip(blocks, entries):
        assert f"arch = {entry.arch}" in block
        assert ("\ncompressed\n" in block) is entry.compressed
        major, minor = entry.code_version
        assert f"code version = [{major},{minor}]" in block
    assert any(e.compressed for e in entries)  # nvFatbin compresses the PTX by default
    assert all(e.uncompressed_size > e.compressed_size for e in entries if e.compressed)


def test_ptx_only_and_cubins_only(device_images) -> None:
    ptx, cubins = device_images
    assert [(e.kind, e.arch) for e in list_fatbin(make_fatbin(ptx, []))] == [("ptx", "sm_75")]
    only_cubins = make_fatbin(None, cubins[1:])
    assert [(e.kind, e.arch) for e in list_fatbin(only_cubins)] == [
        ("elf", "sm_80"),
        ("elf", "sm_90"),
    ]


def test_empty_fatbin_is_refused() -> None:
    with pytest.raises(BuildError, match="nothing"):
        make_fatbin(None, [])


def test_ptx_arch_mismatch_is_a_build_error(saxpy_ptx) -> None:
    # nvFatbin itself stores mislabelled PTX; a driver would then fail to JIT it.
    with pytest.raises(BuildError, match=r"\.target sm_90.*sm_75"):
        make_fatbin(("sm_75", saxpy_ptx("sm_90")), [])


def test_mislabelled_or_broken_cubin_is_refused_by_nvfatbin(device_images) -> None:
    _, cubins = device_images
    sm75 = cubins[0][1]
    with pytest.raises(BuildError, match=r"cubin for sm_80: ERROR_ELF_ARCH_MISMATCH"):
        make_fatbin(None, [("sm_80", sm75)])
    with pytest.raises(BuildError, match=r"cubin for sm_80: ERROR_ELF"):
        make_fatbin(None, [("sm_80", b"not an ELF")])


def test_bad_arch_is_a_build_error(device_images) -> None:
    _, cubins = device_images
    with pytest.raises(BuildError, match="architecture"):
        make_fatbin(None, [("volta", cubins[0][1])])


def test_missing_nvfatbin_is_a_build_error_naming_the_wheel() -> None:
    prog = textwrap.dedent(
        """
        import sys
        sys.modules["cuda.bindings.nvfatbin"] = None
        from gpuaot.bundle.embed import embed_object
        from gpuaot.bundle.fatbin import make_fatbin
        from gpuaot.errors import BuildError
        try:
            make_fatbin(None, [("sm_80", b"x")])
        except BuildError as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, cwd=REPO)
    assert "nvidia-nvfatbin-cu12" in out.stdout, out.stderr


# --- reading robustness -----------------------------------------------------------------------


def test_every_truncation_is_a_located_value_error(fatbin: bytes) -> None:
    header_ends = {16} | {e.payload_offset for e in list_fatbin(fatbin)}
    cuts = sorted(set(range(0, 200)) | header_ends | {len(fatbin) - 1, len(fatbin) - 8})
    for cut in cuts:
        with pytest.raises(ValueError) as info:
            list_fatbin(fatbin[:cut])
        assert isinstance(info.value, FatbinFormatError)
        assert 0 <= info.value.offset <= cut
        assert f"{info.value.offset:#x}" in str(info.value)


def test_bad_magic_is_located(fatbin: bytes) -> None:
    with pytest.raises(FatbinFormatError) as info:
        list_fatbin(b"\x7fELF" + fatbin[4:])
    assert info.value.offset == 0 and "magic" in str(info.value)


def test_entry_running_past_the_container_is_located(fatbin: bytes) -> None:
    second = list_fatbin(fatbin)[1].offset
    broken = bytearray(fatbin)
    broken[second + 8 : second + 16] = (1 << 40).to_bytes(8, "little")  # huge payload size
    with pytest.raises(FatbinFormatError) as info:
        list_fatbin(bytes(broken))
    assert info.value.offset == second


def test_containers_back_to_back_with_padding(fatbin: bytes, device_images) -> None:
    # What a linked .nv_fatbin section looks like: one container per object, zero padded.
    ptx, _ = device_images
    other = make_fatbin(ptx, [])
    data = fatbin + bytes(8) + other + bytes(16)
    entries = list_fatbin(data)
    assert [(e.kind, e.arch) for e in entries] == EXPECTED + [("ptx", "sm_75")]
    assert int.from_bytes(data[entries[-1].offset - 16 : entries[-1].offset - 12], "little") == (
        FATBIN_MAGIC
    )


def test_zeros_are_not_a_fatbin() -> None:
    for data in (b"", bytes(64)):
        with pytest.raises(FatbinFormatError):
            list_fatbin(data)
