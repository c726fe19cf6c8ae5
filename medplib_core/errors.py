"""The error families that medplib_core raises for bad input."""

from __future__ import annotations


class MedplibError(Exception):
    """Base class of every error medplib_core raises on purpose."""


class LoadError(MedplibError):
    """A file or folder could not be loaded; the message names the path and the reason."""

    def __init__(self, path, reason: str, hint: str | None = None):
        self.path = str(path)
        self.reason = reason
        self.hint = hint
        msg = f"{self.path}: {reason}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class PromptError(MedplibError):
    """A segmentation prompt is unusable (empty box, outside the image, ...)."""


class ExportError(MedplibError):
    """Writing or reading labels failed; the message names the file and the reason."""


class CancelledError(MedplibError):
    """A long operation was cancelled by the caller."""


class GeometryError(MedplibError, ValueError):
    """A volume's spacing, origin or direction is impossible (NaN, infinite, zero, singular)."""


# What an interpreter-level stop looks like; every *other* BaseException that reaches one of
# our boundaries comes from a native library (e.g. pyo3's PanicException from a Rust decoder)
# and is turned into the boundary's own error: ``except FATAL: raise`` then
# ``except BaseException as exc: ...``.
FATAL = (KeyboardInterrupt, SystemExit, GeneratorExit)
