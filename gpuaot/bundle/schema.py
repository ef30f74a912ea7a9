"""The manifest's schema: what :mod:`.manifest`'s reader checks before it builds the
dataclasses, so that a damaged or hostile manifest is a :class:`ManifestError` naming the
first bad field, never a ``KeyError`` or a wrong launch later.

    >>> validate({**m, "kernels": [{**k, "specializations": [{"cpu": []}]}]}, 0)  # doctest: +SKIP
    ManifestError: manifest field 'kernels[0].specializations[0].params' is missing

json only: no compiler imports.
"""

from __future__ import annotations

import json

from .abi import FATBIN_SECTION, STRIDED_LAYOUT, array_abi, scalar_abi
from .elfcheck import DamagedBundle

FORMAT = "gpuaot-bundle"
VERSION = 2  # 2: CPU variants (cpu_variants; per-level symbols)
# The scalar types a parameter or result can have: what the run time's ctypes table knows
# (lang.types.SCALARS; a test keeps the two equal without importing numpy here).
SCALAR_TYPES = frozenset(
    ["bool", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64"]
    + ["f16", "f32", "f64", "c64", "c128"]
)


class ManifestError(DamagedBundle):
    """The manifest breaks the schema; ``field`` is the path of the bad field."""

    def __init__(self, field: str | None, problem: str):
        self.field = field
        super().__init__(
            f"manifest field '{field}' {problem}" if field else f"the manifest {problem}"
        )


class _Nullable:
    """``schema``, or JSON null."""

    def __init__(self, schema):
        self.schema = schema


class _MapOf:
    """An object of any keys, each value of ``schema`` (module names, CPU levels)."""

    def __init__(self, schema):
        self.schema = schema


def _count(v, path: str) -> None:
    if type(v) is not int or v < 0:
        raise ManifestError(path, "must be a non-negative integer")


def _sha256(v, path: str) -> None:
    if not (isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)):
        raise ManifestError(path, "must be a sha256 (64 lowercase hex digits)")


def _scalar(v, path: str) -> None:
    if not isinstance(v, str) or v not in SCALAR_TYPES:
        raise ManifestError(path, f"must be a scalar type ({', '.join(sorted(SCALAR_TYPES))})")


def _relpath(v, path: str) -> None:
    """A module's file, relative to the directory that holds the package."""
    if not (isinstance(v, str) and v and "\0" not in v and not v.startswith("/")):
        raise ManifestError(path, "must be a relative file name")


def _symbol(v, path: str) -> None:
    """A symbol the run time looks up (``dlsym``, ``cuModuleGetFunction``): plain ASCII."""
    if not (isinstance(v, str) and v and v.isascii() and v.isprintable() and " " not in v):
        raise ManifestError(path, "must be a symbol name (printable ASCII, no spaces)")


def _ndim(v, path: str) -> None:
    if type(v) is not int or not 1 <= v <= 4:
        raise ManifestError(path, "must be an array rank from 1 to 4")


def _layout(v, path: str) -> None:
    if v not in ("C", "A"):
        raise ManifestError(path, 'must be "C" or "A"')


def _value_type(text: str, nesting: int = 0) -> bool:
    """A scalar or a tuple of them (tuples nest): what a host function can return."""
    text = text.strip()
    if text in SCALAR_TYPES:
        return True
    if nesting > 16 or not (text.startswith("(") and text.endswith(")")):
        return False
    items, depth, cur = [], 0, ""
    for ch in text[1:-1]:
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            return False
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    if len(items) > 1 and not items[-1].strip():
        items.pop()  # "(f64,)"
    return depth == 0 and all(_value_type(i, nesting + 1) for i in items)


def _returns(v, path: str) -> None:
    if not (isinstance(v, str) and (v == "None" or _value_type(v))):
        raise ManifestError(path, "must name a scalar type, a tuple of them, or None")


_SITE = {"type": str, "message": str, "file": str, "line": _count}
_ARRAY = {"dtype": _scalar, "ndim": _ndim, "layout": _layout}


def _param(p, path: str) -> None:
    """As ``manifest_writer`` writes it: name, type, abi; arrays add dtype, ndim and layout,
    and type and abi must agree with them (the run time marshals by them)."""
    _check(p, {"name": str, "type": str, "abi": [str]}, path)
    if any(key in p for key in _ARRAY):
        _check(p, _ARRAY, path)
        strided = p["layout"] == STRIDED_LAYOUT
        name = f"Array[{p['dtype']}, {p['ndim']}" + (', "A"]' if strided else "]")
        abi = array_abi(p["ndim"], p["layout"])
        if p["type"] != name:
            raise ManifestError(f"{path}.type", f"must be {name!r}, as dtype/ndim/layout say")
    else:
        _scalar(p["type"], f"{path}.type")
        abi = scalar_abi(p["type"])
    if p["abi"] != abi:
        raise ManifestError(f"{path}.abi", f"must be {abi} for a {p['type']} parameter")


