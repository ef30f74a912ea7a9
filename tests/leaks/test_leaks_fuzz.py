"""Robustness: over a thousand mutated ELF files, archives and wheels, none may break the gate.

Each mutant (seeded ``random``: truncations, random header and section-table bytes, offsets past
the end, absurd counts and sizes, corrupt symbol, string, dynamic, version and hash tables) is
scanned in-process with ``debug=True``, so an exception of ours -- or one of pyelftools' that
``gpuaot.leaks.elf`` let through -- fails the test instead of becoming an "internal error" line:
every problem must be an ElfError or a Problem with a reason.  Every scan must end within 5 s
with exit 0, 1 or 3.  A share also goes through the CliRunner in every format, which must never
print a traceback and must print valid UTF-8 only.

Seeds: the gcc corpus, images written byte by byte (both classes, both byte orders), and images
without section headers (``sstrip``-style, found through PT_DYNAMIC and DT_GNU_HASH or DT_HASH).
"""

from __future__ import annotations

import io
import random
import shutil
import struct
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from leaks_elfwriter import Sym, write_elf

from gpuaot.cli.check_leaks import check_leaks
from gpuaot.leaks.elf import ElfFile
from gpuaot.leaks.rules import Rules
from gpuaot.leaks.scan import Scanner

ELF_SEEDS = [
    "kernel_host.o",
    "libkernel_host.so",
    "libkernel_host_stripped.so",
    "libversioned.so",
    "libweak.so",
    "main_leak",
    "libhidden.so",
]
MUTANTS_PER_SEED = 140
CONTAINER_MUTANTS = 120
SEED = 20240611
FORMATS = ("text", "json", "sarif", "github")
KERNEL_HOST_C = Path(__file__).resolve().parents[2] / "fixtures" / "elf" / "kernel_host.c"


def _written_seeds() -> list[bytes]:
    syms = [
        Sym("gpu_leak", size=4),
        Sym("__nv_sinf", type=0, defined=False),
        Sym("helper", size=8, value=4),
        Sym("gpu_local", bind=0, size=2),
    ]
    return [
        write_elf(
            bits=b,
            endian=e,
            machine=21 if e == ">" else 62,
            symbols=syms,
            relocs=[(5, "__nv_sinf")],
            dynamic=True,
        )
        for b in (32, 64)
        for e in "<>"
    ]


def sstrip(data: bytes) -> bytes:
    """The image without its section headers (e_shoff, e_shnum, e_shstrndx zeroed), as
    ``sstrip`` leaves it: only the program headers and the dynamic segment find its symbols."""
    d = bytearray(data)
    e = "<" if d[5] == 1 else ">"
    if d[4] == 2:
        struct.pack_into(e + "Q", d, 0x28, 0)
        struct.pack_into(e + "HH", d, 0x3C, 0, 0)
    else:
        struct.pack_into(e + "I", d, 0x20, 0)
        struct.pack_into(e + "HH", d, 0x30, 0, 0)
    return bytes(d)


