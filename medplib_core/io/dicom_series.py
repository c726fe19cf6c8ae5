"""DICOM discovery: read headers (no pixels), group files into series, list and pick series."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from ..errors import FATAL, LoadError
from .dicom_deflate import check_inflated_size

DICOMDIR_UID = "1.2.840.10008.1.3.10"
_PIXEL_TAGS = {(0x7FE0, 0x0010), (0x7FE0, 0x0008), (0x7FE0, 0x0009)}
_RAW_FIRST_GROUPS = {0x0002, 0x0008}  # files without the 128-byte preamble start with these


@dataclass
class Header:
    """One DICOM file read up to (not including) its pixel data."""

    path: str
    ds: Dataset
    size: int
    has_pixels: bool
    pixel_offset: int | None  # file offset of the pixel data element (None: unknown/deflated)
    pixel_tag: tuple[int, int] | None = None  # (7FE0,0010) pixels, 0008 float, 0009 double
    pixel_head: bytes = b""  # the first 12 bytes of the pixel data element

    @property
    def float_dtype(self):
        """float32/float64 for Float/Double Float Pixel Data, else None."""
        return {(0x7FE0, 0x0008): np.float32, (0x7FE0, 0x0009): np.float64}.get(self.pixel_tag)

    @property
    def n_frames(self) -> int:
        try:
            return max(int(self.ds.get("NumberOfFrames", 1) or 1), 1)
        except (TypeError, ValueError):
            return 1

    @property
    def sop_class_uid(self) -> str:
        return _uid_with_meta(self.ds, "SOPClassUID", "MediaStorageSOPClassUID")

    @property
    def sop_instance_uid(self) -> str:
        return _uid_with_meta(self.ds, "SOPInstanceUID", "MediaStorageSOPInstanceUID")


def _uid_with_meta(ds: Dataset, name: str, meta_name: str) -> str:
    uid = str(ds.get(name, "") or "").strip()
    meta = getattr(ds, "file_meta", None)
    if not uid and meta is not None:
        uid = str(meta.get(meta_name, "") or "").strip()
    return uid


@dataclass
class SeriesInfo:
    """A series found in a folder (what `list_series` returns)."""

    uid: str  # SeriesInstanceUID, or a stand-in "(no UID) ..." key when the files lack one
    description: str
    modality: str
    n_files: int
    size_bytes: int
    series_number: int | None = None
    rows: int = 0
    columns: int = 0
    n_frames: int = 0  # total frames (slices) over all files
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("uid", "description", "modality", "n_files",
                                            "size_bytes", "series_number", "rows", "columns",
                                            "n_frames")}
        return d


def sniff_dicom(path: str | os.PathLike) -> str | None:
    """Return "part10" for a file with the DICM preamble, "raw" for a plausible
    preamble-less DICOM stream, None otherwise (reads 132 bytes only)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return None
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "part10"
    if len(head) >= 8:
        group_le = struct.unpack("<H", head[:2])[0]
        group_be = struct.unpack(">H", head[:2])[0]
        vr = head[4:6]
        plausible_vr = vr.isalpha() and vr.isupper()
        if group_le in _RAW_FIRST_GROUPS or (group_be == 0x0008 and plausible_vr):
            elem = struct.unpack("<H", head[2:4])[0]
            if group_le == 0x0008 and elem > 0x0100 and not plausible_vr:
                return None
            return "raw"
    return None


