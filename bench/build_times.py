"""Build times: a no-op ``gpuaot build`` against ``gpuaot --help``, and N trivial kernels.

    python bench/build_times.py                      # N = 100, 500, 2000; CPU backend only
    python bench/build_times.py --vs-numba 20        # + 20 kernels x 3 archs vs numba-cuda
    python bench/build_times.py --sizes 100,500 --gpu --jobs 8
    python bench/build_times.py --profile 2000       # cProfile of one cold build, top 25

Every build is the installed ``gpuaot`` command, in a fresh temporary directory and with a
fresh cache, so the numbers include the command's own start-up and describe the compiler in
this tree (its modules byte-compiled once, into the temporary directory, as an installed
gpuaot's are). "cold" is the first build (empty cache), "warm" a rebuild after one kernel's body
changed (every other object comes from the cache), "no-op" a rebuild with nothing changed
(the build record answers "up to date"). Each time is the median of ``--repeat`` runs
(cold: one run). The last column divides by the time per kernel at the smallest N: a flat
column is linear growth.

``--vs-numba N`` also builds N kernels for sm_75, sm_80 and sm_90 and the default CPU levels
(a cold ``gpuaot build``, the command's start-up included) and times numba-cuda's
``compile_ptx`` for the same N kernels and the same three architectures in the bench venv
(``.venv-bench``; its import and a warm-up compile of another kernel excluded, so numba's column
is only compilation): gpuaot builds more (cubins, a fatbin, the host code) in its time. The
two alternate ``--repeat`` times (medians: the machine may be shared), and the last column is
the build's CPU time over its wall time, the cores ``--jobs`` kept busy.

Markdown on stdout::

    | build | N | time (s) | per kernel (ms) | vs smallest N |
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KERNEL = """
@ga.kernel
def k{n}(a: f32, x: Array[f32], out: Array[f32]):
    i = ga.grid(1)
    if i < x.shape[0]:
        out[i] = a * x[i] + {n}.0
"""
PER_MODULE = 100


def gpuaot_exe() -> str:
    exe = shutil.which("gpuaot", path=str(Path(sys.executable).parent)) or shutil.which("gpuaot")
    if exe is None:
        sys.exit("bench/build_times.py: the gpuaot command is not installed (make install)")
    return exe


def make_package(root: Path, n: int) -> Path:
    """``root/kpkg``: ``n`` trivial kernels, :data:`PER_MODULE` to a module."""
    pkg = root / "kpkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for m in range(0, n, PER_MODULE):
        body = "".join(KERNEL.format(n=k) for k in range(m, min(n, m + PER_MODULE)))
        (pkg / f"mod{m // PER_MODULE:03d}.py").write_text(
            "import gpuaot as ga\nfrom gpuaot import Array, f32\n" + body
        )
    return pkg


def touch_one_kernel(pkg: Path) -> None:
    """Change the body of kernel 0: one unit's IR changes, the others stay cached."""
    mod = pkg / "mod000.py"
    mod.write_text(mod.read_text().replace("+ 0.0\n", "+ 0.5\n", 1))