def program_headers(data: bytes, elf: ElfFile) -> list[tuple[int, int, int, int]]:
    """(p_type, p_offset, p_vaddr, p_filesz) of every program header, read with struct."""
    e = elf.endian
    if elf.bits == 64:
        (phoff,) = struct.unpack_from(e + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(e + "HH", data, 0x36)
        fmt, pick = "IIQQQQQQ", (0, 2, 3, 5)
    else:
        (phoff,) = struct.unpack_from(e + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(e + "HH", data, 0x2A)
        fmt, pick = "IIIIIIII", (0, 1, 2, 4)
    rows = [struct.unpack_from(e + fmt, data, phoff + i * phentsize) for i in range(phnum)]
    return [(r[pick[0]], r[pick[1]], r[pick[2]], r[pick[3]]) for r in rows]


def dynamic_tables(data: bytes, elf: ElfFile) -> tuple[int, int, list[int]] | None:
    """(offset, size) of PT_DYNAMIC and the file offsets of its DT_GNU_HASH / DT_HASH tables."""
    phdrs = program_headers(data, elf)
    dyn = next(((off, size) for typ, off, _, size in phdrs if typ == 2 and size), None)
    if dyn is None:
        return None
    hashes = []
    for tag, value in elf.dynamic:
        if tag in (4, 0x6FFFFEF5):  # DT_HASH, DT_GNU_HASH: addresses, mapped through PT_LOAD
            for typ, off, vaddr, size in phdrs:
                if typ == 1 and vaddr <= value < vaddr + size:
                    hashes.append(off + value - vaddr)
    return dyn[0], dyn[1], hashes


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One structural or random mutation of an ELF image."""
    d = bytearray(data)
    elf = ElfFile(data, "seed")
    ptr = "Q" if elf.bits == 64 else "I"
    e = elf.endian
    shdr = 64 if elf.bits == 64 else 40
    secs = elf.sections
    kind = rng.randrange(11)
    if kind == 0:  # truncation
        return bytes(d[: rng.randrange(len(d))])
    if kind == 1:  # random header bytes (keep the magic half the time)
        lo = 4 if rng.random() < 0.5 else 0
        for _ in range(rng.randint(1, 6)):
            d[rng.randrange(lo, 64 if elf.bits == 64 else 52)] = rng.randrange(256)
    elif kind == 2 and elf.shoff and secs:  # random section-table bytes
        start, end = elf.shoff, min(len(d), elf.shoff + len(secs) * shdr)
        for _ in range(rng.randint(1, 12)):
            d[rng.randrange(start, end)] = rng.randrange(256)
    elif kind == 3 and secs:  # an offset or size past the end
        i = rng.randrange(1, len(secs))
        base = elf.shoff + i * shdr
        field = rng.choice(["offset", "size"])
        at = (
            base
            + (24 if elf.bits == 64 else 16)
            + (0 if field == "offset" else (8 if elf.bits == 64 else 4))
        )
        value = rng.choice(
            [
                len(d),
                len(d) + 1,
                2**31,
                2 ** (64 if ptr == "Q" else 32) - 1,
                rng.randrange(len(d) * 2),
            ]
        )
        struct.pack_into(e + ptr, d, at, value % (2 ** (64 if ptr == "Q" else 32)))
    elif kind == 4:  # absurd counts and entry sizes
        which = rng.choice(["shnum", "phnum", "shentsize", "phentsize", "shstrndx"])
        off = {
            64: {"phentsize": 54, "phnum": 56, "shentsize": 58, "shnum": 60, "shstrndx": 62},
            32: {"phentsize": 42, "phnum": 44, "shentsize": 46, "shnum": 48, "shstrndx": 50},
        }
        struct.pack_into(
            e + "H",
            d,
            off[elf.bits][which],
            rng.choice([0, 1, 0xFFFF, 0xFF00, rng.randrange(65536)]),
        )
    elif kind == 5 and secs:  # link / info / entsize of a section
        i = rng.randrange(1, len(secs))
        base = elf.shoff + i * shdr
        if elf.bits == 64:
            at = base + rng.choice([40, 44, 56])
            fmt = "Q" if at == base + 56 else "I"
        else:
            at = base + rng.choice([24, 28, 36])
            fmt = "I"
        struct.pack_into(
            e + fmt, d, at, rng.choice([0, 1, 3, 0xFFFF, 2**32 - 1, rng.randrange(64)])
        )
    elif kind == 6:  # corrupt symbol entries
        tabs = [s for s in secs if s.type in (2, 11) and s.offset + s.size <= len(d)]
        if tabs:
            t = rng.choice(tabs)
            for _ in range(rng.randint(1, 8)):
                n = t.size // elf.sym_size
                if n:
                    at = t.offset + rng.randrange(n) * elf.sym_size
                    struct.pack_into(
                        e + "I",
                        d,
                        at,
                        rng.choice([2**32 - 1, rng.randrange(2**32), rng.randrange(64)]),
                    )
                    d[at + rng.randrange(elf.sym_size)] = rng.randrange(256)
    elif kind == 7:  # string tables without NULs, or flooded with forbidden prefixes
        strs = [s for s in secs if s.type == 3 and s.offset + s.size <= len(d)]
        if strs:
            t = rng.choice(strs)
            fill = rng.choice([b"A", b"gpu_", b"__nv_"])
            for j in range(t.offset, t.offset + t.size):
                d[j] = fill[(j - t.offset) % len(fill)]
    elif kind == 8:  # dynamic, version and relocation sections scrambled
        cands = [
            s
            for s in secs
            if s.type in (4, 6, 9, 0x6FFFFFFD, 0x6FFFFFFE, 0x6FFFFFFF)
            and s.offset + s.size <= len(d)
            and s.size
        ]
        if cands:
            t = rng.choice(cands)
            for _ in range(rng.randint(1, 16)):
                d[t.offset + rng.randrange(t.size)] = rng.randrange(256)
    elif kind == 9 and (tables := dynamic_tables(data, elf)) is not None:
        # The dynamic segment and its hash tables: what an image without section headers is
        # read from.  Absurd hash counts, tags pointing anywhere, DT_NULL gone.
        off, size, hashes = tables
        entry = 16 if elf.bits == 64 else 8
        choice = rng.random()
        if hashes and choice < 0.4:
            at = rng.choice(hashes) + 4 * rng.randrange(4)  # nbuckets, symoffset/nchain, bloom
            struct.pack_into(
                e + "I", d, at, rng.choice([0, 1, 2**31, 2**32 - 1, rng.randrange(2**32)])
            )
        elif choice < 0.7:
            at = off + rng.randrange(max(1, size // entry)) * entry + entry // 2  # d_val
            struct.pack_into(e + ptr, d, at, rng.choice([0, len(d), 2**31, rng.randrange(2**32)]))
        elif choice < 0.85:
            for k in range(off, off + size, entry):  # no DT_NULL: every tag becomes DT_DEBUG
                if struct.unpack_from(e + ptr, d, k)[0] == 0:
                    struct.pack_into(e + ptr, d, k, 21)
        else:
            for _ in range(rng.randint(1, 16)):
                d[off + rng.randrange(size)] = rng.randrange(256)
    else:  # random byte flips anywhere
        for _ in range(rng.randint(1, 40)):
            d[rng.randrange(len(d))] = rng.randrange(256)
    return bytes(d)


def mutate_container(rng: random.Random, data: bytes) -> bytes:
    d = bytearray(data)
    if rng.random() < 0.3:
        return bytes(d[: rng.randrange(len(d))])
    for _ in range(rng.randint(1, 24)):
        # Bias toward the headers: ar member headers near the start, the zip directory at the end.
        at = rng.randrange(min(len(d), 400)) if rng.random() < 0.5 else rng.randrange(len(d))
        d[at] = rng.randrange(256)
    if rng.random() < 0.3:
        # An ar size field or a zip size field with digits/bytes that make no sense.
        pos = data.find(b"`\n")
        if pos > 10:
            d[pos - 10 : pos] = rng.choice([b"9999999999", b"-12       ", b"abc       "])
    return bytes(d)


@pytest.fixture(scope="module")
def sectionless(corpus, tmp_path_factory) -> dict[str, Path]:
    """Images without section headers: GNU-hashed from the corpus, and one linked here with
    only a SysV DT_HASH (``--hash-style=sysv``), so that both of DynamicSegment's counts run."""
    out = tmp_path_factory.mktemp("sectionless")
    sysv = out / "libsysv.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O1", "-Wl,--hash-style=sysv", str(KERNEL_HOST_C)]
        + ["-o", str(sysv)],
        check=True,
        capture_output=True,
    )
    subprocess.run(["strip", "--strip-all", str(sysv)], check=True)
    seeds = {
        "gnu_hash": corpus["libkernel_host_stripped.so"].read_bytes(),
        "versioned": corpus["libversioned.so"].read_bytes(),
        "sysv_hash": sysv.read_bytes(),
    }
    if "libkernel_host32.so" in corpus:
        seeds["gnu_hash_32"] = corpus["libkernel_host32.so"].read_bytes()
    images = {}
    for name, data in seeds.items():
        path = out / f"{name}.so"
        path.write_bytes(sstrip(data))
        images[name] = path
    return images


