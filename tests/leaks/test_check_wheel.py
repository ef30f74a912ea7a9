"""``gpuaot check-wheel``: real bundles of fixtures/example, packed into wheels as PEP 427 lays
them out, and each way a wheel can be wrong: missing, stale, truncated, native-only, leaky,
mis-tagged, tampered; exit codes, text, JSON and SARIF (validated against the OASIS schema)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner
from conftest import ROOT

from gpuaot.cli.check_wheel import check_wheel

TAG = "py3-none-linux_x86_64"
BUNDLE = "example/_gpuaot/example.linux_x86_64.gpuaot.so"
SCHEMA = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.uname().machine != "x86_64",
    reason="the example bundles are built for linux_x86_64",
)


def package_files(root: Path) -> dict[str, bytes]:
    """A built package's files by wheel member name (its bundle included, no caches)."""
    return {
        p.relative_to(root.parent).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".rejected")
    }


def write_wheel(
    directory: Path, files: dict[str, bytes], tag: str = TAG, name: str = "example"
) -> Path:
    """``directory/<name>-0.1-<tag>.whl`` with ``files`` and a PEP 427 ``.dist-info``."""
    info = f"{name}-0.1.dist-info"
    meta = {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n".encode(),
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: gpuaot-tests\n"
            f"Root-Is-Purelib: {'true' if tag.endswith('-any') else 'false'}\n"
            + "".join(f"Tag: py3-none-{plat}\n" for plat in tag.split("-")[2].split("."))
        ).encode(),
    }
    everything = {**files, **meta}
    record = "".join(
        f"{member},sha256="
        f"{base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
        f"{len(data)}\n"
        for member, data in everything.items()
    )
    path = directory / f"{name}-0.1-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in everything.items():
            zf.writestr(member, data)
        zf.writestr(f"{info}/RECORD", record + f"{info}/RECORD,,\n")
    return path


def build(kit, tmp: Path, **options) -> dict[str, bytes]:
    """Build a copy of fixtures/example on the CPU; its files, bundle included."""
    from gpuaot.compiler.driver import BuildOptions, build_package

    root = kit.copy_package(kit.FIXTURES / "example", tmp)
    opts = BuildOptions.resolve(
        str(root), no_gpu=True, cache_dir=str(tmp.parent / "cache"), **options
    )
    result = build_package(opts)
    assert result.leaks is None and result.bundle.name == Path(BUNDLE).name
    return package_files(root)


@pytest.fixture(scope="module")
def files(kit, tmp_path_factory) -> dict[str, bytes]:
    return build(kit, tmp_path_factory.mktemp("default"))


@pytest.fixture(scope="module")
def native_files(kit, tmp_path_factory) -> dict[str, bytes]:
    return build(kit, tmp_path_factory.mktemp("native"), cpu_levels="native")


@pytest.fixture(scope="module")
def leaky_so(tmp_path_factory) -> bytes:
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (cc)")
    d = tmp_path_factory.mktemp("leaky")
    (d / "leak.c").write_text(
        "void gpu_report_exception(int code);\n"
        "void launch(int code) { gpu_report_exception(code); }\n"
    )
    subprocess.run(
        [cc, "-shared", "-fPIC", "-o", str(d / "libleak.so"), str(d / "leak.c")], check=True
    )
    return (d / "libleak.so").read_bytes()


def run(*args: str):
    return CliRunner().invoke(check_wheel, [*args, "--no-config"], catch_exceptions=False)


def check(wheel: Path, *args: str):
    """Run with --json; (exit code, {(member, rule): message}, document)."""
    r = run("--json", *args, str(wheel))
    doc = json.loads(r.stdout)
    found = {(f["member"], f["rule"]): f["message"] for f in doc["findings"]}
    assert doc["summary"]["exit_code"] == r.exit_code
    return r.exit_code, found, doc


def test_good_wheel_passes(files, tmp_path):
    wheel = write_wheel(tmp_path, files)
    r = run(str(wheel))
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "No problems in 1 wheel (1 ELF image scanned)."
    assert run("-q", str(wheel)).stdout == ""
    from gpuaot.cli import main

    r = CliRunner().invoke(main, ["check-wheel", "--no-config", str(wheel)])
    assert r.exit_code == 0 and r.stdout.startswith("No problems in 1 wheel")


def test_manylinux_and_data_dir_layouts_pass(files, tmp_path):
    """Compressed manylinux tags mean linux_x86_64; .data/platlib/ installs at the root."""
    moved = {f"example-0.1.data/platlib/{m}": data for m, data in files.items()}
    wheel = write_wheel(tmp_path, moved, "py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64")
    assert check(wheel)[:2] == (0, {})


