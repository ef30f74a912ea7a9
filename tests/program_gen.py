"""Random kernels for the differential program fuzzer (tests/test_program_fuzz.py).

    kernels = generate(random.Random(seed), count)    # [Kernel], one module's worth
    source = module_source(kernels)                   # the package's kernels.py
    for run in kernel.runs(rng):                      # inputs and a launch, with how to compare
        ...

Each kernel has the shape of code the CPU backend transforms: 2-D and 3-D grids in every index
order (the thread loop order follows memory), guards with lower and upper bounds (the
guard-free middle range), a thread loop of its own (unroll-and-jam), and atomics whose old
value is unused (privatised) or used (exact). Values stay small enough that no integer
operation overflows 32 bits, so ``simulate`` (numpy scalars, Python ints for the indices) and
the compiled code (i64 indices) agree exactly whatever type either promotes to; float kernels
are built with ``fma=False`` and use ``f32`` constants, so every operation rounds once, in
f32, on both sides: results compare bit for bit. Atomic float adds add small integers, which
f32 adds exactly in any order.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

import numpy as np

VALUE = 20  # input values lie in [-VALUE, VALUE]
LIMIT = 1 << 28  # the largest magnitude an expression may reach
BLOCKS_2D = [(1, 1), (3, 5), (16, 4), (32, 1), (8, 8), (64, 2), (1, 32), (5, 3)]
BLOCKS_3D = [(1, 1, 1), (4, 4, 2), (8, 2, 2), (2, 3, 5), (16, 1, 1)]
BLOCKS_1D = [1, 3, 32, 64, 128, 256]


@dataclass
class Run:
    """One launch: ``args`` (fresh copies for each side), the grid and block, and which
    arguments are outputs, each compared exactly or (``sorted_``) as a multiset."""

    args: list
    grid: tuple
    block: tuple
    outputs: list[int]
    sorted_: set[int] = field(default_factory=set)
    view: object = None  # copies of args -> what the launch gets (strided views, aliases)

    def launch_args(self, copies: list) -> list:
        return copies if self.view is None else self.view(copies)


@dataclass
class Kernel:
    name: str
    source: str
    make_runs: object  # rng -> list[Run]

    def runs(self, rng: random.Random) -> list[Run]:
        return self.make_runs(rng)


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


# ---------------------------------------------------------------------- expressions


class Expr:
    """An expression's text and a bound on its magnitude."""

    def __init__(self, text: str, bound: int):
        self.text, self.bound = text, bound


def leaf_int(rng: random.Random, reads: list[str], indices: list[str]) -> Expr:
    pick = rng.random()
    if pick < 0.6 and reads:
        return Expr(rng.choice(reads), VALUE)
    if pick < 0.8 and indices:
        return Expr(rng.choice(indices), 256)
    c = rng.randint(-9, 9)
    return Expr(f"({c})" if c < 0 else str(c), 9)


def int_expr(rng: random.Random, reads, indices, depth: int = 3, top: bool = True) -> Expr:
    """An expression over ``reads`` (array elements), ``indices`` and constants; at the top,
    an operation, one of whose operands reads an array."""
    if top and reads:
        a = int_expr(rng, reads, indices, depth - 1, False)
        b = Expr(rng.choice(reads), VALUE)
        op = rng.choice(["+", "-", "^", "max", "min"])
        if op in ("max", "min"):
            return Expr(f"{op}({a.text}, {b.text})", max(a.bound, b.bound))
        bound = a.bound + b.bound if op != "^" else 1 << (max(a.bound, b.bound).bit_length() + 1)
        return Expr(f"({a.text} {op} {b.text})", bound)
    if depth == 0 or rng.random() < 0.25:
        return leaf_int(rng, reads, indices)
    a = int_expr(rng, reads, indices, depth - 1, False)
    op = rng.choice(["+", "-", "*", "//", "%", "&", "|", "^", "min", "max", "neg", "if"])
    if op in ("//", "%"):
        c = rng.randint(1, 7)
        return Expr(f"({a.text} {op} {c})", a.bound if op == "//" else c)
    if op == "neg":
        return Expr(f"(-{a.text})", a.bound)
    b = int_expr(rng, reads, indices, depth - 1, False)
    if op == "*":
        bound = a.bound * b.bound
        if bound > LIMIT:
            return Expr(f"({a.text} + {b.text})", a.bound + b.bound)
        return Expr(f"({a.text} * {b.text})", bound)
    if op in ("min", "max"):
        return Expr(f"{op}({a.text}, {b.text})", max(a.bound, b.bound))
    if op == "if":
        c = int_expr(rng, reads, indices, 1, False)
        return Expr(f"({a.text} if {c.text} > 0 else {b.text})", max(a.bound, b.bound))
    if op in ("&", "|", "^"):
        # non-negative bound: the bitwise result of two values below 2**k is below 2**k
        bits = max(a.bound, b.bound).bit_length() + 1
        return Expr(f"({a.text} {op} {b.text})", 1 << bits)
    return Expr(f"({a.text} {op} {b.text})", a.bound + b.bound)


