"""The loops of the AST lowering: ``while``, ``for`` over ``range``/arrays/``enumerate``,
their ``else`` blocks, ``break`` and ``continue``.

A mixin of :class:`.lowering.FunctionLowering` (``self`` is the function being lowered: its
builder ``b``, emitter ``em``, typed function ``tf``, variables and loop stack).
"""

from __future__ import annotations

import ast

from llvmlite import ir

from ...lang.types import ArrayType, TupleType, Type, i64, materialize


class Loop:
    """Where ``continue`` (``cont``) and ``break`` (``brk``) of the innermost loop go."""

    def __init__(self, cont: ir.Block, brk: ir.Block):
        self.cont = cont
        self.brk = brk


class LoopLowering:
    def s_While(self, node: ast.While) -> None:
        cond_bb = self.fn.append_basic_block("while.cond")
        body_bb = self.fn.append_basic_block("while.body")
        else_bb = self.fn.append_basic_block("while.else") if node.orelse else None
        end_bb = self.fn.append_basic_block("while.end")
        self.b.branch(cond_bb)
        self.b.position_at_end(cond_bb)
        self.b.cbranch(self.condition(node.test), body_bb, else_bb or end_bb)
        self.b.position_at_end(body_bb)
        self.loops.append(Loop(cond_bb, end_bb))
        self.stmts(node.body)
        self.loops.pop()
        if not self.b.block.is_terminated:
            self.b.branch(cond_bb)
        self.loop_else(node, else_bb, end_bb)

    def loop_else(self, node, else_bb, end_bb) -> None:
        """A loop's ``else``: reached when the condition fails, never by ``break``."""
        if else_bb is not None:
            self.b.position_at_end(else_bb)
            self.stmts(node.orelse)
            if not self.b.block.is_terminated:
                self.b.branch(end_bb)
        self.b.position_at_end(end_bb)

    def s_For(self, node: ast.For) -> None:
        it, target, count = node.iter, node.target, None
        if isinstance(self.tf.expr_types[it], TupleType):  # enumerate(x): (count, value)
            (count, target), it = target.elts, it.args[0]
        arr = self.array(it) if isinstance(self.tf.expr_types[it], ArrayType) else None
        t = i64 if arr is not None else materialize(self.tf.expr_types[it])
        one = ir.Constant(self.em.lltype(t), 1)
        zero = ir.Constant(self.em.lltype(t), 0)
        if arr is not None:  # for v in a: the indices of a 1-D array
            start, stop, step, static_step = zero, arr.shape[0], one, 1
        else:
            start, stop, step, static_step = self.range_bounds(it, t, zero, one)
        iv = self.alloca_builder.alloca(self.em.lltype(t), name="range.iv")
        self.b.store(start, iv)
        kv = None
        if count is not None and arr is None:  # enumerate(range(...)): its own counter
            kv = self.alloca_builder.alloca(self.em.lltype(i64), name="enumerate.k")
            self.b.store(ir.Constant(self.em.lltype(i64), 0), kv)
        cond_bb = self.fn.append_basic_block("for.cond")
        body_bb = self.fn.append_basic_block("for.body")
        inc_bb = self.fn.append_basic_block("for.inc")
        else_bb = self.fn.append_basic_block("for.else") if node.orelse else None
        end_bb = self.fn.append_basic_block("for.end")
        self.b.branch(cond_bb)
        self.b.position_at_end(cond_bb)
        i = self.b.load(iv)
        up = self.em.compare(self.b, "<", i, stop, t)
        down = self.em.compare(self.b, ">", i, stop, t)
        if isinstance(static_step, int):
            go = up if static_step > 0 else down
        else:
            go = self.b.select(self.em.compare(self.b, ">", step, zero, t), up, down)
        self.b.cbranch(go, body_bb, else_bb or end_bb)
        self.b.position_at_end(body_bb)
        if arr is not None:
            ptr = self.em.element_pointer(self.b, arr, [i])
            self.store_var(
                target.id, self.em.load_element(self.b, ptr, arr.type.dtype), arr.type.dtype
            )
        else:
            self.store_var(target.id, i, t)
        if count is not None:
            self.store_var(count.id, i if kv is None else self.b.load(kv), i64)
        self.loops.append(Loop(inc_bb, end_bb))
        self.stmts(node.body)
        self.loops.pop()
        if not self.b.block.is_terminated:
            self.b.branch(inc_bb)
        self.b.position_at_end(inc_bb)
        self.b.store(self.b.add(self.b.load(iv), step), iv)
        if kv is not None:
            self.b.store(self.b.add(self.b.load(kv), ir.Constant(self.em.lltype(i64), 1)), kv)
        self.b.branch(cond_bb)
        self.loop_else(node, else_bb, end_bb)

    def range_bounds(self, it: ast.Call, t: Type, zero, one):
        """``range(...)``'s (start, stop, step, the step if constant), its zero check emitted."""
        args = [self.em.cast(self.b, self.expr(a), materialize(self.type(a)), t) for a in it.args]
        if len(args) == 1:
            start, stop, step = zero, args[0], one
        elif len(args) == 2:
            (start, stop), step = args, one
        else:
            start, stop, step = args
        static_step = self._static(it.args[2]) if len(it.args) == 3 else 1
        if it in self.tf.sites:  # a run-time step: range(a, b, 0) raises ValueError
            with self.b.if_then(self.b.icmp_unsigned("==", step, zero), likely=False):
                self.raise_site(it)
        return start, stop, step, static_step

    def _static(self, node: ast.expr):
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            v = self._static(node.operand)
            return -v if isinstance(v, int) else None
        v = self.tf.consts.get(node)
        return v if type(v) is int else None

    def s_Break(self, node) -> None:
        self.b.branch(self.loops[-1].brk)

    def s_Continue(self, node) -> None:
        self.b.branch(self.loops[-1].cont)