def test_missing_bundle(files, tmp_path):
    wheel = write_wheel(tmp_path, {m: d for m, d in files.items() if m != BUNDLE})
    code, found, _ = check(wheel)
    assert code == 1
    assert list(found) == [(BUNDLE, "missing-bundle")]
    assert "example.kernels." in found[BUNDLE, "missing-bundle"]
    r = run(str(wheel))
    assert r.stdout.splitlines()[0] == f"{wheel}!{BUNDLE}"
    assert "rebuild the wheel" in r.stdout


def test_stale_bundle_names_the_file(files, tmp_path):
    edited = dict(files)
    edited["example/kernels.py"] += b"\n# edited after the build\n"
    code, found, doc = check(write_wheel(tmp_path, edited))
    assert code == 1
    assert found == {
        (BUNDLE, "stale-bundle"): "example/kernels.py changed since the bundle was built"
    }
    (f,) = doc["findings"]
    assert f["hint"] == "rebuild the wheel: gpuaot's bundle is stale: example/kernels.py changed"
    assert f["file"].endswith(f".whl!{BUNDLE}")


def test_line_endings_count_as_the_run_time_counts_them(files, tmp_path):
    """check_fresh reads text (universal newlines): CRLF sources are not stale; edits are."""
    crlf = dict(files)
    crlf["example/util.py"] = files["example/util.py"].replace(b"\n", b"\r\n")
    assert check(write_wheel(tmp_path, crlf))[:2] == (0, {})


def test_module_missing_from_wheel_and_new_module(files, tmp_path):
    changed = {m: d for m, d in files.items() if m != "example/reductions.py"}
    changed["example/extra.py"] = (
        b"import gpuaot as ga\n\n\n@ga.host\ndef one() -> int:\n    return 1\n"
    )
    code, found, doc = check(write_wheel(tmp_path, changed))
    assert code == 1
    messages = sorted(f["message"] for f in doc["findings"])
    assert messages == [
        "example/extra.py has gpuaot functions (one) that the bundle lacks",
        "the bundle was built with example/reductions.py, which is not in the wheel",
    ]


