"""Phase 1 of the GPU check (``make gpu-bundles``): build, here, everything the GPU side runs.

    python bench/gpu_bundles.py gpu-check      # then, on a GPU machine:
    python bench/gpu_check.py gpu-check        # (phase 2: numpy + cuda-python only)

Writes into ``gpu-check/`` (git-ignored):

* ``pkgs/``: fixtures/conformance, fixtures/gpu_features, fixtures/example and bench/kernels_pkg,
  each built with the default architectures (cubins for sm_75/80/90, PTX for sm_75);
* ``jit/example_jit``: the example built for sm_75 only, so a newer GPU must JIT its PTX;
* ``cases.json`` + ``cases.npz``: every conformance kernel case of tests/test_conformance.py
  and of the language suites of fixtures/conformance/lang_*.py (``LANG_SUITES``: the cases of
  tests/test_lang_arrays.py, _f16, _helpers; the raises of lang_exc and ``round_raises``, whose
  class and message are what ``simulate`` raises), its inputs, how its arguments are made from
  them (arrays, strided views, scalars) and the expected results from the numpy/CPython oracle;
  ``module`` names the package attribute a kernel is found under (``""``: the package);
* ``features.json`` + ``features.npz``: inputs of the GPU-only kernels (shared memory, barriers,
  atomics, shuffles) and their results under ``simulate`` (CPython, thread by thread);
* ``warp.json`` + ``warp.npz``: fixtures/warp_pkg's kernels (the ``*_sync`` warp API, dynamic
  shared memory through a 4-item launch, the grid barrier) and their results under ``simulate``;
* ``complex.json`` + ``complex.npz``: tests/test_lang_complex.py's c64/c128 cases (kernels of
  the conformance bundle), their oracles' results and the GPU tolerance of each output;
* ``random.json`` + ``random.npz``: fixtures/random_pkg's kernels (gpuaot.random), their
  states from ``create_xoroshiro128p_states`` and their results under ``simulate``; ``maxulp``
  names the draws that may differ in the last bits on the GPU (the normals: libdevice).

Nothing here needs a GPU; the GPU side needs nothing but this folder.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {
    "conformance": REPO / "fixtures" / "conformance",
    "gpu_features": REPO / "fixtures" / "gpu_features",
    "example": REPO / "fixtures" / "example",
    "kernels_pkg": REPO / "bench" / "kernels_pkg",
    "random_pkg": REPO / "fixtures" / "random_pkg",
    "warp_pkg": REPO / "fixtures" / "warp_pkg",
}
JIT_ARCH = "sm_75"


def build(src: Path, dest: Path, **opts) -> dict:
    from gpuaot.compiler.driver import BuildOptions, build_package

    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("_gpuaot", "__pycache__"))
    result = build_package(BuildOptions.resolve(str(dest), **opts))
    if result.leaks:
        raise SystemExit(f"{dest.name}: the bundle failed the leak check")
    return result.manifest


# ---------------------------------------------------------------------- conformance cases


def _encode_arg(a, state: dict, arrays: dict, prefix: str, k: int):
    if isinstance(a, np.ndarray):
        for key, v in state.items():
            if v is a:
                return {"kind": "array", "key": key}
        for key, v in state.items():
            if isinstance(v, np.ndarray) and v.flags.c_contiguous and np.shares_memory(a, v):
                return {
                    "kind": "view",
                    "key": key,
                    "offset": a.ctypes.data - v.ctypes.data,
                    "shape": list(a.shape),
                    "strides": list(a.strides),
                }
        arrays[f"{prefix}/arg{k}"] = a
        return {"kind": "const", "name": f"arg{k}"}
    if isinstance(a, np.generic):
        return {"kind": "scalar", "dtype": a.dtype.name, "value": a.item()}
    if isinstance(a, (bool, int, float)):
        return {"kind": "py", "value": a}
    raise TypeError(f"cannot record argument {a!r}")


# The language conformance cases of fixtures/conformance/lang_*.py, each suite's cases in its
# test module: (the package attribute its kernels are found under, "" for the package itself,
# the test module, the list of cases there).
LANG_SUITES = (
    ("", "test_lang_arrays", "CASES"),
    ("", "test_lang_f16", "CASES"),
    ("lang_helpers", "test_lang_helpers", "CASES"),
)


def lang_cases(tc) -> list[tuple[str, object]]:
    """(module, test_conformance.Case) for every language case, GPU meaning included: the
    suites' own cases (test_lang_helpers' become Cases), and the raises of lang_exc, whose
    expected class and message are what ``simulate`` raises."""
    import importlib

    out = []
    for module, test_module, attr in LANG_SUITES:
        for c in getattr(importlib.import_module(test_module), attr):
            if not isinstance(c, tc.Case):  # test_lang_helpers' (fn, order, inputs, oracle)
                c = tc.Case(c.fn, c.inputs, tc.names(*c.order), c.oracle, c.config)
            out.append((module, c))

    def raising(module: str, fn: str, state: dict, config: tuple, variant: str = ""):
        inputs = lambda r: copy.deepcopy(state)  # noqa: E731 - the Case's input function
        return (module, tc.Case(fn, inputs, tc.names(*state), None, config, variant=variant))

    for mode in range(6):  # each kind of raise: a class of the package's, a builtin, no message
        state = {"target": 37, "mode": mode, "out": np.zeros(64, np.int64)}
        out.append(raising("lang_exc", "raise_own", state, (2, 32), f"mode{mode}"))
    out.append(raising("lang_exc", "assert_const", {"x": np.arange(10)}, (1, 32)))
    for bad, what in ((np.nan, "nan"), (np.inf, "inf")):  # CPython's ValueError, OverflowError
        state = {"x": np.array([1.5, bad]), "out": np.zeros(2, np.int64)}
        out.append(raising("", "round_raises", state, (1, 2), what))
    return out


def _simulated_raise(pkg, module: str, c, state: dict) -> BaseException:
    fn = getattr(getattr(pkg, module) if module else pkg, c.fn)
    try:
        fn.simulate[c.config](*c.args(state))
    except Exception as e:  # noqa: BLE001 - the expectation
        return e
    raise SystemExit(f"{module}.{c.fn}: simulate raised nothing")


def record_conformance(out: Path) -> int:
    sys.path[:0] = [str(REPO / "tests"), str(out / "pkgs")]
    import conformance as pkg  # the copy in out/pkgs: what the GPU side imports
    import test_conformance as tc

    cases, arrays = [], {}
    for n, (module, c) in enumerate([("", c) for c in tc.KERNEL_CASES] + lang_cases(tc)):
        entry = {
            "id": f"{module}/{c.id}" if module else c.id,
            "fn": c.fn,
            "module": module,
            "config": c.config,
            "rtol": c.rtol,
            "atol": c.atol,
            # a*b+c shapes: the tolerance where FMA contraction applies (always, on a GPU)
            "fma_rtol": c.fma_rtol,
            "fma_rows": list(c.fma_rows) if c.fma_rows is not None else None,
        }
        if c.check is not None:
            entry["skip"] = "order-free result, checked by a function of the test suite"
            cases.append(entry)
            continue
        state = c.inputs(np.random.default_rng(sum(map(ord, c.id))))
        expected_state = copy.deepcopy(state)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            entry["args"] = [
                _encode_arg(a, state, arrays, f"c{n}", k) for k, a in enumerate(c.args(state))
            ]
            want = {} if c.raises or c.oracle is None else c.oracle(expected_state)
        entry["raises"] = c.raises.__name__ if c.raises else None
        if c.oracle is None and c.raises is None:  # a raise: what simulate raises
            e = _simulated_raise(pkg, module, c, copy.deepcopy(expected_state))
            entry["raises"], entry["raises_module"] = type(e).__name__, type(e).__module__
            entry["message"] = str(e)
        entry["state"] = sorted(k for k, v in state.items() if isinstance(v, np.ndarray))
        entry["expected"] = sorted(want)
        for key in entry["state"]:
            arrays[f"c{n}/state/{key}"] = state[key]
        for key, v in want.items():
            arrays[f"c{n}/expected/{key}"] = np.asarray(v)
        entry["index"] = n
        cases.append(entry)
    np.savez_compressed(out / "cases.npz", **arrays)
    (out / "cases.json").write_text(json.dumps(cases, indent=1))
    return len(cases)


# ---------------------------------------------------------------------- GPU-only kernels


def record_features(out: Path) -> int:
    sys.path.insert(0, str(out / "pkgs"))
    import gpu_features as g

    rng = np.random.default_rng(11)
    cases = {
        "block_sum": (
            (40, 128),
            {"x": rng.random(128 * 40, dtype=np.float32), "out": np.zeros(40, np.float32)},
        ),
        "warp_sum": (
            (4, 128),
            {"x": rng.random(32 * 16, dtype=np.float32), "out": np.zeros(16, np.float32)},
        ),
        "histogram": (
            (8, 128),
            {
                "x": rng.integers(0, 10_000, 20_000).astype(np.int32),
                "bins": np.zeros(64, np.int64),
            },
        ),
        "clamp_max": (
            (4, 64),
            {
                "x": rng.standard_normal(250).astype(np.float32),
                "best": np.full(1, -np.inf, np.float32),
                "lowest": np.full(1, 2**31 - 1, np.int32),
            },
        ),
        "local_prefix": (
            (2, 32),
            {"x": rng.random((50, 8), dtype=np.float32), "out": np.zeros((50, 8), np.float32)},
        ),
    }
    meta, arrays = [], {}
    for name, (config, state) in cases.items():
        for key, v in state.items():
            arrays[f"{name}/state/{key}"] = v.copy()
        getattr(g, name).simulate[config](*state.values())
        for key, v in state.items():
            arrays[f"{name}/expected/{key}"] = v
        meta.append({"fn": name, "config": list(config), "args": list(state)})
    np.savez_compressed(out / "features.npz", **arrays)
    (out / "features.json").write_text(json.dumps(meta, indent=1))
    return len(meta)


def record_random(out: Path) -> int:
    sys.path.insert(0, str(out / "pkgs"))
    import random_pkg as r

    from gpuaot.random import create_xoroshiro128p_states

    n, rounds = 256, 8
    kinds = {"raw": "u8", "u32": "f4", "u64": "f8", "n32": "f4", "n64": "f8"}
    draws = {"states": create_xoroshiro128p_states(n, 1)}
    draws.update({k: np.zeros((n, rounds), d) for k, d in kinds.items()})
    cases = {
        "first_draws": ((2, 128), draws, {"n32": 1, "n64": 2}),
        "jump_states": ((1, 64), {"states": create_xoroshiro128p_states(64, 9)}, {}),
        "monte_carlo_pi": (
            (2, 128),
            {"states": create_xoroshiro128p_states(n, 3), "samples": 64, "hits": np.zeros(n, "i8")},
            {},
        ),
    }
    meta, arrays = [], {}
    for name, (config, state, maxulp) in cases.items():
        arrays.update({f"{name}/state/{k}": np.array(v) for k, v in state.items()})
        getattr(r, name).simulate[config](*state.values())
        arrays.update({f"{name}/expected/{k}": v for k, v in state.items()})
        meta.append({"fn": name, "config": list(config), "args": list(state), "maxulp": maxulp})
    np.savez_compressed(out / "random.npz", **arrays)
    (out / "random.json").write_text(json.dumps(meta, indent=1))
    return len(meta)


def record_warp(out: Path) -> int:
    """fixtures/warp_pkg: the *_sync warp API, dynamic shared memory (a 4-item launch) and
    the grid barrier, expected as ``simulate`` computes them; ``activemask`` has no simulate
    meaning, so its expected value is the warp's threads (converged code)."""
    sys.path.insert(0, str(out / "pkgs"))
    import warp_pkg as w

    rng = np.random.default_rng(12)
    i32 = rng.integers(-3, 9, 128).astype(np.int32)
    cases = {
        "warp_reduce": (
            (4, 64),
            {"x": rng.random(200, dtype=np.float32), "out": np.zeros(8, "f4")},
        ),
        "shuffles": (
            (2, 64),
            {
                "x": rng.random(128, dtype=np.float32),
                "y": rng.standard_normal(128),
                "out": np.zeros(512, "f4"),
                "out64": np.zeros(256),
            },
        ),
        "votes": ((4, 32), {"x": i32, "out": np.zeros(512, "u4")}),
        "matches": (
            (2, 64),
            {
                "x": rng.integers(0, 3, 128).astype(np.int64),
                "f": np.tile(np.array([0.0, -0.0, np.nan, 1.5], np.float32), 32),
                "out": np.zeros(512, "u4"),
            },
        ),
        "half_warps": ((2, 64), {"x": i32, "out": np.zeros(256, "i4")}),
        "compact": ((2, 64), {"x": i32, "out": np.full(128, -1, "i4"), "count": np.zeros(4, "i4")}),
        "dyn_reverse": (
            (4, 32, 0, 4 * 32 + 6),
            {
                "x": rng.random(128, dtype=np.float32),
                "out": np.zeros(128, "f4"),
                "bits": np.zeros(132, "u4"),
            },
        ),
        "grid_prefix": (
            (8, 32),
            {
                "x": rng.random(256, dtype=np.float32),
                "partial": np.zeros(8, "f4"),
                "out": np.zeros(256, "f4"),
            },
        ),
    }
    meta, arrays = [], {}
    for name, (config, state) in cases.items():
        arrays.update({f"{name}/state/{k}": v.copy() for k, v in state.items()})
        getattr(w, name).simulate[config](*state.values())
        arrays.update({f"{name}/expected/{k}": v for k, v in state.items()})
        meta.append({"fn": name, "config": list(config), "args": list(state)})
    arrays["active_lanes/state/out"] = np.zeros(48, np.uint32)  # 2 blocks of 24 threads
    arrays["active_lanes/expected/out"] = np.full(48, 0x00FFFFFF, np.uint32)
    meta.append({"fn": "active_lanes", "config": [2, 24], "args": ["out"]})
    np.savez_compressed(out / "warp.npz", **arrays)
    (out / "warp.json").write_text(json.dumps(meta, indent=1))
    return len(meta)


