"""Annotations and signatures: ``x: Array[f32, 2]`` → a type, a function's parameters → types.

parse_annotation(pkg, func, node)   # Array[f32, 2, "A"], f32, "i64", int → the Type
annotated_params(pkg, func)         # ((f32, Array[f32, 1]), [errors...])
"""

from __future__ import annotations

import ast

from ...errors import CompileError
from ...lang.types import (
    BY_NAME,
    MAX_RANK,
    Scalar,
    TupleType,
    Type,
    array_of,
    boolean,
    c128,
    f64,
    i64,
)
from ..discover import FuncInfo, Package
from .nesting import expr_too_deep, python_parser_depth, with_recursion_room
from .rules import Reject


@with_recursion_room
def annotated_params(pkg: Package, func: FuncInfo) -> tuple[tuple[Type, ...], list[CompileError]]:
    types, errors = [], []
    for a in func.params:
        if a.annotation is None:
            errors.append(
                CompileError(
                    f"parameter '{a.arg}' of {func.kind} '{func.name}' needs a type annotation",
                    func.loc(a),
                    hint=f"e.g. '{a.arg}: f32' or '{a.arg}: Array[f32]'",
                )
            )
            continue
        try:
            types.append(parse_annotation(pkg, func, a.annotation))
        except Reject as r:
            errors.append(CompileError(r.message, func.loc(a.annotation), hint=r.hint))
    args = func.node.args
    if args.vararg or args.kwarg or args.kwonlyargs or args.defaults or args.posonlyargs:
        errors.append(
            CompileError(
                "kernels take plain positional parameters only",
                func.loc(),
                hint="remove *args, **kwargs and defaults",
            )
        )
    return tuple(types), errors


@with_recursion_room
def parse_annotation(pkg: Package, func: FuncInfo, node: ast.expr) -> Type:
    mod = func.module
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
        try:
            with python_parser_depth():
                node = ast.parse(text, mode="eval").body
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            node = None
        if node is None or expr_too_deep(node):
            shown = text if len(text) <= 60 else text[:57] + "..."
            raise Reject(f"cannot read the annotation {shown!r}")
    if isinstance(node, ast.Name) and node.id in ("int", "float", "bool", "complex"):
        if pkg.resolve(mod, node.id) is not None and pkg.resolve(mod, node.id).kind != "builtin":
            pass
        else:
            return {"int": i64, "float": f64, "bool": boolean, "complex": c128}[node.id]
    if isinstance(node, ast.Subscript):
        base = pkg.resolve_expr(mod, node.value)
        if base is None or base.kind != "gpuaot" or base.value != "Array":
            raise Reject("only Array[...] can be subscripted in an annotation")
        params = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        dtype = parse_annotation(pkg, func, params[0])
        if not isinstance(dtype, Scalar):
            raise Reject("an Array's element type must be a scalar type")
        ndim, layout = 1, "C"
        if len(params) > 1:
            ndim = pkg.fold(mod, params[1])
            if not isinstance(ndim, int) or isinstance(ndim, bool) or not 1 <= ndim <= MAX_RANK:
                raise Reject(f"an Array's rank must be 1 to {MAX_RANK}")
        if len(params) > 2:
            layout = params[2].value if isinstance(params[2], ast.Constant) else None
            if layout not in ("C", "A"):
                raise Reject('an Array\'s layout must be "C" or "A"')
        if len(params) > 3:
            raise Reject("Array[dtype, ndim, layout] takes at most three parameters")
        return array_of(dtype, ndim, layout)
    sym = pkg.resolve_expr(mod, node)
    if sym is not None and sym.kind == "gpuaot" and sym.value in BY_NAME:
        return BY_NAME[sym.value]
    raise Reject(
        f"'{ast.unparse(node)}' is not a gpuaot type", hint="use f32, i64, bool, Array[f32, 2], ..."
    )


def castable(src: Type, dst: Type) -> bool:
    if src is dst:
        return True
    if isinstance(src, Scalar) and isinstance(dst, Scalar):
        return dst.is_complex or not src.is_complex  # z.real, not z, makes a real
    if isinstance(src, TupleType) and isinstance(dst, TupleType):
        return len(src.items) == len(dst.items) and all(
            castable(a, b) for a, b in zip(src.items, dst.items)
        )
    return False
