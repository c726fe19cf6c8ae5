"""RTSTRUCT (RT Structure Set) export for DICOM sources, and import of an RTSTRUCT as labels.

Written with pydicom (highdicom writes no structure sets; rt-utils would pull in the GUI build
of OpenCV beside the headless one this project uses). One ROI per label, its ROI number the
label value; per source slice, every outline of the label is one CLOSED_PLANAR contour in
patient coordinates (LPS mm), traced at the 0.5 level between labelled and unlabelled voxel
centres, referencing the slice's SOP instance. Holes are contours of their own: a voxel is in
the ROI when its centre lies inside an odd number of the slice's contours (the even-odd rule
the importer uses too). Each ROI's observation carries the label's category and type codes.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import RTStructureSetStorage, generate_uid
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.uid import ImplicitVRLittleEndian
from scipy import ndimage

from .. import __version__
from ..analysis.contours import fill_outlines, mask_outlines
from ..annotation.labels import LabelSet
from ..annotation.terminology import term_for_label
from ..errors import ExportError
from ..volume import Volume
from .dicom_seg import source_datasets
from .sidecar import build_sidecar, commit_labels

_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
           "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
           "FrameOfReferenceUID", "SpecificCharacterSet")
_STUDY_COMPONENT = "1.2.840.10008.3.1.2.3.1"  # Study Component Management SOP Class (as referenced)
_CONTOUR_DATA = Tag(0x3006, 0x0050)


def _contour_item(world: np.ndarray, image_ref: pydicom.Dataset) -> pydicom.Dataset:
    """One CLOSED_PLANAR contour; its coordinates go in as encoded text, not 3n DS objects.

    (pydicom passes an element through as written only while its dataset says it is already
    in the output encoding, hence `set_original_encoding`.)
    """
    item = pydicom.Dataset()
    item.ContourImageSequence = Sequence([image_ref])
    item.ContourGeometricType = "CLOSED_PLANAR"
    item.NumberOfContourPoints = len(world)
    values = world.reshape(-1)
    text = (("%.4f\\" * len(values))[:-1] % tuple(values.tolist())).encode("ascii")
    if len(text) % 2:
        text += b" "
    item[_CONTOUR_DATA] = RawDataElement(_CONTOUR_DATA, "DS", len(text), text, 0, True, True, True, False)
    item.set_original_encoding(True, True, item._character_set)
    return item


def _contour_points(item: pydicom.Dataset) -> np.ndarray:
    """(n, 3) LPS points of a contour, parsed from the encoded text when it is still raw."""
    elem = item.get_item(_CONTOUR_DATA)
    if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes):
        values = np.array(elem.value.replace(b" ", b"").split(b"\\"), dtype=float)
    else:
        values = np.asarray(item.ContourData, dtype=float)
    return values.reshape(-1, 3)


def _code_item(code) -> pydicom.Dataset:
    item = pydicom.Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code.value, code.scheme_designator, code.meaning
    return item


def _image_ref(ds: pydicom.Dataset, frame: int | None) -> pydicom.Dataset:
    ref = pydicom.Dataset()
    ref.ReferencedSOPClassUID = ds.SOPClassUID
    ref.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    if frame is not None:
        ref.ReferencedFrameNumber = frame
    return ref


def _header(first: pydicom.Dataset, label: str) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTStructureSetStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ImplicitVRLittleEndian  # long contours exceed explicit DS's 64 KiB
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    for key in _COPIED:
        if key in first:
            setattr(ds, key, first.data_element(key).value)
    for key in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName"):
        if key not in ds:
            setattr(ds, key, "")
    now = datetime.datetime.now()
    ds.SOPClassUID, ds.SOPInstanceUID = RTStructureSetStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID, ds.SeriesNumber = generate_uid(), 901
    ds.SeriesDescription = "MedPLIB Studio structures"
    ds.Manufacturer, ds.ManufacturerModelName = "MedPLIB Studio", "medplib-studio"
    ds.SoftwareVersions = __version__
    ds.InstanceNumber = 1
    ds.OperatorsName = ""
    ds.StructureSetLabel = label[:16]
    ds.StructureSetDate, ds.StructureSetTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.ApprovalStatus = "UNAPPROVED"
    return ds


def write_rtstruct(path: str | Path, labels: np.ndarray, volume: Volume, label_set: LabelSet,
                   extra: dict[str, Any] | None = None, label: str = "MedPLIB") -> Path:
    """Write every non-empty label as one ROI of an RT Structure Set referencing the series."""
    path = Path(path)
    if tuple(labels.shape) != volume.shape:
        raise ExportError(f"{path}: label array {labels.shape} is not on the scan's grid {volume.shape}")
    notes: list[str] = []
    datasets = source_datasets(volume, notes)
    multiframe = len(datasets) == 1 and volume.shape[0] > 1
    if multiframe:
        frames = list(volume.source.frame_numbers or range(1, volume.shape[0] + 1))
        refs = [_image_ref(datasets[0], frames[k]) for k in range(volume.shape[0])]
    else:
        if len(datasets) != volume.shape[0]:
            raise ExportError(f"{path}: {len(datasets)} source files for {volume.shape[0]} slices")
        refs = [_image_ref(d, None) for d in datasets]
    first = datasets[0]
    if "FrameOfReferenceUID" not in first:
        raise ExportError(f"{path}: the source series has no frame of reference UID; RTSTRUCT needs one")
    boxes = ndimage.find_objects(np.asarray(labels))
    present = [lab for lab in label_set if lab.value <= len(boxes) and boxes[lab.value - 1] is not None]
    if not present:
        raise ExportError(f"{path}: there are no labelled voxels to export")
    ds = _header(first, label)
    frame_uid = first.FrameOfReferenceUID

    series_ref = pydicom.Dataset()
    series_ref.SeriesInstanceUID = first.SeriesInstanceUID
    series_ref.ContourImageSequence = Sequence(refs)
    study_ref = pydicom.Dataset()
    study_ref.ReferencedSOPClassUID = _STUDY_COMPONENT
    study_ref.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study_ref.RTReferencedSeriesSequence = Sequence([series_ref])
    frame_ref = pydicom.Dataset()
    frame_ref.FrameOfReferenceUID = frame_uid
    frame_ref.RTReferencedStudySequence = Sequence([study_ref])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame_ref])

    rois, contours_seq, observations = [], [], []
    counts = {}
    for lab in present:
        box = boxes[lab.value - 1]
        sub = labels[box] == lab.value
        counts[lab.value] = int(np.count_nonzero(sub))
        k0, j0, i0 = (s.start for s in box)
        contours = []
        for dk in range(sub.shape[0]):
            k = k0 + dk
            for c in mask_outlines(sub[dk]):
                ijk = np.column_stack([c[:, 1] + i0, c[:, 0] + j0, np.full(len(c), float(k))])
                contours.append(_contour_item(volume.index_to_world(ijk), refs[k]))
        roi = pydicom.Dataset()
        roi.ROINumber = lab.value
        roi.ReferencedFrameOfReferenceUID = frame_uid
        roi.ROIName = lab.name[:64]
        roi.ROIGenerationAlgorithm = "SEMIAUTOMATIC"
        rois.append(roi)
        rc = pydicom.Dataset()
        rc.ROIDisplayColor = [int(c) for c in lab.color]
        rc.ReferencedROINumber = lab.value
        rc.ContourSequence = Sequence(contours)
        contours_seq.append(rc)
        term = term_for_label(lab.name, lab.terminology)
        obs = pydicom.Dataset()
        obs.ObservationNumber = lab.value
        obs.ReferencedROINumber = lab.value
        obs.ROIObservationLabel = lab.name[:16]
        obs.RTROIInterpretedType = "ORGAN" if term.category.value == "91723000" else ""
        obs.ROIInterpreter = ""
        obs.SegmentedPropertyCategoryCodeSequence = Sequence([_code_item(term.category)])
        type_item = _code_item(term.type)
        if term.modifier is not None:
            type_item.SegmentedPropertyTypeModifierCodeSequence = Sequence([_code_item(term.modifier)])
        obs.RTROIIdentificationCodeSequence = Sequence([type_item])
        observations.append(obs)
    ds.StructureSetROISequence = Sequence(rois)
    ds.ROIContourSequence = Sequence(contours_seq)
    ds.RTROIObservationsSequence = Sequence(observations)
    extra = dict(extra or {})
    if notes:
        extra["notes"] = notes
    commit_labels(path, lambda tmp: ds.save_as(tmp, enforce_file_format=True),
                  build_sidecar(label_set, volume, counts, extra), "structure set")
    return path


def _code_dict(item) -> dict[str, str]:
    return {"value": str(item.CodeValue), "scheme": str(item.CodingSchemeDesignator),
            "meaning": str(item.CodeMeaning)}


def _observation_terminology(obs) -> dict | None:
    try:
        cat = obs.SegmentedPropertyCategoryCodeSequence[0]
        kind = obs.RTROIIdentificationCodeSequence[0]
    except (AttributeError, IndexError):
        return None
    out = {"category": _code_dict(cat), "type": _code_dict(kind)}
    mods = kind.get("SegmentedPropertyTypeModifierCodeSequence") or []
    if mods:
        out["modifier"] = _code_dict(mods[0])
    return out


def read_rtstruct(path: str | Path, volume: Volume, ds: pydicom.Dataset | None = None):
    """An RTSTRUCT's ROIs rasterised onto ``volume``'s slices (even-odd rule per slice).

    Contours must lie in the planes of the scan's slices (the series the structure set was
    drawn on). ROI numbers become label values; where ROIs overlap, the later ROI keeps the
    voxels and a note says how many.
    """
    from .importers import ImportedLabels

    path = Path(path)
    try:
        ds = ds if ds is not None else pydicom.dcmread(path)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise ExportError(f"{path}: not a readable RTSTRUCT ({exc})") from exc
    if str(ds.get("Modality", "")) != "RTSTRUCT" or "ROIContourSequence" not in ds:
        raise ExportError(f"{path}: not an RT Structure Set (Modality {ds.get('Modality', '?')})")
    names = {int(r.ROINumber): str(r.get("ROIName", "")) for r in ds.get("StructureSetROISequence", [])}
    terms = {int(o.ReferencedROINumber): _observation_terminology(o)
             for o in ds.get("RTROIObservationsSequence", [])}
    nk, nj, ni = volume.shape
    array = np.zeros(volume.shape, np.uint16)
    labels = LabelSet()
    notes: list[str] = []
    overlap = off_plane = outside = 0
    for rc in ds.ROIContourSequence:
        number = int(rc.ReferencedROINumber)
        value = number if 0 < number < 65536 and number not in labels else labels.next_value()
        by_slice: dict[int, list[np.ndarray]] = {}
        for c in rc.get("ContourSequence", []):
            if str(c.get("ContourGeometricType", "")) != "CLOSED_PLANAR":
                continue
            ijk = volume.world_to_index(_contour_points(c))
            k = float(np.mean(ijk[:, 2]))
            kk = int(round(k))
            if np.ptp(ijk[:, 2]) > 0.2 or abs(k - kk) > 0.1:
                off_plane += 1
                continue
            if not 0 <= kk < nk:
                outside += 1
                continue
            by_slice.setdefault(kk, []).append(ijk[:, 1::-1])  # (row, col) = (j, i)
        for kk, polygons in by_slice.items():
            plane = fill_outlines(polygons, (nj, ni))
            overlap += int(np.count_nonzero(plane & (array[kk] != 0)))
            array[kk][plane] = value
        color = tuple(int(v) for v in rc.get("ROIDisplayColor", [])[:3]) or None
        labels.add(names.get(number) or f"ROI {number}", value=value, color=color,
                   terminology=terms.get(number))
    if off_plane:
        notes.append(f"{off_plane} contours do not lie in the scan's slice planes and were skipped "
                     "(is this the series the structures were drawn on?)")
    if outside:
        notes.append(f"{outside} contours lie outside the scan and were skipped")
    if overlap:
        notes.append(f"{overlap} voxels belong to several ROIs; the later ROI keeps them")
    return ImportedLabels(array, labels, False, notes)
