"""Send results back to the PACS: a DICOM SEG or RT Structure Set (or any DICOM file) stored
with STOW-RS.

The objects are written by the same writers as File ▸ Export (`export.dicom_seg`,
`export.rtstruct`), so they reference the source series' instances and sit in the source
study; `send_labels` writes one to a temporary folder and stores it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pydicom

from .errors import PacsError
from .urls import is_series_url, normalise_service, parse_series_url


@dataclass
class SentObject:
    """What was stored, and where to find it on the server."""

    service: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class: str

    @property
    def url(self) -> str:
        return f"{self.service}/studies/{self.study_uid}/series/{self.series_uid}"

    def to_dict(self) -> dict:
        return {"service": self.service, "study": self.study_uid, "series": self.series_uid,
                "sop_instance_uid": self.sop_uid, "sop_class": self.sop_class, "url": self.url}


def service_of(url: str) -> str:
    """The DICOMweb service of a service URL or of a series URL on it."""
    return parse_series_url(url).service if is_series_url(url) else normalise_service(url)


def send_datasets(url: str, datasets: list[pydicom.Dataset], client=None) -> list[SentObject]:
    """Store ``datasets`` on the service of ``url``; raises `PacsError` if any is refused."""
    from .client import PacsClient

    service = service_of(url)
    client = client or PacsClient(service)
    result = client.store(datasets)
    sent = [SentObject(service, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID),
                       str(ds.SOPClassUID)) for ds in datasets]
    missing = [s.sop_uid for s in sent if result.stored and s.sop_uid not in result.stored]
    if missing:
        raise PacsError(service, f"storing: the server did not confirm {len(missing)} instance(s)")
    return sent


def send_file(url: str, path: str | Path, client=None) -> SentObject:
    """Store one DICOM file (a SEG, an RT structure set, ...)."""
    try:
        ds = pydicom.dcmread(path)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise PacsError(str(path), f"not a DICOM file that can be sent ({exc})") from None
    return send_datasets(url, [ds], client)[0]


FORMATS = {"seg": "DICOM SEG", "rtstruct": "RT Structure Set"}


def send_labels(url: str, labels, volume, label_set, extra: dict | None = None, client=None,
                kind: str = "seg") -> SentObject:
    """Write the labels as a DICOM SEG (``kind="seg"``) or an RT Structure Set
    (``"rtstruct"``) on the volume's source series, with the export writers, and store it."""
    from ..export import write_dicom_seg, write_rtstruct

    if kind not in FORMATS:
        raise PacsError(url, f"cannot send labels as {kind!r} (use seg or rtstruct)")
    service_of(url)  # a bad URL fails before any work
    writer = write_dicom_seg if kind == "seg" else write_rtstruct
    with tempfile.TemporaryDirectory(prefix="medplib-stow-") as tmp:
        path = writer(Path(tmp) / "labels.dcm", labels, volume, label_set, extra=extra)
        return send_file(url, path, client)