def test_truncated_bundle_is_unreadable(files, tmp_path):
    cut = dict(files)
    cut[BUNDLE] = files[BUNDLE][: len(files[BUNDLE]) // 2]
    wheel = write_wheel(tmp_path, cut)
    code, _, doc = check(wheel)
    assert code == 3
    reasons = [e["reason"] for e in doc["errors"] if e["member"] == BUNDLE]
    assert any(r.startswith("unreadable gpuaot bundle: ") for r in reasons), reasons
    assert not any("gpuaot-check-wheel-" in r for r in reasons)  # no temporary paths
    assert "rebuild the wheel" in run(str(wheel)).stdout


def test_leaky_elf_member(files, leaky_so, tmp_path):
    wheel = write_wheel(tmp_path, {**files, "example/_native.so": leaky_so})
    code, found, doc = check(wheel)
    assert code == 1
    assert list(found) == [("example/_native.so", "forbidden-symbol")]
    assert {f["section"] for f in doc["findings"]} == {".dynsym", ".symtab"}
    for f in doc["findings"]:
        assert f["symbol"] == "gpu_report_exception" and not f["defined"]
        assert f["referenced_by"] == ["launch"] and f["hint"].startswith("do not ship it")
    text = run(str(wheel)).stdout
    assert f"{wheel}!example/_native.so\n  gpu_report_exception" in text
    assert text.splitlines()[-1] == "2 problems in 1 of 1 wheel (2 leaks in 2 ELF images)."


def test_forbid_and_allow(files, leaky_so, tmp_path):
    wheel = write_wheel(tmp_path, {**files, "example/_native.so": leaky_so})
    assert run("--allow", "gpu_report_*", str(wheel)).exit_code == 0
    r = run("--json", "--forbid", "launch", "--allow", "gpu_report_*", str(wheel))
    assert r.exit_code == 1
    assert {f["symbol"] for f in json.loads(r.stdout)["findings"]} == {"launch"}


def test_native_bundle_is_not_portable(native_files, tmp_path):
    code, found, _ = check(write_wheel(tmp_path, native_files))
    assert code == 1
    assert (
        "the native CPU variant is for the build machine's CPU"
        in found[BUNDLE, "non-portable-variant"]
    )
    # native needs the build machine's features: it does not run at the x86-64-v2 baseline
    assert "x86-64-v2 baseline" in found[BUNDLE, "no-baseline-variant"]


def test_baseline_option(files, tmp_path):
    wheel = write_wheel(tmp_path, files)
    code, found, _ = check(wheel, "--baseline", "x86-64")
    assert code == 1
    msg = found[BUNDLE, "no-baseline-variant"]
    assert msg.startswith("no CPU variant runs on the x86-64 baseline: the lowest, x86-64-v2")
    assert check(wheel, "--baseline", "x86-64-v3")[0] == 0
    assert check(wheel, "--baseline", "armv8-a")[0] == 0  # another platform's level: not this one
    r = run("--baseline", "pentium", str(wheel))
    assert r.exit_code == 2 and "not a CPU level" in r.output


def test_pure_wheel_with_a_bundle(files, tmp_path):
    code, found, _ = check(write_wheel(tmp_path, files, tag="py3-none-any"))
    assert code == 1
    assert list(found) == [(BUNDLE, "pure-wheel")]
    assert "py3-none-any" in found[BUNDLE, "pure-wheel"]


def test_platform_mismatch(files, tmp_path):
    code, found, _ = check(write_wheel(tmp_path, files, tag="py3-none-manylinux_2_17_aarch64"))
    assert code == 1
    assert set(found) == {
        (BUNDLE, "platform-mismatch"),
        ("example/_gpuaot/example.linux_aarch64.gpuaot.so", "missing-bundle"),
    }
    assert "linux_aarch64" in found[BUNDLE, "platform-mismatch"]


def test_misplaced_bundle(files, tmp_path):
    moved = {m: d for m, d in files.items() if m != BUNDLE}
    moved["example/_gpuaot/other.linux_x86_64.gpuaot.so"] = files[BUNDLE]
    code, found, _ = check(write_wheel(tmp_path, moved))
    assert code == 1
    assert set(found) == {
        ("example/_gpuaot/other.linux_x86_64.gpuaot.so", "misplaced-bundle"),
        (BUNDLE, "missing-bundle"),
    }


@pytest.fixture(scope="module")
def manifest(files, tmp_path_factory) -> dict:
    from gpuaot.bundle.inspect import read_bundle_manifest

    path = tmp_path_factory.mktemp("manifest") / "bundle.so"
    path.write_bytes(files[BUNDLE])
    return read_bundle_manifest(str(path))


def crafted(tmp_path: Path, manifest: dict, fatbin: bytes | None, **changes) -> bytes:
    """A bundle .so: the real bundle's manifest with ``changes``, and ``fatbin``."""
    from gpuaot.bundle import manifest as mf
    from gpuaot.bundle.embed import embed_object
    from gpuaot.compiler.targets.cpu import link_shared

    out = tmp_path / "crafted.so"
    link_shared([embed_object(mf.dumps({**manifest, **changes}), fatbin)], str(out))
    return out.read_bytes()


def test_tampered_image(files, manifest, tmp_path):
    """A bundle whose embedded fatbin differs from its manifest's sha256."""
    fatbin = b"\x50\xed\x55\xba" + bytes(60)

    def with_image(sha: str) -> bytes:
        image = {"kind": "fatbin", "offset": 0, "size": len(fatbin), "sha256": sha, "entries": []}
        return crafted(tmp_path, manifest, fatbin, images=[image])

    good = with_image(hashlib.sha256(fatbin).hexdigest())
    assert check(write_wheel(tmp_path, {**files, BUNDLE: good}))[:2] == (0, {})
    bad = with_image(hashlib.sha256(b"something else").hexdigest())
    code, found, _ = check(write_wheel(tmp_path, {**files, BUNDLE: bad}))
    assert code == 1 and list(found) == [(BUNDLE, "image-mismatch")]
    assert "does not match its recorded sha256" in found[BUNDLE, "image-mismatch"]


def test_cpu_variants_and_cpu_code(files, manifest, tmp_path):
    """No variants is right for a GPU-only (--no-cpu) bundle, wrong where there is CPU code."""
    no_variants = crafted(tmp_path, manifest, None, cpu_variants=[])
    code, found, _ = check(write_wheel(tmp_path, {**files, BUNDLE: no_variants}))
    assert code == 1 and list(found) == [(BUNDLE, "no-cpu-variants")]
    gpu_only = [
        {**k, "specializations": [{**s, "cpu": None} for s in k["specializations"]]}
        for k in manifest["kernels"]
    ]
    bundle = crafted(tmp_path, manifest, None, cpu_variants=[], kernels=gpu_only, host_functions=[])
    assert check(write_wheel(tmp_path, {**files, BUNDLE: bundle}))[:2] == (0, {})


def test_wheel_without_gpuaot_code(tmp_path):
    wheel = write_wheel(tmp_path, {"plain/__init__.py": b"VALUE = 1\n"}, name="plain")
    assert check(wheel)[:2] == (0, {})
    pure = write_wheel(tmp_path, {"plain/__init__.py": b"VALUE = 1\n"}, "py3-none-any", "plain")
    assert check(pure)[:2] == (0, {})


def test_not_a_zip_and_not_a_wheel(files, tmp_path):
    junk = tmp_path / "junk-0.1-py3-none-any.whl"
    junk.write_bytes(b"not a zip at all")
    code, _, doc = check(junk)
    assert code == 3 and doc["errors"][0]["reason"].startswith("not a wheel: unreadable zip")
    bare = tmp_path / "bare-0.1-py3-none-any.whl"
    with zipfile.ZipFile(bare, "w") as zf:
        zf.writestr("bare/__init__.py", "")
    code, _, doc = check(bare)
    assert code == 3 and doc["errors"][0]["reason"] == "not a wheel: no *.dist-info/WHEEL"
    # 3 wins over the findings of another wheel, which are still reported
    r = run("--json", str(junk), str(write_wheel(tmp_path, {})))
    assert r.exit_code == 3
    r = run(str(tmp_path / "missing.whl"))
    assert r.exit_code == 2 and "no such file" in r.output


def test_control_characters_are_escaped(files, leaky_so, tmp_path):
    wheel = write_wheel(tmp_path, {**files, "example/\x1b[2Jevil\n.so": leaky_so})
    r = run(str(wheel))
    assert r.exit_code == 1
    assert "\x1b" not in r.stdout and "example/\\x1b[2Jevil\\n.so" in r.stdout
    gh = run("--format", "github", str(wheel))
    assert "\x1b" not in gh.stdout and gh.stdout.startswith("::error file=")
    assert json.loads(run("--json", str(wheel)).stdout)["findings"][0]["member"].startswith(
        "example/\x1b"
    )


def test_sarif_validates(files, leaky_so, tmp_path):
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())
    edited = {**files, "example/_native.so": leaky_so}
    edited["example/util.py"] += b"# changed\n"
    wheel = write_wheel(tmp_path, edited)
    out = tmp_path / "report.sarif"
    r = run("--format", "sarif", "-o", str(out), str(wheel))
    assert r.exit_code == 1
    doc = json.loads(out.read_text())
    assert list(validator.iter_errors(doc)) == []
    (sarif_run,) = doc["runs"]
    assert sarif_run["tool"]["driver"]["name"] == "gpuaot check-wheel"
    rule_ids = [rule["id"] for rule in sarif_run["tool"]["driver"]["rules"]]
    assert {res["ruleId"] for res in sarif_run["results"]} == {"stale-bundle", "forbidden-symbol"}
    for res in sarif_run["results"]:
        assert rule_ids[res["ruleIndex"]] == res["ruleId"]
        assert "rebuild" in res["message"]["text"]
    prints = [res["partialFingerprints"]["gpuaotLeak/v1"] for res in sarif_run["results"]]
    assert len(set(prints)) == len(prints)


