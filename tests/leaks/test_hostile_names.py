r"""Hostile names: symbols and files whose names carry terminal escapes, CR, bidi overrides and
bytes that are not UTF-8 are reported safely in every format (SPEC §1: "all output is valid
UTF-8").

The library is built here with gcc from a generated C file: ``__asm__("\"gpu_\033[2J\"")``
labels (quoted, as gas wants odd names) define and reference the names, and ``nm`` confirms
they are in the file byte for byte.  Each format then runs through the installed ``gpuaot``
(stdout a pipe) and through CliRunner; the text escapes every name as readelf / ``ls -b`` do,
JSON and SARIF give back each name's exact bytes.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from gpuaot.cli import main
from gpuaot.textsafe import json_safe, printable, to_bytes

FORMATS = ["text", "json", "sarif", "github"]
SCHEMA = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"

LONG = b"gpu_long\x1b" + b"L" * (64 * 1024 - 9)  # one 64 KiB name
# name as stored -> how text output must show it (written out by hand: the oracle)
DEFINED = {
    b"gpu_\x1b[31mX\x1b]0;pwned\x07\x1b[2J": r"gpu_\x1b[31mX\x1b]0;pwned\x07\x1b[2J",
    b"gpu_cr\rFAKE: No leaks": r"gpu_cr\rFAKE: No leaks",
    b"gpu_bad\xff\xfe": r"gpu_bad\xff\xfe",
    b"gpu_raw_csi\x9b2J": r"gpu_raw_csi\x9b2J",
    b"gpu_c1\xc2\x9b31m": r"gpu_c1\u009b31m",
    b"gpu_bidi\xe2\x80\xaetxt.exe": r"gpu_bidi\u202etxt.exe",
    b"gpu_iso\xe2\x81\xa6x\xe2\x81\xa9": r"gpu_iso\u2066x\u2069",
    b"gpu_ls\xe2\x80\xa8next\xe2\x80\xa9": r"gpu_ls\u2028next\u2029",
    b"gpu_tab\tdel\x7f": r"gpu_tab\tdel\x7f",
    b"gpu_gh%0A::error file=x,title=y::pwned": "gpu_gh%0A::error file=x,title=y::pwned",
    "gpu_ok_été".encode(): "gpu_ok_été",  # valid UTF-8 is shown as it is
    LONG: r"gpu_long\x1b" + "L" * (64 * 1024 - 9),
}
UNDEFINED = {b"gpu_undef\x1b[2J\xff": r"gpu_undef\x1b[2J\xff"}
# each shown name, and how often: in LIB's .symtab and .dynsym, the undefined one in OBJ too
SHOWN = [(s, 2) for s in DEFINED.values()] + [(s, 3) for s in UNDEFINED.values()]
CALLER = (b"host_\x1b]0;t\x07caller", r"host_\x1b]0;t\x07caller")
LIB = b"lib\x1b[2J\xff.so"  # the library, all of the names above
OBJ = b"k\r\n::error ::x.o"  # an object file: a caller with a hostile name, a newline in its name
CLEAN = b"clean\x1b]0;t\x07.so"  # listed by -v as ok

RAW_CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]")  # anything but \n
UNSAFE_TEXT = re.compile("[\x80-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
LEAKS = 2 * (len(DEFINED) + len(UNDEFINED)) + 1  # .symtab and .dynsym of LIB; OBJ's reference


def c_label(raw: bytes) -> str:
    """A C string literal holding ``raw`` byte for byte, quoted for gas (odd names need it)."""
    plain = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ .,:;=%[]"
    body = "".join(chr(b) if b in plain else f"\\{b:03o}" for b in raw)
    return f'"\\"{body}\\""'


def nm_names(path: bytes, dynamic: bool) -> dict[bytes, bool]:
    """nm's symbols, bytes exact: name -> defined."""
    args = ["nm", "--no-sort", *(["-D"] if dynamic else []), path]
    out = subprocess.run(args, check=True, capture_output=True).stdout
    names = {}
    for line in out.split(b"\n"):
        m = re.match(rb"^[0-9a-f ]{16} (\S) (.*)$", line)
        if m:
            names[m[2]] = m[1] not in b"Uwv"
    return names


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    for tool in ("gcc", "nm"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    work = tmp_path_factory.mktemp("hostile")
    d = work / "tree"
    d.mkdir()
    names = list(DEFINED)
    (undef,) = UNDEFINED
    src = [
        f"void d{i}(void) __asm__({c_label(n)});\nvoid d{i}(void) {{}}" for i, n in enumerate(names)
    ]
    src.append(f"extern void u0(void) __asm__({c_label(undef)});")
    src.append(
        f"void (*const table[])(void) = {{{', '.join(f'd{i}' for i in range(len(names)))}, u0}};"
    )
    (work / "lib.c").write_text("\n".join(src) + "\n")
    obj_src = (
        f"extern void u0(void) __asm__({c_label(undef)});\n"
        f"void caller(void) __asm__({c_label(CALLER[0])});\n"
        "void caller(void) { u0(); }\n"
    )
    (work / "obj.c").write_text(obj_src)
    (work / "clean.c").write_text("int clean(int x) { return x + 1; }\n")
    cc = ["gcc", "-O1", "-o"]
    subprocess.run([*cc, work / "lib.so", "-shared", "-fPIC", work / "lib.c"], check=True)
    subprocess.run([*cc, work / "obj.o", "-c", "-fno-pic", work / "obj.c"], check=True)
    subprocess.run([*cc, work / "clean.so", "-shared", "-fPIC", work / "clean.c"], check=True)
    dest = os.fsencode(d)
    for src_name, name in (("lib.so", LIB), ("obj.o", OBJ), ("clean.so", CLEAN)):
        shutil.copyfile(work / src_name, dest + b"/" + name)
    # nm agrees that the names are in the files, byte for byte
    lib = dest + b"/" + LIB
    for dynamic in (False, True):
        listed = nm_names(lib, dynamic)
        assert {n for n in listed if n.startswith(b"gpu_")} == set(DEFINED) | set(UNDEFINED)
        assert all(listed[n] for n in DEFINED) and not listed[undef]
    assert nm_names(dest + b"/" + OBJ, False).keys() >= {undef, CALLER[0]}
    return d


def run_exe(*args: str | Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("gpuaot")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "gpuaot"]
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, timeout=120, env=env)


