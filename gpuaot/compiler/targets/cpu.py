"""The CPU target: typed kernels → an optimised native object → (with the others) a host .so.

    obj = compile_kernel_cpu(tf)         # bytes of an ELF relocatable object + its raise sites
    link_shared([obj1, obj2, rt], out)   # the system C compiler links the bundle

A kernel becomes one exported C function that runs a range of blocks::

    void gpuaot_cpu_<mod>__<name>(void **args, int64_t *dims, int64_t begin, int64_t end,
                                  int64_t *exc)

``args`` points at each flattened parameter (the GPU's kernelParams layout), ``dims`` is
(grid x, y, z, block x, y, z); the launcher splits [0, blocks) over threads. Inside, the thread
loops call the kernel body, inlined, so the x loop is what the vectoriser sees. A host function
becomes ``void gpuaot_host_<mod>__<name>(void **args, void *ret, int64_t *exc)``.

The exception record (8 x i64: status, site, thread xyz, block xyz) is written first-writer-wins
by the CPU runtime, ``gpuaot_rt_report_exception``. A version script exports only the entry
points and the embedded data (``gpuaot_cpu_*``, ``gpuaot_host_*``, ``gpuaot_manifest*``,
``gpuaot_fatbin*``); everything else stays local to the bundle.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from functools import lru_cache

import llvmlite.binding as llvm
from llvmlite import ir

from ...errors import BuildError
from ...lang.types import materialize, none
from ..frontend.typed import TypedFunction
from ..lower.emitter import F32, F64, I1, I64, PTR, VOID, Emitter
from ..lower.lowering import ModuleBuilder

HIDDEN = ("exc", "tid.x", "tid.y", "tid.z", "bid.x", "bid.y", "bid.z",
          "bdim.x", "bdim.y", "bdim.z", "gdim.x", "gdim.y", "gdim.z")
_INDEX_BASE = {"thread_idx": 1, "block_idx": 4, "block_dim": 7, "grid_dim": 10}
REPORT = "gpuaot_rt_report_exception"

EXPORTS = "{\n  global: gpuaot_cpu_*; gpuaot_host_*; gpuaot_manifest*; gpuaot_fatbin*;\n  local: *;\n};\n"

# LLVM intrinsics the vectoriser understands; the rest are libm calls.
_LLVM_MATH = {"sqrt", "fabs", "floor", "ceil", "trunc", "copysign", "exp", "log", "log2",
              "log10", "sin", "cos", "pow"}
_LIBM = {"tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "hypot", "erf",
         "erfc", "fmod"}


class CPUEmitter(Emitter):
    target = "cpu"

    def hidden_param_types(self) -> list[ir.Type]:
        return [PTR] + [I64] * 12

    def thread_index(self, b, hidden, which: str, axis: str):
        return hidden[_INDEX_BASE[which] + "xyz".index(axis)]

    def math(self, b: ir.IRBuilder, name: str, args: list, t):
        if name in _LLVM_MATH:
            return self.intrinsic(b, f"llvm.{name}", args)
        suffix = "f" if args[0].type == F32 else ""
        ty = F32 if suffix else F64
        fn = self.declare(f"{name}{suffix}", ty, [ty] * len(args))
        return b.call(fn, args)

    def raise_exception(self, b: ir.IRBuilder, hidden, site: int, ret_type: ir.Type) -> None:
        fn = self.declare(REPORT, VOID, [PTR, I64] + [I64] * 6)
        b.call(fn, [hidden[0], ir.Constant(I64, site), *hidden[1:7]])
        _return_undef(b, ret_type)

    def after_call(self, b: ir.IRBuilder, hidden, ret_type: ir.Type) -> None:
        """A callee raised (or another thread did): stop this thread too."""
        status = b.load_atomic(hidden[0], "monotonic", 8, typ=I64)
        with b.if_then(b.icmp_unsigned("!=", status, ir.Constant(I64, 0)), likely=False):
            _return_undef(b, ret_type)

    def call_intrinsic(self, b, key, data, args, types, rt, hidden):  # pragma: no cover
        raise BuildError(f"'{key}' has no CPU meaning")


def _return_undef(b: ir.IRBuilder, ret_type: ir.Type) -> None:
    if ret_type == VOID:
        b.ret_void()
    else:
        b.ret(ir.Constant(ret_type, ir.Undefined))


# ---------------------------------------------------------------------- entry points


def _load_args(b: ir.IRBuilder, args_ptr, types: list[ir.Type]) -> list[ir.Value]:
    out = []
    for k, ty in enumerate(types):
        slot = b.load(b.gep(args_ptr, [ir.Constant(I64, k)], source_etype=PTR), typ=PTR)
        out.append(b.load(slot, typ=ty))
    return out


def _counted_loop(b: ir.IRBuilder, fn: ir.Function, start, stop, name: str, body) -> None:
    """``for i in range(start, stop): body(i)`` with a phi induction variable."""
    pre = b.block
    head = fn.append_basic_block(f"{name}.head")
    loop = fn.append_basic_block(f"{name}.body")
    done = fn.append_basic_block(f"{name}.done")
    b.cbranch(b.icmp_signed("<", start, stop), head, done)
    b.position_at_end(head)
    i = b.phi(I64, name=name)
    i.add_incoming(start, pre)
    b.branch(loop)
    b.position_at_end(loop)
    body(i)
    nxt = b.add(i, ir.Constant(I64, 1))
    i.add_incoming(nxt, b.block)
    b.cbranch(b.icmp_signed("<", nxt, stop), head, done)
    b.position_at_end(done)


def kernel_entry(mb: ModuleBuilder, tf: TypedFunction) -> str:
    body = mb.function(tf, name=f"{tf.symbol}.body")
    body.attributes.add("alwaysinline")
    name = f"gpuaot_cpu_{tf.symbol}"
    fn = ir.Function(mb.module, ir.FunctionType(VOID, [PTR, PTR, I64, I64, PTR]), name)
    args_ptr, dims_ptr, begin, end, exc = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    params = [p for t in tf.arg_types for p in mb.em.param_types(materialize(t))]
    vals = _load_args(b, args_ptr, params)
    dims = [b.load(b.gep(dims_ptr, [ir.Constant(I64, k)], source_etype=I64), typ=I64)
            for k in range(6)]
    gx, gy, gz, bdx, bdy, bdz = dims

    def per_block(blk):
        bx = b.urem(blk, gx)
        rest = b.udiv(blk, gx)
        by = b.urem(rest, gy)
        bz = b.udiv(rest, gy)

        def per_z(tz):
            def per_y(ty):
                def per_x(tx):
                    b.call(body, [*vals, exc, tx, ty, tz, bx, by, bz, bdx, bdy, bdz, gx, gy, gz])
                _counted_loop(b, fn, ir.Constant(I64, 0), bdx, "tx", per_x)
            _counted_loop(b, fn, ir.Constant(I64, 0), bdy, "ty", per_y)
        _counted_loop(b, fn, ir.Constant(I64, 0), bdz, "tz", per_z)

    # Blocks one after another; stop early once any thread has raised.
    pre = b.block
    head = fn.append_basic_block("blk.head")
    done = fn.append_basic_block("blk.done")
    b.cbranch(b.icmp_signed("<", begin, end), head, done)
    b.position_at_end(head)
    blk = b.phi(I64, name="blk")
    blk.add_incoming(begin, pre)
    per_block(blk)
    nxt = b.add(blk, ir.Constant(I64, 1))
    status = b.load_atomic(exc, "monotonic", 8, typ=I64)
    go = b.and_(b.icmp_signed("<", nxt, end), b.icmp_unsigned("==", status, ir.Constant(I64, 0)))
    blk.add_incoming(nxt, b.block)
    b.cbranch(go, head, done)
    b.position_at_end(done)
    b.ret_void()
    return name


def host_entry(mb: ModuleBuilder, tf: TypedFunction) -> str:
    body = mb.function(tf, name=f"{tf.symbol}.body")
    name = f"gpuaot_host_{tf.symbol}"
    fn = ir.Function(mb.module, ir.FunctionType(VOID, [PTR, PTR, PTR]), name)
    args_ptr, ret_ptr, exc = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    params = [p for t in tf.arg_types for p in mb.em.param_types(materialize(t))]
    vals = _load_args(b, args_ptr, params)
    zero = ir.Constant(I64, 0)
    one = ir.Constant(I64, 1)
    hidden = [exc, zero, zero, zero, zero, zero, zero, one, one, one, one, one, one]
    result = b.call(body, [*vals, *hidden])
    if materialize(tf.return_type) is not none:
        b.store(result, ret_ptr)
    b.ret_void()
    return name


def runtime_module() -> ir.Module:
    """The CPU runtime library: first-writer-wins exception reporting (hidden symbol)."""
    mod = ir.Module(name="gpuaot_cpu_runtime")
    fn = ir.Function(mod, ir.FunctionType(VOID, [PTR, I64] + [I64] * 6), REPORT)
    exc, site, *idx = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    won = b.extract_value(b.cmpxchg(exc, ir.Constant(I64, 0), ir.Constant(I64, 1),
                                    "acq_rel", "monotonic"), 1)
    with b.if_then(won):
        b.store(site, b.gep(exc, [ir.Constant(I64, 1)], source_etype=I64))
        for k, v in enumerate(idx):
            b.store(v, b.gep(exc, [ir.Constant(I64, 2 + k)], source_etype=I64))
    b.ret_void()
    return mod


# ---------------------------------------------------------------------- codegen


@lru_cache(maxsize=1)
def _init_llvm() -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


@lru_cache(maxsize=4)
def target_machine(cpu: str = "native"):
    _init_llvm()
    triple = llvm.get_process_triple()
    target = llvm.Target.from_triple(triple)
    if cpu == "native":
        name, features = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
    else:
        name, features = cpu, ""
    return target.create_target_machine(cpu=name, features=features, opt=3, reloc="pic",
                                        codemodel="small")


def new_module(name: str) -> ir.Module:
    mod = ir.Module(name=name)
    tm = target_machine()
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    return mod


def optimize(ir_text: str, opt: int = 3):
    """Parse, verify and run LLVM's O3 pipeline with both vectorisers; returns the ModuleRef."""
    _init_llvm()
    tm = target_machine()
    ref = llvm.parse_assembly(ir_text)
    ref.triple = tm.triple
    ref.data_layout = str(tm.target_data)
    ref.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=opt)
    pto.loop_vectorization = opt >= 2
    pto.slp_vectorization = opt >= 2
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(ref, pb)
    return ref


