"""Damaged bundles never crash the process (SPEC §3): a corpus made from real bundles.

Each damaged file (truncated, headers broken, manifest renamed / removed / retyped, image
bytes flipped, random bytes, empty) is loaded in a subprocess, so that a signal would show
as a negative return code: the kernel launch and the host call must raise ``BundleError``
naming the file and the fix, and nothing else. ``gpuaot inspect`` exits 2 on each of them,
1 where only an image's sha256 is wrong, 0 on the good bundle. pyelftools locates the
sections to damage: an oracle the run time's own ELF check does not share.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import re
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from elftools.elf.elffile import ELFFile
from gpu_support import DeviceArray, requires_gpu

from gpuaot import BundleError
from gpuaot.bundle import manifest as mf
from gpuaot.bundle.elfcheck import EM_NAMES, host_machine
from gpuaot.cli import main
from gpuaot.errors import BuildError
from gpuaot.runtime import bundle as rt_bundle

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="ELF bundles: Linux only")
NAME = mf.bundle_filename("example")
REBUILD = "; rebuild it with: gpuaot build example"

# In the subprocess: a kernel launch (caught, to go on) and a host call (left to propagate,
# so its traceback is the only one and the exit code is 1, not a signal).
CALLS = textwrap.dedent("""
    import numpy as np
    import example
    from gpuaot import BundleError
    x = np.ones(64, np.float32)
    try:
        example.saxpy[1, 64](np.float32(2), x, x, np.zeros_like(x))
    except BundleError as e:
        print("KERNEL:", e)
    else:
        print("KERNEL RAN")
    print("HOST:", example.dot(np.ones(3), np.ones(3)))