def float_expr(rng: random.Random, reads: list[str], depth: int = 3, top: bool = True) -> str:
    if top:
        a, b = float_expr(rng, reads, depth - 1, False), rng.choice(reads)
        return f"({a} {rng.choice(['+', '-', '*'])} {b})"
    if depth == 0 or rng.random() < 0.3:
        if rng.random() < 0.7:
            return rng.choice(reads)
        return f"f32({rng.choice(['0.25', '1.5', '-3.0', '0.1', '7.0'])})"
    a = float_expr(rng, reads, depth - 1, False)
    op = rng.choice(["+", "-", "*", "min", "max", "if"])
    b = float_expr(rng, reads, depth - 1, False)
    if op in ("min", "max"):
        return f"{op}({a}, {b})"
    if op == "if":
        return f"({a} if {float_expr(rng, reads, 1, False)} > f32(0) else {b})"
    return f"({a} {op} {b})"


def int_values(rng: random.Random, shape, dtype=np.int32) -> np.ndarray:
    gen = np.random.default_rng(rng.getrandbits(32))
    return gen.integers(-VALUE, VALUE + 1, size=shape).astype(dtype)


def float_values(rng: random.Random, shape) -> np.ndarray:
    gen = np.random.default_rng(rng.getrandbits(32))
    v = gen.standard_normal(shape).astype(np.float32) * np.float32(4)
    return v


# ---------------------------------------------------------------------- kernel shapes


def _guard(rng: random.Random, index: str, extent: str) -> tuple[str, int, int]:
    """A bound on ``index`` below ``extent``: its text and how far reads may reach below
    and above the index."""
    lo = rng.choice([0, 0, 1, 2])
    hi = rng.choice([0, 0, 1, 2, 3])
    parts = []
    if lo:
        parts.append(f"{lo} <= {index}" if rng.random() < 0.5 else f"{lo - 1} < {index}")
    upper = f"{index} < {extent} - {hi}" if hi else f"{index} < {extent}"
    if lo and rng.random() < 0.5:  # the chained form: 0 < i < n - 1
        return f"{lo - 1} < {index} < {extent}" + (f" - {hi}" if hi else ""), lo, hi
    return " and ".join(parts + [upper]), lo, hi


def _offset(index: str, d: int) -> str:
    return index if d == 0 else f"{index} {'+' if d > 0 else '-'} {abs(d)}"


def elementwise_2d(rng: random.Random, name: str) -> Kernel:
    """out[i, j] from reads of x and y around (i, j), in either grid order."""
    floats = rng.random() < 0.35
    ty = "f32" if floats else "i32"
    order = rng.choice(["i, j", "j, i"])
    # how the arrays are passed: contiguous, strided views ("A" layout), or out = x in place
    # (each thread then reads only its own element: no thread sees another's store)
    passing = rng.choice(["C", "C", "A", "alias"])
    layout = ', "A"' if passing == "A" else ""
    gi, lo_i, hi_i = _guard(rng, "i", "n")
    gj, lo_j, hi_j = _guard(rng, "j", "m")
    reads = []
    for arr in ("x", "y"):
        for _ in range(rng.randint(1, 3)):
            di = 0 if passing == "alias" else rng.randint(-lo_i, hi_i)
            dj = 0 if passing == "alias" else rng.randint(-lo_j, hi_j)
            reads.append(f"{arr}[{_offset('i', di)}, {_offset('j', dj)}]")
    if floats:
        body = f"out[i, j] = {float_expr(rng, reads)}"
    else:
        body = f"out[i, j] = {int_expr(rng, reads, ['i', 'j']).text}"
    extra = ""
    if rng.random() < 0.3:  # a second store, data-dependent
        cond = reads[0] + (" > f32(0)" if floats else " > 0")
        other = float_expr(rng, reads, 2) if floats else int_expr(rng, reads, ["j"], 2).text
        extra = f"\n        if {cond}:\n            out[i, j] = {other}"
    deco = "@ga.kernel(fma=False)" if floats else "@ga.kernel"
    src = f"""
{deco}
def {name}(x: Array[{ty}, 2{layout}], y: Array[{ty}, 2{layout}], out: Array[{ty}, 2{layout}]):
    {order} = ga.grid(2)
    n, m = x.shape
    if {gi} and {gj}:
        {body}{extra}
"""
    x_first = order == "j, i"  # x follows the column

    def runs(rng: random.Random) -> list[Run]:
        out = []
        for big in (False, True):  # the big one is split over threads
            n, m = (
                (rng.randint(60, 90), rng.randint(100, 140))
                if big
                else (rng.randint(0, 40), rng.randint(0, 70))
            )
            make = float_values if floats else int_values
            bx, by = rng.choice(BLOCKS_2D)
            cols, rows = (m, n) if x_first else (n, m)
            grid = (max(1, cdiv(cols, bx)) + rng.randint(0, 1), max(1, cdiv(rows, by)))
            if passing == "A":  # every other row, every third column (of a bigger array)
                bases = [make(rng, (2 * n, 3 * m + 1)) for _ in range(3)]
                view = lambda a: [b[::2, 1::3] for b in a]  # noqa: E731
                out.append(Run(bases, grid, (bx, by), [2], view=view))
                continue
            x, y = make(rng, (n, m)), make(rng, (n, m))
            res = make(rng, (n, m))  # a store that does not happen keeps these
            if passing == "alias":
                out.append(Run([x, y], grid, (bx, by), [0], view=lambda a: [a[0], a[1], a[0]]))
                continue
            out.append(Run([x, y, res], grid, (bx, by), [2]))
        return out

    return Kernel(name, src, runs)


