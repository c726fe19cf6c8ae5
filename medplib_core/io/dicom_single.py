"""Assemble a volume from single-frame DICOM files (one file, or one series of a folder)."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from ..errors import LoadError
from ..limits import human_bytes, shape_text, voxel_excess
from ..volume import SourceInfo, Volume
from .dicom_encaps import Fallback, open_encapsulated
from .dicom_geometry import as_floats, orientation_axes, same_orientation, stack_geometry
from .dicom_pixels import check_decodable, iter_decoded, open_native
from .dicom_series import Header, sniff_dicom, transfer_syntax
from .dicom_values import fill_native, make_plan, rescale_of, store, units_of, window_of


def pixel_spacing_of(*items: Dataset | None) -> tuple[tuple[float, float] | None, str | None]:
    """(row, column) spacing from PixelSpacing (or ImagerPixelSpacing) of the first item
    that has it, plus a note when only the imager spacing was found."""
    for name in ("PixelSpacing", "ImagerPixelSpacing"):
        for item in items:
            if item is None:
                continue
            v = as_floats(item.get(name), 2)
            if v is not None and np.all(v > 0):
                note = None if name == "PixelSpacing" else \
                    "spacing from ImagerPixelSpacing (at the detector, not the patient)"
                return (float(v[0]), float(v[1])), note
    return None, None


def slice_spacing_of(*items: Dataset | None, single: bool = False) -> float | None:
    """The slice step when positions cannot tell it: SpacingBetweenSlices for a stack, but the
    SliceThickness for a single slice (its extent; the spacing to a neighbour it does not
    have is not its size)."""
    names = ("SliceThickness", "SpacingBetweenSlices") if single else \
        ("SpacingBetweenSlices", "SliceThickness")
    for name in names:
        for item in items:
            if item is None:
                continue
            v = as_floats(item.get(name), 1)
            if v is not None and v[0] > 0:
                return float(v[0])
    return None


def instance_number(ds: Dataset) -> int:
    try:
        return int(ds.get("InstanceNumber", 0) or 0)
    except (TypeError, ValueError):
        return 0


def make_source(path: str, ds: Dataset, files: list[str], uids: list[str], sop_class: str,
                notes: list[str]) -> SourceInfo:
    def s(name: str) -> str:
        return str(ds.get(name, "") or "").strip()

    return SourceInfo(
        path=str(path), kind="dicom",
        series_instance_uid=s("SeriesInstanceUID") or None,
        study_instance_uid=s("StudyInstanceUID") or None,
        frame_of_reference_uid=s("FrameOfReferenceUID") or None,
        sop_instance_uids=uids, sop_class_uid=sop_class or None, files=files,
        series_description=s("SeriesDescription"), patient_id=s("PatientID"),
        patient_name=s("PatientName"), notes=notes,
    )


def _check_consistent(path: str, headers: list[Header]) -> None:
    """Raise LoadError when the images of one series cannot form one volume."""
    first = headers[0].ds
    key0 = _layout(first)
    axes0 = orientation_axes(first.get("ImageOrientationPatient"))
    for h in headers[1:]:
        key = _layout(h.ds)
        if key != key0:
            raise LoadError(path, "inconsistent series: images differ in size or pixel format "
                            f"({_fmt(key0)} in {headers[0].path}, {_fmt(key)} in {h.path})",
                            hint="pick another series or separate the files")
        axes = orientation_axes(h.ds.get("ImageOrientationPatient"))
        if (axes is None) != (axes0 is None) or (axes0 is not None and
                                                  not same_orientation(axes0, axes)):
            raise LoadError(path, "inconsistent series: images have different orientations "
                            f"({headers[0].path} and {h.path}), e.g. a localizer mixed in",
                            hint="pick another series or separate the files")


def _layout(ds: Dataset) -> tuple:
    return tuple(ds.get(n) for n in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated",
                                     "PixelRepresentation"))


def _fmt(key: tuple) -> str:
    return f"{key[0]}x{key[1]}, {key[2]} sample(s), {key[3]} bits, repr {key[4]}"


def load_single_frames(path: str, headers: list[Header], report, notes: list[str]) -> Volume:
    """One volume from single-frame images: sorted along the normal, decoded slice by slice
    into one preallocated array. ``report(done, total)`` may raise CancelledError."""
    _check_consistent(path, headers)
    ds0 = headers[0].ds
    spacing, sp_note = pixel_spacing_of(ds0)
    notes = list(notes)
    if spacing is None:
        notes.append("no PixelSpacing: 1 mm assumed")
    elif sp_note:
        notes.append(sp_note)
    spacings = {tuple(np.round(v, 4)) for v in (as_floats(h.ds.get("PixelSpacing"), 2)
                                                 for h in headers) if v is not None}
    if len(spacings) > 1:
        raise LoadError(path, "inconsistent series: images have different pixel spacings "
                        f"({', '.join(str(list(v)) for v in sorted(spacings)[:3])})")
    geo = stack_geometry([h.ds.get("ImagePositionPatient") for h in headers],
                         ds0.get("ImageOrientationPatient"), spacing,
                         slice_spacing_of(ds0, single=len(headers) == 1),
                         [instance_number(h.ds) for h in headers])
    hs = [headers[m] for m in geo.order]
    notes.extend(geo.notes)
    transforms = [rescale_of(h.ds) for h in hs]
    for ts in {transfer_syntax(h) for h in hs}:
        check_decodable(hs[0].path, ts)
    plan = make_plan(hs[0].path, hs[0].ds, transforms, hs[0].float_dtype)
    notes.extend(plan.notes)
    out = allocate(path, (len(hs),) + plan.frame_shape, plan.dtype)
    scratch: dict = {}
    for k, h in enumerate(hs):
        report(k, len(hs))
        t = transforms[k]
        pi = str(h.ds.get("PhotometricInterpretation", "") or "").strip().upper()
        native = open_native(h)
        if native is not None:
            with native:
                fill_native(native, 0, plan, t, out[k], scratch)
            continue
        enc = open_encapsulated(h)
        if enc is not None:
            try:
                store(enc.decode(0), pi, plan, t, out[k], h.path)
                continue
            except Fallback:
                pass  # decode it with pydicom below (which also explains failures)
        force = sniff_dicom(h.path) == "raw"
        for _, raw, pi_out in iter_decoded(h.path, force, [0], h.ds):
            store(raw, pi_out or pi, plan, t, out[k], h.path)
    report(len(hs), len(hs))
    return finish_volume(path, hs[0].ds, out, geo, plan, transforms,
                         [h.path for h in hs], [h.sop_instance_uid for h in hs],
                         hs[0].sop_class_uid, notes, [window_of(h.ds) for h in hs[:1]])


def finish_volume(path, ds, out, geo, plan, transforms, files, uids, sop_class, notes,
                  windows) -> Volume:
    """Wrap the filled array with geometry, units, window and source identifiers."""
    modality = str(ds.get("Modality", "") or "OT").strip() or "OT"
    units = units_of(ds, modality, transforms) if plan.kind == "grey" else ""
    window = next((w for w in windows if w is not None), None)
    if window is not None and plan.monochrome1:
        lo, hi = plan.real_range(transforms[0])
        window = (lo + hi - window[0], window[1])
    if plan.kind != "grey":
        window = None
    source = make_source(path, ds, files, uids, sop_class, notes)
    return Volume(out, spacing=geo.spacing, origin=geo.origin, direction=geo.direction,
                  modality=modality, units=units, window=window, source=source,
                  physical_spacing=geo.physical)


def allocate(path: str, shape: tuple, dtype) -> np.ndarray:
    """The output array, after checking its size against the voxel limit."""
    dtype = np.dtype(dtype)
    excess = voxel_excess(shape, dtype.itemsize)
    if excess:
        raise LoadError(path, excess)
    try:
        return np.empty(shape, dtype)
    except (MemoryError, ValueError):
        raise LoadError(path, f"not enough memory for {shape_text(shape)} voxels "
                        f"({human_bytes(np.prod(shape, dtype=float) * dtype.itemsize)})") from None
