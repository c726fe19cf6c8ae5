"""`PacsError`: a DICOMweb server could not do what was asked; the message names the server."""

from __future__ import annotations

from ..errors import LoadError


class PacsError(LoadError):
    """A search, retrieve or store on a DICOMweb server failed.

    It is a `LoadError` so that everything that already reports a scan that cannot be opened
    (CLI, GUI, batch) reports a series that cannot be fetched in the same way. ``path`` is the
    server or series URL (never with credentials in it), ``reason`` says what went wrong.
    """

    def __init__(self, where: str, reason: str, hint: str | None = None, status: int | None = None,
                 unreachable: bool = False):
        self.status = status  # the HTTP status, when the server answered
        self.unreachable = unreachable  # no connection at all (a cached copy may still do)
        super().__init__(where, reason, hint)
