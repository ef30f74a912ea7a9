"""``ga.selp(cond, a, b)``: PTX's ``selp``, both operands evaluated, then one chosen.

ga.selp(x > 0, x, 0.0)  -> intr.selp: the branches' common type (as ``a if c else b``);
                           one ``select`` instruction, no branch, on both targets
"""

from __future__ import annotations

from ...lang.types import materialize
from ..frontend import rules
from ..frontend.rules import Reject
from .registry import BASE, Op, declare


def _type_selp(tc, node, name):
    if len(node.args) != 3:
        raise Reject("selp() takes (condition, a, b)")
    rules.truth(tc.expr(node.args[0]))
    return rules.ifexp_type(tc.expr(node.args[1]), tc.expr(node.args[2]))


def _lower_selp(fl, node, call, rt):
    b, em = fl.b, fl.em
    c, x, y = node.args
    cond = em.truth(b, fl.expr(c), materialize(fl.type(c)))
    xv = em.cast(b, fl.expr(x), materialize(fl.type(x)), rt)
    yv = em.cast(b, fl.expr(y), materialize(fl.type(y)), rt)
    return b.select(cond, xv, yv)


declare(Op("intr.selp", "gpuaot", ("selp",), _type_selp, {BASE: _lower_selp}, "intrinsics.selp"))