""")


# ---------------------------------------------------------------------- bundles and damage


@pytest.fixture(scope="module")
def cpu_bundle(kit, tmp_path_factory):
    parent = tmp_path_factory.mktemp("cpu")
    root = kit.copy_package(kit.FIXTURES / "example", parent)
    res = kit.build(root, cache_dir=parent / "cache")
    return root, res.bundle.read_bytes()


@pytest.fixture(scope="module")
def gpu_bundle(kit, tmp_path_factory):
    from gpuaot.compiler.driver import BuildOptions, build_package

    parent = tmp_path_factory.mktemp("gpu")
    root = kit.copy_package(kit.FIXTURES / "example", parent)
    opts = BuildOptions.resolve(str(root), arch="sm_80", cache_dir=str(parent / "cache"))
    try:
        res = build_package(opts)
    except BuildError as e:  # ptxas / libdevice wheels missing
        pytest.skip(f"no NVIDIA toolchain wheels: {e}")
    return root, res.bundle.read_bytes()


def section(data: bytes, name: str) -> tuple[int, int]:
    sec = ELFFile(io.BytesIO(data)).get_section_by_name(name)
    return sec["sh_offset"], sec["sh_size"]


def patch(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


def edit_manifest(data: bytes, edit) -> bytes:
    """``data`` with its manifest rewritten in place by ``edit(m)``, padded with spaces (an
    edit that grows it takes the room from the informational ``compiler`` string)."""
    offset, size = section(data, mf.MANIFEST_SECTION)
    m = json.loads(data[offset : offset + size].rstrip(b"\0"))
    edit(m)
    new = mf.dumps(m)
    if len(new) > size:
        m["compiler"] = m["compiler"][: len(m["compiler"]) - (len(new) - size)]
        new = mf.dumps(m)
    assert len(new) <= size
    return patch(data, offset, new.ljust(size, b" "))


def header(data: bytes, fmt: str, offset: int, value: int) -> bytes:
    return patch(data, offset, struct.pack("<" + fmt, value))


def flip_manifest_byte(data: bytes, byte: bytes) -> bytes:
    offset, _ = section(data, mf.MANIFEST_SECTION)
    return patch(data, offset + 10, byte)


def rename_section(data: bytes, old: str, new: str) -> bytes:
    offset, size = section(data, ".shstrtab")
    at = data.index(old.encode() + b"\0", offset, offset + size)
    return patch(data, at, new.encode())


def damage_section_table(data: bytes) -> bytes:
    (shoff,) = struct.unpack_from("<Q", data, 40)
    return patch(data, shoff, bytes(range(256)) * 4)


def random_bytes(n: int) -> bytes:
    return np.random.default_rng(7).integers(0, 256, n, dtype=np.uint8).tobytes()


def _spec(m, k=0):
    return m["kernels"][k]["specializations"][0]


OTHER_MACHINE = 183 if host_machine() != 183 else 62

# (id, damage(data), what the message says after "damaged gpuaot bundle PATH: ")
CPU_CASES = [
    ("truncated-40000", lambda d: d[:40_000], r"truncated: segment \d \(PT_LOAD\) holds bytes"),
    ("truncated-half", lambda d: d[: len(d) // 2], r"truncated: segment \d \(PT_LOAD\)"),
    (
        "truncated-after-header",
        lambda d: d[:64],
        r"truncated: the program header table holds bytes 64\.\.",
    ),
    ("truncated-last-byte", lambda d: d[:-1], r"truncated: the section header table"),
    ("truncated-to-0", lambda d: b"", r"the file is empty"),
    ("truncated-in-header", lambda d: d[:20], r"truncated: 20 bytes, shorter than an ELF header"),
    ("random-bytes", lambda d: random_bytes(len(d)), r"not an ELF file \(it starts with b'"),
    ("random-after-header", lambda d: d[:64] + random_bytes(len(d) - 64), r"truncated: "),
    ("section-table-damaged", damage_section_table, r"section"),
    ("section-table-past-eof", lambda d: header(d, "Q", 40, len(d)), r"the section header table"),
    ("not-64-bit", lambda d: patch(d, 4, b"\x01"), r"not a 64-bit ELF file"),
    (
        "other-machine",
        lambda d: header(d, "H", 18, OTHER_MACHINE),
        rf"{EM_NAMES[OTHER_MACHINE]} \(e_machine {OTHER_MACHINE}\)",
    ),
    ("relocatable", lambda d: header(d, "H", 16, 1), r"not a shared object \(ELF type 1"),
    (
        "no-manifest-section",
        lambda d: rename_section(d, mf.MANIFEST_SECTION, ".gpuaot.manifesX"),
        r"no \.gpuaot\.manifest section: not a gpuaot bundle",
    ),
    ("manifest-not-utf8", lambda d: flip_manifest_byte(d, b"\xff"), r"the manifest is not UTF-8"),
    ("manifest-not-json", lambda d: flip_manifest_byte(d, b'"'), r"the manifest is not valid JSON"),
    (
        "field-renamed",
        lambda d: edit_manifest(d, lambda m: m.update(kernelz=m.pop("kernels"))),
        r"manifest field 'kernels' is missing",
    ),
    (
        "field-removed",
        lambda d: edit_manifest(d, lambda m: _spec(m)["cpu"].pop("sites")),
        r"manifest field 'kernels\[0\]\.specializations\[0\]\.cpu\.sites' is missing",
    ),
    (
        "field-wrong-type",
        lambda d: edit_manifest(d, lambda m: _spec(m, 2)["cpu"].update(symbols=[])),
        r"manifest field 'kernels\[2\]\.specializations\[0\]\.cpu\.symbols' must be an object",
    ),
    (
        "param-dtype",
        lambda d: edit_manifest(d, lambda m: _spec(m, 1)["params"][1].update(dtype="f99")),
        r"'kernels\[1\]\.specializations\[0\]\.params\[1\]\.dtype' must be a scalar type",
    ),
    (
        "symbols-levels",
        lambda d: edit_manifest(
            d, lambda m: m["host_functions"][0]["symbols"].pop(m["cpu_variants"][-1]["level"])
        ),
        r"'host_functions\[0\]\.symbols' must map the levels of cpu_variants",
    ),
    (
        "version",
        lambda d: edit_manifest(d, lambda m: m.update(version=9)),
        r"manifest field 'version' is 9; this gpuaot reads 2",
    ),
    (
        "format",
        lambda d: edit_manifest(d, lambda m: m.update(format="other")),
        r"manifest field 'format' must be 'gpuaot-bundle'",
    ),
]

GPU_CASES = [
    (
        "image-outside-fatbin",
        lambda d: edit_manifest(d, lambda m: m["images"][0].update(offset=10**9)),
        r"manifest field 'images\[0\]' lies at bytes 1,000,000,000\.\..*outside the \.nv_fatbin",
    ),
    (
        "image-index",
        lambda d: edit_manifest(d, lambda m: _spec(m)["gpu"].update(image=99)),
        r"'kernels\[0\]\.specializations\[0\]\.gpu\.image' is 99, but the manifest has \d+ images",
    ),
    (
        "image-sha256-type",
        lambda d: edit_manifest(d, lambda m: m["images"][0].update(sha256="")),
        r"manifest field 'images\[0\]\.sha256' must be a sha256",
    ),
]


def flip_image(data: bytes, n: int = 0) -> bytes:
    """``data`` with bytes in the middle of image ``n`` inverted (the manifest untouched)."""
    offset, _ = section(data, mf.FATBIN_SECTION)
    m = json.loads(data[slice(*_span(data))].rstrip(b"\0"))
    at = offset + m["images"][n]["offset"] + m["images"][n]["size"] // 2
    return patch(data, at, bytes(b ^ 0xFF for b in data[at : at + 16]))


def _span(data: bytes) -> tuple[int, int]:
    offset, size = section(data, mf.MANIFEST_SECTION)
    return offset, offset + size


# ---------------------------------------------------------------------- running them


def write_case(tmp_path: Path, case: str, data: bytes) -> Path:
    path = tmp_path / case / NAME
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return path


def run_calls(root: Path, path: Path, code: str = CALLS) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root.parent), "GPUAOT_BUNDLE_PATH": str(path)}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )


def assert_bundle_error(proc: subprocess.CompletedProcess, path: Path, what: str) -> str:
    """Exit code 1 (not a signal), one traceback, and it is a BundleError with the message."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, f"return code {proc.returncode} (negative: a signal)\n{out}"
    assert proc.stderr.count("Traceback") == 1 and "During handling" not in proc.stderr, out
    last = proc.stderr.strip().splitlines()[-1]
    prefix = f"gpuaot.runtime.errors.BundleError: damaged gpuaot bundle {path}: "
    assert last.startswith(prefix) and last.endswith(REBUILD), out
    assert re.search(what, last[len(prefix) :]), (what, last)
    assert f"KERNEL: damaged gpuaot bundle {path}: " in proc.stdout, out
    return last