def record_complex(out: Path) -> int:
    """tests/test_lang_complex.py's cases (c64/c128 in the conformance bundle): inputs, the
    numpy/CPython oracle's results, and the tolerance of each output that a GPU computes with
    libdevice (``rtol``; the others are exact: + - * / and the parts)."""
    sys.path.insert(0, str(REPO / "tests"))
    import test_lang_complex as tc

    meta, arrays = [], {}
    for c in tc.CASES:
        state = c.inputs(np.random.default_rng(sum(map(ord, c.fn))))
        want = c.oracle(copy.deepcopy(state))
        for k, v in state.items():
            arrays[f"{c.fn}/state/{k}"] = np.asarray(v)
        for k, v in want.items():
            arrays[f"{c.fn}/expected/{k}"] = np.asarray(v).astype(state[k].dtype)
        meta.append({"fn": c.fn, "config": list(c.config), "args": list(c.order),
                     "expected": sorted(want), "rtol": c.gpu})  # fmt: skip
    np.savez_compressed(out / "complex.npz", **arrays)
    (out / "complex.json").write_text(json.dumps(meta, indent=1))
    return len(meta)


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "gpu-check")
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache"
    built = {}
    for name, src in PACKAGES.items():
        m = build(src, out / "pkgs" / name, cache_dir=str(cache))
        built[name] = m["architectures"]
        print(f"built {name}: {len(m['kernels'])} kernels for {', '.join(m['architectures'])}")
    m = build(PACKAGES["example"], out / "jit" / "example_jit", arch=JIT_ARCH, cache_dir=str(cache))
    print(f"built example_jit: {JIT_ARCH} only (PTX {m['ptx_arch']}): newer GPUs JIT it")
    n = record_conformance(out)
    print(f"recorded {n} conformance kernel cases")
    n = record_features(out)
    print(f"recorded {n} GPU-only kernels with their simulate results")
    n = record_random(out)
    print(f"recorded {n} gpuaot.random kernels with their simulate results")
    n = record_warp(out)
    print(f"recorded {n} warp / dynamic shared / grid barrier kernels")
    n = record_complex(out)
    print(f"recorded {n} c64/c128 kernels (tests/test_lang_complex.py) with their oracles")
    shutil.rmtree(cache, ignore_errors=True)  # the GPU side needs only the bundles
    print(f"next, on a GPU machine: python3 bench/gpu_check.py {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
