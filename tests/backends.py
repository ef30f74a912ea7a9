"""The backends a conformance case runs on, as one axis: ``simulate``, ``cpu-<level>`` for each
default CPU level of this machine, and ``gpu``.

    backend = open_backend("cpu-x86-64-v3", built)    # in a fixture: bound until closed
    check_kernel(backend, case)                        # launch, then the case's oracle
    backend.close()

A :class:`Backend` says how a case's kernel launches there and how strict its comparison is:

* ``simulate`` runs the Python source thread by thread, against ``sim_oracle`` where the case
  gives one; nothing contracts.
* ``cpu-<level>`` runs the CPU-only build with that variant pinned (``GPUAOT_CPU``, as a new
  process would bind it); it skips where this CPU cannot run the variant; contraction applies
  where the level has FMA.
* ``gpu`` runs a build with device code on the device, the arrays copied to
  :class:`~gpuaot.runtime.devicearray.DeviceArray` and back (a case with strided views skips:
  those copies are contiguous); it skips cleanly without a device or driver (``gpu_reason``).
  The GPU always has FMA, and libdevice's transcendentals may differ from libm in the last
  bits (DESIGN.md): ``rtol`` cases get at least ``GPU_RTOL``.

Comparisons (``compare``) and the FMA rule are those of test_conformance's module docstring.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from gpu_support import DeviceArray, gpu_reason

from gpuaot.bundle import cpus

LEVELS = [lv.name for lv in cpus.default_levels(cpus.machine())] or [cpus.NATIVE]
GPU_RTOL = 4e-6  # libdevice vs libm transcendentals (f32)
BACKENDS = ["simulate", *(f"cpu-{lv}" for lv in LEVELS), "gpu"]


def backend_params() -> list:
    """:data:`BACKENDS` as fixture params: the GPU leg marked ``gpu`` (as GPU tests are)."""
    return [pytest.param(b, marks=pytest.mark.gpu) if b == "gpu" else b for b in BACKENDS]


def quiet():
    """numpy warns on integer wrap-around and NaN; both are intended here."""
    return np.errstate(all="ignore")


def fuses(variant: dict) -> bool:
    """Whether a CPU variant (a manifest ``cpu_variants`` entry) has FMA instructions."""
    if cpus.machine() != "x86_64":
        return True  # aarch64: FMA is part of the base ISA
    return "fma" in variant["requires"] or "+fma" in variant["features"].split(",")


def fused_now(built) -> bool:
    """Whether the CPU variant ``built``'s bundle runs (bound at its first call) fuses."""
    from gpuaot.runtime.bundle import load_bundle

    return fuses(variant(built, load_bundle(built.name).cpu_level))


def variant(built, level: str) -> dict:
    """The build's ``cpu_variants`` entry of ``level``."""
    (v,) = [v for v in built.manifest["cpu_variants"] if v["level"] == level]
    return v


@dataclass
class Backend:
    name: str  # simulate, cpu-<level>, gpu
    built: object  # tests/conftest.py's Built: the package build this backend runs
    fused: bool | None  # contraction may apply (a*b+c); None: as the level bound decides
    level: str | None = None  # the CPU level pinned
    close: Callable[[], None] = lambda: None

    @property
    def kind(self) -> str:
        return self.name.split("-")[0]

    def kernel(self, fn: str):
        return getattr(self.built.module, fn)

    def launcher(self, fn: str, config):
        """The callable that launches kernel ``fn`` with ``config`` here."""
        kern = self.kernel(fn)
        if self.kind == "simulate":
            return kern.simulate[config]
        if self.kind == "gpu":
            return _on_device(kern[config])
        return kern[config]


def open_backend(name: str, built: Callable) -> Backend:
    """The backend ``name`` over the builds of ``built`` (conftest's session fixture); a CPU
    level is pinned until :meth:`Backend.close`. Skips where this machine lacks it."""
    if name == "simulate":
        return Backend(name, built("conformance"), fused=False)
    if name == "gpu":
        if gpu_reason() is not None:
            pytest.skip(str(gpu_reason()))
        return Backend(name, built("conformance", gpu=True), fused=True)
    level = name.removeprefix("cpu-")
    conf = built("conformance")
    return Backend(name, conf, fuses(variant(conf, level)), level, pin_level(conf, level))


