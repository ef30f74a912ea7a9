"""Run-time errors users catch."""

from __future__ import annotations


class BundleNotFoundError(ImportError):
    """No bundle for this package and platform; the message names the build command."""


class StaleBundleError(ImportError):
    """The bundle was built from sources that no longer match the package's modules."""


class UnsupportedCPUError(RuntimeError):
    """No CPU variant of the bundle can run on this CPU (or ``GPUAOT_CPU`` names one that
    cannot); the message names the bundle's levels and this CPU's."""
