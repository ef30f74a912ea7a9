"""Walk a package without importing it: modules, decorated functions, imports, constants.

    >>> pkg = discover("fixtures/example")          # a directory, or an importable name
    >>> [f.qualname for f in pkg.functions() if f.kind == "kernel"]
    ['example.kernels.saxpy', ...]
    >>> pkg.resolve(pkg.modules["example.kernels"], "SCALE")
    Symbol(kind='const', value=2.5)

Only ``ast`` reads the sources (DESIGN invariant 1): a module whose import would have side
effects builds without them. Every name a kernel can use resolves through :meth:`resolve`,
which follows the module's own import statements (any form: ``import gpuaot as ga``,
``from gpuaot import kernel as k``, ``from .util import helper``, ``import pkg.mod as m``).

gpuaot's own library modules of kernel-language functions (:data:`LIBRARY_MODULES`:
``gpuaot.random``) resolve too: ``from gpuaot.random import xoroshiro128p_next`` reads
``gpuaot/random.py`` of the installed gpuaot with ``ast`` on first use and gives its
``@device`` functions, compiled into the package like its own helpers. They stay out of
``Package.modules`` (the package's files: manifest, build record, wheels).
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..bundle.manifest import source_sha256
from ..errors import BuildError, CompileError, Diagnostics, Location
from .folding import _UNFOLDABLE, MATH_CONSTANTS, fold_expr
from .folding import NOT_LOCAL as NOT_LOCAL  # (re-exported: the typer reads them here)
from .folding import UNFOLDABLE as UNFOLDABLE
from .frontend.nesting import MAX_DEPTH, recursion_room, too_deep
from .sources import TOO_DEEP_HINT, decode_source, parse_source, show_lines, source_lines

DECORATORS = {"kernel", "device", "device_only", "host", "overlay"}
# The builtins kernels may call (their meanings: compiler/ops/builtin.py; ``range`` and
# ``enumerate`` only as a for-loop's iterable).
BUILTINS = {
    "range", "enumerate", "len", "abs", "min", "max", "int", "float", "bool", "round", "divmod",
    "pow", "complex",
}  # fmt: skip
SKIP_DIRS = {"_gpuaot", "__pycache__", "build", "dist"}
# gpuaot's modules whose @device functions packages may call (parsed, never imported).
LIBRARY_MODULES = ("gpuaot.random",)
_GPUAOT_DIR = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Symbol:
    kind: str  # func, const, module, gpuaot, gpuaot_module, [c]math, [c]math_module, builtin
    value: object = None


@dataclass(eq=False)
class FuncInfo:
    module: ModuleInfo
    name: str
    kind: str  # kernel, device, device_only, host, overlay
    node: ast.FunctionDef
    options: dict = field(default_factory=dict)
    overlay_of: ast.expr | None = None
    overlay_target: str | None = None

    @property
    def qualname(self) -> str:
        return f"{self.module.name}.{self.name}"

    @property
    def source(self) -> str:
        return self.module.segment(self.node)

    @property
    def params(self) -> list[ast.arg]:
        return self.node.args.args

    def loc(self, node: ast.AST | None = None) -> Location:
        return self.module.loc(node or self.node)

    def __repr__(self) -> str:
        return f"<{self.kind} {self.qualname}>"


@dataclass(eq=False)
class ModuleInfo:
    name: str
    path: Path
    relpath: str  # as diagnostics print it: relative to the directory build ran from
    source: str  # decoded as CPython decodes source files (PEP 263, BOM, universal newlines)
    data: bytes  # the file as read: what the manifest's sha256 is of
    tree: ast.Module
    is_package: bool
    lines: list[str] = field(default_factory=list, repr=False)  # source_lines(source)
    functions: dict[str, FuncInfo] = field(default_factory=dict)
    constants: dict[str, ast.expr] = field(default_factory=dict)
    classes: dict[str, ast.ClassDef] = field(default_factory=dict)  # exceptions: frontend.raises
    # local name -> ("module", dotted) | ("attr", dotted module, attribute)
    imports: dict[str, tuple] = field(default_factory=dict)
    dotted_imports: set[str] = field(default_factory=set)  # each `import a.b.c` (binds `a`)

    @property
    def sha256(self) -> str:
        """One definition with the run time's freshness check: ``source_sha256`` of the file."""
        return source_sha256(self.data)

    def loc(self, node: ast.AST) -> Location:
        line, col = getattr(node, "lineno", 1), getattr(node, "col_offset", 0)
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        if not text.isascii():  # ast counts UTF-8 bytes; diagnostics count characters
            col = len(text.encode("utf-8")[:col].decode("utf-8", "ignore"))
        return Location(self.relpath, line, col)

    def segment(self, node: ast.AST) -> str:
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        return "".join(self.lines[start - 1 : node.end_lineno])