def inspect(path: Path):
    return CliRunner().invoke(main, ["inspect", str(path)])


@pytest.mark.parametrize("case,damage,what", CPU_CASES, ids=[c[0] for c in CPU_CASES])
def test_damaged_cpu_bundle(cpu_bundle, tmp_path, case, damage, what):
    root, data = cpu_bundle
    path = write_case(tmp_path, case, damage(data))
    assert_bundle_error(run_calls(root, path), path, what)
    res = inspect(path)
    assert res.exit_code == 2, res.output
    assert res.output.startswith(f"error: {path}: ") and res.output.count("\n") == 1, res.output
    assert re.search(what, res.output) and REBUILD in res.output, res.output


@pytest.mark.parametrize("case,damage,what", GPU_CASES, ids=[c[0] for c in GPU_CASES])
def test_damaged_gpu_manifest(gpu_bundle, tmp_path, case, damage, what):
    root, data = gpu_bundle
    path = write_case(tmp_path, case, damage(data))
    assert_bundle_error(run_calls(root, path), path, what)
    assert inspect(path).exit_code == 2


def test_good_bundles_run_and_inspect_clean(cpu_bundle, gpu_bundle, tmp_path):
    for n, (root, data) in enumerate([cpu_bundle, gpu_bundle]):
        path = write_case(tmp_path, f"good{n}", data)
        proc = run_calls(root, path)
        assert proc.returncode == 0 and "KERNEL RAN\nHOST: 3.0\n" in proc.stdout, proc.stderr
        res = inspect(path)
        assert res.exit_code == 0 and "HASH MISMATCH" not in res.output, res.output


# ---------------------------------------------------------------------- flipped image bytes

FLIPPED = textwrap.dedent("""
    import numpy as np
    import example
    from gpuaot.runtime import bundle as rb
    hashed = []
    real = rb.image_matches
    rb.image_matches = lambda image, blob: hashed.append(image) or real(image, blob)
    x = np.ones(64, np.float32)
    out = np.zeros_like(x)
    example.saxpy[1, 64](np.float32(2), x, x, out)   # the CPU path does not hash the fatbin
    assert (out == 3).all()
    assert hashed == []
    rb.load_bundle("example").image(0)
""")


