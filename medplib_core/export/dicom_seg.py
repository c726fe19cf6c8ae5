"""DICOM SEG export for DICOM sources, through highdicom (one SEG object per export).

Each label becomes one segment with its name, its category and type codes (the label's own
terminology, else one suggested from its name, see `annotation.terminology`), and the algorithm
that produced it; frames reference the source instances they were drawn on. The original
label value is kept in the segment's tracking identifier (``"label 5"``) so an import gives
the same values back.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from .. import __version__
from ..annotation.labels import LabelSet
from ..annotation.terminology import term_for_label
from ..errors import ExportError
from ..volume import Volume
from .sidecar import build_sidecar, commit_labels

TRACKING_RE = re.compile(r"^label (\d+)$")


def source_datasets(volume: Volume, notes: list[str] | None = None) -> list[pydicom.Dataset]:
    """The source instances, one per slice k, read without their pixel data.

    Anonymised files sometimes lack the UIDs a SEG must reference. The SOP class and instance
    come back from the file meta; a missing study or series UID is replaced by one derived
    from the files' content (the same every time), and ``notes`` says so.
    """
    src = volume.source
    if src is None or src.kind != "dicom" or not src.files:
        raise ExportError("DICOM SEG needs a DICOM source series; export NIfTI for this scan")
    files = list(dict.fromkeys(src.files))
    try:
        datasets = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise ExportError(f"cannot re-read the source DICOM files for the SEG references: {exc}") from exc
    derived = {}
    for ds in datasets:
        meta = getattr(ds, "file_meta", None)
        if not ds.get("SOPClassUID") and meta is not None and meta.get("MediaStorageSOPClassUID"):
            ds.SOPClassUID = meta.MediaStorageSOPClassUID
        if not ds.get("SOPInstanceUID") and meta is not None and meta.get("MediaStorageSOPInstanceUID"):
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        for key in ("StudyInstanceUID", "SeriesInstanceUID"):
            if not ds.get(key):
                if key not in derived:
                    derived[key] = pydicom.uid.generate_uid(
                        entropy_srcs=[key] + sorted(str(d.get("SOPInstanceUID", "")) for d in datasets))
                setattr(ds, key, derived[key])
        if not ds.get("SOPClassUID") or not ds.get("SOPInstanceUID"):
            raise ExportError(f"{ds.filename}: the source file has no SOP instance UID to reference")
    if notes is not None and derived:
        notes.append(f"the source files lack {' and '.join(sorted(derived))}; "
                     "the SEG references UIDs derived from their SOP instances")
    return datasets


def write_dicom_seg(path: str | Path, labels: np.ndarray, volume: Volume, label_set: LabelSet,
                    algorithm: str = "MedPLIB Studio", algorithm_version: str = __version__,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write a binary DICOM SEG of every non-empty label, referencing the source instances."""
    path = Path(path)
    if tuple(labels.shape) != volume.shape:
        raise ExportError(f"{path}: label array {labels.shape} is not on the scan's grid {volume.shape}")
    notes: list[str] = []
    datasets = source_datasets(volume, notes)
    present = [lab for lab in label_set if np.any(labels == lab.value)]
    if not present:
        raise ExportError(f"{path}: there are no labelled voxels to export")
    multiframe = len(datasets) == 1 and volume.shape[0] > 1
    if multiframe:
        order = getattr(volume.source, "frame_numbers", None) or list(range(1, volume.shape[0] + 1))
        frames = np.zeros_like(labels)
        frames[np.asarray(order) - 1] = labels  # back to the order of the source frames
    else:
        if len(datasets) != volume.shape[0]:
            raise ExportError(f"{path}: {len(datasets)} source files for {volume.shape[0]} slices")
        frames = labels
    seg_array = np.zeros(frames.shape, dtype=np.uint16)
    descriptions = []
    algo = hd.AlgorithmIdentificationSequence(
        name=algorithm, family=codes.cid7162.ArtificialIntelligence, version=algorithm_version)
    for number, lab in enumerate(present, start=1):
        seg_array[frames == lab.value] = number
        category, kind, modifier = term_for_label(lab.name, lab.terminology).coded_concepts()
        desc = hd.seg.SegmentDescription(
            segment_number=number, segment_label=lab.name[:64],
            segmented_property_category=category, segmented_property_type=kind,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=algo,
            tracking_uid=hd.UID(), tracking_id=f"label {lab.value}")
        if modifier is not None:  # laterality; highdicom has no parameter for it
            desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [modifier]
        descriptions.append(desc)
    try:
        seg = hd.seg.Segmentation(
            source_images=datasets, pixel_array=seg_array,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=900,
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer="MedPLIB Studio",
            manufacturer_model_name="medplib-studio", software_versions=__version__,
            device_serial_number="0", series_description="MedPLIB Studio labels",
            omit_empty_frames=True)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ExportError(f"{path}: highdicom refused the segmentation: {exc}") from exc
    counts = {lab.value: int(np.count_nonzero(labels == lab.value)) for lab in present}
    extra = dict(extra or {})
    if notes:
        extra["notes"] = notes
    commit_labels(path, seg.save_as, build_sidecar(label_set, volume, counts, extra), "DICOM SEG")
    return path