def run_both(*args: str | Path) -> list[tuple[str, int, bytes, bytes]]:
    """(how, exit code, stdout bytes, stderr bytes) from the installed command and CliRunner."""
    proc = run_exe(*args)
    r = CliRunner().invoke(main, [str(a) for a in args])
    return [
        ("subprocess", proc.returncode, proc.stdout, proc.stderr),
        ("clirunner", r.exit_code, r.stdout_bytes, r.stderr_bytes),
    ]


def assert_safe(out: bytes, where: str) -> str:
    """Valid UTF-8, no raw control byte but \\n, no C1/bidi/line separator; returns the text."""
    text = out.decode("utf-8")  # raises on invalid UTF-8
    assert not RAW_CONTROL.search(out), (where, RAW_CONTROL.search(out))
    assert not UNSAFE_TEXT.search(text), (where, UNSAFE_TEXT.search(text))
    return text


def exact(d: dict, key: str) -> bytes:
    """The exact bytes of ``d[key]`` under the JSON scheme of gpuaot.textsafe.json_safe."""
    if f"{key}_bytes" in d:
        return base64.b64decode(d[f"{key}_bytes"])
    return d[key].encode("utf-8")


def exact_list(d: dict, key: str) -> list[bytes]:
    raw = d.get(f"{key}_bytes") or [None] * len(d[key])
    return [base64.b64decode(b) if b is not None else t.encode() for t, b in zip(d[key], raw)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_is_safe_and_names_every_finding(hostile, fmt):
    results = run_both("check-leaks", "--no-config", "--format", fmt, hostile)
    outputs = set()
    for how, code, out, err in results:
        where = f"{fmt} via {how}"
        assert code == 1, (where, err)
        text = assert_safe(out, where)
        assert_safe(err, where + " (stderr)")
        assert "Traceback" not in err.decode()
        lines = text.splitlines()
        summary = lines[-1] if fmt in ("text", "github") else err.decode().splitlines()[-1]
        assert summary == f"{LEAKS} leaks in 2 of 3 ELF images.", where
        assert not any(line.startswith("FAKE") for line in lines)
        if fmt == "text":
            for shown, n in SHOWN:
                assert text.count(shown) == n, shown[:40]
            assert "referenced by " + CALLER[1] in text
            assert printable(os.fsdecode(LIB)) in text and r"k\r\n::error ::x.o" in text
        elif fmt == "github":
            for shown, n in SHOWN:
                assert text.count(shown.replace("%", "%25")) == n, shown[:40]
            assert all(line.startswith("::error file=") for line in lines[:-1])
            assert r"k\r\n%3A%3Aerror %3A%3Ax.o" in text  # file= is a property: ':' escaped
        outputs.add(out)
    assert len(outputs) == 1  # the same bytes from a pipe and from CliRunner


def test_json_round_trips_the_exact_bytes(hostile):
    (_, code, out, _), (_, code2, out2, _) = run_both(
        "check-leaks", "--no-config", "--json", hostile
    )
    assert code == code2 == 1 and out == out2
    doc = json.loads(assert_safe(out, "json"))
    assert doc["errors"] == []
    lib = os.fsencode(hostile) + b"/" + LIB
    by_table: dict[tuple[bytes, str], set[bytes]] = {}
    for f in doc["findings"]:
        assert exact(f, "path").startswith(os.fsencode(hostile))
        by_table.setdefault((exact(f, "file"), f["section"]), set()).add(exact(f, "symbol"))
        if (
            exact(f, "symbol") in UNDEFINED
            and f["section"] == ".symtab"
            and OBJ in exact(f, "file")
        ):
            assert exact_list(f, "referenced_by") == [CALLER[0]]
    for section, dynamic in ((".symtab", False), (".dynsym", True)):
        expected = {n for n in nm_names(lib, dynamic) if n.startswith(b"gpu_")}
        assert by_table[(lib, section)] == expected
    assert set(exact_list(doc, "scanned")) == {
        os.fsencode(hostile) + b"/" + name for name in (LIB, OBJ, CLEAN)
    }


def test_sarif_is_valid_and_keeps_the_bytes_in_properties(hostile):
    proc = run_exe("check-leaks", "--no-config", "--format", "sarif", hostile)
    doc = json.loads(assert_safe(proc.stdout, "sarif"))
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())
    assert list(validator.iter_errors(doc)) == []
    (sarif_run,) = doc["runs"]
    symbols = {exact(res["properties"], "symbol") for res in sarif_run["results"]}
    assert symbols == set(DEFINED) | set(UNDEFINED)
    locations = [res["locations"][0]["physicalLocation"] for res in sarif_run["results"]]
    uris = {loc["artifactLocation"]["uri"] for loc in locations}
    assert any(uri.endswith("/lib%1B%5B2J%FF.so") for uri in uris), uris  # the exact bytes