def test_flipped_image_is_refused_before_the_driver(gpu_bundle, tmp_path, kit, monkeypatch):
    root, data = gpu_bundle
    path = write_case(tmp_path, "flipped", flip_image(data))
    proc = run_calls(root, path, FLIPPED)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"gpuaot\.runtime\.errors\.BundleError: damaged gpuaot bundle {re.escape(str(path))}: "
        r"image 0 \([\d,]+ bytes\) does not match its recorded sha256 [0-9a-f]{16}\.\.\."
        + re.escape(REBUILD),
        last,
    ), proc.stderr

    # In this process: runtime.cuda's loader checks the image before it touches the driver.
    from gpuaot.runtime import cuda

    class NoDriver:
        def __getattr__(self, name):
            raise AssertionError(f"the driver was reached ({name}) with a damaged image")

    monkeypatch.setenv("GPUAOT_BUNDLE_PATH", str(path))
    kit.import_package(root, monkeypatch)
    b = rt_bundle.load_bundle("example")
    gpu = b.kernels["example.kernels.saxpy"].specializations[0].gpu
    with pytest.raises(BundleError, match="does not match its recorded sha256") as e:
        cuda._load(NoDriver(), b, 0, gpu)
    assert e.value.name == "example" and e.value.path == str(path)
    assert b.gpu_modules == {}
    kit.unload("example")

    res = inspect(path)
    assert res.exit_code == 1 and "HASH MISMATCH" in res.output, res.output
    assert f"error: {path}: image 0 " in res.output and REBUILD in res.output


def test_images_are_hashed_once_per_process(gpu_bundle, tmp_path, kit, monkeypatch):
    root, data = gpu_bundle
    path = write_case(tmp_path, "good", data)
    monkeypatch.setenv("GPUAOT_BUNDLE_PATH", str(path))
    kit.import_package(root, monkeypatch)
    hashed = []
    real = rt_bundle.image_matches
    monkeypatch.setattr(
        rt_bundle, "image_matches", lambda image, blob: hashed.append(1) or real(image, blob)
    )
    b = rt_bundle.load_bundle("example")
    first = b.image(0)
    assert b.image(0) is first and len(hashed) == 1
    assert first[:4] == b"\x50\xed\x55\xba"  # a fatbin container, as cuModuleLoadData wants
    # the bytes the driver got before this check, from the loaded library's memory
    addr = ctypes.addressof(ctypes.c_char.in_dll(b.lib, "gpuaot_fatbin"))
    image = b.manifest["images"][0]
    assert first == ctypes.string_at(addr + image["offset"], image["size"])
    kit.unload("example")


@pytest.mark.gpu
@requires_gpu
def test_flipped_image_on_a_gpu(gpu_bundle, tmp_path, kit, monkeypatch):
    root, data = gpu_bundle
    path = write_case(tmp_path, "flipped", flip_image(data))
    monkeypatch.setenv("GPUAOT_BUNDLE_PATH", str(path))
    pkg = kit.import_package(root, monkeypatch)
    x = DeviceArray(np.ones(64, np.float32))
    with pytest.raises(BundleError, match="image 0 .* does not match its recorded sha256"):
        pkg.saxpy[1, 64](np.float32(2), x, x, DeviceArray(np.zeros(64, np.float32)))
    kit.unload("example")


# ---------------------------------------------------------------------- the schema itself


def test_schema_accepts_what_the_builds_write(cpu_bundle, gpu_bundle):
    from gpuaot.lang.types import SCALARS, boolean, f32, f64, i64, none, tuple_of

    for _, data in (cpu_bundle, gpu_bundle):
        offset, end = _span(data)
        fatbin = section(data, mf.FATBIN_SECTION)[1] if b".nv_fatbin" in data else None
        mf.loads(data[offset:end].rstrip(b"\0"), fatbin)
    assert mf.SCALAR_TYPES == set(SCALARS)
    offset, end = _span(cpu_bundle[1])
    m = json.loads(cpu_bundle[1][offset:end].rstrip(b"\0"))
    host = m["host_functions"][0]
    for t in (f64, none, tuple_of([f64]), tuple_of([i64, tuple_of([f32, boolean]), f64])):
        host["returns"] = t.name  # the names host functions' results have
        mf.validate(m, None)
    for bad in ("Array[f32, 1]", "(f64", "f64)", "(None, f64)", "", "(" * 40 + "f64" + ")" * 40):
        host["returns"] = bad
        with pytest.raises(
            mf.ManifestError, match=r"'host_functions\[0\]\.returns' must name a scalar type"
        ):
            mf.validate(m, None)


