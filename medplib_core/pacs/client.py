"""`PacsClient`: QIDO-RS search, WADO-RS retrieve and STOW-RS store on one DICOMweb service.

A thin layer over ``dicomweb-client`` that adds what the application needs: credentials from
`credentials`, answers as small dataclasses, and every failure turned into a `PacsError` that
names the server and the reason (server down, credentials refused, not found, transfer cut).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydicom
import requests
from pydicom.dataset import Dataset

from .. import __version__
from .credentials import Credentials, credentials_for
from .errors import PacsError
from .query import StudyQuery
from .urls import CREDENTIALS_HINT, normalise_service

ANY_TRANSFER_SYNTAX = (("application/dicom", "*"),)  # the stored files as they are (no transcoding)
STUDY_FIELDS = ("StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
                "NumberOfStudyRelatedInstances", "AccessionNumber", "StudyDate", "StudyTime")
SERIES_FIELDS = ("SeriesDescription", "Modality", "SeriesNumber", "NumberOfSeriesRelatedInstances",
                 "SeriesDate", "BodyPartExamined")


@dataclass
class StudyRow:
    study_uid: str
    patient_name: str = ""
    patient_id: str = ""
    accession: str = ""
    date: str = ""  # YYYYMMDD
    description: str = ""
    modalities: list[str] = field(default_factory=list)
    n_series: int | None = None
    n_instances: int | None = None


@dataclass
class SeriesRow:
    service: str
    study_uid: str
    series_uid: str
    modality: str = ""
    description: str = ""
    number: int | None = None
    n_instances: int | None = None

    @property
    def url(self) -> str:
        return f"{self.service}/studies/{self.study_uid}/series/{self.series_uid}"


@dataclass
class StoreResult:
    """What STOW-RS answered: the stored instances (and their retrieve URLs)."""

    service: str
    stored: list[str]  # SOP Instance UIDs
    urls: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value)


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def _dataset(item: dict) -> Dataset:
    try:
        return Dataset.from_json(item)
    except Exception:  # noqa: BLE001 - one odd attribute must not hide the whole answer
        ds = Dataset()
        for tag, elem in item.items():
            try:
                ds.update(Dataset.from_json({tag: elem}))
            except Exception:  # noqa: BLE001
                continue
        return ds


class _QuerySession(requests.Session):
    """A session that sends QIDO wildcards and value lists literally (``*``, ``?``, ``,``).

    dicomweb-client percent-encodes every query value; some servers (Orthanc 1.10 among them)
    match the encoded text instead of decoding it, so ``PatientName=Doe*`` found nothing. The
    three characters are legal in a URL query as they are, so this is correct for every server.
    """

    _LITERAL = (("%2A", "*"), ("%3F", "?"), ("%2C", ","))

    def send(self, request, **kwargs):
        if request.url and "?" in request.url:
            head, query = request.url.split("?", 1)
            for code, char in self._LITERAL:
                query = query.replace(code, char).replace(code.lower(), char)
            request.url = f"{head}?{query}"
        return super().send(request, **kwargs)


def _require_closing_boundary(response, *args, **kwargs):
    """Response hook: a multipart body must end with its closing boundary.

    Servers may send a retrieve without a length, ending it by closing the connection (Orthanc
    does), so a transfer cut mid-way looks like a normal end to HTTP; dicomweb-client would then
    hand over the truncated last instance. Here such an ending raises a ChunkedEncodingError.
    """
    ctype = response.headers.get("Content-Type", "")
    m = re.search(r'boundary="?([^";]+)"?', ctype)
    if not ctype.lower().startswith("multipart/related") or not m:
        return response
    closing = b"--" + m.group(1).strip().encode() + b"--"
    keep = len(closing) + 64
    original = response.iter_content

    def iter_content(chunk_size=1, decode_unicode=False):
        window, seen = b"", False
        for chunk in original(chunk_size, decode_unicode):
            window = window[-keep:] + chunk
            seen = seen or closing in window
            yield chunk
        if not seen:
            raise requests.exceptions.ChunkedEncodingError(
                "Connection broken: the multipart message ended before its closing boundary")

    response.iter_content = iter_content
    return response


class PacsClient:
    """One DICOMweb service (e.g. ``http://pacs:8042/dicom-web``) with its credentials."""

    def __init__(self, service: str, credentials: Credentials | None = None,
                 timeout: tuple[float, float] = (5.0, 60.0)):
        from dicomweb_client import DICOMwebClient

        self.service = normalise_service(service)
        if credentials is None:
            credentials, self.credentials_source = credentials_for(self.service)
        else:
            self.credentials_source = "given"
        self.credentials = credentials
        session = _QuerySession()
        session.headers["User-Agent"] = f"medplib-studio/{__version__}"
        credentials.apply(session)
        try:
            self._web = DICOMwebClient(self.service, session=session, timeout=timeout,
                                       callback=_require_closing_boundary)
        except ValueError as exc:
            raise PacsError(self.service, f"not a usable DICOMweb URL ({exc})") from None
        self._web.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=500)

    # ----- errors ----------------------------------------------------------------------------
    def error(self, exc: BaseException, what: str) -> PacsError:
        """The `PacsError` for a failure of ``what`` (e.g. "searching studies")."""
        where = self.service
        if isinstance(exc, PacsError):
            return exc
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            code = exc.response.status_code
            if code == 401:
                return PacsError(where, f"{what}: the server refused the credentials "
                                 f"(HTTP 401; sent {self.credentials.describe()})", CREDENTIALS_HINT, code)
            if code == 403:
                return PacsError(where, f"{what}: access denied (HTTP 403) for "
                                 f"{self.credentials.describe()}", "ask the PACS administrator for access", code)
            if code == 404:
                return PacsError(where, f"{what}: not found on the server (HTTP 404)",
                                 "check the URL: it must end at the DICOMweb root, e.g. .../dicom-web", code)
            reason = (exc.response.reason or "").strip()
            return PacsError(where, f"{what}: the server answered HTTP {code} {reason}".rstrip(), None, code)
        if isinstance(exc, requests.exceptions.SSLError):
            return PacsError(where, f"{what}: the TLS connection failed ({_short(exc)})",
                             "check the server's certificate (or the https/http scheme)")
        if isinstance(exc, requests.exceptions.ChunkedEncodingError):
            return PacsError(where, f"{what}: the transfer was interrupted ({_short(exc)})",
                             "try again; nothing incomplete was kept")
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return PacsError(where, f"{what}: the server did not answer (connection timed out)",
                             "check the URL and that the PACS is running", unreachable=True)
        if isinstance(exc, requests.Timeout):
            return PacsError(where, f"{what}: the server stopped answering (read timed out)", "try again later")
        if isinstance(exc, requests.ConnectionError):
            return PacsError(where, f"{what}: cannot connect: the server is down or unreachable "
                             f"({_short(exc)})", "check the URL and that the PACS is running", unreachable=True)
        if isinstance(exc, requests.RequestException):
            return PacsError(where, f"{what}: {type(exc).__name__}: {_short(exc)}")
        if isinstance(exc, ValueError):  # dicomweb-client: bad UIDs, unexpected media types, JSON
            return PacsError(where, f"{what}: unexpected answer or request ({exc})")
        return PacsError(where, f"{what}: unexpected {type(exc).__name__}: {exc}")

    def _call(self, what: str, fn: Callable, *args: Any, **kwargs: Any):
        try:
            return fn(*args, **kwargs)
        except (requests.RequestException, ValueError) as exc:
            raise self.error(exc, what) from None

    # ----- QIDO-RS ---------------------------------------------------------------------------
    def ping(self) -> int:
        """Check that the server answers a study search with these credentials; returns the
        number of studies in a one-result search (0 or 1)."""
        return len(self._call("connecting", self._web.search_for_studies, limit=1))

    def search_studies(self, query: StudyQuery | None = None, limit: int = 200) -> list[StudyRow]:
        query = query or StudyQuery()
        found = self._call("searching studies", self._web.search_for_studies, limit=limit,
                           fields=list(STUDY_FIELDS), search_filters=query.filters())
        rows = []
        for item in found:
            ds = _dataset(item)
            uid = _text(ds, "StudyInstanceUID")
            if not uid:
                continue
            mods = ds.get("ModalitiesInStudy", [])
            mods = [str(m) for m in (mods if isinstance(mods, (list, pydicom.multival.MultiValue)) else [mods]) if m]
            rows.append(StudyRow(uid, _text(ds, "PatientName"), _text(ds, "PatientID"),
                                 _text(ds, "AccessionNumber"), _text(ds, "StudyDate"),
                                 _text(ds, "StudyDescription"), mods,
                                 _int(ds, "NumberOfStudyRelatedSeries"), _int(ds, "NumberOfStudyRelatedInstances")))
        rows.sort(key=lambda r: (r.date, r.patient_name), reverse=True)
        return rows

    def search_series(self, study_uid: str | None = None, filters: dict[str, Any] | None = None,
                      limit: int | None = None) -> list[SeriesRow]:
        """The series of one study (or, without ``study_uid``, every series matching ``filters``)."""
        found = self._call("searching series", self._web.search_for_series, study_uid,
                           fields=list(SERIES_FIELDS), search_filters=filters or None, limit=limit,
                           get_remaining=limit is None)
        rows = []
        for item in found:
            ds = _dataset(item)
            study, series = _text(ds, "StudyInstanceUID") or (study_uid or ""), _text(ds, "SeriesInstanceUID")
            if not (study and series):
                continue
            rows.append(SeriesRow(self.service, study, series, _text(ds, "Modality"),
                                  _text(ds, "SeriesDescription"), _int(ds, "SeriesNumber"),
                                  _int(ds, "NumberOfSeriesRelatedInstances")))
        rows.sort(key=lambda r: (r.number is None, r.number or 0, r.description))
        return rows

    def instance_uids(self, study_uid: str, series_uid: str) -> list[str]:
        """SOP Instance UIDs of a series, as the server lists them (QIDO-RS)."""
        found = self._call("listing the series' instances", self._web.search_for_instances,
                           study_uid, series_uid, fields=["SOPInstanceUID"], get_remaining=True)
        uids = []
        for item in found:
            value = (item.get("00080018") or {}).get("Value") or []
            if value:
                uids.append(str(value[0]))
        return uids

    # ----- WADO-RS ---------------------------------------------------------------------------
    def iter_series(self, study_uid: str, series_uid: str) -> Iterator[Dataset]:
        """Stream the instances of a series in their stored transfer syntax. Closing the
        iterator early closes the connection."""
        what = "retrieving the series"
        try:
            stream = self._web.iter_series(study_uid, series_uid, media_types=ANY_TRANSFER_SYNTAX)
        except requests.HTTPError as exc:
            if exc.response is None or exc.response.status_code not in (400, 406):
                raise self.error(exc, what) from None
            # a server without "any transfer syntax": let it choose
            stream = self._call(what, self._web.iter_series, study_uid, series_uid)
        except (requests.RequestException, ValueError) as exc:
            raise self.error(exc, what) from None
        try:
            while True:
                try:
                    ds = next(stream)
                except StopIteration:
                    return
                except (requests.RequestException, ValueError) as exc:
                    raise self.error(exc, what) from None
                except Exception as exc:  # noqa: BLE001 - pydicom on a cut or damaged part
                    raise PacsError(self.service, f"{what}: received a damaged instance "
                                    f"({type(exc).__name__}: {exc})", "try again; nothing incomplete was kept") from None
                yield ds
        finally:
            close = getattr(stream, "close", None)
            if close:
                close()

    # ----- STOW-RS ---------------------------------------------------------------------------
    def store(self, datasets: Sequence[Dataset]) -> StoreResult:
        """Store instances; raises `PacsError` when the server rejects any of them."""
        answer = self._call("storing", self._web.store_instances, list(datasets))
        stored, urls, warnings = [], [], []
        for item in answer.get("ReferencedSOPSequence", []) or []:
            uid = str(item.get("ReferencedSOPInstanceUID", ""))
            if uid:
                stored.append(uid)
            if item.get("RetrieveURL"):
                urls.append(str(item.RetrieveURL))
            if item.get("WarningReason") is not None:
                warnings.append(f"{uid}: warning {item.WarningReason}")
        failed = answer.get("FailedSOPSequence", []) or []
        if failed:
            reasons = ", ".join(f"{f.get('ReferencedSOPInstanceUID', '?')} (reason {f.get('FailureReason', '?')})"
                                for f in failed)
            raise PacsError(self.service, f"storing: the server rejected {len(failed)} instance(s): {reasons}")
        wanted = [str(d.SOPInstanceUID) for d in datasets]
        if not stored and answer.get("RetrieveURL") is None and wanted:
            warnings.append("the server did not list the stored instances in its answer")
        return StoreResult(self.service, stored or [], urls, warnings)


def _short(exc: BaseException) -> str:
    """The innermost useful words of a requests/urllib3 error (no URL repetition)."""
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "Temporary failure in name resolution",
                   "No route to host", "Connection reset by peer", "timed out", "IncompleteRead",
                   "Connection broken", "Remote end closed connection", "certificate verify failed"):
        if marker in text:
            return marker
    return text if len(text) < 160 else text[:157] + "..."