def emit_object(ref) -> bytes:
    return target_machine().emit_object(ref)


def emit_assembly(ref) -> str:
    return target_machine().emit_assembly(ref)


def find_cc() -> str:
    cc = os.environ.get("CC") or "cc"
    path = shutil.which(cc.split()[0])
    if path is None:
        raise BuildError(
            f"no C compiler found ({'$CC=' + cc if 'CC' in os.environ else 'cc'}): gpuaot links "
            "the host bundle with the system C compiler; install gcc or clang, or set CC")
    return cc


def link_shared(objects: list[bytes], out_path: str) -> None:
    """Link objects into a position-independent .so: NEEDED ⊆ {libc, libm}, no RPATH."""
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
        cmd = [*cc.split(), "-shared", "-fPIC", "-o", tmp_out, *names, "-Wl,--as-needed",
               f"-Wl,--version-script={script}",
               "-lm", "-Wl,-z,noexecstack", "-Wl,--hash-style=gnu", "-Wl,--build-id=none",
               "-Wl,-O1"]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0:
            raise BuildError(f"linking the host bundle failed ({cc}):\n{proc.stderr.strip()}")
        tmp_final = out_path + ".tmp"
        shutil.copyfile(tmp_out, tmp_final)
        os.replace(tmp_final, out_path)


__all__ = ["CPUEmitter", "kernel_entry", "host_entry", "runtime_module", "optimize",
           "emit_object", "link_shared", "new_module", "I1"]