def test_output_file_is_valid_utf8_too(hostile, tmp_path):
    for fmt in FORMATS:
        out = tmp_path / f"report.{fmt}"
        proc = run_exe("check-leaks", "--no-config", "--format", fmt, "-o", out, hostile)
        assert proc.returncode == 1
        text = assert_safe(out.read_bytes(), fmt)
        assert "gpu_bad" in text


def test_verbose_lists_clean_files_escaped(hostile):
    for how, code, out, err in run_both("check-leaks", "--no-config", "-v", hostile):
        assert code == 1, how
        text = assert_safe(out, how)
        assert_safe(err, how)
        assert printable(os.fsdecode(CLEAN)) + ": ok" in text, how
        assert text.splitlines()[-1] == f"{LEAKS} leaks in 2 of 3 ELF images."


def test_mutated_files_never_print_unsafe_bytes(hostile, tmp_path):
    """Random bytes in and around the names (and anywhere): whatever the scan says is safe."""
    rng = random.Random(1234)
    data = (hostile / os.fsdecode(LIB)).read_bytes()
    starts = [m.start() for m in re.finditer(rb"gpu_", data)]
    d = tmp_path / "mutants"
    d.mkdir()
    for i in range(120):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 12)):
            at = (
                rng.choice(starts) + rng.randint(0, 24)
                if rng.random() < 0.7
                else rng.randrange(len(buf))
            )
            buf[min(at, len(buf) - 1)] = rng.randrange(256)
        (d / f"m{i:03}.so").write_bytes(bytes(buf))
    for fmt in FORMATS:
        proc = run_exe("check-leaks", "--no-config", "-v", "--format", fmt, d)
        assert proc.returncode in (0, 1, 3), proc.stderr[-2000:]
        assert_safe(proc.stdout, fmt)
        assert_safe(proc.stderr, fmt + " (stderr)")
        assert b"Traceback" not in proc.stderr