def grid_3d(rng: random.Random, name: str) -> Kernel:
    """out[i, j, k] from x[i, j, k] and the indices, the grid's axes in any order."""
    order = rng.sample(["i", "j", "k"], 3)
    reads = ["x[i, j, k]", "x[i, j, 0]", "x[0, j, k]"]
    expr = int_expr(rng, reads, ["i", "j", "k"]).text
    src = f"""
@ga.kernel
def {name}(x: Array[i32, 3], out: Array[i32, 3]):
    {", ".join(order)} = ga.grid(3)
    if i < x.shape[0] and j < x.shape[1] and k < x.shape[2]:
        out[i, j, k] = {expr}
"""

    def runs(rng: random.Random) -> list[Run]:
        shape = tuple(rng.randint(0, 12) for _ in range(3))
        x = int_values(rng, shape)
        block = rng.choice(BLOCKS_3D)
        extent = {"i": shape[0], "j": shape[1], "k": shape[2]}
        grid = tuple(max(1, cdiv(extent[a], b)) for a, b in zip(order, block))
        return [Run([x, int_values(rng, shape)], grid, block, [1])]

    return Kernel(name, src, runs)


def thread_loop(rng: random.Random, name: str) -> Kernel:
    """Each thread folds a row (or a column) of x, or a dot product of A and B."""
    kind = rng.choice(["row", "col", "dot"])
    combine = rng.choice(["+", "max", "^", "-"])
    start = rng.choice(["0", "0", "1"])
    step = rng.choice(["", "", ", 2"])
    init = rng.randint(-3, 3)

    def fold(term: str) -> str:
        if combine == "max":
            return f"acc = max(acc, {term})"
        return f"acc {combine}= {term}"

    if kind == "dot":
        a = rng.choice(["A[i, k]", "A[k, i]"])
        term = f"{a} * B[k, j]"
        order = rng.choice(["i, j", "j, i"])
        src = f"""
@ga.kernel
def {name}(A: Array[i32, 2], B: Array[i32, 2], C: Array[i32, 2]):
    {order} = ga.grid(2)
    if i < C.shape[0] and j < C.shape[1]:
        acc = i32({init})
        for k in range({start}, B.shape[0]{step}):
            {fold(term)}
        C[i, j] = acc
"""
    else:
        term = "x[i, k]" if kind == "row" else "x[k, i]"
        extent = "x.shape[0]" if kind == "row" else "x.shape[1]"
        inner = "x.shape[1]" if kind == "row" else "x.shape[0]"
        if rng.random() < 0.5:
            term = f"({term} * {rng.randint(1, 5)} + k)"
        src = f"""
@ga.kernel
def {name}(x: Array[i32, 2], out: Array[i32]):
    i = ga.grid(1)
    if i < {extent}:
        acc = i32({init})
        for k in range({start}, {inner}{step}):
            {fold(term)}
        out[i] = acc
"""

    def runs(rng: random.Random) -> list[Run]:
        n, m = rng.randint(0, 40), rng.randint(0, 40)
        if kind == "dot":
            s = n  # A is s x s, so A[k, i] stays in bounds too
            A, B = int_values(rng, (s, s)), int_values(rng, (s, m))
            C = int_values(rng, (s, m))
            bx, by = rng.choice(BLOCKS_2D)
            cols, rows = (m, s) if order == "j, i" else (s, m)
            grid = (max(1, cdiv(cols, bx)), max(1, cdiv(rows, by)))
            return [Run([A, B, C], grid, (bx, by), [2])]
        x = int_values(rng, (n, m))
        rows = n if kind == "row" else m
        block = rng.choice(BLOCKS_1D)
        return [Run([x, int_values(rng, (rows,))], (max(1, cdiv(rows, block)),), (block,), [1])]

    return Kernel(name, src, runs)


