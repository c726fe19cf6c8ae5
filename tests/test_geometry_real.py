"""The canonical geometry tests on the real CT series of ../shared/data/volumes."""

import json

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

import medplib_core
from medplib_core.annotation import LabelSet
from medplib_core.export import import_labels, write_dicom_seg, write_nifti_labels


@pytest.fixture(scope="module")
def ct_series(shared_data):
    return medplib_core.load(shared_data / "volumes" / "ct_series_j2k")


@pytest.fixture(scope="module")
def imported(ct_series, shared_data):
    return import_labels(shared_data / "volumes" / "ct_series_j2k_labels.nii.gz", ct_series)


def test_series_loads_with_its_geometry(ct_series):
    assert ct_series.shape == (20, 512, 512)
    np.testing.assert_allclose(ct_series.spacing, (0.977, 0.977, 2.0), atol=1e-3)
    assert ct_series.modality == "CT"
    assert len(ct_series.source.sop_instance_uids) == 20


def test_labels_are_placed_by_world_coordinates(imported, shared_data):
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_data / "volumes" / "ct_series_j2k_labels.nii.gz")))
    assert imported.resampled
    np.testing.assert_array_equal(imported.array, raw[:, ::-1, :])
    # and not by raw array index, which is visibly wrong for this file
    assert not np.array_equal(imported.array, raw)
    names = json.loads((shared_data / "volumes" / "ct_series_j2k_labels.json").read_text())["labels_present"]
    assert imported.labels[5].name == names["5"] == "liver"


def test_nifti_export_reads_back_the_same_in_nibabel_and_simpleitk(ct_series, imported, tmp_path):
    out = write_nifti_labels(tmp_path / "labels.nii.gz", imported.array, ct_series, imported.labels)
    img = sitk.ReadImage(str(out))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), imported.array)
    np.testing.assert_allclose(img.GetOrigin(), ct_series.origin, atol=1e-4)
    np.testing.assert_allclose(img.GetSpacing(), ct_series.spacing, atol=1e-5)
    nimg = nib.load(str(out))
    data = np.asarray(nimg.dataobj)
    np.testing.assert_array_equal(data.transpose(2, 1, 0), imported.array)
    # the same voxel maps to the same world point (RAS = LPS with x, y negated)
    for ijk in ([0, 0, 0], [511, 3, 19], [200, 300, 7]):
        lps = np.array(img.TransformIndexToPhysicalPoint(ijk))
        ras = nimg.affine @ np.r_[ijk, 1]
        np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-3)
        np.testing.assert_allclose(ct_series.index_to_world(ijk), lps, atol=1e-3)
    # a reload of the exported file onto the series is exact (same grid, no resampling)
    again = import_labels(out, ct_series)
    assert not again.resampled
    np.testing.assert_array_equal(again.array, imported.array)


def test_dicom_seg_references_the_source_instances(ct_series, imported, tmp_path):
    import highdicom as hd

    keep = LabelSet()
    keep.add("liver", value=5)
    keep.add("spleen", value=1)
    arr = np.where(np.isin(imported.array, [1, 5]), imported.array, 0).astype(np.uint16)
    out = write_dicom_seg(tmp_path / "labels.dcm", arr, ct_series, keep)
    seg = hd.seg.segread(str(out))
    names = {int(s.SegmentNumber): str(s.SegmentLabel) for s in seg.SegmentSequence}
    assert sorted(names.values()) == ["liver", "spleen"]
    assert seg.SeriesInstanceUID != ct_series.source.series_instance_uid
    referenced = {r.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence
                  for r in s.ReferencedInstanceSequence}
    assert referenced <= set(ct_series.source.sop_instance_uids)
    # each frame's source instance is the slice k whose label it holds
    uid_to_k = {uid: k for k, uid in enumerate(ct_series.source.sop_instance_uids)}
    liver_number = [n for n, name in names.items() if name == "liver"][0]
    checked = 0
    for f, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        src_uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        number = int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        if number != liver_number:
            continue
        k = uid_to_k[src_uid]
        np.testing.assert_array_equal(seg.pixel_array[f].astype(bool), arr[k] == 5)
        checked += 1
    assert checked == int(np.any(arr == 5, axis=(1, 2)).sum())
    # and an import of the SEG gives the same labels back on the series grid
    back = import_labels(out, ct_series)
    np.testing.assert_array_equal(back.array, arr)
    assert back.labels[5].name == "liver"


def test_source_files_follow_slice_positions(ct_series):
    """files[k] is the instance of slice k (this anonymised series keeps its UIDs in the file meta)."""
    for k in (0, 7, 19):
        ds = pydicom.dcmread(ct_series.source.files[k], stop_before_pixels=True)
        uid = ds.get("SOPInstanceUID") or ds.file_meta.MediaStorageSOPInstanceUID
        assert uid == ct_series.source.sop_instance_uids[k]
        np.testing.assert_allclose(ct_series.index_to_world([0, 0, k]), [float(v) for v in ds.ImagePositionPatient], atol=1e-3)
