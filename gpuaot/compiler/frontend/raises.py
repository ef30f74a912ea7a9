"""What a ``raise`` raises: a built-in exception type or one of the package's exception
classes, and a message known at compile time.

    class BadInput(ValueError): ...          # pkg/errors.py
    MSG = "bad input"
    raise BadInput(MSG)     # ExceptionClass("pkg.errors.BadInput", base="ValueError"), "bad input"

The package is never imported: a class is the package's exception class when its bases are,
through the module's imports, built-in exception types or such classes (``ast`` only). The
site records the class's qualified name and its nearest built-in base, which the launcher
raises when the class can no longer be imported (``runtime.exceptions``).

A message is a string literal, a module-level string constant (imported ones too), an
f-string or a ``+`` of those whose parts are all compile-time constants.
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass

from ..discover import UNFOLDABLE, ModuleInfo, Package
from .rules import Reject

EXCEPTIONS = {
    n
    for n in dir(builtins)
    if isinstance(getattr(builtins, n), type) and issubclass(getattr(builtins, n), Exception)
}
_MAX_DEPTH = 32  # constant chains: a cycle is not a constant
_NOT_EXCEPTION = "raise a built-in exception type (ValueError, IndexError, ...)"
_NOT_EXCEPTION_HINT = "or a class of the package that derives from one"
NOT_CONSTANT = "exceptions take one constant string message in kernels"
NOT_CONSTANT_HINT = 'raise ValueError("x must be positive")'


@dataclass(frozen=True)
class ExceptionClass:
    name: str  # the site's type: "ValueError", or the qualified "pkg.errors.BadInput"
    base: str | None = None  # a package class's nearest built-in base; None for a built-in


def exception_class(pkg: Package, mod: ModuleInfo, node: ast.expr) -> ExceptionClass:
    """The class ``raise node`` raises (``node`` without its call), or a :class:`Reject`."""
    if isinstance(node, (ast.Name, ast.Attribute)):
        sym = pkg.resolve_expr(mod, node)
        if sym is None and isinstance(node, ast.Name) and node.id in EXCEPTIONS:
            return ExceptionClass(node.id)
        if sym is not None and sym.kind == "class":
            return _package_class(pkg, *sym.value, ())
    raise Reject(_NOT_EXCEPTION, _NOT_EXCEPTION_HINT)


def _package_class(pkg: Package, mod: ModuleInfo, cdef: ast.ClassDef, seen: tuple):
    name = f"{mod.name}.{cdef.name}"
    if cdef in seen:
        raise Reject(f"'{name}' derives from itself")
    for stmt in cdef.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name in (
            "__init__",
            "__new__",
        ):
            raise Reject(
                f"exception class '{name}' defines {stmt.name}",
                "kernels raise exception classes that take one message, as the built-in "
                "ones do; remove the method",
            )
    if cdef.keywords or not cdef.bases:
        raise Reject(f"'{name}' is not an exception class", _NOT_EXCEPTION_HINT)
    bases = []
    for b in cdef.bases:
        sym = pkg.resolve_expr(mod, b) if isinstance(b, (ast.Name, ast.Attribute)) else None
        if sym is None and isinstance(b, ast.Name) and b.id in EXCEPTIONS:
            bases.append(b.id)
        elif sym is not None and sym.kind == "class":
            bases.append(_package_class(pkg, *sym.value, (*seen, cdef)).base)
        else:
            raise Reject(
                f"'{name}' is not an exception class: its base '{ast.unparse(b)}' is not one",
                _NOT_EXCEPTION_HINT,
            )
    return ExceptionClass(name, bases[0])


def constant_message(pkg: Package, mod: ModuleInfo, node: ast.expr, depth: int = 0) -> str:
    """The string ``node`` always is, or a :class:`Reject`."""
    if depth > _MAX_DEPTH:
        raise Reject(NOT_CONSTANT, NOT_CONSTANT_HINT)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return constant_message(pkg, mod, node.left, depth + 1) + constant_message(
            pkg, mod, node.right, depth + 1
        )
    if isinstance(node, ast.JoinedStr):
        return "".join(_fstring_part(pkg, mod, v, depth + 1) for v in node.values)
    found = _module_constant(pkg, mod, node)
    if found is not None:
        return constant_message(pkg, *found, depth + 1)
    raise Reject(NOT_CONSTANT, NOT_CONSTANT_HINT)


def _fstring_part(pkg: Package, mod: ModuleInfo, v: ast.expr, depth: int) -> str:
    if not isinstance(v, ast.FormattedValue):
        return constant_message(pkg, mod, v, depth)
    try:
        value = constant_message(pkg, mod, v.value, depth)
    except Reject:
        value = pkg.fold(mod, v.value)
        if value is UNFOLDABLE:
            raise Reject(
                f"'{ast.unparse(v.value)}' is not a compile-time constant",
                "an exception message is known when the package is built",
            ) from None
    value = {115: str, 114: repr, 97: ascii}.get(v.conversion, lambda x: x)(value)
    spec = constant_message(pkg, mod, v.format_spec, depth) if v.format_spec else ""
    try:
        return format(value, spec)
    except (ValueError, TypeError) as e:
        raise Reject(f"bad format in the message: {e}") from None


def _module_constant(pkg: Package, mod: ModuleInfo, node: ast.expr, depth: int = 0):
    """A Name or ``module.NAME`` that is a module-level constant: (its module, its value's
    expression), through the module's imports; None otherwise."""
    if depth > _MAX_DEPTH:
        return None
    if isinstance(node, ast.Attribute):
        base = pkg.resolve_expr(mod, node.value)
        if base is None or base.kind != "module":
            return None
        return _module_constant(pkg, base.value, ast.Name(node.attr, ast.Load()), depth + 1)
    if not isinstance(node, ast.Name):
        return None
    if node.id in mod.constants and node.id not in mod.functions:
        return mod, mod.constants[node.id]
    imp = mod.imports.get(node.id)
    if imp is not None and imp[0] == "attr" and imp[1] in pkg.modules:
        target = pkg.modules[imp[1]]
        return _module_constant(pkg, target, ast.Name(imp[2], ast.Load()), depth + 1)
    return None
