"""Helpers for the I/O tests: small synthetic DICOM files with real geometry tags.

(No tests here; the other test_io_* modules import these functions.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def ct_dataset(path, *, ipp, iop=(1, 0, 0, 0, 1, 0), pixels=None, rows=8, cols=10,
               spacing=(0.5, 0.75), series_uid=None, study_uid=None, for_uid=None,
               instance=1, slope=1.0, intercept=-1024.0, modality="CT",
               photometric="MONOCHROME2", **extra) -> FileDataset:
    """A single-frame CT-like dataset (uint16 stored, 12 bits) ready to save."""
    sop = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.FrameOfReferenceUID = for_uid or generate_uid()
    ds.Modality, ds.SeriesDescription, ds.InstanceNumber = modality, "synthetic", instance
    ds.ImagePositionPatient = [float(v) for v in ipp]
    ds.ImageOrientationPatient = [float(v) for v in iop]
    ds.PixelSpacing = [spacing[0], spacing[1]]
    if pixels is None:
        pixels = np.full((rows, cols), 1000 + instance, np.uint16)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.astype("<u2").tobytes()
    return ds


def write_series(folder, zs, *, iop=(1, 0, 0, 0, 1, 0), rows=8, cols=10, series_uid=None,
                 names=None, **kw) -> list[Path]:
    """One file per position along the normal of ``iop`` (``zs`` in mm, any order).

    Slice m holds the value 1000 + m + 1 (stored), i.e. -23 + m HU; file names come from
    ``names`` or are "f{m}.dcm".
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    row, col = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    normal = np.cross(row, col)
    series_uid = series_uid or generate_uid()
    study, frame = generate_uid(), generate_uid()
    paths = []
    for m, z in enumerate(zs):
        p = folder / (names[m] if names else f"f{m}.dcm")
        ipp = np.array([-10.0, 5.0, 0.0]) + z * normal
        ds = ct_dataset(p, ipp=ipp, iop=iop, rows=rows, cols=cols, series_uid=series_uid,
                        study_uid=study, for_uid=frame, instance=m + 1, **kw)
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths
