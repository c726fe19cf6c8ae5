"""Real data from ../shared/data: transfer syntaxes, the J2K CT series, NIfTI vs SimpleITK."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from medplib_core.io import list_series, load

sitk = pytest.importorskip("SimpleITK")

pytestmark = pytest.mark.shared_data


def test_nine_transfer_syntaxes_decode_identically(shared_data) -> None:
    folder = shared_data / "dicom-ts"
    arrays, syntaxes = [], set()
    for n in range(1, 10):
        path = folder / f"{n}.dcm"
        syntaxes.add(str(pydicom.dcmread(path, stop_before_pixels=True).file_meta
                         .TransferSyntaxUID))
        vol = load(path)
        assert vol.shape == (1, 384, 384)
        arrays.append(vol.array)
    assert len(syntaxes) >= 7
    for n, arr in enumerate(arrays[1:], start=2):
        assert arr.dtype == arrays[0].dtype
        np.testing.assert_array_equal(arr, arrays[0], err_msg=f"{n}.dcm differs from 1.dcm")
    ref = pydicom.dcmread(folder / "1.dcm").pixel_array
    np.testing.assert_array_equal(arrays[0][0], ref)


def test_ct_series_j2k_geometry_and_order(shared_data) -> None:
    folder = shared_data / "volumes" / "ct_series_j2k"
    vol = load(folder)
    assert vol.shape == (20, 512, 512)
    np.testing.assert_allclose(vol.spacing, (0.977, 0.977, 2.0), atol=1e-3)
    assert vol.modality == "CT" and vol.units == "HU" and vol.array.dtype == np.int16
    assert vol.window == (40.0, 300.0)
    # sorted by position along the normal, not by file name
    z = [float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2])
         for f in vol.source.files]
    assert z == sorted(z)
    assert vol.source.files != sorted(vol.source.files)
    np.testing.assert_allclose(vol.origin[2], min(z))
    assert len(vol.source.sop_instance_uids) == 20 and all(vol.source.sop_instance_uids)
    assert vol.source.frame_of_reference_uid
    # identical to SimpleITK's series reader, voxels and geometry
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    img = reader.Execute()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), vol.array)
    np.testing.assert_allclose(img.GetOrigin(), vol.origin, atol=1e-4)
    np.testing.assert_allclose(img.GetSpacing(), vol.spacing, atol=1e-6)
    np.testing.assert_allclose(np.reshape(img.GetDirection(), (3, 3)), vol.direction)
    info = list_series(folder)
    assert len(info) == 1 and info[0].n_files == 20 and info[0].modality == "CT"


def test_ct_labels_line_up_in_world(shared_data) -> None:
    """The label map (stored with a flipped y axis) maps onto the DICOM grid by world
    coordinates: the loaded geometries must say so."""
    ct = load(shared_data / "volumes" / "ct_series_j2k")
    lab = load(shared_data / "volumes" / "ct_series_j2k_labels.nii.gz")
    assert lab.shape == ct.shape
    ijk = np.array([[0, 0, 0], [511, 0, 0], [0, 511, 19], [100, 200, 7]], float)
    world = ct.index_to_world(ijk)
    back = lab.world_to_index(world)
    np.testing.assert_allclose(back[:, 0], ijk[:, 0], atol=1e-3)
    np.testing.assert_allclose(back[:, 1], 511 - ijk[:, 1], atol=1e-3)
    np.testing.assert_allclose(back[:, 2], ijk[:, 2], atol=1e-3)


@pytest.mark.parametrize("name", ["ct_small_abdomen.nii.gz", "mr_small_abdomen.nii.gz",
                                  "ct_series_j2k_labels.nii.gz",
                                  "ct_small_abdomen_labels.nii.gz"])
def test_nifti_geometry_matches_simpleitk(shared_data, name: str) -> None:
    path = shared_data / "volumes" / name
    vol = load(path)
    img = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), vol.array)
    np.testing.assert_allclose(img.GetSpacing(), vol.spacing, atol=1e-6)
    np.testing.assert_allclose(img.GetOrigin(), vol.origin, atol=1e-5)
    np.testing.assert_allclose(np.reshape(img.GetDirection(), (3, 3)), vol.direction, atol=1e-6)
    assert vol.source.kind == "nifti"


def test_nifti_ras_and_lps_affines(shared_data) -> None:
    nib = pytest.importorskip("nibabel")
    for name in ("ct_small_abdomen.nii.gz", "mr_small_abdomen.nii.gz"):
        path = shared_data / "volumes" / name
        vol = load(path)
        np.testing.assert_allclose(vol.affine_ras, nib.load(str(path)).affine, atol=1e-4)
    ct = load(shared_data / "volumes" / "ct_small_abdomen.nii.gz")
    mr = load(shared_data / "volumes" / "mr_small_abdomen.nii.gz")
    assert ct.orientation_code() == "RAS" and mr.orientation_code() == "LPS"
    assert ct.modality == "CT" and ct.units == "HU"