ATOMIC_OPS = ["add", "min", "max", "and", "or", "xor", "sub"]


def atomics(rng: random.Random, name: str) -> Kernel:
    """Atomics into a small array; old values used (tickets) now and then."""
    op = rng.choice(ATOMIC_OPS)
    ty = rng.choice(["i32", "i64"])
    floats = op in ("add", "min", "max") and rng.random() < 0.3
    bins_ty = "f32" if floats else ty
    dims = rng.choice([1, 1, 2])
    tickets = rng.random() < 0.3
    nb = rng.choice([1, 3, 16, 256])
    value = int_expr(rng, ["x[i]"], ["i"], 2).text
    if floats:  # small integers: every order of the adds gives the same f32 sum
        value = f"f32(({value}) % 9)"
    elif op in ("add", "sub"):  # 20000 of them stay inside i32
        value = f"(({value}) % 97 - 48)"
    key = int_expr(rng, ["x[i]"], ["i"], 2).text
    if dims == 1:
        head = "i = ga.grid(1)\n    if i < x.shape[0]:"
    else:
        head = (
            "c, r = ga.grid(2)\n    i = r * ga.grid_dim.x * ga.block_dim.x + c\n"
            "    if i < x.shape[0]:"
        )
    src = f"""
@ga.kernel
def {name}(x: Array[i32], bins: Array[{bins_ty}], count: Array[i64], got: Array[i64]):
    {head}
        b = ({key}) % {nb}
        ga.atomic_{op}(bins, b, {value})"""
    if tickets:
        src += "\n        got[i] = ga.atomic_add(count, 0, 1)"
    if rng.random() < 0.3:  # a second, unconditional combine into the same array
        src += f"\n        ga.atomic_{op}(bins, 0, {'f32(1)' if floats else '1'})"
    src += "\n"

    def runs(rng: random.Random) -> list[Run]:
        out = []
        for size in (rng.randint(0, 300), rng.choice([5000, 20000])):
            x = int_values(rng, (size,))
            dtype = {"i32": np.int32, "i64": np.int64, "f32": np.float32}[bins_ty]
            bins = int_values(rng, (nb,)).astype(dtype)
            count = np.zeros(1, dtype=np.int64)
            got = np.full(size, -1, dtype=np.int64)
            if dims == 1:
                block = rng.choice(BLOCKS_1D)
                grid, blk = (max(1, cdiv(size, block)) + rng.randint(0, 1),), (block,)
            else:
                bx, by = rng.choice([(32, 4), (8, 8), (64, 1)])
                gx = rng.randint(1, 4)
                grid, blk = (gx, max(1, cdiv(size, gx * bx * by))), (bx, by)
            out.append(Run([x, bins, count, got], grid, blk, [1, 2, 3], {3}))
        return out

    return Kernel(name, src, runs)


def helper_locals(rng: random.Random, name: str) -> Kernel:
    """A generic ``@device`` helper, a per-thread local array and a ``while`` loop with
    ``break``."""
    width = rng.randint(1, 5)
    helper = int_expr(rng, ["a", "b"], [], 2)  # its arguments stay within VALUE
    cut = rng.randint(-VALUE, VALUE)
    src = f"""
@ga.device
def {name}_h(a, b):
    return {helper.text}


@ga.kernel
def {name}(x: Array[i32], out: Array[i32]):
    i = ga.grid(1)
    if i < x.shape[0]:
        t = ga.local_array(i32, {width})
        for q in range({width}):
            t[q] = {name}_h(x[(i + q) % x.shape[0]], q - {width // 2})
        s = 0
        q = 0
        while q < {width}:
            if t[q] > {cut}:
                break
            s += t[q]
            q += 1
        out[i] = s + t[0] - t[{width - 1}]
"""

    def runs(rng: random.Random) -> list[Run]:
        n = rng.choice([rng.randint(0, 200), 5000])
        block = rng.choice(BLOCKS_1D)
        grid = (max(1, cdiv(n, block)),)
        return [Run([int_values(rng, (n,)), int_values(rng, (n,))], grid, (block,), [1])]

    return Kernel(name, src, runs)


SHAPES = [
    elementwise_2d,
    elementwise_2d,
    grid_3d,
    thread_loop,
    thread_loop,
    atomics,
    atomics,
    helper_locals,
]


def generate(rng: random.Random, count: int) -> list[Kernel]:
    names = (f"k{n}" for n in itertools.count())
    return [rng.choice(SHAPES)(rng, next(names)) for _ in range(count)]


def module_source(kernels: list[Kernel]) -> str:
    head = "import gpuaot as ga\nfrom gpuaot import Array, f32, i32, i64\n"
    return head + "".join(k.source for k in kernels)