_SYMBOLS = _MapOf(_symbol)  # CPU level -> symbol of that variant
_SPECIALIZATION = {
    "params": [_param],
    "cpu": _Nullable({"symbols": _SYMBOLS, "sites": [_SITE]}),
    "gpu": _Nullable({"symbol": _symbol, "image": _count, "sites": [_SITE]}),
    "gpu_only": _Nullable(str),
}
SCHEMA = {
    "format": str,
    "version": int,
    "compiler": str,
    "package": str,
    "platform": str,
    "modules": _MapOf({"file": _relpath, "sha256": _sha256}),
    "options": {"debug": bool, "cpu": bool, "gpu": bool},
    "cpu_variants": [
        {
            "level": str,
            "tag": str,
            "cpu": str,
            "features": str,
            "requires": [str],
            "portable": bool,
        }
    ],
    "kernels": [
        {"name": str, "module": str, "qualname": str, "specializations": [_SPECIALIZATION]}
    ],
    "host_functions": [
        {
            "name": str,
            "module": str,
            "qualname": str,
            "params": [_param],
            "returns": _returns,
            "symbols": _SYMBOLS,
            "sites": [_SITE],
        }
    ],
    "architectures": [str],
    "ptx_arch": _Nullable(str),
    "images": [
        {
            "kind": str,
            "offset": _count,
            "size": _count,
            "sha256": _sha256,
            "entries": [{"kind": str, "arch": str, "size": _count}],
        }
    ],
}
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false"}


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _check(value, schema, path: str) -> None:
    """``value`` against ``schema``: a Python type, ``{key: schema}`` (those keys required;
    others allowed), ``[schema]`` (a list of), :class:`_Nullable`, :class:`_MapOf`, or a
    function ``(value, path)`` that raises."""
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise ManifestError(path, "must be an object")
        for key, sub in schema.items():
            where = f"{path}.{key}" if path else key
            if key not in value:
                raise ManifestError(where, "is missing")
            _check(value[key], sub, where)
    elif isinstance(schema, list):
        if not isinstance(value, list):
            raise ManifestError(path, "must be an array")
        for n, item in enumerate(value):
            _check(item, schema[0], f"{path}[{n}]")
    elif isinstance(schema, _Nullable):
        if value is not None:
            _check(value, schema.schema, path)
    elif isinstance(schema, _MapOf):
        if not isinstance(value, dict):
            raise ManifestError(path, "must be an object")
        for key, item in value.items():
            _check(item, schema.schema, f"{path}[{json.dumps(key)}]")
    elif isinstance(schema, type):
        # bool is an int in Python, not in the manifest
        if not isinstance(value, schema) or (schema is int and isinstance(value, bool)):
            raise ManifestError(path, f"must be {_TYPE_NAMES[schema]}")
    else:
        schema(value, path)


def validate(m, fatbin_size: int | None) -> dict:
    """Check ``m`` against :data:`SCHEMA` and its references: every ``symbols`` mapping names
    the levels of ``cpu_variants``, every GPU entry an image, every image lies inside the
    fatbin section of ``fatbin_size`` bytes (None: the bundle has none). Returns ``m``;
    raises :class:`ManifestError` naming the first bad field.
    """
    if not isinstance(m, dict):
        raise ManifestError(None, "is not a JSON object")
    if m.get("format") != FORMAT:
        raise ManifestError("format", f"must be {FORMAT!r}: this is not a gpuaot manifest")
    if m.get("version") != VERSION:
        raise ManifestError(
            "version", f"is {_short(m.get('version'))}; this gpuaot reads {VERSION}"
        )
    _check(m, SCHEMA, "")
    _check_levels(m)
    _check_references(m, fatbin_size)
    if m["ptx_arch"] is not None and m["ptx_arch"] not in m["architectures"]:
        raise ManifestError(
            "ptx_arch", f"is {_short(m['ptx_arch'])}, which is not in architectures"
        )
    return m


def _check_levels(m: dict) -> None:
    levels = [v["level"] for v in m["cpu_variants"]]
    for n, level in enumerate(levels):
        if level in levels[:n]:
            raise ManifestError(f"cpu_variants[{n}].level", f"repeats {_short(level)}")
    if not levels:
        # No variants but CPU code: the run time's UnsupportedCPUError and check-wheel's
        # no-cpu-variants finding say more about that than a schema error would.
        return
    maps = [
        (f"host_functions[{n}].symbols", h["symbols"]) for n, h in enumerate(m["host_functions"])
    ]
    for n, k in enumerate(m["kernels"]):
        for j, s in enumerate(k["specializations"]):
            if s["cpu"] is not None:
                maps.append((f"kernels[{n}].specializations[{j}].cpu.symbols", s["cpu"]["symbols"]))
    for path, symbols in maps:
        if sorted(symbols) != sorted(levels):
            raise ManifestError(
                path,
                f"must map the levels of cpu_variants ({', '.join(levels)}), "
                f"not {', '.join(symbols) or 'none'}",
            )


def _check_references(m: dict, fatbin_size: int | None) -> None:
    """Each kernel has a specialization, each GPU entry's image exists, each image lies in
    the fatbin section."""
    images = m["images"]
    for n, k in enumerate(m["kernels"]):
        if not k["specializations"]:
            raise ManifestError(f"kernels[{n}].specializations", "must not be empty")
        for j, s in enumerate(k["specializations"]):
            if s["gpu"] is not None and s["gpu"].get("cooperative", True) is not True:
                raise ManifestError(
                    f"kernels[{n}].specializations[{j}].gpu.cooperative", "must be true or absent"
                )
            if s["gpu"] is not None and s["gpu"]["image"] >= len(images):
                raise ManifestError(
                    f"kernels[{n}].specializations[{j}].gpu.image",
                    f"is {s['gpu']['image']}, but the manifest has {len(images)} images",
                )
    for n, image in enumerate(images):
        start, end = image["offset"], image["offset"] + image["size"]
        if fatbin_size is None:
            raise ManifestError(
                f"images[{n}]", f"has no bytes: the bundle has no {FATBIN_SECTION} section"
            )
        if end > fatbin_size:
            raise ManifestError(
                f"images[{n}]",
                f"lies at bytes {start:,}..{end:,}, outside the {FATBIN_SECTION} section "
                f"({fatbin_size:,} bytes)",
            )