class Package:
    def __init__(self, name: str, root: Path):
        self.name = name
        self.root = root
        self.modules: dict[str, ModuleInfo] = {}
        # target -> qualname of the replaced function -> overlay
        self.overlays: dict[str, dict[str, FuncInfo]] = {"cpu": {}, "gpu": {}}
        self._const_cache: dict[tuple[str, str], object] = {}
        self._aliasing: set[tuple[str, str]] = set()  # cycle guard of _alias
        self.library: dict[str, ModuleInfo] = {}  # the LIBRARY_MODULES read so far

    def functions(self):
        for m in self.modules.values():
            yield from m.functions.values()

    def function(self, qualname: str) -> FuncInfo | None:
        mod, _, name = qualname.rpartition(".")
        m = self.modules.get(mod)
        return m.functions.get(name) if m else None

    # ------------------------------------------------------------------ name resolution

    def resolve(self, module: ModuleInfo, name: str, _seen=None) -> Symbol | None:
        if name in module.functions:
            return Symbol("func", module.functions[name])
        if name in module.constants:
            alias = self._alias(module, name)
            return alias if alias is not None else Symbol("const", self.constant(module, name))
        if name in module.classes:
            return Symbol("class", (module, module.classes[name]))
        imp = module.imports.get(name)
        if imp is not None:
            return self._resolve_import(imp, _seen or set())
        if name in BUILTINS:
            return Symbol("builtin", name)
        # A package's submodule is reachable as an attribute once it exists.
        sub = f"{module.name}.{name}" if module.is_package else None
        if sub and sub in self.modules:
            return Symbol("module", self.modules[sub])
        return None

    def _resolve_import(self, imp: tuple, seen: set) -> Symbol | None:
        if imp[0] == "module":
            dotted = imp[1]
            if dotted == "gpuaot":
                return Symbol("gpuaot_module")
            if dotted in ("math", "cmath"):
                return Symbol(f"{dotted}_module")
            if dotted in self.modules:
                return Symbol("module", self.modules[dotted])
            lib = self.library_module(dotted)
            return Symbol("module", lib) if lib is not None else None
        _, dotted, attr = imp
        lib = self.library_module(dotted)
        if lib is not None:  # from gpuaot.random import xoroshiro128p_next
            return self.resolve(lib, attr, seen)
        lib = self.library_module(f"{dotted}.{attr}")
        if lib is not None:  # from gpuaot import random
            return Symbol("module", lib)
        if dotted == "gpuaot" or dotted.startswith("gpuaot."):
            return Symbol("gpuaot", attr)
        if dotted in ("math", "cmath"):
            return Symbol(dotted, attr)
        target = self.modules.get(dotted)
        if target is None:
            return None
        if (dotted, attr) in seen:
            return None
        seen.add((dotted, attr))
        found = self.resolve(target, attr, seen)
        if found is None and f"{dotted}.{attr}" in self.modules:
            return Symbol("module", self.modules[f"{dotted}.{attr}"])
        return found

    def resolve_expr(self, module: ModuleInfo, node: ast.expr) -> Symbol | None:
        """A Name or dotted Attribute chain (``ga.kernel``, ``util.helper``, ``math.pi``)."""
        if isinstance(node, ast.Name):
            return self.resolve(module, node.id)
        if isinstance(node, ast.Attribute):
            base = self.resolve_expr(module, node.value)
            if base is None:
                return None
            if base.kind == "gpuaot_module":
                dotted = f"gpuaot.{node.attr}"
                if dotted in module.dotted_imports and dotted in LIBRARY_MODULES:
                    return Symbol("module", self.library_module(dotted))
                return Symbol("gpuaot", node.attr)
            if base.kind in ("math_module", "cmath_module"):
                return Symbol(base.kind[: -len("_module")], node.attr)
            if base.kind == "module":
                return self.resolve(base.value, node.attr)
        return None

    def library_module(self, dotted: str) -> ModuleInfo | None:
        """One of gpuaot's :data:`LIBRARY_MODULES`, parsed and scanned on first use."""
        if dotted not in LIBRARY_MODULES:
            return None
        mod = self.library.get(dotted)
        if mod is None:
            mod = self.library[dotted] = _read_library(dotted)
            diag = Diagnostics()
            _scan_module(self, mod, diag)
            if diag.errors:  # gpuaot's own source: a bug in gpuaot, not the user's
                raise RuntimeError(f"internal error: {dotted} does not scan: {diag.errors[0]}")
        return mod

    # ------------------------------------------------------------------ constants

    def constant(self, module: ModuleInfo, name: str):
        key = (module.name, name)
        if key not in self._const_cache:
            self._const_cache[key] = _UNFOLDABLE  # cycle guard
            self._const_cache[key] = self.fold(module, module.constants[name])
        return self._const_cache[key]

    def _alias(self, module: ModuleInfo, name: str) -> Symbol | None:
        """``nbtype = f32``, ``add = ga.atomic_add``, ``sqrt = math.sqrt``: a module-level name
        bound to a gpuaot type or intrinsic, a math function or a function of the package
        resolves as what it names (a number stays a constant: see :meth:`constant`)."""
        node = module.constants[name]
        key = (module.name, name)
        if not isinstance(node, (ast.Name, ast.Attribute)) or key in self._aliasing:
            return None
        self._aliasing.add(key)
        try:
            sym = self.resolve_expr(module, node)
        finally:
            self._aliasing.discard(key)
        if sym is None or sym.kind not in ("func", "gpuaot", "math", "cmath"):
            return None
        if sym.value == "WARP_SIZE" or sym.value in MATH_CONSTANTS:
            return None
        return sym

    def fold(self, module: ModuleInfo, node: ast.expr, local=None):
        """Evaluate a module-level constant expression, or return ``_UNFOLDABLE``.

        ``local(name)`` (optional) gives a function-local constant's value first:
        :data:`NOT_LOCAL` for a name that is not local, ``_UNFOLDABLE`` for a local variable.
        """
        with recursion_room():
            return fold_expr(self, module, node, local)


