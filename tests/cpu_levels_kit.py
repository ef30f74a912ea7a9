"""Run a script that imports a built fixtures/example in a new process, optionally under
``qemu-x86_64 -cpu MODEL`` (``prefix``): shared by test_cpu_variants and test_cpu_qemu."""

from __future__ import annotations

import os
import subprocess
import sys

CHECK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "example_check.py")
REPO = os.path.dirname(os.path.dirname(CHECK))


# OpenBLAS (inside numpy's wheels) picks its kernels from the CPU it detects, and under
# qemu-user on some hosts (seen on AMD EPYC) it picks kernels the emulated model lacks: `import
# numpy` dies with SIGILL before gpuaot runs. Naming the model's core pins OpenBLAS's choice;
# gpuaot's own variant choice still reads the emulated CPUID.
OPENBLAS_CORE = {
    "core2duo": "Core2",
    "Nehalem": "Nehalem",
    "Westmere": "Nehalem",
    "SandyBridge": "Sandybridge",
    "Haswell": "Haswell",
}


def run_script(parent, script, env: dict | None = None, prefix=(), pythonpath=()):
    """A script run in a new process that imports the example built under ``parent``."""
    path = os.pathsep.join([*map(str, pythonpath), str(parent), REPO])
    base = {k: v for k, v in os.environ.items() if k not in ("GPUAOT_CPU", "GPUAOT_BUNDLE_PATH")}
    if "-cpu" in prefix:
        base["OPENBLAS_CORETYPE"] = OPENBLAS_CORE[prefix[list(prefix).index("-cpu") + 1]]
    return subprocess.run(
        [*prefix, sys.executable, str(script)],
        env={**base, **(env or {}), "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_check(parent, env: dict | None = None, prefix=(), pythonpath=()):
    """tests/example_check.py on the example built under ``parent``."""
    return run_script(parent, CHECK, env, prefix, pythonpath)
