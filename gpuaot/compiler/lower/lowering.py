"""The AST-aware layer: a typed function → an LLVM function, through a target's emitter.

    mb = ModuleBuilder(CPUEmitter(module))
    fn = mb.function(tf)         # lowers tf and, on demand, every specialisation it calls
    mb.sites                     # the raise sites, in id order, for the manifest

Structured control flow goes through llvmlite's builder blocks; every variable is an
``alloca`` in the entry block (mem2reg makes them SSA). Arrays are not first-class LLVM
values: an :class:`ArrayValue` carries the pointer and shape, and travels flattened.
"""

from __future__ import annotations

import ast

from llvmlite import ir

from ...bundle.abi import STRIDED_LAYOUT
from ...errors import InternalError
from ...lang.types import (
    ArrayType,
    TupleType,
    Type,
    i64,
    materialize,
    none,
)
from .. import ops
from ..frontend import rules
from ..frontend.nesting import with_recursion_room
from ..frontend.typed import Builtin, RaiseSite, TypedFunction, ValueArg
from .emitter import ArrayValue
from .loops import Loop, LoopLowering

_ARITH = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_BITS = {ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>"}
_CMP = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}


class ModuleBuilder:
    """Lowers typed functions into one module; each specialisation once."""

    def __init__(self, emitter):
        self.em = emitter
        self.module: ir.Module = emitter.module
        self.functions: dict[int, ir.Function] = {}
        self.sites: list[RaiseSite] = []
        self._site_ids: dict[RaiseSite, int] = {}
        self._pending: list[tuple[TypedFunction, ir.Function]] = []

    def site_id(self, site: RaiseSite) -> int:
        if site not in self._site_ids:
            self._site_ids[site] = len(self.sites)
            self.sites.append(site)
        return self._site_ids[site]

    @with_recursion_room
    def function(
        self, tf: TypedFunction, name: str | None = None, linkage: str = "internal"
    ) -> ir.Function:
        fn = self.functions.get(id(tf))
        if fn is not None:
            return fn
        params: list[ir.Type] = []
        for t in tf.arg_types:
            if not isinstance(t, ValueArg):  # a function or type passed: no run-time value
                params.extend(self.em.param_types(materialize(t)))
        params.extend(self.em.hidden_param_types())
        ret = self.em.lltype(materialize(tf.return_type))
        name = name or tf.symbol
        if linkage == "internal" and not name.startswith("gpuaot."):
            # Local symbols still reach .symtab: a package named gpu_x must not look like
            # the device runtime (gpu_*) to the leak gate. (The dot: a package named
            # gpuaot_x is prefixed too, so no user name can pass for one of ours.)
            name = f"gpuaot.{name}"
        fn = ir.Function(self.module, ir.FunctionType(ret, params), name)
        fn.linkage = linkage
        self.functions[id(tf)] = fn
        self._pending.append((tf, fn))
        self._drain()
        return fn

    def _drain(self) -> None:
        while self._pending:
            tf, fn = self._pending.pop()
            FunctionLowering(self, tf, fn).lower()