# ---------------------------------------------------------------------- walking


def find_package(spec: str) -> tuple[str, Path]:
    """A directory, or an importable top-level name located without importing it."""
    path = Path(spec)
    if path.is_dir():
        path = path.resolve()
        if not (path / "__init__.py").is_file():
            raise BuildError(f"{spec}: not a Python package (no __init__.py)")
        return path.name, path
    if os.sep in spec or spec.endswith(".py") or "." in spec and not spec.isidentifier():
        raise BuildError(f"{spec}: no such package directory")
    # PathFinder searches sys.path for a top-level name without importing anything.
    found = importlib.machinery.PathFinder.find_spec(spec, [os.getcwd(), *sys.path])
    if found is None or not found.submodule_search_locations:
        raise BuildError(
            f"{spec}: no such package (give a directory, or the name of an installed package)"
        )
    return spec, Path(list(found.submodule_search_locations)[0]).resolve()


def discover(spec: str, diag: Diagnostics | None = None) -> Package:
    name, root = find_package(spec)
    diag = diag or Diagnostics()
    pkg = Package(name, root)
    display_base = Path.cwd()
    for path in _python_files(root):
        rel = path.relative_to(root).with_suffix("")
        parts = [name, *rel.parts]
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modname = ".".join(parts)
        try:
            display = os.path.relpath(path, display_base)
        except ValueError:
            display = str(path)
        if display.startswith(".." + os.sep + ".."):
            display = str(path)
        data = path.read_bytes()
        try:
            source = decode_source(data, display)
        except CompileError as e:
            show_lines(display, path, source_lines(data.decode("utf-8", "backslashreplace")))
            diag.error(e)
            continue
        lines = source_lines(source)
        show_lines(display, path, lines)
        try:
            tree = parse_source(source, display)
        except CompileError as e:
            diag.error(e)
            continue
        mod = ModuleInfo(modname, path, display, source, data, tree, is_package, lines)
        _drop_too_deep(mod, diag)
        pkg.modules[modname] = mod
    with recursion_room():  # folding and name resolution recurse over the AST
        for mod in pkg.modules.values():
            _scan_module(pkg, mod, diag)
        _link_overlays(pkg, diag)
    return pkg


def _read_library(dotted: str) -> ModuleInfo:
    """A library module from the installed gpuaot, named in diagnostics as ``gpuaot/x.py``."""
    rel = Path(*dotted.split(".")[1:]).with_suffix(".py")
    path = _GPUAOT_DIR / rel
    display = f"gpuaot/{rel.as_posix()}"
    data = path.read_bytes()
    source = decode_source(data, display)
    lines = source_lines(source)
    show_lines(display, path, lines)
    tree = parse_source(source, display)
    return ModuleInfo(dotted, path, display, source, data, tree, False, lines)


def _drop_too_deep(mod: ModuleInfo, diag: Diagnostics) -> None:
    """Report statements nested beyond what the recursive stages take, and leave them out."""
    deep = too_deep(mod.tree)
    for _, node in deep:
        diag.error(
            CompileError(
                f"nested too deeply: gpuaot takes up to {MAX_DEPTH} levels of expressions "
                "and blocks",
                mod.loc(node),
                hint=TOO_DEEP_HINT,
            )
        )
    dropped = {id(stmt) for stmt, _ in deep}
    mod.tree.body = [s for s in mod.tree.body if id(s) not in dropped]


def _python_files(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in SKIP_DIRS
            and not d.startswith(".")
            and (Path(dirpath, d, "__init__.py").is_file())
        )
        for f in sorted(filenames):
            if f.endswith(".py"):
                yield Path(dirpath, f)


