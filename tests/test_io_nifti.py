"""NIfTI geometry as ITK derives it (SimpleITK is the reference), NIfTI-2, 4D, 2D."""

from __future__ import annotations

import numpy as np
import pytest

from medplib_core.errors import LoadError
from medplib_core.io import load

nib = pytest.importorskip("nibabel")
sitk = pytest.importorskip("SimpleITK")


def _rot(ax: float, az: float) -> np.ndarray:
    cx, sx, cz, sz = np.cos(ax), np.sin(ax), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ rx


def _affine(rot: np.ndarray, zooms, offset) -> np.ndarray:
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag(zooms)
    aff[:3, 3] = offset
    return aff


def _check_against_sitk(path, vol) -> None:
    img = sitk.ReadImage(str(path))
    np.testing.assert_allclose(sitk.GetArrayFromImage(img), vol.array)
    np.testing.assert_allclose(img.GetSpacing(), vol.spacing, atol=1e-5)
    np.testing.assert_allclose(img.GetOrigin(), vol.origin, atol=1e-4)
    np.testing.assert_allclose(np.reshape(img.GetDirection(), (3, 3)), vol.direction, atol=1e-5)


@pytest.mark.parametrize("case", ["ras", "lps", "oblique", "qform_only", "scaled"])
def test_nifti1_geometry_matches_simpleitk(tmp_path, case: str) -> None:
    data = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)  # x, y, z
    rot = {"ras": np.eye(3), "lps": np.diag([-1.0, -1.0, 1.0]),
           "oblique": _rot(0.3, -0.5), "qform_only": _rot(0.1, 0.2),
           "scaled": np.eye(3)}[case]
    aff = _affine(rot, (0.8, 1.1, 2.5), (12.0, -30.0, 7.5))
    img = nib.Nifti1Image(data, aff)
    if case == "qform_only":
        img.set_sform(None, code=0)
        img.set_qform(aff, code=1)
    if case == "scaled":
        img.header.set_slope_inter(0.5, -3.0)
    path = tmp_path / f"{case}.nii.gz"
    nib.save(img, path)
    vol = load(path)
    _check_against_sitk(path, vol)
    # world position of a voxel agrees with nibabel's affine (RAS -> LPS)
    ras = nib.load(path).affine @ [2, 3, 4, 1]
    np.testing.assert_allclose(vol.index_to_world((2, 3, 4)), ras[:3] * [-1, -1, 1], atol=1e-4)


def test_nifti2_uses_the_same_geometry(tmp_path) -> None:
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    aff = _affine(np.diag([-1.0, 1.0, 1.0]) @ _rot(0.2, 0.0), (1.5, 2.0, 3.0), (5, 6, -7))
    one, two = tmp_path / "one.nii", tmp_path / "two.nii"
    nib.save(nib.Nifti1Image(data, aff), one)
    nib.save(nib.Nifti2Image(data, aff), two)
    v1, v2 = load(one), load(two)
    np.testing.assert_array_equal(v1.array, v2.array)
    np.testing.assert_allclose(v1.spacing, v2.spacing, atol=1e-6)
    np.testing.assert_allclose(v1.origin, v2.origin, atol=1e-4)
    np.testing.assert_allclose(v1.direction, v2.direction, atol=1e-5)
    assert any("NIfTI-2" in n for n in v2.source.notes)


def test_4d_loads_first_volume_and_2d_is_one_slice(tmp_path) -> None:
    data = np.random.default_rng(0).integers(0, 100, (4, 5, 6, 3)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "t.nii.gz")
    vol = load(tmp_path / "t.nii.gz")
    assert vol.shape == (6, 5, 4)
    np.testing.assert_array_equal(vol.array, data[..., 0].T)
    assert any("first" in n for n in vol.source.notes)
    nib.save(nib.Nifti1Image(data[:, :, 0, 0], np.eye(4)), tmp_path / "flat.nii")
    vol = load(tmp_path / "flat.nii")
    assert vol.shape == (1, 5, 4)


def test_bad_nifti_raises_load_error(tmp_path) -> None:
    p = tmp_path / "bad.nii"
    p.write_bytes(b"\x5c\x01\x00\x00" + b"\0" * 340 + b"n+1\0" + b"\xff" * 10)
    with pytest.raises(LoadError) as info:
        load(p)
    assert str(p) in str(info.value)
