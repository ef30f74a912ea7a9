"""The link: the objects of every target and CPU level → the host bundle, a .so.

    link_shared([obj1, obj2, rt], out)   # the system C compiler links the bundle

The link also compiles the CPU worker pool's C source (:mod:`.pool`) into the bundle.

A version script exports only the entry points and the embedded data (``gpuaot_cpu_*``,
``gpuaot_host_*``, ``gpuaot_manifest*``, ``gpuaot_fatbin*``, the CPU probe, the pool's
``gpuaot_rt_pool_*``); everything else stays local to the bundle.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from ....bundle import abi
from ....errors import BuildError
from .pool import POOL_FILE, pool_source

EXPORTS = "{\n  global: " + "; ".join(abi.EXPORTED) + ";\n  local: *;\n};\n"


def find_cc() -> str:
    cc = os.environ.get("CC") or "cc"
    path = shutil.which(cc.split()[0])
    if path is None:
        raise BuildError(
            f"no C compiler found ({'$CC=' + cc if 'CC' in os.environ else 'cc'}): gpuaot links "
            "the host bundle with the system C compiler; install gcc or clang, or set CC"
        )
    return cc


def link_shared(objects: list[bytes], out_path: str) -> None:
    """Link objects into a position-independent .so: NEEDED ⊆ {libc, libm}, no RPATH.

    ``out_path`` is written in place: the caller gives a staging path of its own."""
    cc = find_cc()
    with tempfile.TemporaryDirectory(prefix="gpuaot-link-") as tmp:
        names = []
        for k, obj in enumerate(objects):
            p = os.path.join(tmp, f"m{k}.o")
            with open(p, "wb") as f:
                f.write(obj)
            names.append(p)
        tmp_out = os.path.join(tmp, "bundle.so")
        script = os.path.join(tmp, "exports.map")
        with open(script, "w") as f:
            f.write(EXPORTS)
        with open(os.path.join(tmp, POOL_FILE), "w") as f:
            f.write(pool_source())
        cmd = [
            *cc.split(),
            "-shared",
            "-fPIC",
            "-o",
            tmp_out,
            *names,
            "-O2",  # (compiles the pool's C source: named relative to cwd, so reproducible)
            POOL_FILE,
            "-Wl,--as-needed",
            f"-Wl,--version-script={script}",
            "-lm",
            "-Wl,-z,noexecstack",
            "-Wl,--hash-style=gnu",
            "-Wl,--build-id=none",
            "-Wl,-O1",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0:
            raise BuildError(f"linking the host bundle failed ({cc}):\n{proc.stderr.strip()}")
        shutil.copyfile(tmp_out, out_path)
