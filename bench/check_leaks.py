"""Time ``gpuaot check-leaks`` against ``nm FILE | grep gpu_`` and ``readelf -Ws FILE``.

    python bench/check_leaks.py [--reps N] [EXTRA.so ...]

Libraries: llvmlite's own ``libllvmlite.so`` (~175,000 symbols), numpy's bundled OpenBLAS from
``numpy.libs/``, libnvvm from the CUDA nvcc wheel when installed, and any paths given.  Each
contender runs ``--reps`` times after one warm-up (page cache warm for all alike); the table
shows medians and the ratio to ``nm | grep``:

    api      gpuaot.leaks.scan_paths([lib]) in this process (what the build pays)
    cli      python -m gpuaot.cli check-leaks -q --no-config LIB (process start counts)
    nm|grep  sh -c 'nm LIB | grep gpu_'
    readelf  readelf -Ws LIB > /dev/null

The "python floor" is ``python -c "import gpuaot.cli"``: what any CLI command pays before
it does anything.  Nothing here imports llvmlite; its library is found on disk.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def default_libraries() -> list[Path]:
    out = []
    llvmlite = package_dir("llvmlite")
    if llvmlite:
        out += [Path(p) for p in sorted(glob.glob(str(llvmlite / "binding" / "libllvmlite*.so")))]
    numpy = package_dir("numpy")
    if numpy:
        out += [Path(p) for p in sorted(glob.glob(str(numpy.parent / "numpy.libs" / "*openblas*")))]
    nvidia = package_dir("nvidia")
    if nvidia:
        out += [
            Path(p)
            for p in sorted(glob.glob(str(nvidia / "cuda_nvcc" / "nvvm" / "lib64" / "libnvvm.so*")))
        ]
    return out


def timed(fn: Callable[[], object], reps: int) -> float:
    fn()  # warm-up: page cache, imports
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def run(args: list[str] | str, shell: bool = False) -> Callable[[], object]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # An installed gpuaot has its .pyc files (pip compiles them); let the warm-up write them
    # here too, even where the environment says PYTHONDONTWRITEBYTECODE.
    env.pop("PYTHONDONTWRITEBYTECODE", None)

    def go() -> object:
        return subprocess.run(
            args, shell=shell, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    return go


def symbol_count(lib: Path) -> int:
    text = subprocess.run(["readelf", "-SW", str(lib)], capture_output=True, text=True).stdout
    total = 0
    for line in text.splitlines():
        parts = line.replace("[ ", "[").split()
        if len(parts) > 6 and parts[2] in ("SYMTAB", "DYNSYM"):
            total += int(parts[5], 16) // max(1, int(parts[6], 16))
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("libs", nargs="*", type=Path)
    opts = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from gpuaot.leaks import scan_paths

    libs = [p for p in default_libraries() + opts.libs if p.is_file()]
    if not libs:
        print("no libraries found", file=sys.stderr)
        return 2
    py = sys.executable
    floor = timed(run([py, "-c", "import gpuaot.cli"]), opts.reps)
    rows = []
    for lib in libs:
        s = str(lib)
        result = scan_paths([s])
        t = {
            "api": timed(lambda s=s: scan_paths([s]), opts.reps),
            "cli": timed(
                run([py, "-m", "gpuaot.cli", "check-leaks", "-q", "--no-config", s]), opts.reps
            ),
            "nm|grep": timed(run(f"nm '{s}' | grep gpu_", shell=True), opts.reps),
            "readelf": timed(run(f"readelf -Ws '{s}' > /dev/null", shell=True), opts.reps),
        }
        rows.append((lib, symbol_count(lib), lib.stat().st_size, t, len(result.findings)))

    print(f"median of {opts.reps} runs; python floor (import gpuaot.cli): {floor * 1e3:.1f} ms")
    head = (
        f"{'library':<34} {'symbols':>8} {'MB':>6} {'api ms':>8} {'cli ms':>8} "
        f"{'nm|grep':>8} {'readelf':>8} {'api/nm':>7} {'cli/nm':>7} {'cli/readelf':>11}"
    )
    print(head)
    print("-" * len(head))
    for lib, nsym, size, t, nfind in rows:
        nm = t["nm|grep"]
        print(
            f"{lib.name[:34]:<34} {nsym:>8} {size / 1e6:>6.1f} {t['api'] * 1e3:>8.1f} "
            f"{t['cli'] * 1e3:>8.1f} {nm * 1e3:>8.1f} {t['readelf'] * 1e3:>8.1f} "
            f"{t['api'] / nm:>7.2f} {t['cli'] / nm:>7.2f} {t['cli'] / t['readelf']:>11.2f}"
            + (f"   ({nfind} findings)" if nfind else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
