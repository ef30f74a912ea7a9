"""Definite assignment: a local read on a path where it may not have been assigned.

    if x[i] > 0:
        v = 1.5
    out[i] = v        # error: 'v' may be used before it is assigned

Python raises ``UnboundLocalError`` there at run time, when the branch is not taken. Compiled
code has no such check: the read would see an uninitialised stack slot, which LLVM may fold
to any value (it folded this one to 1.5 for every thread). So the frontend rejects the read,
as Java and C# do: a local must be assigned on every path that reaches a use. A ``for``
loop's body may not run, so what it assigns is not definitely assigned after it; ``while
True`` ends only through ``break``, so what every ``break`` has assigned is.

The walk is over the AST of a function that typed without errors; only names the function
assigns somewhere are checked (parameters, constants and functions are always defined).
"""

from __future__ import annotations

import ast

ALL = None  # the state after a statement that does not fall through: joins as "everything"


def _join(a, b):
    if a is ALL:
        return b
    if b is ALL:
        return a
    return a & b


class _Loop:
    def __init__(self) -> None:
        self.breaks = ALL


class DefiniteAssignment:
    def __init__(self, params: list[str], locals_: set[str]):
        self.locals = set(locals_) - set(params)
        self.params = frozenset(params)
        self.loops: list[_Loop] = []
        self.unassigned: list[ast.Name] = []  # first offending read of each name
        self._reported: set[str] = set()

    def run(self, body: list[ast.stmt]) -> list[ast.Name]:
        self.block(body, self.params)
        return self.unassigned

    # ------------------------------------------------------------------ expressions

    def use(self, node: ast.AST | None, defined: frozenset) -> None:
        if node is None:
            return
        for n in ast.walk(node):
            if (
                isinstance(n, ast.Name)
                and isinstance(n.ctx, ast.Load)
                and n.id in self.locals
                and n.id not in defined
                and n.id not in self._reported
            ):
                self._reported.add(n.id)
                self.unassigned.append(n)

    def targets(self, target: ast.expr, defined: frozenset) -> frozenset:
        if isinstance(target, ast.Name):
            return defined | {target.id}
        if isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                defined = self.targets(elt, defined)
            return defined
        self.use(target, defined)  # a[i] = ...: reads a and i
        return defined

    # ------------------------------------------------------------------ statements

    def block(self, stmts: list[ast.stmt], defined):
        for s in stmts:
            if defined is ALL:
                return ALL  # unreachable code after return / raise / break / continue
            defined = self.stmt(s, defined)
        return defined

    def stmt(self, s: ast.stmt, defined: frozenset):
        if isinstance(s, ast.Assign):
            self.use(s.value, defined)
            for t in s.targets:
                defined = self.targets(t, defined)
            return defined
        if isinstance(s, ast.AnnAssign):
            if s.value is None:
                return defined
            self.use(s.value, defined)
            return self.targets(s.target, defined)
        if isinstance(s, ast.AugAssign):
            self.use(s.value, defined)
            self.use(
                ast.Name(
                    s.target.id, ast.Load(), lineno=s.target.lineno, col_offset=s.target.col_offset
                )
                if isinstance(s.target, ast.Name)
                else s.target,
                defined,
            )
            return self.targets(s.target, defined)
        if isinstance(s, ast.If):
            self.use(s.test, defined)
            return _join(self.block(s.body, defined), self.block(s.orelse, defined))
        if isinstance(s, ast.While):
            self.use(s.test, defined)
            loop = self.enter()
            self.block(s.body, defined)
            self.loops.pop()
            forever = isinstance(s.test, ast.Constant) and bool(s.test.value)
            if forever:
                return loop.breaks
            return _join(self.block(s.orelse, defined), loop.breaks)
        if isinstance(s, ast.For):
            self.use(s.iter, defined)
            loop = self.enter()
            self.block(s.body, self.targets(s.target, defined))
            self.loops.pop()
            return _join(self.block(s.orelse, defined), loop.breaks)
        if isinstance(s, ast.Break):
            self.loops[-1].breaks = _join(self.loops[-1].breaks, defined)
            return ALL
        if isinstance(s, ast.Continue):
            return ALL
        if isinstance(s, (ast.Return, ast.Raise)):
            self.use(getattr(s, "value", None) or getattr(s, "exc", None), defined)
            return ALL
        if isinstance(s, ast.Assert):
            self.use(s.test, defined)
            return defined
        if isinstance(s, ast.Expr):
            self.use(s.value, defined)
            return defined
        return defined  # pass; anything else was rejected by typing

    def enter(self) -> _Loop:
        loop = _Loop()
        self.loops.append(loop)
        return loop


def unassigned_reads(func: ast.FunctionDef, locals_: set[str]) -> list[ast.Name]:
    """Reads of locals that some path reaches before any assignment, first one per name."""
    params = [a.arg for a in func.args.args]
    return DefiniteAssignment(params, locals_).run(func.body)
