"""QIDO-RS search criteria: what the study browser and batch specs search for.

`StudyQuery` turns the study browser's fields into QIDO-RS filters; `series_filters` turns a
batch spec's ``qido:`` mapping (keywords such as ``Modality`` or ``StudyDate``) into filters
at the series level, checking each keyword against the DICOM dictionary.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from typing import Any

from .errors import PacsError

_DATE = re.compile(r"^\d{8}$")


def dicom_date(value: str | _dt.date | None, what: str = "date") -> str:
    """``YYYYMMDD`` from ``YYYYMMDD``, ``YYYY-MM-DD`` or a date; "" for nothing."""
    if value in (None, ""):
        return ""
    if isinstance(value, _dt.date):
        return value.strftime("%Y%m%d")
    text = str(value).strip().replace("-", "")
    if not _DATE.match(text):
        raise PacsError("search", f"{what} {value!r} is not a date (use YYYY-MM-DD or YYYYMMDD)")
    try:
        _dt.datetime.strptime(text, "%Y%m%d")
    except ValueError:
        raise PacsError("search", f"{what} {value!r} is not a valid date") from None
    return text


def date_range(start: str | _dt.date | None, end: str | _dt.date | None) -> str:
    """QIDO date range: ``A-B``, ``A-`` (from), ``-B`` (until), ``A`` (one day) or ""."""
    a, b = dicom_date(start, "from date"), dicom_date(end, "to date")
    if a and b and a > b:
        raise PacsError("search", f"the date range is reversed ({start} is after {end})")
    if a and b:
        return a if a == b else f"{a}-{b}"
    if a:
        return f"{a}-"
    if b:
        return f"-{b}"
    return ""


@dataclass
class StudyQuery:
    """The study browser's search fields; empty fields do not filter."""

    patient_name: str = ""
    patient_id: str = ""
    accession: str = ""
    date_from: str = ""
    date_to: str = ""
    modality: str = ""

    def filters(self) -> dict[str, str]:
        f: dict[str, str] = {}
        name = self.patient_name.strip()
        if name:
            # a plain name matches as a prefix, the way people type it ("Doe" finds "DOE^JOHN");
            # the component separator "^" is matched with the one-character wildcard, because
            # some servers compare a percent-encoded "^" literally
            name = name.replace("^", "?")
            f["PatientName"] = name if name.endswith("*") else f"{name}*"
        if self.patient_id.strip():
            f["PatientID"] = self.patient_id.strip()
        if self.accession.strip():
            f["AccessionNumber"] = self.accession.strip()
        dates = date_range(self.date_from, self.date_to)
        if dates:
            f["StudyDate"] = dates
        if self.modality.strip():
            f["ModalitiesInStudy"] = self.modality.strip().upper()
        return f


def series_filters(query: dict[str, Any], where: str = "qido") -> dict[str, str]:
    """Series-level QIDO filters from a mapping of DICOM keywords to values."""
    from pydicom.datadict import tag_for_keyword

    if not isinstance(query, dict):
        raise PacsError(where, "a QIDO query must be a mapping of DICOM keywords to values, e.g. {Modality: CT}")
    out: dict[str, str] = {}
    for key, value in query.items():
        if tag_for_keyword(str(key)) is None:
            raise PacsError(where, f"{key!r} is not a DICOM keyword (e.g. Modality, StudyDate, PatientID)")
        if isinstance(value, (list, tuple)) and str(key).endswith("Date") and len(value) == 2:
            value = date_range(*value)
        elif isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)  # QIDO: a list of values matches any of them
        elif isinstance(value, _dt.date):
            value = dicom_date(value)
        out[str(key)] = str(value)
    return out