# -- the escaping rules and the JSON scheme, one by one ---------------------------------------------


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("\x1b[2J", r"\x1b[2J"),
        ("\r\n\t", r"\r\n\t"),
        ("\x00\x07\x7f", r"\x00\x07\x7f"),
        ("\x85\x9b", r"\u0085\u009b"),
        ("\u2028\u2029", r"\u2028\u2029"),
        ("\u202a\u202b\u202c\u202d\u202e", r"\u202a\u202b\u202c\u202d\u202e"),
        ("\u2066\u2067\u2068\u2069", r"\u2066\u2067\u2068\u2069"),
        ("\u061c\u200e\u200f", r"\u061c\u200e\u200f"),
        (os.fsdecode(b"\xff\xfe\x80"), r"\xff\xfe\x80"),
        ("\ud800", r"\ud800"),
        ("été ü 漢字 \\x41 %", "été ü 漢字 \\x41 %"),
    ],
)
def test_printable_rules(raw, shown):
    assert printable(raw) == shown
    assert printable(raw).encode("utf-8")  # always encodable


def test_printable_keep_and_json_safe_round_trip():
    assert printable("a\nb\tc\x1b", keep="\n\t") == "a\nb\tc\\x1b"
    names = [os.fsdecode(n) for n in [*DEFINED, *UNDEFINED]] + ["plain", "x\ud800y"]
    doc = json.loads(json.dumps(json_safe({"symbol": names[0], "referenced_by": names})))
    assert exact(doc, "symbol") == to_bytes(names[0])
    assert exact_list(doc, "referenced_by") == [to_bytes(n) for n in names]
    assert "referenced_by_bytes" in doc and doc["referenced_by_bytes"][names.index("plain")] is None
    assert json_safe({"ok": "plain"}) == {"ok": "plain"}  # nothing added for valid text


def test_inspect_escapes_manifest_strings(built, tmp_path):
    """A bundle whose manifest (patched in place, same length) holds escapes and bad bytes."""
    bundle = built("example").bundle
    data = bundle.read_bytes()
    m = re.search(rb'"compiler": ?"([^"]*)"', data)
    assert m, "no compiler string in the manifest"
    hostile = rb"\u001b]0;pwned\u0007\r\u202e\u009b\udcff"
    assert len(m[1]) >= len(hostile)
    value = hostile + b"x" * (len(m[1]) - len(hostile))
    patched = tmp_path / bundle.name
    patched.write_bytes(data[: m.start(1)] + value + data[m.end(1) :])
    for args in (["inspect", patched], ["inspect", "-v", patched], ["inspect", "--json", patched]):
        for how, code, out, err in run_both(*args):
            where = f"{args} via {how}"
            assert code == 0, (where, err)
            text = assert_safe(out, where)
            assert_safe(err, where)
            if "--json" in args:
                doc = json.loads(text)
                assert exact(doc, "compiler").startswith(
                    b"\x1b]0;pwned\x07\r\xe2\x80\xae\xc2\x9b\xff"
                )
            else:
                assert r"\x1b]0;pwned\x07\r\u202e\u009b\xff" in text.splitlines()[0], where
