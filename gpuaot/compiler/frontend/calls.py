"""Typing calls: to ``@device`` helpers (specialised per argument types) and to operations.

    self.e_call(node)   # ga.popc(x) → its op's typing rule (:mod:`..ops`), then the table check

An operation's call is typed by its declaration's rule; the typer then records the method-table
use (an op the target has no lowering for is a :class:`TargetUnavailable` error naming the call
chain) and the call's :class:`Builtin` for the lowering. A mixin of :class:`.typer.Typer`.
"""

from __future__ import annotations

import ast

from ...errors import CompileError
from ...lang.types import ArrayType, TupleType, Type, none
from .. import ops
from ..discover import FuncInfo
from ..ops import alloc_args, cmathfns, warp
from . import fnargs
from .annotations import annotated_params, castable, parse_annotation
from .rules import Reject, Stop
from .typed import Builtin

DECORATORS = ("kernel", "device", "host", "device_only", "overlay")


class TargetUnavailable(CompileError):
    """A name with no meaning on the target (e.g. ``syncthreads`` on the CPU)."""


class CallTyping:
    def use(self, key: str, node: ast.AST) -> None:
        """Record a method-table use; error if the target has no meaning for it."""
        self.tf.uses.add(key)
        if self.ctx.table.lookup(key) is None:
            shown = key.split(".", 1)[1]
            chain = [f"in {self.func.kind} '{self.func.qualname}'"] + self.ctx.call_chain()[1:]
            err = TargetUnavailable(
                f"'{shown}' has no {self.ctx.target.upper()} implementation",
                self.func.loc(node),
                hint=self._unavailable_hint(key),
                notes=chain,
            )
            self.errors.append(err)

    def _unavailable_hint(self, key: str) -> str:
        # Only a user function can be given an overlay; only a kernel can run on the GPU alone
        # (a host function always runs on the CPU).
        target = self.ctx.target
        root = self.ctx.chain[0][0] if self.ctx.chain else self.func
        fix = (
            f"give it a {target.upper()} version with "
            f'@overlay({key.rsplit(".", 1)[-1]}, target="{target}")'
            if key.startswith("user.")
            else None
        )
        if root.kind == "host":
            return (f"{fix}; " if fix else "") + "host functions run on the CPU only"
        return (f"{fix}, or " if fix else "") + "launch this kernel on the GPU only"

    def e_call(self, node: ast.Call) -> Type:
        if node.keywords and not alloc_args.takes_keywords(self, node):
            raise Reject("keyword arguments are not supported in kernel calls")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise Reject("*args is not supported in kernel calls")
        if warp.is_this_grid_sync(self, node):  # ga.this_grid().sync(): the grid barrier
            return self.call_op(node, ops.get(warp.GRID_SYNC), "this_grid().sync")
        if cmathfns.is_conjugate(self, node):  # z.conjugate()
            return self.call_op(node, ops.get(cmathfns.CONJUGATE), "conjugate")
        sym = fnargs.callee(self, node.func)  # a variable holding a function calls it
        if sym is None:
            raise Reject(
                f"unknown function '{ast.unparse(node.func)}'",
                "kernels can call @device functions, math.*, casts and gpuaot intrinsics",
            )
        if sym.kind == "func":
            return self.call_user(node, sym.value)
        if sym.kind == "builtin":
            if sym.value in ("range", "enumerate"):
                for a in node.args:
                    self.expr(a)
                raise Reject(f"{sym.value}() is only allowed as a for-loop's iterable")
            return self.call_op(node, ops.lookup("builtin", sym.value), sym.value)
        if sym.kind in ("math", "cmath"):
            op = ops.lookup(sym.kind, sym.value)
            if op is None:
                raise Reject(f"{sym.kind}.{sym.value} is not supported in kernels")
            return self.call_op(node, op, sym.value)
        if sym.kind == "gpuaot":
            op = ops.lookup("gpuaot", sym.value)
            if op is not None:
                return self.call_op(node, op, sym.value)
            if sym.value.startswith("atomic_"):
                raise Reject(f"{sym.value}() takes (array, index, value)")
            if sym.value in DECORATORS:
                raise Reject(f"'{sym.value}' is a decorator")
            raise Reject(f"'gpuaot.{sym.value}' is not a kernel intrinsic")
        raise Reject(f"'{ast.unparse(node.func)}' cannot be called in kernels")

    def call_op(self, node: ast.AST, op: ops.Op, name: str) -> Type:
        """Type a use of ``op`` spelled ``name`` with its rule; record it for the lowering."""
        result = op.typing(self, node, name)
        data = None
        if isinstance(result, ops.Typed):
            if result.folded:
                self.tf.calls[node] = None
                return result.type
            result, data = result.type, result.data
        self.use(op.key, node)
        self.tf.calls[node] = Builtin(op.key, data)
        return result

    def call_user(self, node: ast.Call, callee: FuncInfo) -> Type:
        if callee.kind == "kernel":
            raise Reject(
                f"kernel '{callee.name}' cannot be called from device code",
                "launch kernels from Python; move shared code into a @device function",
            )
        if callee.kind == "overlay":
            raise Reject(f"'{callee.name}' is an overlay; call the function it replaces")
        if callee.kind == "host" and self.func.kind != "host":
            raise Reject(
                f"host function '{callee.name}' cannot be called from device code",
                "make it a @device function to call it from kernels",
            )
        args = tuple(fnargs.arg_type(self, a) for a in node.args)
        if callee.kind == "host":
            fnargs.check_kernel_args(args)
        body = self.ctx.table.user_function(self.pkg, callee)
        if body is None:
            self.use(f"user.{callee.qualname}", node)
            raise Stop()
        if any(
            isinstance(a, TupleType) and any(isinstance(i, ArrayType) for i in a.items)
            for a in args
        ):
            raise Reject("tuples of arrays cannot be passed")
        self.ctx.chain[-1] = (self.func, self.func.loc(node))
        if callee.kind == "host":
            args_expected, errs = annotated_params(self.pkg, callee)
            if not errs:
                bad = [a for a, e in zip(args, args_expected) if not castable(a, e)]
                if bad or len(args) != len(args_expected):
                    raise Reject(
                        f"'{callee.name}' takes ({', '.join(t.name for t in args_expected)})"
                    )
                args = args_expected
        elif len(args) == len(callee.params):
            args = self.annotated_args(node, callee, args)
        tf, errors = self.ctx.specialize(body, args, self.debug)
        if errors:
            self.errors.extend(errors)
            raise Stop()
        self.tf.calls[node] = tf
        if tf.may_raise:
            self.tf.may_raise = True
        self.tf.uses |= tf.uses
        if tf.return_type is none:
            return none
        return tf.return_type

    def annotated_args(self, node: ast.Call, callee: FuncInfo, args: tuple) -> tuple:
        """A ``@device`` helper's annotated parameters take the annotated type (the lowering
        converts the argument, as an assignment to an annotated variable does); the others
        take the argument's type."""
        out = list(args)
        for k, (a, t) in enumerate(zip(callee.params, args)):
            if a.annotation is None:
                continue
            try:
                want = parse_annotation(self.pkg, callee, a.annotation)
            except Reject as r:
                self.errors.append(CompileError(r.message, callee.loc(a.annotation), hint=r.hint))
                raise Stop() from None
            if isinstance(t, ArrayType) and isinstance(want, ArrayType):
                if (t.dtype, t.ndim) == (want.dtype, want.ndim):
                    continue  # a strided array passes as itself: the layout is not converted
            if not castable(t, want):
                raise Reject(
                    f"cannot pass {t.name} to parameter '{a.arg}: {want.name}' of '{callee.name}'"
                )
            out[k] = want
        return tuple(out)
