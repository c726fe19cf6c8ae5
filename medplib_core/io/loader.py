"""`load(path)`: the one entry point that turns a file or folder into a `Volume`.

Dispatch: a folder is scanned for DICOM series; a file is recognised by its content (DICOM
preamble or a preamble-less DICOM stream, NIfTI header, PNG/JPEG/TIFF/BMP magic) and, for
gzip-compressed NIfTI, by its ``.nii.gz`` name. Any failure on a bad input surfaces as
`LoadError` naming the file and the reason; cancelling raises `CancelledError`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..errors import FATAL, CancelledError, GeometryError, LoadError
from ..pacs.urls import is_url
from ..volume import Volume
from .dicom_series import DICOMDIR_UID, group_series, pick_series, read_header, scan_folder, \
    sniff_dicom
from .image2d import IMAGE_SUFFIXES, load_image, sniff_image
from .nifti import is_nifti_path, load_nifti, sniff_nifti


class _CallbackError(Exception):
    """An exception raised by the caller's own progress/cancel callback (re-raised as is)."""

    def __init__(self, original: BaseException):
        super().__init__(str(original))
        self.original = original


class Reporter:
    """Calls ``progress(done, total)`` and polls ``cancel()``; raises CancelledError."""

    def __init__(self, progress: Callable[[int, int], object] | None,
                 cancel: Callable[[], bool] | None):
        self.progress, self.cancel = progress, cancel
        self.offset = 0  # work already done in an earlier phase (header scan)

    def poll(self) -> None:
        """Raise CancelledError when the caller asked to stop (for loops that report nothing)."""
        try:
            stop = bool(self.cancel()) if self.cancel is not None else False
        except Exception as exc:
            raise _CallbackError(exc) from exc
        if stop:
            raise CancelledError("loading was cancelled")

    def __call__(self, done: int, total: int) -> None:
        self.poll()
        if self.progress is not None:
            try:
                self.progress(self.offset + done, self.offset + total)
            except Exception as exc:
                raise _CallbackError(exc) from exc


def load(path, series=None, progress=None, cancel=None) -> Volume:
    """Load a DICOM file or folder, a NIfTI file, a 2D image or a DICOMweb series URL
    (retrieved through the PACS cache, `medplib_core.pacs.source`) into a `Volume`.

    ``series``: for a folder with several DICOM series, a SeriesInstanceUID or an index into
    `list_series` (largest first); by default the largest series loads and a note says so.
    ``progress(done, total)`` is called as work proceeds (for a folder the total grows from
    the file count to file count + slices once the series is chosen); ``cancel()`` returning
    True stops the load with `CancelledError`. Every other failure raises `LoadError`.
    """
    try:
        p = os.fspath(path)
    except TypeError:
        raise LoadError(str(path), f"not a path ({type(path).__name__})") from None
    if is_url(p):
        from ..pacs.source import load_series_url

        return load_series_url(p, series, progress, cancel)
    rep = Reporter(progress, cancel)
    try:
        return _load(str(p), series, rep)
    except (LoadError, CancelledError):
        raise
    except _CallbackError as exc:
        raise exc.original from None
    except GeometryError as exc:
        raise LoadError(p, f"impossible geometry: {exc}") from None
    except MemoryError:
        raise LoadError(p, "not enough memory to load it") from None
    except RecursionError:
        raise LoadError(p, "the file is malformed (nesting too deep)") from None
    except FATAL:
        raise
    except BaseException as exc:  # the boundary: nothing else escapes for a bad file (this
        # includes a native decoder's panic, which is no Exception)
        raise LoadError(p, f"unexpected {type(exc).__name__}: {exc}") from exc


def _load(p: str, series, rep: Reporter) -> Volume:
    if not os.path.exists(p):
        raise LoadError(p, "no such file or folder")
    if os.path.isdir(p):
        return _load_dicom_folder(p, series, rep)
    if not os.path.isfile(p):
        raise LoadError(p, "not a regular file (a pipe or device?)")
    if not os.access(p, os.R_OK):
        raise LoadError(p, "permission denied")
    if os.path.getsize(p) == 0:
        raise LoadError(p, "the file is empty")
    kind = sniff_dicom(p)
    if kind == "part10":
        return _load_dicom_file(p, kind, rep)
    if sniff_nifti(p) or (is_nifti_path(p) and _is_gzip(p)):
        return load_nifti(p, rep)
    if sniff_image(p):
        return load_image(p, rep)
    if kind == "raw":
        return _load_dicom_file(p, kind, rep)
    if is_nifti_path(p):
        raise LoadError(p, "named like NIfTI but has no NIfTI header")
    if p.lower().endswith(IMAGE_SUFFIXES):
        raise LoadError(p, "named like an image but its content is not PNG/JPEG/TIFF/BMP")
    raise LoadError(p, "not a recognised format (expected DICOM, NIfTI, PNG, JPEG, TIFF or "
                    "BMP)")


def _is_gzip(p: str) -> bool:
    with open(p, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _load_dicom_file(p: str, kind: str, rep: Reporter) -> Volume:
    from .dicom_multiframe import load_multiframe
    from .dicom_single import load_single_frames

    h = read_header(p, kind, keep_deflated=True)
    if h.sop_class_uid == DICOMDIR_UID:
        raise LoadError(p, "no image in the file: it is a DICOMDIR (a media index)",
                        hint="open the folder that holds it instead")
    if not h.has_pixels and "Rows" in h.ds and "Columns" in h.ds and \
            h.pixel_offset is None and h.size > 0 and _ends_in_header(h):
        raise LoadError(p, "truncated file: it ends before its pixel data")
    if not h.has_pixels:
        what = _sop_name(h.sop_class_uid)
        raise LoadError(p, f"no image in the file ({what}): nothing to display",
                        hint="structured reports, RT structure sets and similar objects "
                        "carry no pixel data")
    if h.n_frames > 1:
        return load_multiframe(p, h, rep, [])
    return load_single_frames(p, [h], rep, [])


def _ends_in_header(h) -> bool:
    """True when an image header (Rows/Columns present) runs to the end of the file, i.e.
    the file was cut before its pixel data rather than being a pixel-less object."""
    from pydicom.uid import UID

    uid = h.sop_class_uid
    storage = bool(uid) and "Image" in UID(uid).name
    return storage or "BitsAllocated" in h.ds


def _sop_name(uid: str) -> str:
    if not uid:
        return "no SOP class"
    try:
        from pydicom.uid import UID

        name = UID(uid).name
        return name if name != uid else f"SOP class {uid}"
    except Exception:
        return f"SOP class {uid}"


def _load_dicom_folder(folder: str, series, rep: Reporter) -> Volume:
    from .dicom_multiframe import load_multiframe
    from .dicom_single import load_single_frames

    headers, notes = scan_folder(folder, tick=lambda d, t: rep(d, 2 * t))
    rep.offset = len(headers)
    groups = group_series(headers)
    key, pick_notes = pick_series(folder, groups, series)
    notes = notes + pick_notes
    chosen = groups[key]
    multi = [h for h in chosen if h.n_frames > 1]
    if multi:
        best = max(multi, key=lambda h: h.n_frames)
        if len(chosen) > 1:
            notes.append(f"the series has {len(chosen)} files of which {len(multi)} are "
                         f"multi-frame: loaded {os.path.basename(best.path)} "
                         f"({best.n_frames} frames)")
        return load_multiframe(best.path, best, rep, notes)
    return load_single_frames(folder, chosen, rep, notes)