def read_header(path: str, kind: str | None = None, keep_deflated: bool = False) -> Header:
    """Read one file's header. Raises LoadError when it is not readable DICOM.

    A deflated file is measured first (it must inflate within the voxel limit); with
    ``keep_deflated`` its dataset is read whole, pixels included, so that decoding does not
    inflate it a second time.
    """
    kind = kind or sniff_dicom(path)
    if kind is None:
        raise LoadError(path, "not a DICOM file")
    try:
        size = os.path.getsize(path)
        if kind == "part10":
            check_inflated_size(path)
        with open(path, "rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True, force=(kind == "raw"))
            pos = fh.tell()
            head = fh.read(12)
        ts = _transfer_syntax(ds)
        if keep_deflated and ts is not None and ts.is_deflated:
            ds = pydicom.dcmread(path, force=(kind == "raw"))
    except LoadError:
        raise
    except FATAL:
        raise
    except BaseException as exc:  # pydicom raises many types on malformed input
        raise LoadError(path, f"unreadable DICOM header ({type(exc).__name__}: {exc})") from None
    lift_frame_groups(ds)
    has_pixels, offset, ptag = False, None, None
    if len(head) >= 4 and not (ts is not None and ts.is_deflated):
        big = ts is not None and not ts.is_little_endian
        g, e = struct.unpack(">HH" if big else "<HH", head[:4])
        has_pixels = (g, e) in _PIXEL_TAGS
        offset = pos if has_pixels else None
        ptag = (g, e) if has_pixels else None
    elif ts is not None and ts.is_deflated:
        has_pixels = "Rows" in ds
    return Header(path=str(path), ds=ds, size=size, has_pixels=has_pixels, pixel_offset=offset,
                  pixel_tag=ptag, pixel_head=head if has_pixels else b"")


# (functional group sequence, attributes it holds) for `lift_frame_groups`
_FRAME_GROUPS = (
    ("PlanePositionSequence", ("ImagePositionPatient",)),
    ("PlaneOrientationSequence", ("ImageOrientationPatient",)),
    ("PixelMeasuresSequence", ("PixelSpacing", "SliceThickness", "SpacingBetweenSlices")),
    ("PixelValueTransformationSequence", ("RescaleSlope", "RescaleIntercept", "RescaleType")),
    ("FrameVOILUTSequence", ("WindowCenter", "WindowWidth")),
)


def lift_frame_groups(ds: Dataset) -> None:
    """Give a one-frame enhanced object (enhanced CT/MR, a one-frame SEG) its geometry where
    the single-frame reader looks: attributes of its functional groups (per-frame first, then
    shared) are copied to the top level where the top level lacks them."""
    try:
        if int(ds.get("NumberOfFrames", 1) or 1) != 1:
            return
        groups = [seq[0] for name in ("PerFrameFunctionalGroupsSequence",
                                      "SharedFunctionalGroupsSequence")
                  if (seq := ds.get(name))]
        for seq_name, attrs in _FRAME_GROUPS:
            for group in groups:
                item = group.get(seq_name)
                if not item:
                    continue
                for attr in attrs:
                    if attr in item[0] and attr not in ds:
                        setattr(ds, attr, item[0][attr].value)
                break
    except Exception:  # noqa: BLE001 - malformed groups: the file keeps what its top level says
        return


def _transfer_syntax(ds: Dataset):
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid:
        return pydicom.uid.UID(str(uid))
    # preamble-less files: pydicom records how it parsed them
    if getattr(ds, "original_encoding", None):
        implicit, little = ds.original_encoding
        if implicit:
            return pydicom.uid.ImplicitVRLittleEndian
        return pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian
    return None


def transfer_syntax(h: Header):
    """The file's transfer syntax UID (guessed from the parse when the meta group is missing)."""
    return _transfer_syntax(h.ds)


def series_key(ds: Dataset) -> str:
    uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
    if uid:
        return uid
    num = ds.get("SeriesNumber", None)
    desc = str(ds.get("SeriesDescription", "") or "")
    return f"(no UID) {ds.get('Modality', '')} #{num if num is not None else ''} {desc}".strip()


def scan_folder(folder: str, tick=None) -> tuple[list[Header], list[str]]:
    """Headers of every DICOM image file under ``folder`` (recursive) and notes on what was
    skipped. ``tick(done, total)`` is called per file (it may raise to cancel)."""
    paths = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        paths.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith("."))
    if not paths:
        raise LoadError(folder, "the folder is empty")
    headers: list[Header] = []
    not_dicom = no_image = unreadable = 0
    for n, p in enumerate(paths):
        if tick is not None:
            tick(n, len(paths))
        kind = sniff_dicom(p) if os.path.isfile(p) else None  # never open pipes/devices
        if kind is None:
            not_dicom += 1
            continue
        try:
            h = read_header(p, kind)
        except LoadError:
            unreadable += 1
            continue
        if not h.has_pixels or h.sop_class_uid == DICOMDIR_UID:
            no_image += 1
            continue
        headers.append(h)
    notes = []
    if not_dicom:
        notes.append(f"skipped {not_dicom} non-DICOM file(s) in the folder")
    if no_image:
        notes.append(f"skipped {no_image} DICOM file(s) without an image (DICOMDIR, SR, RT ...)")
    if unreadable:
        notes.append(f"skipped {unreadable} unreadable DICOM file(s)")
    if not headers:
        raise LoadError(folder, f"no DICOM images in the folder ({len(paths)} file(s): "
                        f"{not_dicom} not DICOM, {no_image} without an image, "
                        f"{unreadable} unreadable)")
    return headers, notes


