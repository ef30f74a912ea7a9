"""GPU launches through the CUDA driver API (cuda-python), from the bundle's fatbinary.

    saxpy[blocks, threads, stream](2.0, dx, dy, dout)     # CUDA arrays: runs here

Per CUDA context, each kernel's fatbinary container is loaded once (``cuModuleLoadData``
picks the cubin for the device, or JITs the PTX on newer GPUs) and cached with its function
and exception record. Arguments travel in the same flat kernelParams layout as on the CPU.
A kernel with raise sites clears its exception record before the launch and reads it after
(synchronising its stream); a kernel without any launches asynchronously, as CUDA does.
The launch's fourth item is its dynamic shared memory (``sharedMemBytes``); a kernel with a
grid barrier (the manifest's ``cooperative``) goes through ``cuLaunchCooperativeKernel``,
after a check that its grid fits on the device at once.

Only the driver is needed: no toolkit, no compiler.
"""

from __future__ import annotations

import ctypes
import threading

from ..bundle.abi import EXC_RECORD, EXC_RECORD_BYTES, EXC_RECORD_WORDS
from ..bundle.manifest import GpuCode, Specialization
from .args import marshal, pointer_array
from .bundle import Bundle
from .exceptions import raise_device_exception

_lock = threading.Lock()
_initialised = False
RECORD = EXC_RECORD.encode()


class CudaError(RuntimeError):
    pass


def _driver():
    try:
        from cuda.bindings import driver
    except ImportError:  # pragma: no cover - depends on the install
        try:
            from cuda import cuda as driver  # cuda-python < 12.6
        except ImportError:
            raise CudaError("GPU launches need cuda-python: pip install 'gpuaot[gpu]'") from None
    return driver


def _check(driver, result, what: str):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        _, name = driver.cuGetErrorName(err)
        name = name.decode() if isinstance(name, bytes) else str(err)
        raise CudaError(f"{what} failed: {name}")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else tuple(rest)


def _init(driver) -> None:
    global _initialised
    if _initialised:
        return
    with _lock:
        if not _initialised:
            try:
                _check(driver, driver.cuInit(0), "cuInit")
            except CudaError as e:
                raise CudaError(f"no usable CUDA driver/GPU: {e}") from None
            _initialised = True


