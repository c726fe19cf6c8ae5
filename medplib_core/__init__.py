"""MedPLIB Studio core: imaging I/O, annotation model, engines, export, batch and CLI.

Everything here runs headless; nothing in this package imports Qt.
"""

__version__ = "0.1.0"

from .errors import LoadError, MedplibError, PromptError, ExportError  # noqa: E402,F401
from .volume import Volume, SourceInfo  # noqa: E402,F401


def load(path, series=None, progress=None, cancel=None):
    """Load a DICOM file or folder, a NIfTI file or a 2D image into a `Volume`.

    See `medplib_core.io.loader.load` for the details.
    """
    from .io.loader import load as _load

    return _load(path, series=series, progress=progress, cancel=cancel)