def test_json_document(files, tmp_path):
    wheel = write_wheel(tmp_path, {m: d for m, d in files.items() if m != BUNDLE})
    r = run("--json", str(wheel))
    doc = json.loads(r.stdout)
    assert doc["version"] == 1 and doc["tool"]["name"] == "gpuaot check-wheel"
    assert doc["wheels"] == [str(wheel)]
    assert doc["summary"] == {"scanned": 0, "findings": 1, "errors": 0, "exit_code": 1}
    assert set(doc["findings"][0]) >= {"file", "path", "member", "rule", "message", "hint"}
    assert "1 problem in 1 of 1 wheel" in r.stderr  # human text on stderr


def test_directory_of_wheels(files, tmp_path):
    dist = tmp_path / "dist"
    dist.mkdir()
    write_wheel(dist, files)
    assert run(str(dist)).exit_code == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(str(empty)).exit_code == 2


def test_through_the_gpuaot_executable(files, tmp_path):
    exe = Path(sys.executable).parent / "gpuaot"
    if not exe.exists():
        pytest.skip("the gpuaot console script is not installed in this environment")
    good = write_wheel(tmp_path, files)
    stale = dict(files)
    stale["example/kernels.py"] += b"\n"
    (tmp_path / "stale").mkdir()
    bad = write_wheel(tmp_path / "stale", stale)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [str(exe), "check-wheel", "--no-config", str(good)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "No problems in 1 wheel (1 ELF image scanned)."
    proc = subprocess.run(
        [str(exe), "check-wheel", "--no-config", "--format", "github", str(good), str(bad)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stdout.startswith("::error file=") and "example/kernels.py changed" in proc.stdout
