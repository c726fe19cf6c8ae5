"""Multi-frame DICOM (enhanced CT/MR/PET and legacy multi-frame) to one volume.

Per-frame geometry comes from the functional groups: PlanePositionSequence,
PlaneOrientationSequence, PixelMeasuresSequence and PixelValueTransformationSequence, looked
up per frame first and in the shared groups otherwise. Frames in several orientations keep the
largest group; frames repeating a position (echoes, phases) keep the first of each.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from ..volume import Volume
from .dicom_encaps import Fallback, open_encapsulated
from .dicom_geometry import as_floats, orientation_axes, same_orientation, stack_geometry
from .dicom_pixels import check_declared_frames, check_decodable, iter_decoded, open_native
from .dicom_series import Header, sniff_dicom, transfer_syntax
from .dicom_single import allocate, finish_volume, pixel_spacing_of, slice_spacing_of
from .dicom_values import fill_native, make_plan, rescale_of, store, window_of


class FunctionalGroups:
    """Per-frame attribute lookup with the shared functional groups as fallback."""

    def __init__(self, ds: Dataset, n_frames: int):
        shared = ds.get("SharedFunctionalGroupsSequence")
        self.shared = shared[0] if shared else None
        per = ds.get("PerFrameFunctionalGroupsSequence")
        self.per = per if per is not None and len(per) == n_frames else None
        self.enhanced = self.shared is not None or self.per is not None

    def item(self, frame: int, seq: str) -> Dataset | None:
        for grp in ((self.per[frame] if self.per is not None else None), self.shared):
            if grp is None:
                continue
            s = grp.get(seq)
            if s:
                return s[0]
        return None


def _legacy_positions(ds: Dataset, n: int, normal: np.ndarray | None,
                      dz: float | None) -> tuple[list, str | None]:
    """Frame positions for a multi-frame file without functional groups (RT Dose, NM tomo):
    from GridFrameOffsetVector when it has one offset per frame, else ``dz`` apart."""
    ipp = as_floats(ds.get("ImagePositionPatient"), 3)
    det = ds.get("DetectorInformationSequence")
    if ipp is None and det:
        ipp = as_floats(det[0].get("ImagePositionPatient"), 3)
    if ipp is None or normal is None or n == 1:
        return [ipp.tolist() if ipp is not None else None] + [None] * (n - 1), None
    offsets = as_floats(ds.get("GridFrameOffsetVector"), n)
    if offsets is not None and n > 1:
        # PS3.3 C.8.8.3.2: offsets relative to the first plane when the first is 0, else
        # positions along the normal measured from the patient origin
        base = 0.0 if offsets[0] == 0 else float(ipp @ normal)
        pos = [(ipp + (o - base) * normal).tolist() for o in offsets]
        return pos, "frame positions from GridFrameOffsetVector"
    if not dz:
        return [ipp.tolist()] + [None] * (n - 1), None
    pos = [(ipp + m * dz * normal).tolist() for m in range(n)]
    return pos, (f"frame positions computed from the first position, {dz:g} mm apart "
                 "along the normal")


def _decode_fast(h, order, slot, plan, transforms, out, pi, report) -> bool:
    """Decode every frame through the direct codec path; False to fall back to pydicom."""
    enc = open_encapsulated(h)
    if enc is None:
        return False
    try:
        for done, f in enumerate(sorted(order)):
            report(done, len(order))
            store(enc.decode(f), pi, plan, transforms[f], out[slot[f]], h.path)
    except Fallback:
        return False
    return True


def load_multiframe(path: str, h: Header, report, notes: list[str]) -> Volume:
    """One volume from one multi-frame file, frames sorted along the slice normal."""
    ds = h.ds
    n = h.n_frames
    check_declared_frames(h)
    notes = list(notes)
    fg = FunctionalGroups(ds, n)
    poll = getattr(report, "poll", None) or (lambda: None)
    if ds.get("PerFrameFunctionalGroupsSequence") is not None and fg.per is None:
        notes.append("PerFrameFunctionalGroupsSequence does not match NumberOfFrames: ignored")

    iop_top = ds.get("ImageOrientationPatient")
    det = ds.get("DetectorInformationSequence")
    if iop_top is None and det:
        iop_top = det[0].get("ImageOrientationPatient")
    iops, positions, transforms = [], [], []
    for f in range(n):
        poll()
        po = fg.item(f, "PlaneOrientationSequence")
        pp = fg.item(f, "PlanePositionSequence")
        pv = fg.item(f, "PixelValueTransformationSequence")
        iops.append(po.get("ImageOrientationPatient") if po is not None else iop_top)
        positions.append(pp.get("ImagePositionPatient") if pp is not None else None)
        transforms.append(rescale_of(pv) if pv is not None else rescale_of(ds))
    pm = fg.item(0, "PixelMeasuresSequence")
    spacing, sp_note = pixel_spacing_of(pm, ds)
    if spacing is None:
        notes.append("no PixelSpacing: 1 mm assumed")
    elif sp_note:
        notes.append(sp_note)
    dz = slice_spacing_of(pm, ds)

    # keep the largest group of frames sharing one orientation
    axes = [orientation_axes(v) for v in iops]
    groups: list[tuple[object, list[int]]] = []
    for f, a in enumerate(axes):
        poll()
        for key, members in groups:
            if (a is None and key is None) or same_orientation(key, a):
                members.append(f)
                break
        else:
            groups.append((a, [f]))
    groups.sort(key=lambda g: -len(g[1]))
    frames = groups[0][1]
    if len(groups) > 1:
        notes.append(f"frames in {len(groups)} orientations: loaded the {len(frames)} frames "
                     f"of the largest group (of {n})")
    if all(positions[f] is None for f in frames) and not fg.enhanced:
        normal = axes[frames[0]][2] if axes[frames[0]] is not None else None
        legacy, note = _legacy_positions(ds, n, normal, dz)
        positions = legacy
        if note:
            notes.append(note)
    elif any(positions[f] is None for f in frames):
        notes.append("some frames lack a position: frames stacked in file order")

    geo = stack_geometry([positions[f] for f in frames], iops[frames[0]], spacing, dz,
                         list(range(len(frames))))
    notes.extend(geo.notes)
    order = [frames[m] for m in geo.order]  # frame index for each output slice k
    check_decodable(h.path, transfer_syntax(h))
    ts_transforms = [transforms[f] for f in order]
    plan = make_plan(h.path, ds, ts_transforms, h.float_dtype)
    notes.extend(plan.notes)
    out = allocate(path, (len(order),) + plan.frame_shape, plan.dtype)
    slot = {f: k for k, f in enumerate(order)}
    pi = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    native = open_native(h)
    if native is not None:
        scratch: dict = {}
        with native:
            for done, f in enumerate(sorted(order)):
                report(done, len(order))
                fill_native(native, f, plan, transforms[f], out[slot[f]], scratch)
    elif not _decode_fast(h, order, slot, plan, transforms, out, pi, report):
        force = sniff_dicom(h.path) == "raw"
        done = 0
        for f, raw, pi_out in iter_decoded(h.path, force, sorted(order), h.ds):
            report(done, len(order))
            done += 1
            store(raw, pi_out or pi, plan, transforms[f], out[slot[f]], h.path)
    report(len(order), len(order))
    windows = [window_of(fg.item(order[0], "FrameVOILUTSequence")), window_of(ds)]
    vol = finish_volume(path, ds, out, geo, plan, ts_transforms, [h.path] * len(order),
                        [h.sop_instance_uid] * len(order), h.sop_class_uid, notes, windows)
    # 1-based frame number of each slice k, for references into this multi-frame instance
    vol.source.frame_numbers = [f + 1 for f in order]
    return vol