def group_series(headers: list[Header]) -> dict[str, list[Header]]:
    groups: dict[str, list[Header]] = {}
    for h in headers:
        groups.setdefault(series_key(h.ds), []).append(h)
    return groups


def describe(key: str, hs: list[Header]) -> SeriesInfo:
    ds = hs[0].ds
    num = ds.get("SeriesNumber", None)
    try:
        num = int(num) if num not in (None, "") else None
    except (TypeError, ValueError):
        num = None
    return SeriesInfo(
        uid=key,
        description=str(ds.get("SeriesDescription", "") or ""),
        modality=str(ds.get("Modality", "") or ""),
        n_files=len(hs),
        size_bytes=sum(h.size for h in hs),
        series_number=num,
        rows=int(ds.get("Rows", 0) or 0),
        columns=int(ds.get("Columns", 0) or 0),
        n_frames=sum(h.n_frames for h in hs),
        files=[h.path for h in hs],
    )


def _voxels(info: SeriesInfo) -> int:
    return info.rows * info.columns * info.n_frames


def sorted_series(groups: dict[str, list[Header]]) -> list[SeriesInfo]:
    """Series, largest first (voxels, then files), ties by series number and UID."""
    infos = [describe(k, v) for k, v in groups.items()]
    infos.sort(key=lambda s: (-_voxels(s), -s.n_files, s.series_number or 0, s.uid))
    return infos


def list_series(folder: str | os.PathLike) -> list[SeriesInfo]:
    """Every image series under ``folder``, largest first. Raises LoadError when none."""
    folder = str(folder)
    if not Path(folder).is_dir():
        raise LoadError(folder, "not a folder")
    headers, _ = scan_folder(folder)
    return sorted_series(group_series(headers))


def pick_series(folder: str, groups: dict[str, list[Header]], series) -> tuple[str, list[str]]:
    """The key of the series to load: by UID, by index into `sorted_series`, or the largest."""
    infos = sorted_series(groups)
    notes: list[str] = []
    if series is None:
        if len(infos) > 1:
            others = ", ".join(f"{s.uid} ({s.n_frames} images)" for s in infos[1:4])
            more = "" if len(infos) <= 4 else f" and {len(infos) - 4} more"
            notes.append(f"the folder holds {len(infos)} series; loaded the largest, "
                         f"{infos[0].uid!r} ({infos[0].description}); others: {others}{more}")
        return infos[0].uid, notes
    if isinstance(series, int) and not isinstance(series, bool):
        if not -len(infos) <= series < len(infos):
            raise LoadError(folder, f"series index {series} is out of range "
                            f"(the folder holds {len(infos)} series)")
        return infos[series].uid, notes
    key = str(series)
    if key in groups:
        return key, notes
    if key.isdigit() and int(key) < len(infos):
        return infos[int(key)].uid, notes
    raise LoadError(folder, f"no series {key!r} in the folder",
                    hint="available: " + ", ".join(s.uid for s in infos[:10]))