def timed(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed


def median(fn, repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


class Bench:
    def __init__(self, args, tmp: Path):
        self.args = args
        self.tmp = tmp
        self.exe = gpuaot_exe()
        # Bytecode as an installed gpuaot has it (pip compiles it), kept in the bench's own
        # temporary directory: with PYTHONDONTWRITEBYTECODE every command would compile
        # gpuaot's modules from source first (about 80 ms a run, measured here).
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.env = {**env, "GPUAOT_CACHE_DIR": str(tmp / "cache")}
        self.env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")

    def build_cmd(self, pkg: Path, cache: Path) -> list[str]:
        cmd = [self.exe, "build", str(pkg), "-q", "--cache-dir", str(cache)]
        if not self.args.gpu:
            cmd.append("--no-gpu")
        if self.args.jobs:
            cmd += ["--jobs", str(self.args.jobs)]
        return cmd

    def sizes(self, n: int) -> dict[str, float]:
        root = self.tmp / f"n{n}"
        pkg = make_package(root, n)
        cmd = self.build_cmd(pkg, root / "cache")
        out = {"cold": timed(cmd, self.env)}

        def warm() -> float:
            touch_one_kernel(pkg)
            t = timed(cmd, self.env)
            mod = pkg / "mod000.py"  # back to the cached body for the next run
            mod.write_text(mod.read_text().replace("+ 0.5\n", "+ 0.0\n", 1))
            timed(cmd, self.env)
            return t

        out["warm"] = median(warm, self.args.repeat)
        out["no-op"] = median(lambda: timed(cmd, self.env), self.args.repeat)
        return out

    def startup(self) -> dict[str, float]:
        pkg = make_package(self.tmp / "startup", 1)
        cmd = self.build_cmd(pkg, self.tmp / "startup" / "cache")
        timed(cmd, self.env)
        repeat = max(5, self.args.repeat)
        return {
            "gpuaot --help": median(lambda: timed([self.exe, "--help"], self.env), repeat),
            "no-op build (1 kernel)": median(lambda: timed(cmd, self.env), repeat),
        }


NUMBA_COMPILE = r"""
import sys, time
from numba import cuda, float32
n = int(sys.argv[1])
src = "".join(
    f"def k{k}(a, x, out):\n    i = cuda.grid(1)\n    if i < x.shape[0]:\n"
    f"        out[i] = a * x[i] + {k}.0\n" for k in range(n + 1)
)
ns = {"cuda": cuda}
exec(src, ns)
sig = (float32, float32[::1], float32[::1])
cuda.compile_ptx(ns[f"k{n}"], sig, cc=(8, 0))  # warm-up: numba's own first-use costs
t = time.perf_counter()
for cc in ((7, 5), (8, 0), (9, 0)):
    for k in range(n):
        cuda.compile_ptx(ns[f"k{k}"], sig, cc=cc)
print(time.perf_counter() - t)
"""


def vs_numba(bench: Bench, n: int) -> tuple[float, float | None, float]:
    """Cold gpuaot builds of ``n`` kernels for 3 archs + the CPU levels, each with a fresh
    cache, and numba-cuda's time, interleaved ``--repeat`` times: the medians of both, and
    the cores the builds kept busy (their processes' CPU time over their wall time)."""
    import resource

    root = bench.tmp / f"vs{n}"
    pkg = make_package(root, n)
    python = Path(bench.args.bench_python)
    ours, theirs, cores = [], [], []
    for k in range(bench.args.repeat):
        cmd = [bench.exe, "build", str(pkg), "-q", "--cache-dir", str(root / f"cache{k}")]
        cmd += ["--arch", "sm_75,sm_80,sm_90"] + (
            ["--jobs", str(bench.args.jobs)] if bench.args.jobs else []
        )
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        ours.append(timed(cmd, bench.env))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        cores.append(cpu / ours[-1])
        if not python.is_file():
            continue
        r = subprocess.run(
            [str(python), "-c", NUMBA_COMPILE, str(n)], capture_output=True, text=True
        )
        if r.returncode != 0:
            print(f"numba-cuda unavailable: {r.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            python = Path("")
            continue
        theirs.append(float(r.stdout.split()[-1]))
    mid = statistics.median
    return mid(ours), (mid(theirs) if theirs else None), mid(cores)


def profile(args, tmp: Path) -> None:
    """One cold build of ``args.profile`` kernels in this process, under cProfile."""
    from gpuaot.compiler.driver import BuildOptions, build_package

    pkg = make_package(tmp, args.profile)
    opts = BuildOptions.resolve(
        str(pkg), no_gpu=not args.gpu, cache_dir=str(tmp / "cache"), jobs=args.jobs or None
    )
    prof = cProfile.Profile()
    prof.runcall(build_package, opts)
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100,500,2000", help="kernel counts [100,500,2000]")
    ap.add_argument("--repeat", type=int, default=3, help="runs per warm/no-op median [3]")
    ap.add_argument("--jobs", type=int, default=0, help="--jobs for the builds [cores]")
    ap.add_argument("--gpu", action="store_true", help="build the GPU target too")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile N kernels")
    ap.add_argument("--vs-numba", type=int, default=0, metavar="N", help="N kernels vs numba-cuda")
    ap.add_argument(
        "--bench-python",
        default=str(Path(__file__).resolve().parent.parent / ".venv-bench" / "bin" / "python"),
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gpuaot-build-times-") as tmp:
        if args.profile:
            return profile(args, Path(tmp))
        bench = Bench(args, Path(tmp))
        start = bench.startup()
        print("| command | time (s) | vs --help |\n|---|---|---|")
        for name, t in start.items():
            print(f"| {name} | {t:.3f} | {t / start['gpuaot --help']:.2f}x |")
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
        rows = {n: bench.sizes(n) for n in sizes}
        target = "CPU+GPU" if args.gpu else "CPU"
        print(f"\n{target}, --jobs {args.jobs or os.cpu_count()}\n")
        print("| build | N | time (s) | per kernel (ms) | vs smallest N |\n|---|---|---|---|---|")
        for kind in ("cold", "warm", "no-op"):
            base = rows[sizes[0]][kind] / sizes[0]
            for n in sizes:
                t = rows[n][kind]
                print(f"| {kind} | {n} | {t:.2f} | {1000 * t / n:.2f} | {t / n / base:.2f} |")
        if args.vs_numba:
            ours, theirs, cores = vs_numba(bench, args.vs_numba)
            ratio = f"{ours / theirs:.2f}x" if theirs else "-"
            print(
                f"\ncold build, {args.vs_numba} kernels x sm_75,sm_80,sm_90 (+ CPU levels), "
                f"medians of {args.repeat}\n\n"
                "| gpuaot build (s) | numba-cuda compile_ptx (s) | gpuaot / numba-cuda "
                "| cores busy (gpuaot) |\n|---|---|---|---|\n"
                f"| {ours:.2f} | {f'{theirs:.2f}' if theirs else '-'} | {ratio} | {cores:.2f} |"
            )


if __name__ == "__main__":
    main()