def _context(driver, data_ptr: int):
    """The context the array lives in: the current one, else its device's primary context."""
    ctx = _check(driver, driver.cuCtxGetCurrent(), "cuCtxGetCurrent")
    if int(ctx) != 0:
        return ctx
    attr = driver.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL
    try:
        ordinal = int(
            _check(driver, driver.cuPointerGetAttribute(attr, data_ptr), "cuPointerGetAttribute")
        )
    except CudaError:
        ordinal = 0
    dev = _check(driver, driver.cuDeviceGet(ordinal), "cuDeviceGet")
    ctx = _check(driver, driver.cuDevicePrimaryCtxRetain(dev), "cuDevicePrimaryCtxRetain")
    _check(driver, driver.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
    return ctx


def _stream_handle(driver, stream):
    if stream is None or stream == 0:
        return driver.CUstream(0)
    for attr in ("cuda_stream", "ptr", "handle"):  # torch, cupy, numba / cuda.core
        v = getattr(stream, attr, None)
        if v is not None:
            stream = v
            break
    if isinstance(stream, driver.CUstream):
        return stream
    return driver.CUstream(int(stream))


class _Loaded:
    __slots__ = ("module", "function", "record", "co_resident")

    def __init__(self, module, function, record):
        self.module = module
        self.function = function
        self.record = record
        self.co_resident: dict = {}  # (threads, nbytes) -> (blocks, per SM, SMs)


def _load(driver, bundle: Bundle, ctx, gpu: GpuCode) -> _Loaded:
    key = (int(ctx), gpu.image, gpu.symbol)
    loaded = bundle.gpu_modules.get(key)
    if loaded is not None:
        return loaded
    with _lock:
        loaded = bundle.gpu_modules.get(key)
        if loaded is not None:
            return loaded
        # sha256-checked (once per image per process) before the driver parses a byte of it:
        # a damaged image is a BundleError here, not a driver error or a crash in the loader.
        fat = bundle.image(gpu.image)
        module = _check(driver, driver.cuModuleLoadData(fat), "cuModuleLoadData")
        function = _check(
            driver,
            driver.cuModuleGetFunction(module, gpu.symbol.encode()),
            "cuModuleGetFunction",
        )
        record = None
        if gpu.sites:
            record, _size = _check(
                driver, driver.cuModuleGetGlobal(module, RECORD), "cuModuleGetGlobal"
            )
        loaded = bundle.gpu_modules[key] = _Loaded(module, function, record)
        return loaded


def _check_co_resident(driver, loaded: _Loaded, name: str, grid, block, nbytes: int) -> None:
    """A grid barrier needs every block resident at once: at most the occupancy calculator's
    blocks per SM times the SMs (numba-cuda's ``max_cooperative_grid_blocks``)."""
    threads = block[0] * block[1] * block[2]
    key = (threads, nbytes)
    limit = loaded.co_resident.get(key)
    if limit is None:
        dev = _check(driver, driver.cuCtxGetDevice(), "cuCtxGetDevice")
        attr = driver.CUdevice_attribute
        if not _check(
            driver,
            driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH, dev),
            "cuDeviceGetAttribute",
        ):
            raise CudaError(
                f"kernel '{name}' has a grid barrier (this_grid().sync()), and this device "
                "cannot launch cooperative kernels"
            )
        sms = _check(
            driver,
            driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev),
            "cuDeviceGetAttribute",
        )
        per_sm = _check(
            driver,
            driver.cuOccupancyMaxActiveBlocksPerMultiprocessor(loaded.function, threads, nbytes),
            "cuOccupancyMaxActiveBlocksPerMultiprocessor",
        )
        limit = loaded.co_resident[key] = (int(per_sm) * int(sms), int(per_sm), int(sms))
    blocks = grid[0] * grid[1] * grid[2]
    if blocks > limit[0]:
        raise ValueError(
            f"kernel '{name}' has a grid barrier (this_grid().sync()), so its {blocks} blocks "
            f"must all be resident at once, but this GPU holds at most {limit[0]} blocks of "
            f"{threads} threads ({limit[1]} per SM x {limit[2]} SMs); launch at most "
            f"{limit[0]} blocks (a grid-stride loop covers the rest)"
        )


def launch(
    bundle: Bundle, name: str, spec: Specialization, grid, block, stream, args, nbytes: int = 0
) -> None:
    gpu = spec.gpu
    if gpu is None:
        raise TypeError(
            f"kernel '{name}' was built without GPU code (--no-gpu); rebuild with: "
            f"gpuaot build {bundle.package}"
        )
    driver = _driver()
    _init(driver)
    values = marshal(name, spec.params, args, device="gpu")
    first_ptr = next((v.value for v in values if isinstance(v, ctypes.c_void_p)), 0) or 0
    ctx = _context(driver, first_ptr)
    loaded = _load(driver, bundle, ctx, gpu)
    hstream = _stream_handle(driver, stream)
    if loaded.record is not None:
        _check(
            driver,
            driver.cuMemsetD8Async(loaded.record, 0, EXC_RECORD_BYTES, hstream),
            "cuMemsetD8Async",
        )
    argv = pointer_array(values)
    if gpu.cooperative:
        _check_co_resident(driver, loaded, name, grid, block, nbytes)
        _check(
            driver,
            driver.cuLaunchCooperativeKernel(
                loaded.function, *grid, *block, nbytes, hstream, ctypes.addressof(argv)
            ),
            f"launching {name} (cooperative)",
        )
    else:
        _check(
            driver,
            driver.cuLaunchKernel(
                loaded.function, *grid, *block, nbytes, hstream, ctypes.addressof(argv), 0
            ),
            f"launching {name}",
        )
    if loaded.record is not None:
        host = (ctypes.c_int64 * EXC_RECORD_WORDS)()
        _check(
            driver,
            driver.cuMemcpyDtoHAsync(
                ctypes.addressof(host), loaded.record, EXC_RECORD_BYTES, hstream
            ),
            "cuMemcpyDtoHAsync",
        )
        _check(driver, driver.cuStreamSynchronize(hstream), "cuStreamSynchronize")
        if host[0]:
            raise_device_exception("kernel", name, gpu.sites, host)
