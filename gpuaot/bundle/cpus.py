"""CPU levels of host code, and how the run time tells which ones this CPU can run.

    >>> [lv.name for lv in default_levels("x86_64")]
    ['x86-64-v2', 'x86-64-v3', 'x86-64-v4']
    >>> parse_levels("x86-64-v3,x86-64-v2", "x86_64")[0].name     # sorted lowest first
    'x86-64-v2'
    >>> best_level_name(frozenset(_X86_V3), "x86_64")
    'x86-64-v3'

The bundle's host code is compiled once per level (``gpuaot build --cpu``) under per-level
symbols; the manifest records, per variant, the features it ``requires``, in LLVM's feature
names. At run time the CPU's features are read (CPUID and XGETBV on x86-64 through the
bundle's own probe, compiled for the baseline; ``getauxval`` on aarch64) and the highest
variant whose requirements all hold is bound. A feature counts only when the OS has enabled
its register state too (XCR0): a CPU with AVX under an OS that does not save ``ymm`` has no
``avx`` here.

This module is shared by the compiler and the run time: plain Python, no llvmlite.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

from . import abi


@dataclass(frozen=True)
class Level:
    name: str  # as users write it: x86-64-v3
    arch: str  # the platform machine it belongs to: x86_64, aarch64
    llvm_cpu: str  # LLVM's -mcpu
    llvm_features: str  # LLVM's -mattr on top of the cpu
    requires: tuple[str, ...]  # what the run time checks, in LLVM feature names

    @property
    def tag(self) -> str:
        """The symbol suffix of this level's variant: ``gpuaot_cpu_m__k.x86_64_v3``."""
        return self.name.replace("-", "_").replace(".", "_").replace("+", "_")


# The x86-64 psABI micro-architecture levels (as LLVM and GCC name them). Each level's
# requirements include the ones below it.
_X86_BASE = ("cmov", "cx8", "fxsr", "mmx", "sse", "sse2")
_X86_V2 = _X86_BASE + ("cx16", "popcnt", "sahf", "sse3", "sse4.1", "sse4.2", "ssse3")
_X86_V3 = _X86_V2 + ("avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave")
_X86_V4 = _X86_V3 + ("avx512bw", "avx512cd", "avx512dq", "avx512f", "avx512vl")

# aarch64: the Armv8.0 baseline (FP and Advanced SIMD are mandatory on Linux), and Armv8.2-A
# (what Neoverse N1 / Cortex-A76 / Graviton 2 and newer implement): LSE atomics, RDM, CRC,
# DC CVAP, plus the half-precision and dot-product SIMD every such core has.
_ARM_BASE = ("fp-armv8", "neon")
_ARM_V82 = _ARM_BASE + ("crc", "lse", "rdm", "ccpp", "fullfp16", "dotprod")

LEVELS: tuple[Level, ...] = (
    Level("x86-64", "x86_64", "x86-64", "", _X86_BASE),
    Level("x86-64-v2", "x86_64", "x86-64-v2", "", _X86_V2),
    Level("x86-64-v3", "x86_64", "x86-64-v3", "", _X86_V3),
    Level("x86-64-v4", "x86_64", "x86-64-v4", "", _X86_V4),
    Level("armv8-a", "aarch64", "generic", "+v8a,+fp-armv8,+neon", _ARM_BASE),
    Level(
        "armv8.2-a",
        "aarch64",
        "generic",
        "+v8.2a,+fp-armv8,+neon,+crc,+lse,+rdm,+ccpp,+fullfp16,+dotprod",
        _ARM_V82,
    ),
)
NATIVE = "native"
DEFAULTS = {
    "x86_64": ("x86-64-v2", "x86-64-v3", "x86-64-v4"),
    "aarch64": ("armv8-a", "armv8.2-a"),
}
BASELINE = {"x86_64": "x86-64", "aarch64": "armv8-a"}
_RANK = {lv.name: k for k, lv in enumerate(LEVELS)}


def machine() -> str:
    m = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)


def known_levels(arch: str) -> list[str]:
    return [lv.name for lv in LEVELS if lv.arch == arch] + [NATIVE]


def level(name: str, arch: str) -> Level | None:
    return next((lv for lv in LEVELS if lv.name == name and lv.arch == arch), None)


def default_levels(arch: str) -> list[Level]:
    return [level(n, arch) for n in DEFAULTS.get(arch, ())]


