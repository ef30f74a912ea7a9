"""Complex scalars as the kernel ABI passes them: ctypes structs of (real, imaginary).

    C64(1.5, -2.0).value      # (1.5, -2.0): what a struct field of the same type takes

numpy's layout (two f32 / two f64); a kernel reads the parameter as one ``{float, float}``
(``{double, double}``) value, on the CPU from ``void **args``, on the GPU as a ``.param``
of 8 (16) bytes.
"""

from __future__ import annotations

import ctypes


class _Complex(ctypes.Structure):
    @property
    def value(self) -> tuple:
        return (self.real, self.imag)  # what a field of the same type is initialised from


class C64(_Complex):
    _fields_ = [("real", ctypes.c_float), ("imag", ctypes.c_float)]


class C128(_Complex):
    _fields_ = [("real", ctypes.c_double), ("imag", ctypes.c_double)]
