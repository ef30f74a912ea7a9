"""Symbol names: a function's qualname and types → one name that every object format takes.

    >>> mangle_qualname("example.kernels.saxpy")         # plain names read as themselves
    'example__kernels__saxpy'
    >>> mangle_qualname("m.a__b"), mangle_qualname("m__a.b")
    ('m__a$u005f$u005fb', 'm$u005f$u005fa__b')
    >>> mangle_qualname("pkg.ядро")
    'pkg__$u044f$u0434$u0440$u043e'
    >>> from gpuaot.lang.types import array_of, f32, i64, tuple_of
    >>> mangle_types((f32, array_of(f32, 2, "A"), tuple_of([i64, f32])))
    'f32_Array_f32_2A_Ti64_f32E'

The alphabet is ``[A-Za-z0-9_$]`` (plus ``.`` in internal names, which LLVM's NVPTX backend
rewrites): PTX identifiers allow nothing else, and LLVM aborts the process ("Symbol name
with unsupported characters") on a kernel named ``ядро``. The encoding is injective, so two
functions never meet at link time whatever their modules and names:

- a qualname's parts are joined with ``__``. Inside a part, ASCII letters and digits stay
  (a digit not first); an ``_`` stays when both its neighbours are characters other than
  ``_`` (``block_sum`` reads as itself); every other character — a non-ASCII letter or
  digit, an ``_`` at either end of a part or next to another ``_`` — becomes ``$u`` and 4
  hex digits (``$U`` and 8 beyond the BMP), as Python spells the escape. So a literal ``__``
  only ever separates parts, and ``$`` only ever starts an escape or a marker;
- a kernel with several signatures adds ``$s`` and its argument types (:func:`mangle_types`,
  a prefix-free code over the types' structure); a ``@device`` specialisation adds ``.`` and
  its argument types (an internal name: it never leaves its module); a function or a type
  passed as an argument (``typed.ValueArg``) reads ``K``, its mangled name's length, ``_``
  and that name (``bump.K11_gatomic_add_K4_gu32_...``), so each value is its own symbol;
- the targets wrap that name and stay injective: ``gpuaot_cpu_<name>.<level tag>``,
  ``gpuaot_host_<name>.<level tag>`` on the CPU, ``<name>_s<spec>`` as a GPU ``.entry``
  (the suffix is always last, so it splits off uniquely). ``driver.check_symbols`` checks
  the result at build time all the same.

Users see the Python names, never these: the manifest keeps each function's qualname, and
``gpuaot inspect`` and every diagnostic print that.
"""

from __future__ import annotations

from ...lang.types import ArrayType, Scalar, TupleType, Type

SEPARATOR = "__"
SIGNATURE_MARK = "$s"


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"$u{code:04x}" if code <= 0xFFFF else f"$U{code:08x}"


def mangle_part(part: str) -> str:
    """One identifier: letters, digits and lone inner underscores kept, the rest escaped.

    A leading digit (a package directory named ``3d``) is escaped too: PTX names start with
    a letter, ``_`` or ``$``.
    """
    out = []
    last = len(part) - 1
    for k, ch in enumerate(part):
        if ch.isascii() and (ch.isalpha() or ch.isdigit() and k > 0):
            out.append(ch)
        elif ch == "_" and 0 < k < last and part[k - 1] != "_" and part[k + 1] != "_":
            out.append(ch)
        else:
            out.append(_escape(ch))
    return "".join(out)


def mangle_qualname(qualname: str) -> str:
    return SEPARATOR.join(mangle_part(p) for p in qualname.split("."))


def _mangle_type(t: Type) -> str:
    if isinstance(t, ArrayType):
        return f"Array_{_mangle_type(t.dtype)}_{t.ndim}" + ("A" if t.layout == "A" else "")
    if isinstance(t, TupleType):
        return "T" + "_".join(_mangle_type(i) for i in t.items) + "E"
    if isinstance(t, Scalar):
        # Lower-case letters and digits ("f32", "bool"; "int literal" → "intliteral"), so
        # the first character tells a scalar from an Array, a Tuple or None.
        return t.name.replace(" ", "")
    key = getattr(t, "key", None)  # a function or type passed as a value (typed.ValueArg)
    if key is not None:
        # K, the length, _, the mangled name: prefix-free whatever the name holds.
        m = mangle_qualname(key)
        return f"K{len(m)}_{m}"
    return t.name  # None


def mangle_types(types) -> str:
    """Argument types, ``_``-joined; tuples are bracketed (``T…E``) so nesting survives."""
    return "_".join(_mangle_type(t) for t in types)


def function_symbol(qualname: str, kind: str, types, several_signatures: bool) -> str:
    """The name of one specialisation (kernels and host functions: an entry point's base)."""
    base = mangle_qualname(qualname)
    if kind in ("kernel", "host"):
        return f"{base}{SIGNATURE_MARK}{mangle_types(types)}" if several_signatures else base
    return f"{base}.{mangle_types(types)}"


def gpu_entry_symbol(symbol: str, spec: int) -> str:
    """A kernel's ``.entry`` name: ``_s<spec>`` is always last, so the pair stays unique."""
    return f"{symbol}_s{spec}"