def parse_levels(spec, arch: str) -> list[Level | str]:
    """``"x86-64-v2,x86-64-v4"`` (or a list) → the levels, lowest first; ``native`` last.

    Raises ValueError with a one-line reason naming the known levels.
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [str(s).strip() for s in items]
    if not any(names):
        raise ValueError(f"--cpu needs one or more levels ({', '.join(known_levels(arch))})")
    if not all(names):
        raise ValueError(f"--cpu '{','.join(names)}': an empty level between the commas")
    out: list = []
    for n in names:
        lv = NATIVE if n == NATIVE else level(n, arch)
        if lv is None:
            other = next((x.arch for x in LEVELS if x.name == n), None)
            why = f"a level for {other}, not {arch}" if other else "not a known CPU level"
            raise ValueError(
                f"--cpu: '{n}' is {why}; known on {arch}: {', '.join(known_levels(arch))}"
            )
        if lv not in out:
            out.append(lv)
    return sorted(out, key=lambda lv: _RANK.get(getattr(lv, "name", lv), len(_RANK)))


# ---------------------------------------------------------------------- x86-64 detection

# What the bundle's probe (``gpuaot_rt_cpuid``) writes: twelve 32-bit words.
PROBE_SYMBOL = abi.CPU_PROBE_SYMBOL
PROBE_WORDS = (
    "max_leaf",  # CPUID.0:EAX
    "1.ecx",
    "1.edx",
    "7.ebx",  # CPUID.(7,0), zero where max_leaf < 7
    "7.ecx",
    "7.edx",
    "7.1.eax",  # CPUID.(7,1), zero where CPUID.(7,0):EAX < 1
    "max_ext",  # CPUID.80000000h:EAX
    "ext1.ecx",  # CPUID.80000001h, zero where max_ext < 80000001h
    "ext1.edx",
    "xcr0.lo",  # XGETBV(0), zero where the OS has not set CR4.OSXSAVE
    "xcr0.hi",
)
_W = {name: k for k, name in enumerate(PROBE_WORDS)}

# LLVM feature name -> (probe word, bit). Enough to check every psABI level and what a
# `native` build on a current CPU enables; see :func:`native_requires`.
X86_BITS: dict[str, tuple[str, int]] = {
    "cx8": ("1.edx", 8),
    "cmov": ("1.edx", 15),
    "mmx": ("1.edx", 23),
    "fxsr": ("1.edx", 24),
    "sse": ("1.edx", 25),
    "sse2": ("1.edx", 26),
    "sse3": ("1.ecx", 0),
    "pclmul": ("1.ecx", 1),
    "ssse3": ("1.ecx", 9),
    "fma": ("1.ecx", 12),
    "cx16": ("1.ecx", 13),
    "sse4.1": ("1.ecx", 19),
    "sse4.2": ("1.ecx", 20),
    "crc32": ("1.ecx", 20),  # LLVM's crc32 is the SSE4.2 instruction
    "movbe": ("1.ecx", 22),
    "popcnt": ("1.ecx", 23),
    "aes": ("1.ecx", 25),
    "xsave": ("1.ecx", 26),
    "avx": ("1.ecx", 28),
    "f16c": ("1.ecx", 29),
    "rdrnd": ("1.ecx", 30),
    "fsgsbase": ("7.ebx", 0),
    "bmi": ("7.ebx", 3),
    "avx2": ("7.ebx", 5),
    "bmi2": ("7.ebx", 8),
    "invpcid": ("7.ebx", 10),
    "rtm": ("7.ebx", 11),
    "avx512f": ("7.ebx", 16),
    "avx512dq": ("7.ebx", 17),
    "rdseed": ("7.ebx", 18),
    "adx": ("7.ebx", 19),
    "avx512ifma": ("7.ebx", 21),
    "clflushopt": ("7.ebx", 23),
    "clwb": ("7.ebx", 24),
    "avx512cd": ("7.ebx", 28),
    "sha": ("7.ebx", 29),
    "avx512bw": ("7.ebx", 30),
    "avx512vl": ("7.ebx", 31),
    "avx512vbmi": ("7.ecx", 1),
    "avx512vbmi2": ("7.ecx", 6),
    "gfni": ("7.ecx", 8),
    "vaes": ("7.ecx", 9),
    "vpclmulqdq": ("7.ecx", 10),
    "avx512vnni": ("7.ecx", 11),
    "avx512bitalg": ("7.ecx", 12),
    "avx512vpopcntdq": ("7.ecx", 14),
    "rdpid": ("7.ecx", 22),
    "cldemote": ("7.ecx", 25),
    "movdiri": ("7.ecx", 27),
    "movdir64b": ("7.ecx", 28),
    "serialize": ("7.edx", 14),
    "tsxldtrk": ("7.edx", 16),
    "amx-bf16": ("7.edx", 22),
    "avx512fp16": ("7.edx", 23),
    "amx-tile": ("7.edx", 24),
    "amx-int8": ("7.edx", 25),
    "avxvnni": ("7.1.eax", 4),
    "avx512bf16": ("7.1.eax", 5),
    "sahf": ("ext1.ecx", 0),
    "lzcnt": ("ext1.ecx", 5),
    "sse4a": ("ext1.ecx", 6),
    "prfchw": ("ext1.ecx", 8),
    "xop": ("ext1.ecx", 11),
    "fma4": ("ext1.ecx", 16),
    "tbm": ("ext1.ecx", 21),
}
_OSXSAVE = ("1.ecx", 27)
_XCR0_AVX = 0x6  # SSE and AVX (ymm upper halves) state
_XCR0_AVX512 = 0xE0  # opmask, ZMM_Hi256, Hi16_ZMM state
_XCR0_AMX = 0x60000  # XTILECFG, XTILEDATA state
# Features whose registers need OS-enabled state beyond SSE.
_NEEDS_AVX_STATE = {"avx", "avx2", "fma", "f16c", "vaes", "vpclmulqdq", "avxvnni", "xop", "fma4"}
_NEEDS_AMX_STATE = {"amx-bf16", "amx-tile", "amx-int8"}


def x86_features(words) -> frozenset[str]:
    """The LLVM features a CPU supports and the OS has enabled, from the probe's words."""
    w = list(words)

    def bit(word: str, k: int) -> bool:
        return bool((w[_W[word]] >> k) & 1)

    xcr0 = (w[_W["xcr0.hi"]] << 32 | w[_W["xcr0.lo"]]) if bit(*_OSXSAVE) else 0
    avx_state = xcr0 & _XCR0_AVX == _XCR0_AVX
    avx512_state = avx_state and xcr0 & _XCR0_AVX512 == _XCR0_AVX512
    amx_state = xcr0 & _XCR0_AMX == _XCR0_AMX
    out = set()
    for name, (word, k) in X86_BITS.items():
        if not bit(word, k):
            continue
        if name in _NEEDS_AVX_STATE and not avx_state:
            continue
        if name.startswith("avx512") and not avx512_state:
            continue
        if name in _NEEDS_AMX_STATE and not amx_state:
            continue
        out.add(name)
    return frozenset(out)