@pytest.mark.parametrize(
    "edit,field,problem",
    [
        (lambda m: m.pop("options"), "options", "is missing"),
        (lambda m: m.update(kernels={}), "kernels", "must be an array"),
        (
            lambda m: m["modules"].update({"a.b": {"file": "a/b.py", "sha256": "x"}}),
            'modules["a.b"].sha256',
            "must be a sha256",
        ),
        (lambda m: m["options"].update(debug=0), "options.debug", "must be true or false"),
        (
            lambda m: m["modules"]["example.util"].update(file="/abs\0.py"),
            'modules["example.util"].file',
            "must be a relative file name",
        ),
        (
            lambda m: m["cpu_variants"].append(dict(m["cpu_variants"][0])),
            "cpu_variants[3].level",
            "repeats",
        ),
        (
            lambda m: _spec(m)["params"][0].update(ndim=True),
            "kernels[0].specializations[0].params[0].ndim",
            "must be an array rank",
        ),
        (
            lambda m: _spec(m)["params"][0].pop("layout"),
            "kernels[0].specializations[0].params[0].layout",
            "is missing",
        ),
        (
            lambda m: _spec(m)["params"][0].update(abi=["ptr"]),
            "kernels[0].specializations[0].params[0].abi",
            "must be ['ptr', 'i64', 'i64']",
        ),
        (
            lambda m: _spec(m, 1)["params"][0].update(type="f128"),
            "kernels[1].specializations[0].params[0].type",
            "must be a scalar type",
        ),
        (
            lambda m: _spec(m)["cpu"]["symbols"].update({"x86-64-v2": ""}),
            'kernels[0].specializations[0].cpu.symbols["x86-64-v2"]',
            "must be a symbol name",
        ),
        (
            lambda m: _spec(m).update(gpu_only=1),
            "kernels[0].specializations[0].gpu_only",
            "must be a string",
        ),
        (
            lambda m: m["kernels"][0].update(specializations=[]),
            "kernels[0].specializations",
            "must not be empty",
        ),
        (
            lambda m: m["host_functions"][0]["sites"].append(
                {"type": "ValueError", "message": "", "file": "f.py", "line": -1}
            ),
            "host_functions[0].sites[0].line",
            "must be a non-negative integer",
        ),
        (
            lambda m: m.update(ptx_arch="sm_75"),
            "ptx_arch",
            "is 'sm_75', which is not in architectures",
        ),
        (
            lambda m: m.update(
                images=[
                    {"kind": "fatbin", "offset": 0, "size": 0, "sha256": "0" * 64, "entries": []}
                ]
            ),
            "images[0]",
            "has no bytes: the bundle has no .nv_fatbin section",
        ),
    ],
)
def test_schema_names_the_bad_field(cpu_bundle, edit, field, problem):
    offset, end = _span(cpu_bundle[1])
    m = json.loads(cpu_bundle[1][offset:end].rstrip(b"\0"))
    edit(m)
    with pytest.raises(mf.ManifestError) as e:
        mf.validate(m, None)
    assert e.value.field == field and str(e.value).startswith(f"manifest field '{field}' {problem}")
    assert mf.validate(json.loads(cpu_bundle[1][offset:end].rstrip(b"\0")), None)


def test_not_an_object_and_bundle_error_export():
    import gpuaot
    from gpuaot.bundle.inspect import BadBundle
    from gpuaot.runtime.errors import BundleError as Direct

    with pytest.raises(mf.ManifestError, match="^the manifest is not a JSON object$"):
        mf.validate([], None)
    assert gpuaot.BundleError is Direct and issubclass(Direct, ImportError)
    assert issubclass(BadBundle, Direct) and BadBundle("x").exit_code == 2
