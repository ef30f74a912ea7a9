"""Launch kernels and call host functions from a bundle: the dispatch to a backend.

    saxpy[blocks, threads](np.float32(2), x, y, out)   # numpy arrays: CPU backend (runtime.cpu)
    saxpy[blocks, threads](2.0, dx, dy, dout)           # CUDA arrays: GPU (runtime.cuda)
    dot(x, y)                                          # a @host function (runtime.cpu)

The arrays decide the device. Arguments are checked against the manifest's parameter ABI
before anything runs (``runtime.args``: wrong dtype, rank, layout or arity is a ``TypeError``),
then marshalled into the flat kernelParams layout both backends share; a device exception comes
back as the Python exception it records (``runtime.exceptions``).

    launch ──► args (specialisation, marshalling) ──► cpu | cuda ──► exceptions
"""

from __future__ import annotations

import numpy as np

from . import cuda
from .args import device_of, select_specialization
from .bundle import load_bundle
from .cpu import call_host_function, run_kernel

__all__ = ["call_host", "launch"]


def _dim3(v, what: str) -> tuple[int, int, int]:
    if type(v) is int and v >= 1:  # the common cases, without the general checks below
        return (v, 1, 1)
    if type(v) is tuple and 1 <= len(v) <= 3 and all(type(x) is int and x >= 1 for x in v):
        return v + (1,) * (3 - len(v))
    if isinstance(v, (int, np.integer)):
        v = (v,)
    # Only integers: int("x") would raise ValueError, int(1.5) and int("3") would pass.
    if not isinstance(v, (tuple, list)) or not all(
        isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in v
    ):
        raise TypeError(f"{what} must be an int or a tuple of 1 to 3 ints, got {v!r}")
    v = tuple(int(x) for x in v)
    if not 1 <= len(v) <= 3 or any(x < 1 for x in v):
        raise TypeError(f"{what} must be 1 to 3 positive ints, got {v}")
    return v + (1,) * (3 - len(v))


def _qualname(fn) -> str:
    return f"{fn.__module__}.{fn.__name__}"


def _package(fn) -> str:
    return fn.__module__.split(".")[0]


def launch(kernel, config, args) -> None:
    name = _qualname(kernel)
    bundle = load_bundle(_package(kernel))
    entry = bundle.kernels.get(name)
    if entry is None:
        raise TypeError(
            f"kernel '{name}' is not in the bundle; rebuild with: gpuaot build {bundle.package}"
        )
    grid = _dim3(config[0], "grid")
    block = _dim3(config[1], "block")
    stream = config[2] if len(config) >= 3 else None
    # Dynamic shared memory (the fourth item, checked by the decorator): a GPU launch's
    # sharedMemBytes. A CPU launch needs none: kernels that view it are GPU-only.
    nbytes = config[3] if len(config) == 4 else 0
    device = device_of(name, args)
    specs = entry.specializations
    if device == "cpu" and not any(s.cpu for s in specs):
        # Checked before the arguments: a GPU-only kernel of a --no-gpu build has no
        # parameter list in the manifest, and "takes 0 arguments" would hide the reason.
        reason = next((s.gpu_only for s in specs if s.gpu_only), None)
        raise TypeError(
            f"kernel '{name}' has no CPU implementation: {reason or 'it was built with --no-cpu'}"
        )
    spec = select_specialization(name, entry, args)
    if device == "gpu":
        return cuda.launch(bundle, name, spec, grid, block, stream, args, nbytes)
    run_kernel(bundle, name, spec, grid, block, args)


def call_host(host, args):
    name = _qualname(host)
    bundle = load_bundle(_package(host))
    entry = bundle.hosts.get(name)
    if entry is None:
        raise TypeError(
            f"host function '{name}' is not in the bundle; rebuild with: "
            f"gpuaot build {bundle.package}"
        )
    params = entry.params
    if len(args) != len(params):
        raise TypeError(f"{name}() takes {len(params)} arguments, got {len(args)}")
    if device_of(name, args) == "gpu":
        raise TypeError(f"{name}() is a host function: pass numpy arrays, not CUDA arrays")
    return call_host_function(bundle, name, entry, args)
