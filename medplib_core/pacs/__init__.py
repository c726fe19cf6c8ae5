"""PACS access over DICOMweb: search (QIDO-RS), retrieve into a cache (WADO-RS), store (STOW-RS).

`resolve_scan` is the one place where a series URL becomes a local folder; `medplib_core.load`
and the CLIs go through it. Modules: `urls` (series URLs), `credentials` (none / basic /
bearer, environment and keyring), `client` (the protocol, via dicomweb-client), `cache`
(bounded LRU cache of complete series), `source` (resolution and loading), `send` (STOW of a
DICOM SEG), `query` (QIDO search criteria). Importing this package needs no network library.
"""

from .errors import PacsError  # noqa: F401
from .urls import SeriesRef, is_series_url, is_url, parse_series_url  # noqa: F401


def resolve_scan(path_or_url, progress=None, cancel=None, **kwargs) -> str:
    """A local path for a path or a DICOMweb series URL (see `medplib_core.pacs.source`)."""
    from .source import resolve_scan as _resolve

    return _resolve(path_or_url, progress, cancel, **kwargs)