def pin_level(conf, level: str) -> Callable[[], None]:
    """Bind the ``level`` variant of the build ``conf`` (skips where this CPU cannot run it);
    returns what undoes it."""
    from gpuaot.runtime import bundle as rb
    from gpuaot.runtime.cpu_variant import cpu_features

    package = conf.name
    conf.module  # noqa: B018 - imported, so its bundle is found
    have = cpu_features(rb.load_bundle(package).lib)
    if not set(variant(conf, level)["requires"]) <= have:
        pytest.skip(f"this CPU cannot run the {level} variant")
    old = os.environ.get("GPUAOT_CPU")
    os.environ["GPUAOT_CPU"] = level
    rb.forget(package)

    def undo() -> None:
        if old is None:
            os.environ.pop("GPUAOT_CPU", None)
        else:
            os.environ["GPUAOT_CPU"] = old
        rb.forget(package)

    return undo


def _on_device(launch):
    def run(*args):
        if any(isinstance(a, np.ndarray) and not a.flags.c_contiguous for a in args):
            pytest.skip("strided views: the test's device arrays are contiguous copies")
        dev = [DeviceArray(a) if isinstance(a, np.ndarray) else a for a in args]
        try:
            launch(*dev)
        finally:
            for a, d in zip(args, dev):
                if isinstance(a, np.ndarray):
                    np.copyto(a, d.get())

    return run


# ---------------------------------------------------------------------- one case


def run(c, launch) -> dict:
    """The case's inputs (seeded by its id), launched; ``{}`` where it must raise (and did)."""
    state = c.inputs(np.random.default_rng(sum(map(ord, c.id))))
    expected_state = copy.deepcopy(state)
    args = c.args(state)
    if c.raises is not None:
        with quiet(), pytest.raises(c.raises):
            launch(*args)
        return {}
    with quiet():
        launch(*args)
    return {"state": state, "expected_state": expected_state}


def check_kernel(backend: Backend, c) -> None:
    """Case ``c`` (test_conformance's ``Case``) on ``backend``, against its oracle."""
    from gpuaot.runtime.bundle import load_bundle

    r = run(c, backend.launcher(c.fn, c.config))
    if backend.level is not None:
        assert load_bundle(backend.built.name).cpu_level == backend.level
    if not r:
        return
    if c.check is not None:
        c.check(r["state"])
        return
    oracle = (c.sim_oracle or c.oracle) if backend.kind == "simulate" else c.oracle
    if backend.kind == "gpu" and c.rtol is not None:
        c = dataclasses.replace(c, rtol=max(c.rtol, GPU_RTOL))
    fused = fused_now(backend.built) if backend.fused is None else backend.fused
    compare(r["state"], oracle(r["expected_state"]), c, fused=fused)


def compare(got: dict, want: dict, c, fused: bool = False) -> None:
    """``fused``: contraction may have applied (see test_conformance's module docstring)."""
    assert want, "an oracle that checks nothing"
    for key, expected in want.items():
        actual = got[key]
        expected = np.asarray(expected)
        assert np.asarray(actual).shape == expected.shape, key
        if fused and c.fma_rtol is not None and c.rtol is None and expected.dtype.kind == "f":
            (fa, fe), (xa, xe) = _fma_split(np.asarray(actual), expected, c)
            scale = float(np.nanmax(np.abs(fe), initial=0.0)) if fe.size else 0.0
            np.testing.assert_allclose(
                fa, fe, rtol=c.fma_rtol, atol=c.fma_rtol * scale, err_msg=f"{c.id}: '{key}' (fma)"
            )
            compare({key: xa}, {key: xe}, dataclasses.replace(c, fma_rtol=None))
        elif c.rtol is None:
            np.testing.assert_array_equal(
                actual,
                expected.astype(np.asarray(actual).dtype),
                err_msg=f"{c.id}: '{key}'",
                strict=True,
            )
            actual = np.asarray(actual)
            if actual.dtype.kind == "f":  # exact means -0.0 is not 0.0 (NaN signs mean nothing)
                num = ~np.isnan(actual)
                np.testing.assert_array_equal(
                    np.signbit(actual[num]), np.signbit(expected[num]), err_msg=f"{c.id}: sign"
                )
        else:
            np.testing.assert_allclose(
                actual, expected, rtol=c.rtol, atol=c.atol, err_msg=f"{c.id}: '{key}'"
            )


def _fma_split(actual, expected, c):
    """(actual, expected) of the elements that may contract, and of those that may not."""
    rows = np.zeros(expected.shape[0], bool) if expected.ndim else np.zeros((), bool)
    if expected.ndim and c.fma_rows is not None:
        rows[list(c.fma_rows)] = True
    else:
        rows[...] = True
    return (actual[rows], expected[rows]), (actual[~rows], expected[~rows])
