"""A typed function's fingerprint: all that lowering reads of it, as text.

    text = typed_fingerprint(tf)    # None where some decision has no stable text

Lowering is a function of the typed tree alone — the function's AST (as its source lines,
which parse to it), its argument, variable and expression types, what each call resolved to
(a method-table builtin and its data, or another typed function, whose fingerprint is part of
this one), the folded constants and the raise sites — and of the target and the build's
options, which the caller adds to the key. Equal fingerprints under equal options give equal
IR, so a rebuild reuses a unit's lowered IR (``targets.base``) after typing it, without
lowering it again. Lowering reads no node's location (``tests/test_lowered_reuse.py``
checks): the raise sites, which carry the locations the bundle records, are in the text, the
positions of the nodes are not, so a line added above a function does not lower it again.

The text is built only from values whose text is their value: ints, strings, floats by
their bits, interned types by name, AST nodes by ``ast.dump``. Anything else (an object
whose text would be its address), or a decision about a node outside the function's own
tree, gives None: that unit is lowered, never reused on a guess.
"""

from __future__ import annotations

import ast
import dataclasses
import struct

from ...lang.types import Type
from ..discover import FuncInfo
from .nesting import with_recursion_room
from .typed import Builtin, RaiseSite, TypedFunction


class _Unstable(Exception):
    """A value with no text that stands for it across processes."""


@with_recursion_room  # ``ast.dump`` recurses: the room the typer had for the same tree
def typed_fingerprint(tf: TypedFunction) -> str | None:
    """The text of ``tf`` and of every typed function it calls (each once), or None."""
    parts: list[str] = []
    labels: dict[int, str] = {}
    try:
        _function(tf, parts, labels)
    except (_Unstable, RecursionError):
        return None
    return "\n".join(parts)


def _function(tf: TypedFunction, parts: list[str], labels: dict[int, str]) -> str:
    label = labels.get(id(tf))
    if label is not None:
        return label
    label = labels[id(tf)] = f"@{len(labels)}"
    func = tf.func
    lines = [
        f"{label} {func.kind} {func.qualname} {tf.target}",
        f"args {_value(tf.arg_types, parts, labels)} -> {_value(tf.return_type, parts, labels)}",
        f"raises {tf.may_raise} uses {sorted(tf.uses)}",
        "options " + _value(sorted(func.options.items()), parts, labels),
        "vars " + _value(sorted(tf.var_types.items()), parts, labels),
        func.source,  # its lines (what they parse to is its AST), cheaper than ast.dump
    ]
    tables = (("t", tf.expr_types), ("c", tf.calls), ("k", tf.consts), ("s", tf.sites))
    seen = 0
    for k, node in enumerate(ast.walk(func.node)):
        for tag, table in tables:
            if node in table:
                seen += 1
                lines.append(f"{k}{tag} {_value(table[node], parts, labels)}")
    if seen != sum(len(table) for _, table in tables):
        raise _Unstable("a decision about a node outside the function's tree")
    parts.append("\n".join(lines))
    return label


def _value(v, parts: list[str], labels: dict[int, str]) -> str:
    if v is None or isinstance(v, (bool, int, str)):
        return repr(v)
    if isinstance(v, float):
        return "f" + struct.pack("<d", v).hex()
    if isinstance(v, complex):
        return f"c({_value(v.real, parts, labels)},{_value(v.imag, parts, labels)})"
    if isinstance(v, Type):  # interned: its name is its identity (including ValueArg)
        return f"T{v.name}"
    if isinstance(v, TypedFunction):
        return _function(v, parts, labels)
    if isinstance(v, Builtin):
        return f"B({v.key},{_value(v.data, parts, labels)})"
    if isinstance(v, RaiseSite):
        return "R" + repr(dataclasses.astuple(v))
    if isinstance(v, FuncInfo):
        return f"F{v.qualname} {ast.dump(v.node)}"
    if isinstance(v, ast.AST):
        return ast.dump(v)
    if isinstance(v, (tuple, list)):
        inner = ",".join(_value(x, parts, labels) for x in v)
        return f"({inner})" if isinstance(v, tuple) else f"[{inner}]"
    if isinstance(v, dict):
        return _value(sorted(v.items(), key=lambda kv: repr(kv[0])), parts, labels)
    if type(v).__module__ == "numpy" and hasattr(v, "dtype"):  # a numpy scalar constant
        return f"N{v.dtype.str}:{v.tobytes().hex()}"
    raise _Unstable(type(v).__qualname__)


__all__ = ["typed_fingerprint"]
