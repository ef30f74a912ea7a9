"""``ar`` archives: GNU long names, BSD ``#1/N`` names, thin archives, odd members."""

from __future__ import annotations

import subprocess
from pathlib import Path

from gpuaot.leaks import scan_paths


def ar_header(name: str, size: int) -> bytes:
    return f"{name:<16}{0:<12}{0:<6}{0:<6}{644:<8}{size:<10}".encode() + b"`\n"


def bsd_archive(members: list[tuple[str, bytes]], symdef: bool = True) -> bytes:
    """A BSD-style archive as macOS ar writes it: ``#1/N`` with the name before the data."""
    out = bytearray(b"!<arch>\n")
    entries = ([("__.SYMDEF SORTED", b"\0" * 8)] if symdef else []) + members
    for name, data in entries:
        raw = name.encode()
        raw += b"\0" * (-len(raw) % 8)  # BSD pads the name; the padding counts in the size
        out += ar_header(f"#1/{len(raw)}", len(raw) + len(data)) + raw + data
        if len(out) % 2:
            out += b"\n"
    return bytes(out)


def nm_members(path: Path) -> list[str]:
    text = subprocess.run(["nm", str(path)], capture_output=True, text=True).stdout
    return [line[:-1] for line in text.splitlines() if line.endswith(":") and " " not in line]


def test_gnu_long_names_table(corpus):
    path = corpus["libmixed.a"]
    raw = path.read_bytes()
    assert b"//" in raw[:2000]  # GNU ar did use the long-name table
    result = scan_paths([str(path)])
    names = [s.rsplit("!", 1)[1] for s in result.scanned]
    assert (
        names
        == nm_members(path)
        == ["kernel_host.o", "clean.o", "a_member_with_a_very_long_name.o"]
    )


def test_bsd_archive(corpus, tmp_path):
    path = tmp_path / "libbsd.a"
    path.write_bytes(
        bsd_archive(
            [
                ("kernel_host_with_a_long_bsd_name.o", corpus["kernel_host.o"].read_bytes()),
                ("clean.o", corpus["clean.o"].read_bytes()),
            ]
        )
    )
    result = scan_paths([str(path)])
    assert [s.rsplit("!", 1)[1] for s in result.scanned] == [
        "kernel_host_with_a_long_bsd_name.o",
        "clean.o",
    ]
    assert nm_members(path) == ["kernel_host_with_a_long_bsd_name.o", "clean.o"]
    assert {f.symbol for f in result.findings} == {"gpu_malloc", "gpu_report_exception"}
    assert all(f.referenced_by for f in result.findings)  # data offset after the name is right


def test_thin_archive(corpus, tmp_path):
    for name in ("kernel_host.o", "clean.o"):
        (tmp_path / name).write_bytes(corpus[name].read_bytes())
    subprocess.run(
        ["ar", "rcsT", "libthin.a", "kernel_host.o", "clean.o"], cwd=tmp_path, check=True
    )
    assert (tmp_path / "libthin.a").read_bytes().startswith(b"!<thin>\n")
    result = scan_paths([str(tmp_path / "libthin.a")])
    assert [s.rsplit("!", 1)[1] for s in result.scanned] == ["kernel_host.o", "clean.o"]
    assert {f.symbol for f in result.findings} == {"gpu_malloc", "gpu_report_exception"}


def test_duplicate_members_and_non_elf_members(corpus, tmp_path):
    out = bytearray(b"!<arch>\n")
    for name, data in [
        ("k.o/", corpus["kernel_host.o"].read_bytes()),
        ("k.o/", corpus["kernel_host.o"].read_bytes()),
        ("notes.txt/", b"hello\n"),
    ]:
        out += ar_header(name, len(data)) + data + (b"\n" if len(data) % 2 else b"")
    path = tmp_path / "libdup.a"
    path.write_bytes(bytes(out))
    result = scan_paths([str(path)])
    assert result.scanned == [f"{path}!k.o", f"{path}!k.o#2"]
    assert [s.display for s in result.skipped] == [f"{path}!notes.txt"]
    assert len(result.findings) == 4 and result.errors == []


def test_truncated_and_corrupt_archives(corpus, tmp_path):
    raw = corpus["libmixed.a"].read_bytes()
    cut = tmp_path / "cut.a"
    cut.write_bytes(raw[:-100])  # inside the last member
    badsize = tmp_path / "badsize.a"
    bad = bytearray(raw)
    first = bad.find(b"`\n")
    bad[first - 10 : first] = b"12x4      "
    badsize.write_bytes(bytes(bad))
    result = scan_paths([str(cut), str(badsize)])
    assert result.exit_code == 3
    reasons = {e.file: e for e in result.errors}
    assert "runs past the end of the archive" in reasons[str(cut)].reason
    assert reasons[str(cut)].offset is not None
    assert "bad archive member size" in reasons[str(badsize)].reason
    # What was readable before the damage was still scanned.
    assert any(s.startswith(str(cut)) for s in result.scanned)