# ---------------------------------------------------------------------- aarch64 detection

AT_HWCAP, AT_HWCAP2 = 16, 26
# LLVM feature name -> (auxv word, bit), from the kernel's uapi asm/hwcap.h.
ARM_BITS: dict[str, tuple[int, int]] = {
    "fp-armv8": (AT_HWCAP, 0),
    "neon": (AT_HWCAP, 1),
    "aes": (AT_HWCAP, 3),
    "crc": (AT_HWCAP, 7),
    "lse": (AT_HWCAP, 8),
    "fullfp16": (AT_HWCAP, 10),
    "rdm": (AT_HWCAP, 12),
    "jsconv": (AT_HWCAP, 13),
    "fcma": (AT_HWCAP, 14),
    "rcpc": (AT_HWCAP, 15),
    "ccpp": (AT_HWCAP, 16),
    "sha3": (AT_HWCAP, 17),
    "dotprod": (AT_HWCAP, 20),
    "sve": (AT_HWCAP, 22),
    "fp16fml": (AT_HWCAP, 23),
    "sve2": (AT_HWCAP2, 1),
    "i8mm": (AT_HWCAP2, 13),
    "bf16": (AT_HWCAP2, 14),
}


def arm_features(hwcap: int, hwcap2: int) -> frozenset[str]:
    words = {AT_HWCAP: hwcap, AT_HWCAP2: hwcap2}
    return frozenset(n for n, (w, k) in ARM_BITS.items() if (words[w] >> k) & 1)


def detectable(arch: str) -> frozenset[str]:
    return frozenset(X86_BITS if arch == "x86_64" else ARM_BITS if arch == "aarch64" else ())


def native_requires(arch: str, llvm_features: str) -> tuple[str, ...]:
    """What a ``native`` variant needs: the build CPU's enabled features we can detect.

    Features the run time cannot read (none that LLVM generates code for without an
    intrinsic) are left out; a native bundle is for the machine that built it.
    """
    on = {f[1:] for f in llvm_features.split(",") if f.startswith("+")}
    return tuple(sorted(on & detectable(arch)))


@dataclass(frozen=True)
class Variant:
    """One compiled variant of a bundle's host code, as the manifest records it."""

    level: str  # x86-64-v3, or native
    tag: str  # symbol suffix
    cpu: str  # LLVM cpu name
    features: str  # LLVM feature string
    requires: tuple[str, ...]
    portable: bool

    def to_json(self) -> dict:
        return {
            "level": self.level,
            "tag": self.tag,
            "cpu": self.cpu,
            "features": self.features,
            "requires": list(self.requires),
            "portable": self.portable,
        }

    def symbol(self, base: str) -> str:
        return abi.variant_symbol(base, self.tag)


def named_variant(lv: Level) -> Variant:
    return Variant(lv.name, lv.tag, lv.llvm_cpu, lv.llvm_features, lv.requires, True)


def best_level_name(features: frozenset[str], arch: str) -> str:
    """This CPU in the terms users know: the highest named level it meets."""
    met = [lv.name for lv in LEVELS if lv.arch == arch and set(lv.requires) <= features]
    return met[-1] if met else f"below {BASELINE.get(arch, arch)}"
