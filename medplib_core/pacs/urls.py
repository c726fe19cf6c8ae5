"""DICOMweb URLs: recognise a series URL, split it into service + study + series, normalise.

A series URL is ``http(s)://host[:port]/<service path>/studies/<StudyUID>/series/<SeriesUID>``;
the part before ``/studies/`` is the DICOMweb service (what QIDO, WADO and STOW are rooted at).
Credentials never travel inside a URL here (they would end up in projects, logs and manifests):
a URL with ``user:password@`` is refused with a message that says where they go instead.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from .errors import PacsError

_UID = r"[0-9]+(?:\.[0-9]+)*"
_SERIES_RE = re.compile(rf"^(?P<service>.+?)/studies/(?P<study>{_UID})/series/(?P<series>{_UID})/?$")
CREDENTIALS_HINT = ("give the user name and password in MEDPLIB_DICOMWEB_USER / MEDPLIB_DICOMWEB_PASSWORD, "
                    "a token in MEDPLIB_DICOMWEB_TOKEN, or save them with the server in the application")


@dataclass(frozen=True)
class SeriesRef:
    """One series on one DICOMweb service."""

    service: str  # normalised service URL, no trailing slash
    study: str
    series: str

    @property
    def url(self) -> str:
        return f"{self.service}/studies/{self.study}/series/{self.series}"


def is_url(value) -> bool:
    """True for an http(s) URL (a string; paths and Path objects are never URLs)."""
    return isinstance(value, str) and value[:8].lower().startswith(("http://", "https://"))


def normalise_service(url: str) -> str:
    """Lower-case scheme and host, no default port, no trailing slash, no query; refuses
    URLs that carry credentials."""
    if not is_url(url):
        raise PacsError(str(url), "not a DICOMweb URL (it must start with http:// or https://)")
    parts = urlsplit(url.strip())
    if parts.username or parts.password:
        raise PacsError(redact(url), "the URL contains credentials; they are never kept in URLs",
                        hint=CREDENTIALS_HINT)
    if not parts.hostname:
        raise PacsError(url, "the URL names no host")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        raise PacsError(url, "the URL has an invalid port") from None
    scheme = parts.scheme.lower()
    if port and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    path = re.sub(r"/+", "/", parts.path).rstrip("/")
    return urlunsplit((scheme, host, path, "", ""))


def parse_series_url(url: str) -> SeriesRef:
    """Split a series URL; a clear `PacsError` for anything else."""
    service = normalise_service(url)  # checks scheme, host and credentials first
    parts = urlsplit(url.strip())
    m = _SERIES_RE.match(service)
    if not m or parts.query or parts.fragment:
        raise PacsError(url, "not a DICOMweb series URL",
                        hint="expected http(s)://host/dicom-web/studies/<StudyInstanceUID>/series/<SeriesInstanceUID>")
    return SeriesRef(m["service"], m["study"], m["series"])


def is_series_url(value) -> bool:
    """True when ``value`` looks like a series URL (no network access, no exception)."""
    if not is_url(value):
        return False
    try:
        parse_series_url(value)
    except PacsError:
        return False
    return True


def redact(url: str) -> str:
    """The URL with any user:password@ removed (for messages)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        try:
            if parts.port:
                netloc += f":{parts.port}"
        except ValueError:
            pass
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def display_name(url: str) -> str:
    """A short name for a series URL: the series UID's tail, for titles and file names."""
    return os.path.basename(url.rstrip("/")) or url