def _absolute(mod: ModuleInfo, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = mod.name.split(".")
    if not mod.is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _scan_module(pkg: Package, mod: ModuleInfo, diag: Diagnostics) -> None:
    for stmt in mod.tree.body:
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.asname:
                    mod.imports[alias.asname] = ("module", alias.name)
                else:
                    top = alias.name.split(".")[0]
                    mod.imports[top] = ("module", top)
                    mod.dotted_imports.add(alias.name)
        elif isinstance(stmt, ast.ImportFrom):
            base = _absolute(mod, stmt.level, stmt.module)
            for alias in stmt.names:
                if alias.name == "*":
                    continue
                mod.imports[alias.asname or alias.name] = ("attr", base, alias.name)
        elif (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
        ):
            mod.constants[stmt.targets[0].id] = stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value:
            mod.constants[stmt.target.id] = stmt.value
        elif isinstance(stmt, ast.ClassDef):
            mod.classes[stmt.name] = stmt
    # Functions after imports, so decorators resolve whatever order the module uses.
    for stmt in mod.tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            _scan_function(pkg, mod, stmt, diag)


def _decorator_kind(pkg: Package, mod: ModuleInfo, dec: ast.expr):
    call = dec if isinstance(dec, ast.Call) else None
    sym = pkg.resolve_expr(mod, call.func if call else dec)
    if sym is None or sym.kind != "gpuaot" or sym.value not in DECORATORS:
        return None, None
    return sym.value, call


def _scan_function(pkg: Package, mod: ModuleInfo, node, diag: Diagnostics) -> None:
    kinds = [(k, c, d) for d in node.decorator_list for k, c in [_decorator_kind(pkg, mod, d)] if k]
    if not kinds:
        return
    if len(kinds) > 1:
        diag.error(
            CompileError(
                f"'{node.name}' has more than one gpuaot decorator",
                mod.loc(kinds[1][2]),
                hint="a function is one of kernel, device, device_only, host or overlay",
            )
        )
        return
    kind, call, dec = kinds[0]
    if isinstance(node, ast.AsyncFunctionDef):
        diag.error(CompileError("async functions cannot be compiled", mod.loc(node)))
        return
    info = FuncInfo(mod, node.name, kind, node)
    if call is not None:
        if kind == "overlay":
            if not call.args:
                diag.error(
                    CompileError(
                        "overlay needs the function it replaces",
                        mod.loc(call),
                        hint='@overlay(fn, target="cpu")',
                    )
                )
                return
            info.overlay_of = call.args[0]
            info.overlay_target = "gpu"
            for kw in call.keywords:
                if kw.arg == "target":
                    info.overlay_target = getattr(kw.value, "value", None)
            if info.overlay_target not in ("cpu", "gpu"):
                diag.error(
                    CompileError(
                        'overlay target must be "cpu" or "gpu"',
                        mod.loc(call),
                        hint='@overlay(fn, target="cpu")',
                    )
                )
                return
        else:
            for kw in call.keywords:
                if kw.arg in ("debug", "fastmath", "fma"):
                    value = pkg.fold(mod, kw.value)
                    if not isinstance(value, bool):
                        diag.error(
                            CompileError(f"'{kw.arg}' must be True or False", mod.loc(kw.value))
                        )
                        continue
                    info.options[kw.arg] = value
                elif kw.arg == "signatures" and kind == "kernel":
                    info.options["signatures"] = kw.value
                else:
                    diag.error(
                        CompileError(f"unknown option '{kw.arg}' for @{kind}", mod.loc(kw.value))
                    )
    elif kind == "overlay":
        diag.error(
            CompileError(
                "overlay needs the function it replaces",
                mod.loc(dec),
                hint='@overlay(fn, target="cpu")',
            )
        )
        return
    mod.functions[node.name] = info


def _link_overlays(pkg: Package, diag: Diagnostics) -> None:
    """After every module is scanned, so an overlay may live anywhere in the package."""
    for info in list(pkg.functions()):
        if info.kind != "overlay":
            continue
        target = pkg.resolve_expr(info.module, info.overlay_of)
        if (
            target is None
            or target.kind != "func"
            or target.value.kind not in ("device", "device_only")
        ):
            diag.error(
                CompileError(
                    "overlay must name a @device or @device_only function of this package",
                    info.loc(info.overlay_of),
                )
            )
            continue
        table = pkg.overlays[info.overlay_target]
        if target.value.qualname in table:
            diag.error(
                CompileError(
                    f"second {info.overlay_target} overlay of '{target.value.qualname}'",
                    info.loc(),
                    notes=[f"first: {table[target.value.qualname].loc()}"],
                )
            )
            continue
        table[target.value.qualname] = info
