"""The link: the objects of every target and CPU level → the host bundle, a .so.

    pool = compile_pool(None)            # the CPU worker pool's C source → an object (cc -c)
    link_shared([obj1, obj2, rt, pool], out)   # the system C compiler links the bundle

The objects go to the linker as one archive taken whole (``--whole-archive``): a build of
2,000 kernels writes one file, not 6,000. The pool (:mod:`.pool`) is compiled by the CPU
target as a job of its own (cached like the LLVM objects, keyed by the source, the flags and
the C compiler's stamp), so a rebuild does not run the C compiler over it again.

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


# How the pool's C source is compiled (part of its cache key).
POOL_FLAGS = ("-O2", "-fPIC")


def pool_fingerprint() -> dict:
    """What keys the pool's object besides its source: the flags and which C compiler
    ``$CC`` is (the build record's stamp of it: path, size, mtime; an upgrade rewrites it)."""
    from ...record import cc_stamps

    return {"flags": list(POOL_FLAGS), **cc_stamps()}


def compile_pool(_job=None) -> bytes:
    """The worker pool's C source → a position-independent object (a worker's job)."""
    cc = find_cc()
    with tempfile.TemporaryDirectory(prefix="gpuaot-pool-") as tmp:
        with open(os.path.join(tmp, POOL_FILE), "w") as f:
            f.write(pool_source())
        # Named relative to cwd=tmp: the object records no temporary directory.
        cmd = [*cc.split(), "-c", *POOL_FLAGS, POOL_FILE, "-o", "pool.o"]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0:
            raise BuildError(f"compiling the CPU worker pool failed ({cc}):\n{proc.stderr.strip()}")
        with open(os.path.join(tmp, "pool.o"), "rb") as f:
            return f.read()


def write_archive(path: str, objects: list[bytes]) -> None:
    """A System V ``ar`` archive of the objects (members ``m0.o``, ``m1.o``, ...), with no
    symbol index: the link takes every member (``--whole-archive``), so none is needed."""
    with open(path, "wb") as f:
        f.write(b"!<arch>\n")
        for k, obj in enumerate(objects):
            name = f"m{k}.o/"
            if len(name) > 16:  # pragma: no cover - 10**13 objects
                raise BuildError("too many objects for one archive")
            # name, mtime, uid, gid, mode (octal), size, and the header's end
            f.write(f"{name:<16}{0:<12}{0:<6}{0:<6}{644:<8}{len(obj):<10}`\n".encode())
            f.write(obj)
            if len(obj) % 2:
                f.write(b"\n")


def link_shared(objects: list[bytes], out_path: str) -> None:
    """Link objects into a position-independent .so: NEEDED ⊆ {libc, libm}, no RPATH.

    ``out_path`` is written in place: the caller gives a staging path of its own."""
    cc = find_cc()
    with tempfile.TemporaryDirectory(prefix="gpuaot-link-") as tmp:
        archive = os.path.join(tmp, "objects.a")
        write_archive(archive, objects)
        tmp_out = os.path.join(tmp, "bundle.so")
        script = os.path.join(tmp, "exports.map")
        with open(script, "w") as f:
            f.write(EXPORTS)
        cmd = [
            *cc.split(),
            "-shared",
            "-fPIC",
            "-o",
            tmp_out,
            "-Wl,--whole-archive",
            archive,
            "-Wl,--no-whole-archive",
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