def test_sectionless_seeds_read_like_readelf_use_dynamic(sectionless):
    """The seeds themselves: their .dynsym, found without section headers, is readelf -D's."""
    if shutil.which("readelf") is None:
        pytest.skip("readelf is not installed")
    for path in sectionless.values():
        result = Scanner(Rules.default(), debug=True).scan([str(path)])
        assert result.errors == [], (path, result.errors)
        text = subprocess.run(
            ["readelf", "-D", "-s", "-W", str(path)], capture_output=True, text=True
        ).stdout
        oracle = sorted(
            line.split()[-1].split("@")[0]
            for line in text.splitlines()
            if line.strip()[:1].isdigit() and any(f" {p}" in line for p in ("gpu_", "__nv_"))
        )
        assert sorted(f.symbol for f in result.findings) == oracle != [], path
        assert {f.section for f in result.findings} == {".dynsym"}


@pytest.fixture(scope="module")
def mutants(corpus, sectionless, tmp_path_factory) -> list[Path]:
    rng = random.Random(SEED)
    out = tmp_path_factory.mktemp("mutants")
    extra = [n for n in ("kernel_host32.o", "libkernel_host32.so") if n in corpus]
    seeds = [corpus[n].read_bytes() for n in ELF_SEEDS + extra] + _written_seeds()
    seeds += [p.read_bytes() for p in sectionless.values()]
    paths = []
    for si, seed in enumerate(seeds):
        for k in range(MUTANTS_PER_SEED if si < len(ELF_SEEDS) else MUTANTS_PER_SEED // 2):
            p = out / f"m{si:02d}_{k:04d}.so"
            p.write_bytes(mutate(rng, seed))
            paths.append(p)
    containers = [
        corpus["libmixed.a"].read_bytes(),
        _bsd_archive(corpus),
        corpus["leaky-0.1-cp311-cp311-linux_x86_64.whl"].read_bytes(),
    ]
    for k in range(CONTAINER_MUTANTS):
        src = containers[k % len(containers)]
        p = out / f"c{k:04d}.{['a', 'a', 'whl'][k % 3]}"
        p.write_bytes(mutate_container(rng, src))
        paths.append(p)
    return paths


def _bsd_archive(corpus) -> bytes:
    from test_leaks_archives import bsd_archive

    return bsd_archive([("kernel_host_with_long_name.o", corpus["kernel_host.o"].read_bytes())])


def test_over_a_thousand_mutants_never_break_the_gate(mutants):
    assert len(mutants) >= 1000, len(mutants)
    plain = Scanner(Rules.default(), debug=True)
    undefined = Scanner(Rules.default(undefined=True), debug=True)
    codes = {0: 0, 1: 0, 3: 0}
    slowest = 0.0
    for i, path in enumerate(mutants):
        scanner = undefined if i % 5 == 0 else plain
        t0 = time.perf_counter()
        result = scanner.scan([str(path)])  # debug=True: a bug of ours raises here
        slowest = max(slowest, time.perf_counter() - t0)
        assert result.exit_code in codes, path
        codes[result.exit_code] += 1
        for err in result.errors:
            assert err.reason and "\n" not in err.reason and "internal error" not in err.reason
    assert slowest < 5.0
    # The mutations really exercise all three outcomes.
    assert codes[3] > 100 and codes[1] > 100 and codes[0] > 0, codes


def _assert_clean_output(r, what) -> None:
    """No traceback, an exit code of the gate's, and valid UTF-8 on stdout and stderr."""
    assert r.exit_code in (0, 1, 3), (what, r.output)
    assert isinstance(r.exception, SystemExit | None), (what, r.exception)
    assert "Traceback" not in r.output, what
    for stream in (r.stdout_bytes, r.stderr_bytes):
        try:
            stream.decode("utf-8")
        except UnicodeDecodeError as e:  # show where, not the whole report
            raise AssertionError(
                f"{what}: not UTF-8 at {e.start}: {stream[e.start - 60 : e.end + 20]!r}"
            ) from None


def test_mutants_through_the_cli_never_print_a_traceback(mutants):
    runner = CliRunner()
    for fmt in ("text", "json"):  # every mutant at once: one bad file never stops the others
        r = runner.invoke(check_leaks, ["--no-config", "--format", fmt, str(mutants[0].parent)])
        _assert_clean_output(r, f"the directory, {fmt}")
    for i, path in enumerate(mutants[::10]):
        fmt = FORMATS[i % len(FORMATS)]
        r = runner.invoke(check_leaks, ["--no-config", "--undefined", "--format", fmt, str(path)])
        _assert_clean_output(r, (str(path), fmt))


def test_zip_bomb_headers_and_garbage_zips(tmp_path):
    """A zip whose member claims absurd sizes or is not a zip at all: one reason line each."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("pkg/x.so", b"\x7fELF" + b"\0" * 60)
    data = bytearray(buf.getvalue())
    cd = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, cd + 24, 0xFFFFFFFF)  # uncompressed size in the directory
    bad = tmp_path / "bomb.whl"
    bad.write_bytes(bytes(data))
    junk = tmp_path / "junk.whl"
    junk.write_bytes(b"PK\x03\x04" + b"\xff" * 100)
    result = Scanner(Rules.default(), debug=True).scan([str(bad), str(junk)])
    assert result.exit_code == 3
    assert {e.file for e in result.errors} >= {str(junk)}
