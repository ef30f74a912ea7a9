"""Rules and the fast filter: the filter must find exactly what decoding every symbol finds."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from leaks_elfwriter import Sym, write_elf

from gpuaot.leaks.elf import ElfFile
from gpuaot.leaks.rules import DEFAULT_FORBID, Rules, glob_literal, glob_tokens
from gpuaot.leaks.symbols import PACKED_SEARCH_LIMIT, forbidden_symbols, is_real_symbol


@pytest.mark.parametrize(
    "glob,literal",
    [
        ("gpu_*", ("gpu_", True)),
        ("__assertfail", ("__assertfail", True)),
        ("*cuda*Launch", ("Launch", False)),
        ("?pu_*", ("pu_", False)),
        ("[gx]pu_*", ("pu_", False)),
        ("[!x]pu", ("pu", False)),
        ("*", ("", False)),
        ("a[b", ("a[b", True)),  # an unclosed bracket is literal, as in fnmatch
    ],
)
def test_glob_literal(glob, literal):
    assert glob_literal(glob) == literal
    # The literal really is in every match fnmatch accepts (spot check).
    lit = literal[0]
    for name in ("gpu_x", "cudaXLaunch", "xpu_y", "gpu", "a[b", "zpu"):
        if fnmatch.fnmatchcase(name, glob):
            assert lit in name
            assert not literal[1] or name.startswith(lit)


def test_glob_tokens_merge_literals():
    assert glob_tokens("ab*c?[de]f") == [
        ("lit", "ab"),
        ("wild", "*"),
        ("lit", "c"),
        ("wild", "?"),
        ("wild", "[de]"),
        ("lit", "f"),
    ]


def test_default_rules_match_spec():
    r = Rules.default()
    assert r.forbid == DEFAULT_FORBID
    assert r.match("gpu_malloc") == "gpu_*"
    assert r.match("llvm.nvvm.read.ptx.sreg.tid.x") == "llvm.nvvm.*"
    assert r.match("__assertfail") == "__assertfail"
    assert r.match("__assertfailx") is None
    assert r.match("_Z10__nv_sinff") is None  # anchored: nvcc's mangled stubs pass
    assert r.match("GPU_malloc") is None  # case-sensitive
    assert Rules.default(allow=["gpu_m*"]).match("gpu_malloc") is None
    assert Rules.default(forbid=["cuda*"]).match("cudaLaunchKernel") == "cuda*"


NAME_PARTS = [
    "gpu_",
    "__nv_",
    "__nvvm_",
    "llvm.nvvm.",
    "julia.gpu.",
    "__assertfail",
    "_Z",
    "cuda",
    "x",
    "pu_",
    "a",
    ".",
    "_",
    "Launch",
]
names = st.lists(st.sampled_from(NAME_PARTS), min_size=1, max_size=4).map("".join)
GLOBS = ["gpu_*", "*cuda*", "?pu_*", "[gx]pu_*", "*Launch", "__nv_*", "*", "x*a", "_Z*__nv_*"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    syms=st.lists(
        st.tuples(names, st.booleans(), st.sampled_from([0, 1, 2])),
        min_size=0,
        max_size=3 * PACKED_SEARCH_LIMIT,
    ),
    extra=st.lists(st.sampled_from(GLOBS), max_size=3, unique=True),
    allow=st.lists(st.sampled_from(["gpu_a*", "*Launch", "x*"]), max_size=1),
    bits=st.sampled_from([32, 64]),
    endian=st.sampled_from(["<", ">"]),
    merge=st.booleans(),
)
def test_fast_filter_equals_decoding_everything(syms, extra, allow, bits, endian, merge):
    symbols = [Sym(n, bind=b, defined=d, size=1) for n, d, b in syms]
    data = write_elf(bits=bits, endian=endian, symbols=symbols, merge_tails=merge, dynamic=True)
    elf = ElfFile(data, "t.o")
    rules = Rules.default(forbid=extra, allow=allow)
    for table in elf.symbol_tables():
        fast = sorted((s.index, glob) for s, glob in forbidden_symbols(elf, table, rules))
        strtab = elf.check_symbol_table(table)
        slow = []
        for i in range(1, table.size // elf.sym_size):
            sym = elf.symbol(table, i, strtab)
            # The oracle: fnmatch itself, not our compiled rules.
            hit = next((g for g in rules.forbid if fnmatch.fnmatchcase(sym.name, g)), None)
            if (
                hit
                and is_real_symbol(sym)
                and not any(fnmatch.fnmatchcase(sym.name, a) for a in allow)
            ):
                slow.append((i, hit))
        assert fast == sorted(slow)


def test_tail_merged_names_are_found(tmp_path):
    """ld shares string tails: 'gpu_x' may live inside 'my_gpu_x' with no NUL before it."""
    symbols = [Sym("my_gpu_x", size=1), Sym("gpu_x", size=1)]
    data = write_elf(symbols=symbols, merge_tails=True)
    assert data.count(b"gpu_x\0") == 1  # stored once
    elf = ElfFile(data, "t.o")
    (table,) = elf.symbol_tables()
    assert [s.name for s, _ in forbidden_symbols(elf, table, Rules.default())] == ["gpu_x"]


@pytest.mark.parametrize("merge", [False, True])
def test_unanchored_glob_finds_names_that_start_before_the_literal(merge):
    """'*cuda*' must find 'my_cudaLaunch' although 'cuda' sits mid-name, tails merged or not."""
    symbols = [
        Sym("my_cudaLaunch", size=1),
        Sym("cudaLaunch", size=1),
        Sym("plain", size=1),
        Sym("xcuda", size=1),
    ]
    elf = ElfFile(write_elf(symbols=symbols, merge_tails=merge), "t.o")
    (table,) = elf.symbol_tables()
    found = forbidden_symbols(elf, table, Rules(forbid=("*cuda*",)))
    assert sorted(s.name for s, _ in found) == ["cudaLaunch", "my_cudaLaunch", "xcuda"]


@pytest.mark.parametrize("count", [1, PACKED_SEARCH_LIMIT, PACKED_SEARCH_LIMIT + 1, 200])
def test_both_candidate_paths(count):
    """Few candidates take the packed-word search, many the numpy pass: same answer."""
    symbols = [Sym(f"gpu_k{i}", size=1) for i in range(count)] + [Sym("host", size=1)]
    elf = ElfFile(write_elf(symbols=symbols, endian=">"), "t.o")
    (table,) = elf.symbol_tables()
    found = forbidden_symbols(elf, table, Rules.default())
    assert sorted(s.name for s, _ in found) == sorted(f"gpu_k{i}" for i in range(count))


@pytest.mark.parametrize(
    "module",
    ["elf", "elfio", "rules", "symbols", "inputs", "scan", "report", "undefined", "attribute"],
)
def test_module_docstring_examples_run(module):
    """The examples in the modules' docstrings are real (those needing files are skipped)."""
    import doctest
    import importlib

    mod = importlib.import_module(f"gpuaot.leaks.{module}")
    failed, _ = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert failed == 0
