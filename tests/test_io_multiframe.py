"""Multi-frame and enhanced DICOM: per-frame positions, orientations and rescale."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

from medplib_core.io import load

ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"


def _item(**kw) -> Dataset:
    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def _enhanced(path, zs, *, slopes=None, iop=(1, 0, 0, 0, 1, 0), extra_frame_iop=None,
              compress=False) -> np.ndarray:
    """An enhanced CT file whose frame f lies at z = zs[f] and holds the value 100 + f."""
    n = len(zs)
    frames = np.stack([np.full((6, 7), 100 + f, np.uint16) for f in range(n)])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENHANCED_CT
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = ENHANCED_CT, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.FrameOfReferenceUID, ds.Modality = generate_uid(), "CT"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 6, 7, n
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    shared = _item(
        PixelMeasuresSequence=Sequence([_item(PixelSpacing=[0.5, 0.25], SliceThickness=9)]),
        PlaneOrientationSequence=Sequence([_item(ImageOrientationPatient=list(iop))]),
        FrameVOILUTSequence=Sequence([_item(WindowCenter=30, WindowWidth=300)]),
    )
    if slopes is None:
        shared.PixelValueTransformationSequence = Sequence(
            [_item(RescaleSlope=1, RescaleIntercept=-1024, RescaleType="HU")])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    normal = np.cross(iop[:3], iop[3:])
    per = []
    for f, z in enumerate(zs):
        it = _item(PlanePositionSequence=Sequence(
            [_item(ImagePositionPatient=list(np.array([1.0, 2.0, 3.0]) + z * normal))]))
        if slopes is not None:
            it.PixelValueTransformationSequence = Sequence(
                [_item(RescaleSlope=slopes[f], RescaleIntercept=0)])
        if extra_frame_iop is not None and f == n - 1:
            it.PlaneOrientationSequence = Sequence(
                [_item(ImageOrientationPatient=list(extra_frame_iop))])
        per.append(it)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    ds.PixelData = frames.astype("<u2").tobytes()
    if compress:
        ds.compress(RLELossless, encoding_plugin="pydicom")
    ds.save_as(path, enforce_file_format=True)
    return frames


@pytest.mark.parametrize("compress", [False, True])
def test_enhanced_frames_sorted_by_position(tmp_path, compress: bool) -> None:
    p = tmp_path / "e.dcm"
    _enhanced(p, [6.0, 0.0, 3.0, 9.0], compress=compress)
    vol = load(p)
    assert vol.shape == (4, 6, 7)
    np.testing.assert_array_equal(vol.array[:, 0, 0], [101 - 1024, 102 - 1024, 100 - 1024,
                                                       103 - 1024])
    assert vol.source.frame_numbers == [2, 3, 1, 4]
    np.testing.assert_allclose(vol.spacing, (0.25, 0.5, 3.0))
    np.testing.assert_allclose(vol.origin, (1.0, 2.0, 3.0))
    assert vol.window == (30.0, 300.0) and vol.units == "HU"
    assert vol.array.dtype == np.int16
    assert vol.source.sop_class_uid == ENHANCED_CT
    assert len(vol.source.sop_instance_uids) == 4


def test_per_frame_rescale(tmp_path) -> None:
    p = tmp_path / "r.dcm"
    _enhanced(p, [0.0, 1.0, 2.0], slopes=[1.0, 0.5, 2.0])
    vol = load(p)
    assert vol.array.dtype == np.float32
    np.testing.assert_allclose(vol.array[:, 0, 0], [100, 101 * 0.5, 102 * 2.0])


def test_frames_in_another_orientation_are_left_out(tmp_path) -> None:
    p = tmp_path / "o.dcm"
    _enhanced(p, [0.0, 1.0, 2.0, 3.0], extra_frame_iop=(0, 1, 0, 0, 0, -1))
    vol = load(p)
    assert vol.shape[0] == 3
    assert any("orientations" in n for n in vol.source.notes)


def test_enhanced_ct_from_pydicom_data_has_per_frame_positions() -> None:
    from pydicom.data import get_testdata_file

    path = get_testdata_file("eCT_Supplemental.dcm")
    if path is None:
        pytest.skip("pydicom-data is not installed")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    positions = [np.array(it.PlanePositionSequence[0].ImagePositionPatient, float)
                 for it in ds.PerFrameFunctionalGroupsSequence]
    vol = load(path)
    assert vol.shape == (2, 512, 512) and vol.modality == "CT" and vol.units == "HU"
    for k, frame in enumerate(vol.source.frame_numbers):
        np.testing.assert_allclose(vol.index_to_world((0, 0, k)), positions[frame - 1])
    assert vol.spacing[2] == pytest.approx(10.0)
    # values are the rescaled stored values of those frames
    px = pydicom.dcmread(path).pixel_array
    first = px[vol.source.frame_numbers[0] - 1].astype(np.int32)
    np.testing.assert_array_equal(vol.array[0], first - 1024)


def test_colour_cine_and_palette_from_pydicom_data() -> None:
    from pydicom.data import get_testdata_file

    ybr = get_testdata_file("SC_ybr_full_uncompressed.dcm")
    rgb = get_testdata_file("SC_rgb.dcm")
    pal = get_testdata_file("OBXXXX1A.dcm")
    if ybr is None or pal is None:
        pytest.skip("pydicom-data is not installed")
    a, b = load(ybr), load(rgb)
    assert a.is_colour and a.array.dtype == np.uint8
    diff = np.abs(a.array.astype(int) - b.array.astype(int))
    assert diff.max() <= 8 and diff.mean() < 1.0  # YBR->RGB rounding only
    vol = load(pal)
    assert vol.is_colour and vol.array.shape[-1] == 3
    cine = load(get_testdata_file("SC_rgb_2frame.dcm"))
    assert cine.array.shape == (2, 100, 100, 3)
