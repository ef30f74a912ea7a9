"""Concurrent builds of one package (SPEC §6): CI matrices share caches and checkouts.

Two ``gpuaot build`` processes at a time, ten rounds: every run exits 0, every bundle has
the same sha256, and no staging file is left behind — with a shared cache (the first rounds
cold, so both write the same entries at once) and with a cache each.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest


def _gpuaot(kit) -> str:
    exe = shutil.which("gpuaot", path=str(kit.VENV_BIN))
    if exe is None:
        pytest.skip("the gpuaot executable is not installed in this environment")
    return exe


def _round(exe, root, caches) -> list[subprocess.CompletedProcess]:
    procs = [
        subprocess.Popen(
            [exe, "build", str(root), "--no-gpu", "--cache-dir", str(c), "-q"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in caches
    ]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


@pytest.mark.parametrize("shared", [True, False], ids=["shared-cache", "own-caches"])
def test_concurrent_builds_agree(kit, tmp_path, shared):
    exe = _gpuaot(kit)
    root = kit.copy_package(kit.FIXTURES / "example", tmp_path / "src")
    bundle = root / "_gpuaot"
    digests = set()
    rounds = 10 if shared else 3
    for k in range(rounds):
        if shared:
            caches = [tmp_path / "cache"] * 2
            if k < 3:  # cold: both processes compile and write the same entries at once
                shutil.rmtree(tmp_path / "cache", ignore_errors=True)
        else:
            caches = [tmp_path / f"cache-{k}-a", tmp_path / f"cache-{k}-b"]
        for r in _round(exe, root, caches):
            assert r.returncode == 0, (k, r.stderr)
        files = sorted(p.name for p in bundle.iterdir())
        assert len(files) == 1 and files[0].endswith(".gpuaot.so"), (k, files)  # nothing staged
        digests.add(hashlib.sha256((bundle / files[0]).read_bytes()).hexdigest())
        for c in set(caches):
            assert not [p for p in c.rglob(".tmp-*")], "a cache temp file was left behind"
    assert len(digests) == 1
