"""f16 scalars across the kernel ABI: ctypes has no half type, so one travels as its 16 bits.

CHalf.of(np.float16(1.5)).bits      # 0x3e00, what the kernel loads as a ``half``
from_bits(0x3e00)                   # np.float16(1.5)
"""

from __future__ import annotations

import ctypes

import numpy as np


class CHalf(ctypes.Structure):
    """An f16 as the kernel ABI passes it (2 bytes, 2-aligned, as a ``half`` in memory)."""

    _fields_ = [("bits", ctypes.c_uint16)]

    @classmethod
    def of(cls, value) -> CHalf:
        """``value`` rounded to f16 once (numpy's cast: to nearest even, overflow to inf)."""
        with np.errstate(over="ignore"):
            return cls(int(np.float16(value).view(np.uint16)))

    @property
    def value(self) -> tuple:
        return (self.bits,)  # what a field of the same type is initialised from


def from_bits(bits: int) -> np.float16:
    return np.uint16(bits).view(np.float16)
