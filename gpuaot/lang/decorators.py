"""The decorators users write: ``@kernel``, ``@device``, ``@host``, ``@device_only``, ``@overlay``.

    @ga.kernel
    def saxpy(a: f32, x: Array[f32], y: Array[f32], out: Array[f32]): ...

    saxpy[blocks, threads](a, x, y, out)            # compiled code from the bundle
    saxpy.simulate[blocks, threads](a, x, y, out)   # the Python source, thread by thread

The build never runs these decorators: it reads them from the source with ``ast``. At run time
they only wrap the function; launching goes through :mod:`gpuaot.runtime`, imported lazily so
``import gpuaot`` stays cheap and never imports a compiler.
"""

from __future__ import annotations

import functools
import operator


def _launch_config(config) -> tuple:
    """``(grid, block[, stream[, nbytes]])``; ``nbytes`` is the launch's dynamic shared memory,
    what ``shared_array(dtype, 0)`` arrays view (numba-cuda's fourth item)."""
    if not isinstance(config, tuple) or len(config) not in (2, 3, 4):
        raise TypeError(
            "launch as kernel[grid, block](...), kernel[grid, block, stream](...) or "
            "kernel[grid, block, stream, nbytes](...)"
        )
    if len(config) == 4:
        try:
            n = -1 if isinstance(config[3], bool) else operator.index(config[3])
        except TypeError:
            n = -1
        if n < 0:
            raise TypeError(
                "the dynamic shared memory size (the launch's fourth item) must be an int "
                f">= 0 bytes, got {config[3]!r}"
            )
        config = (*config[:3], n)
    return config


class _Configured:
    def __init__(self, run, kernel, config):
        self._run = run
        self._kernel = kernel
        self._config = config

    def __call__(self, *args):
        return self._run(self._kernel, self._config, args)


class Kernel:
    """A ``@kernel``: launched on a grid, never called directly."""

    def __init__(
        self,
        fn,
        signatures=None,
        debug: bool = False,
        fastmath: bool = False,
        fma: bool = True,
    ):
        functools.update_wrapper(self, fn)
        self.py_func = fn
        self.signatures = signatures
        self.debug = debug
        self.fastmath = fastmath
        self.fma = fma

    def __getitem__(self, config) -> _Configured:
        from ..runtime.launch import launch

        return _Configured(launch, self, _launch_config(config))

    @property
    def simulate(self) -> _SimulateIndexer:
        return _SimulateIndexer(self)

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"kernel '{self.__name__}' is launched on a grid: {self.__name__}[blocks, threads](...)"
        )

    def __repr__(self) -> str:
        return f"<gpuaot kernel {self.__module__}.{self.__qualname__}>"


class _SimulateIndexer:
    def __init__(self, kernel: Kernel):
        self._kernel = kernel

    def __getitem__(self, config) -> _Configured:
        from .simulate import simulate

        return _Configured(simulate, self._kernel, _launch_config(config))


class Device:
    """A ``@device`` helper: generic, specialised per call types when compiled.

    Called from Python it runs the Python source (under ``simulate``, with the kernel
    language's math and intrinsics).
    """

    gpu_only = False

    def __init__(self, fn):
        functools.update_wrapper(self, fn)
        self.py_func = fn

    def __call__(self, *args):
        from .simulate import current_function
        from .types import Scalar

        # Annotated scalar parameters take their types, as the compiled helper's do.
        fn = self.py_func
        params = fn.__code__.co_varnames[: fn.__code__.co_argcount]
        anns = fn.__annotations__
        args = (
            tuple(
                anns[p](a) if isinstance(anns.get(p), Scalar) else a for p, a in zip(params, args)
            )
            + args[len(params) :]
        )
        return current_function(fn)(*args)

    def __repr__(self) -> str:
        return f"<gpuaot device function {self.__module__}.{self.__qualname__}>"


class DeviceOnly(Device):
    """A ``@device_only`` helper: no CPU implementation unless an overlay gives one."""

    gpu_only = True


class Host:
    """A ``@host`` function: native CPU code from the bundle, callable from Python."""

    def __init__(self, fn, fma: bool = True):
        functools.update_wrapper(self, fn)
        self.py_func = fn
        self.fma = fma

    def __call__(self, *args):
        from ..runtime.launch import call_host

        return call_host(self, args)

    def __repr__(self) -> str:
        return f"<gpuaot host function {self.__module__}.{self.__qualname__}>"


def kernel(
    fn=None, *, signatures=None, debug: bool = False, fastmath: bool = False, fma: bool = True
):
    """``@kernel`` or ``@kernel(signatures=[(f32, Array[f32]), ...], debug=, fastmath=, fma=)``.

    ``fma=False`` keeps ``a*b+c`` a rounded multiply and a rounded add (no contraction).
    """
    if fn is None:
        return lambda f: Kernel(f, signatures=signatures, debug=debug, fastmath=fastmath, fma=fma)
    return Kernel(fn)


def device(fn):
    return Device(fn)


def device_only(fn):
    return DeviceOnly(fn)


def host(fn=None, *, fma: bool = True):
    """``@host`` or ``@host(fma=False)``."""
    if fn is None:
        return lambda f: Host(f, fma=fma)
    return Host(fn)


def overlay(original, target: str = "gpu"):
    """``@overlay(fn, target="cpu")``: the body replaces ``fn`` when compiling for ``target``.

    In plain Python the overlay is an ordinary function; the original stays what callers get.
    """
    if target not in ("cpu", "gpu"):
        raise ValueError(f'overlay target must be "cpu" or "gpu", not {target!r}')

    def wrap(fn):
        fn.__gpuaot_overlay__ = (original, target)
        return fn

    return wrap