class FunctionLowering(LoopLowering):
    def __init__(self, mb: ModuleBuilder, tf: TypedFunction, fn: ir.Function):
        self.mb = mb
        self.em = mb.em
        self.tf = tf
        self.fn = fn
        self.vars: dict[str, ir.Value] = {}  # name -> alloca
        self.arrays: dict[str, ArrayValue] = {}
        self.loops: list[Loop] = []

    # ------------------------------------------------------------------ entry

    def lower(self) -> None:
        # Allocas go to "entry", which only holds them; code starts in "body".
        entry = self.fn.append_basic_block("entry")
        self.body_start = self.fn.append_basic_block("body")
        self.b = ir.IRBuilder(self.body_start)
        self.alloca_builder = ir.IRBuilder(entry)
        args = list(self.fn.args)
        for name, t in zip(self.tf.params, self.tf.arg_types):
            t = materialize(t)
            if isinstance(t, ValueArg):
                continue
            if isinstance(t, ArrayType):
                n = t.ndim
                data, rest = args[0], args[1:]
                shape, rest = rest[:n], rest[n:]
                strides = None
                if t.layout == STRIDED_LAYOUT:  # abi.array_abi's order
                    strides, rest = rest[:n], rest[n:]
                self.arrays[name] = ArrayValue(t, data, shape, strides)
                self.em.array_parameter(self.arrays[name])
                args = rest
            else:
                self.store_var(name, args[0], t)
                args = args[1:]
        self.hidden = args
        self.stmts(self.tf.func.node.body)
        if not self.b.block.is_terminated:
            self.ret_default()
        self.alloca_builder.branch(self.body_start)

    def ret_default(self) -> None:
        rt = materialize(self.tf.return_type)
        if rt is none:
            self.b.ret_void()
        else:
            self.b.ret(ir.Constant(self.em.lltype(rt), ir.Undefined))

    # ------------------------------------------------------------------ variables

    def var_slot(self, name: str, t: Type) -> ir.Value:
        slot = self.vars.get(name)
        if slot is None:
            slot = self.alloca_builder.alloca(self.em.lltype(t), name=name)
            self.vars[name] = slot
        return slot

    def store_var(self, name: str, v: ir.Value, t: Type) -> None:
        vt = materialize(self.tf.var_types[name])
        self.b.store(self.em.cast(self.b, v, materialize(t), vt), self.var_slot(name, vt))

    # ------------------------------------------------------------------ statements

    def stmts(self, body: list[ast.stmt]) -> None:
        for s in body:
            if self.b.block.is_terminated:
                return  # code after return/raise/break is unreachable
            getattr(self, "s_" + type(s).__name__)(s)

    def s_Pass(self, node) -> None:
        pass

    def s_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Constant):
            return
        self.expr(node.value)

    def s_Assign(self, node: ast.Assign) -> None:
        if isinstance(self.type(node.value), ValueArg):
            return  # f = ga.atomic_add: the typer resolved every use of f
        v = self.expr(node.value)
        for target in node.targets:
            self.assign(target, v, self.type(node.value))

    def s_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.assign(node.target, self.expr(node.value), self.type(node.value))

    def s_AugAssign(self, node: ast.AugAssign) -> None:
        target = node.target
        if isinstance(target, ast.Subscript):
            arr = self.array(target.value)
            ptr = self.element_ptr(target, arr)
            old = self.em.load_element(self.b, ptr, arr.type.dtype)
            new = self.binop(
                node.op,
                old,
                arr.type.dtype,
                self.expr(node.value),
                self.type(node.value),
                self.tf.expr_types[node],
                node,
            )
            self.em.store_element(
                self.b,
                ptr,
                self.em.cast(self.b, new, materialize(self.tf.expr_types[node]), arr.type.dtype),
                arr.type.dtype,
            )
            return
        old = self.expr(target)
        new = self.binop(
            node.op,
            old,
            self.type(target),
            self.expr(node.value),
            self.type(node.value),
            self.tf.expr_types[node],
            node,
        )
        self.assign(target, new, self.tf.expr_types[node])

    def assign(self, target: ast.expr, v, t: Type) -> None:
        if isinstance(target, ast.Name):
            if isinstance(t, ArrayType):
                self.arrays[target.id] = v
            else:
                self.store_var(target.id, v, t)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for k, elt in enumerate(target.elts):
                self.assign(elt, self.b.extract_value(v, k), t.items[k])
        elif isinstance(target, ast.Subscript):
            arr = self.array(target.value)
            ptr = self.element_ptr(target, arr)
            dt = arr.type.dtype
            self.em.store_element(self.b, ptr, self.em.cast(self.b, v, materialize(t), dt), dt)
        else:  # pragma: no cover - the typer rejects these
            raise InternalError(f"cannot assign to {ast.dump(target)}")

    def s_If(self, node: ast.If) -> None:
        cond = self.condition(node.test)
        if node.orelse:
            with self.b.if_else(cond) as (then, otherwise):
                with then:
                    self.stmts(node.body)
                with otherwise:
                    self.stmts(node.orelse)
        else:
            with self.b.if_then(cond):
                self.stmts(node.body)

    def s_Return(self, node: ast.Return) -> None:
        rt = materialize(self.tf.return_type)
        if node.value is None or rt is none:
            if node.value is not None:
                self.expr(node.value)
            self.b.ret_void() if rt is none else self.ret_default()
            return
        v = self.expr(node.value)
        self.b.ret(self.em.cast(self.b, v, materialize(self.type(node.value)), rt))

    def s_Raise(self, node: ast.Raise) -> None:
        self.raise_site(node)

    def s_Assert(self, node: ast.Assert) -> None:
        if node not in self.tf.sites:
            return  # asserts are compiled in debug builds only
        ok = self.condition(node.test)
        with self.b.if_then(self.b.not_(ok), likely=False):
            self.raise_site(node)

    def raise_site(self, node: ast.AST) -> None:
        sid = self.mb.site_id(self.tf.sites[node])
        self.em.raise_exception(self.b, self.hidden, sid, self.fn.function_type.return_type)

    # ------------------------------------------------------------------ expressions

    def type(self, node: ast.AST) -> Type:
        return self.tf.expr_types[node]

    def expr(self, node: ast.expr):
        if node in self.tf.consts:
            return self.em.const(materialize(self.type(node)), self.tf.consts[node])
        return getattr(self, "e_" + type(node).__name__)(node)

    def condition(self, node: ast.expr) -> ir.Value:
        return self.em.truth(self.b, self.expr(node), self.type(node))

    def e_Constant(self, node: ast.Constant):
        return self.em.const(materialize(self.type(node)), node.value)

    def e_Name(self, node: ast.Name):
        if node.id in self.arrays:
            return self.arrays[node.id]
        slot = self.vars.get(node.id)
        if slot is None:
            raise InternalError(f"variable '{node.id}' has no slot")
        return self.b.load(slot)

    def array(self, node: ast.expr) -> ArrayValue:
        v = self.expr(node)
        if not isinstance(v, ArrayValue):  # pragma: no cover
            raise InternalError("expected an array")
        return v

    def e_Attribute(self, node: ast.Attribute):
        call = self.tf.calls.get(node)
        if isinstance(call, Builtin):
            return self.call_builtin(node, call)
        arr = self.array(node.value)  # .shape
        t = self.type(node)
        v = ir.Constant(self.em.lltype(t), ir.Undefined)
        for k, d in enumerate(arr.shape):
            v = self.b.insert_value(v, d, k)
        return v

    def e_Subscript(self, node: ast.Subscript):
        base_t = self.type(node.value)
        if isinstance(base_t, TupleType):
            k = self.tf.consts[node.slice]
            if isinstance(node.value, ast.Attribute) and isinstance(
                self.type(node.value.value), ArrayType
            ):
                return self.array(node.value.value).shape[k]  # a.shape[k]: no tuple built
            return self.b.extract_value(self.expr(node.value), k)
        arr = self.array(node.value)
        return self.em.load_element(self.b, self.element_ptr(node, arr), arr.type.dtype)

    def element_ptr(self, node: ast.Subscript, arr: ArrayValue):
        idx = node.slice
        elts = idx.elts if isinstance(idx, ast.Tuple) else [idx]
        return self.index_ptr(node, arr, elts)

    def index_ptr(self, node, arr: ArrayValue, elts: list[ast.expr]):
        if len(elts) == 1 and isinstance(self.type(elts[0]), TupleType):
            indices = self.tuple_indices(elts[0])
        else:
            indices = [
                self.em.cast(self.b, self.expr(e), materialize(self.type(e)), i64) for e in elts
            ]
        if node in self.tf.sites:  # bounds checks (debug builds)
            bad = None
            for idx, dim in zip(indices, arr.shape):
                out = self.b.icmp_unsigned(">=", idx, dim)
                bad = out if bad is None else self.b.or_(bad, out)
            with self.b.if_then(bad, likely=False):
                self.raise_site(node)
        return self.em.element_pointer(self.b, arr, indices)

    def tuple_indices(self, node: ast.expr) -> list:
        """``a[idx]`` with ``idx`` a tuple value: its items, each as an i64 index."""
        v, items = self.expr(node), materialize(self.type(node)).items
        return [
            self.em.cast(self.b, self.b.extract_value(v, k), t, i64) for k, t in enumerate(items)
        ]

    def e_BinOp(self, node: ast.BinOp):
        return self.binop(
            node.op,
            self.expr(node.left),
            self.type(node.left),
            self.expr(node.right),
            self.type(node.right),
            self.type(node),
            node,
        )

    def binop(self, op, lv, lt, rv, rt, result_t, node):
        b, em = self.b, self.em
        rt_ = materialize(result_t)
        if isinstance(op, ast.Div):
            ct = rt_
            lv, rv = em.cast(b, lv, materialize(lt), ct), em.cast(b, rv, materialize(rt), ct)
            if node in self.tf.sites and ct.is_complex:  # complex division by zero
                with b.if_then(em.complex_is_zero(b, rv), likely=False):
                    self.raise_site(node)
            return em.arith(b, "/", lv, rv, ct)
        lv = em.cast(b, lv, materialize(lt), rt_)
        rv = em.cast(b, rv, materialize(rt), rt_)
        if type(op) in _ARITH:
            return em.arith(b, _ARITH[type(op)], lv, rv, rt_)
        if type(op) in _BITS:
            return em.bitwise(b, _BITS[type(op)], lv, rv, rt_)
        if isinstance(op, (ast.FloorDiv, ast.Mod)):
            if rt_.is_float:
                return (
                    em.float_floordiv(b, lv, rv)
                    if isinstance(op, ast.FloorDiv)
                    else em.float_mod(b, lv, rv)
                )
            site = self.tf.sites.get(node)
            if site is not None:
                with b.if_then(b.icmp_unsigned("==", rv, ir.Constant(rv.type, 0)), likely=False):
                    self.raise_site(node)
            return (
                em.int_floordiv(b, lv, rv, rt_)
                if isinstance(op, ast.FloorDiv)
                else em.int_mod(b, lv, rv, rt_)
            )
        if isinstance(op, ast.Pow):
            if rt_.is_float:
                return em.math(b, "pow", [lv, rv], rt_)
            return em.int_pow(b, lv, rv, rt_)
        raise InternalError(f"operator {type(op).__name__}")  # pragma: no cover

    def e_UnaryOp(self, node: ast.UnaryOp):
        v = self.expr(node.operand)
        t = materialize(self.type(node.operand))
        rt = materialize(self.type(node))
        if isinstance(node.op, ast.Not):
            return self.b.not_(self.em.truth(self.b, v, t))
        v = self.em.cast(self.b, v, t, rt)
        if isinstance(node.op, ast.USub):
            if rt.is_complex:
                return self.em.complex_neg(self.b, v, rt)
            return self.b.fneg(v, flags=self.em.flags) if rt.is_float else self.b.neg(v)
        if isinstance(node.op, ast.Invert):
            return self.b.not_(v)
        return v

    def e_Compare(self, node: ast.Compare):
        result = None
        left, lt = self.expr(node.left), self.type(node.left)
        for op, comp in zip(node.ops, node.comparators):
            right, rtype = self.expr(comp), self.type(comp)
            ct = materialize(rules.compare_operand_type(lt, rtype))
            a = self.em.cast(self.b, left, materialize(lt), ct)
            c = self.em.cast(self.b, right, materialize(rtype), ct)
            r = self.em.compare(self.b, _CMP[type(op)], a, c, ct)
            result = r if result is None else self.b.and_(result, r)
            left, lt = right, rtype
        return result

    def e_BoolOp(self, node: ast.BoolOp):
        is_and = isinstance(node.op, ast.And)
        end = self.fn.append_basic_block("bool.end")
        incoming = []
        for v in node.values[:-1]:
            c = self.condition(v)
            incoming.append((c, self.b.block))
            nxt = self.fn.append_basic_block("bool.next")
            if is_and:
                self.b.cbranch(c, nxt, end)
            else:
                self.b.cbranch(c, end, nxt)
            self.b.position_at_end(nxt)
        last = self.condition(node.values[-1])
        incoming.append((last, self.b.block))
        self.b.branch(end)
        self.b.position_at_end(end)
        phi = self.b.phi(ir.IntType(1))
        for val, blk in incoming:
            phi.add_incoming(val, blk)
        return phi

    def e_IfExp(self, node: ast.IfExp):
        t = materialize(self.type(node))
        cond = self.condition(node.test)
        with self.b.if_else(cond) as (then, otherwise):
            with then:
                a = self.em.cast(self.b, self.expr(node.body), materialize(self.type(node.body)), t)
                a_bb = self.b.block
            with otherwise:
                c = self.em.cast(
                    self.b, self.expr(node.orelse), materialize(self.type(node.orelse)), t
                )
                c_bb = self.b.block
        phi = self.b.phi(self.em.lltype(t))
        phi.add_incoming(a, a_bb)
        phi.add_incoming(c, c_bb)
        return phi

    def e_Tuple(self, node: ast.Tuple):
        t = materialize(self.type(node))
        v = ir.Constant(self.em.lltype(t), ir.Undefined)
        for k, e in enumerate(node.elts):
            v = self.b.insert_value(
                v, self.em.cast(self.b, self.expr(e), materialize(self.type(e)), t.items[k]), k
            )
        return v

    # ------------------------------------------------------------------ calls

    def e_Call(self, node: ast.Call):
        target = self.tf.calls.get(node)
        if isinstance(target, TypedFunction):
            return self.call_user(node, target)
        return self.call_builtin(node, target)

    def call_user(self, node: ast.Call, callee: TypedFunction):
        fn = self.mb.function(callee)
        args = []
        for a, pt in zip(node.args, callee.arg_types):
            if isinstance(pt, ValueArg):
                continue
            v = self.expr(a)
            if isinstance(v, ArrayValue):
                args.extend(v.parts())
            else:
                args.append(self.em.cast(self.b, v, materialize(self.type(a)), materialize(pt)))
        args.extend(self.hidden)
        result = self.b.call(fn, args)
        if callee.may_raise:
            self.em.after_call(self.b, self.hidden, self.fn.function_type.return_type)
        return result

    def call_builtin(self, node: ast.AST, call: Builtin):
        """An operation: its declaration's lowering for this target (:mod:`..ops`)."""
        rt = materialize(self.type(node))
        return ops.get(call.key).lowering(self.em.target)(self, node, call, rt)
