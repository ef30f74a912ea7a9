"""Run-time errors users catch."""

from __future__ import annotations


class BundleNotFoundError(ImportError):
    """No bundle for this package and platform; the message names the build command."""


class StaleBundleError(ImportError):
    """The bundle was built from sources that no longer match the package's modules."""


class BundleError(ImportError):
    """The bundle file is damaged: its size, ELF headers, manifest (schema) or an embedded
    image's sha256 is wrong. The message names the file and what is wrong, and says to
    rebuild; ``name`` is the package and ``path`` the file, as for any ``ImportError``.

    An ``ImportError`` like its siblings: whatever handles a package whose compiled part
    cannot be used (an optional accelerated path, a fallback) handles this one too.
    """


class UnsupportedCPUError(RuntimeError):
    """No CPU variant of the bundle can run on this CPU (or ``GPUAOT_CPU`` names one that
    cannot); the message names the bundle's levels and this CPU's."""
