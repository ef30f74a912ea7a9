"""How deeply a program may nest, and the recursion room the recursive stages get for it.

    >>> tree = ast.parse("x = " + "-" * 1500 + "1")
    >>> [(type(s).__name__, type(n).__name__, n.col_offset) for s, n in too_deep(tree)]
    [('Assign', 'UnaryOp', 1004)]
    >>> with recursion_room():       # the typer, the folder, the lowering: MAX_DEPTH levels fit
    ...     tf, errors = ctx.specialize(func)                          # doctest: +SKIP

The typer, the constant folder and the lowering recurse over the AST: 2 Python frames per
level of an operator chain, 3 per ``elif`` arm, about 5 per subscript (measured with a
profiler). Under the default recursion limit (1000) gpuaot 0.1 typed about 450 nested unary
minuses or binary operators, 350 ``elif`` arms and 180 nested subscripts, then died of
RecursionError. CPython accepts about 3,000 levels (its AST builder allows three per unit of
recursion limit left) and more under a raised limit, where recursing over the tree would
risk the C stack. So depth is bounded, not unlimited:

- ``ast.parse`` runs with the room a fresh CPython has (:func:`python_parser_depth`), so
  what CPython compiles parses here too, and what its parser gives up on is a located error;
- discovery measures every top-level statement without recursing (:func:`too_deep`) and
  reports one nested beyond :data:`MAX_DEPTH` as a located error, leaving the statement out;
- the recursive stages run inside :func:`recursion_room`, which raises the limit for their
  duration so that MAX_DEPTH levels fit at FRAMES_PER_LEVEL. MAX_DEPTH is twice what worked
  before, and its frames are far from what a thread's C stack holds (CPython 3.11 does not
  grow the C stack for Python-to-Python calls; 3.10, which does, needs a few MiB for them).
"""

from __future__ import annotations

import ast
import functools
import sys
from contextlib import contextmanager, nullcontext

MAX_DEPTH = 1000  # AST levels below a module's top-level statement
FRAMES_PER_LEVEL = 8  # the worst measured is about 5 (a subscript), plus a margin
_SLACK = 200  # frames the stages use whatever the depth (their own call chains)
_PYTHON_DEFAULT_LIMIT = 1000  # sys.getrecursionlimit() of a fresh CPython
_C_CALLS_MARGIN = 100


def too_deep(tree: ast.Module, limit: int = MAX_DEPTH) -> list[tuple[ast.stmt, ast.AST]]:
    """``(statement, node)`` for each top-level statement nested beyond ``limit``: ``node``
    is the outermost located node past the limit (where a diagnostic should point)."""
    out = []
    for stmt in tree.body:
        if _deeper_than(stmt, limit):  # rare: then find where, depth first
            stack = [(stmt, 0, stmt)]
            while stack:
                node, depth, located = stack.pop()
                if hasattr(node, "lineno"):
                    located = node
                if depth > limit:
                    out.append((stmt, located))
                    break
                stack.extend((child, depth + 1, located) for child in ast.iter_child_nodes(node))
    return out


def _deeper_than(node: ast.AST, limit: int) -> bool:
    """Whether the tree under ``node`` has a level below ``limit``: one level at a time,
    without a depth per node (a build walks every statement of every module this way)."""
    AST = ast.AST
    level = [node]
    for _ in range(limit + 1):
        below = []
        for n in level:
            for name in n._fields:
                v = getattr(n, name, None)
                if isinstance(v, AST):
                    below.append(v)
                elif isinstance(v, list):
                    below += [x for x in v if isinstance(x, AST)]
        if not below:
            return False
        level = below
    return True


def expr_too_deep(node: ast.AST, limit: int = MAX_DEPTH) -> bool:
    """Whether one expression (e.g. parsed from a string annotation) nests beyond ``limit``."""
    module = ast.Module(body=[ast.Expr(node)], type_ignores=[])
    return bool(too_deep(module, limit - 1))


def _frames_now() -> int:
    n, frame = 0, sys._getframe()
    while frame is not None:
        n, frame = n + 1, frame.f_back
    return n


@contextmanager
def _recursion_limit(limit: int):
    """The body under ``limit``; the old one comes back after (unless someone else changed
    it meanwhile)."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        if sys.getrecursionlimit() == limit:
            sys.setrecursionlimit(old)


def recursion_room(levels: int = MAX_DEPTH):
    """A context with room for ``levels`` levels of AST recursion above the current depth."""
    room = levels * FRAMES_PER_LEVEL + _SLACK
    frames = _frames_now()
    if frames + room <= sys.getrecursionlimit():
        return nullcontext()
    # Twice the room, so the stages' nested entries (a callee's specialisation, the folder
    # called from the typer) find enough and leave the limit alone.
    return _recursion_limit(frames + 2 * room)


def python_parser_depth():
    """A context where ``ast.parse`` takes what CPython takes from a file it runs: its AST
    builder allows three levels per unit of recursion limit left, and a build is some frames
    deep already. (The limit may go down here: a higher one would let the C parser recurse
    beyond what CPython's own default allows.) The interpreter's depth also counts calls
    made through C (click, pytest, context managers), which a walk of the Python frames does
    not see: a margin for those."""
    return _recursion_limit(_frames_now() + _PYTHON_DEFAULT_LIMIT + _C_CALLS_MARGIN)


def with_recursion_room(fn):
    """Decorator form of :func:`recursion_room`, for a recursive stage's entry points."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with recursion_room():
            return fn(*args, **kwargs)

    return wrapper
