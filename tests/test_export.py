"""Exports land on the right voxels (nibabel and SimpleITK agree), and writes are atomic."""

import json
import os
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medplib_core.annotation import LabelMap, LabelSet
from medplib_core.export import export_labels, import_labels, sidecar_path, write_nifti_labels
from medplib_core.volume import Volume


def oblique_direction():
    """A proper rotation mixing all three axes (and not a permutation)."""
    a, b = np.deg2rad(25.0), np.deg2rad(-40.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


def phantom_grid():
    return Volume(np.zeros((40, 50, 60), np.int16), spacing=(0.8, 1.1, 2.5),
                  origin=(-30.0, 12.0, -45.0), direction=oblique_direction(), modality="CT", units="HU")


# a known world position well inside the phantom's oblique grid (not a voxel centre)
SPHERE_CENTRE = phantom_grid().index_to_world([31.3, 22.7, 19.4])


def sphere_phantom(centre_world=SPHERE_CENTRE, radius_mm=12.0):
    vol = phantom_grid()
    k, j, i = np.indices(vol.shape)
    world = vol.index_to_world(np.stack([i, j, k], -1).reshape(-1, 3)).reshape(vol.shape + (3,))
    inside = np.linalg.norm(world - np.asarray(centre_world), axis=-1) <= radius_mm
    vol.array[inside] = 300
    return vol, inside


def world_centroid_sitk(img, value=1):
    arr = sitk.GetArrayFromImage(img)
    kji = np.argwhere(arr == value).mean(0)
    return np.array(img.TransformContinuousIndexToPhysicalPoint([float(x) for x in kji[::-1]]))


def test_sphere_survives_label_export_reload(tmp_path):
    centre = SPHERE_CENTRE
    vol, inside = sphere_phantom(centre)
    assert inside.sum() > 500
    labels = LabelSet()
    v = labels.add("sphere").value
    lm = LabelMap(vol.shape, labels)
    lm.apply(vol.array > 100, v)
    out = write_nifti_labels(tmp_path / "sphere.nii.gz", lm.array, vol, labels)
    # SimpleITK reads LPS geometry from the NIfTI: the sphere is where we put it
    img = sitk.ReadImage(str(out))
    np.testing.assert_allclose(img.GetSpacing(), vol.spacing, atol=1e-5)
    np.testing.assert_allclose(img.GetOrigin(), vol.origin, atol=1e-4)
    np.testing.assert_allclose(np.reshape(img.GetDirection(), (3, 3)), vol.direction, atol=1e-5)
    np.testing.assert_allclose(world_centroid_sitk(img), centre, atol=0.6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), lm.array)
    # nibabel reads RAS: the same point with x and y negated
    nimg = nib.load(str(out))
    ijk = np.argwhere(np.asarray(nimg.dataobj) == v).mean(0)
    ras = nimg.affine @ np.r_[ijk, 1.0]
    np.testing.assert_allclose(ras[:3], centre * [-1, -1, 1], atol=0.6)
    # re-importing onto the same grid is exact; the sidecar names the label
    imp = import_labels(out, vol)
    assert not imp.resampled
    np.testing.assert_array_equal(imp.array, lm.array)
    assert imp.labels[v].name == "sphere"
    side = json.loads(sidecar_path(out).read_text())
    assert side["labels"][0]["voxels"] == int(inside.sum())


def test_import_resamples_by_world_coordinates(tmp_path):
    """A label file stored with a flipped axis lands on the same world voxels."""
    vol, inside = sphere_phantom()
    labels = LabelSet()
    labels.add("sphere")
    arr = inside.astype(np.uint16)
    # store the labels with the j axis reversed and the origin moved to match
    flipped = arr[:, ::-1, :]
    d = vol.direction.copy()
    new_origin = vol.index_to_world([0, vol.shape[1] - 1, 0])
    d[:, 1] *= -1
    img = sitk.GetImageFromArray(np.ascontiguousarray(flipped))
    img.SetSpacing(vol.spacing)
    img.SetOrigin(tuple(new_origin))
    img.SetDirection(tuple(d.reshape(-1)))
    path = tmp_path / "flipped.nii.gz"
    sitk.WriteImage(img, str(path))
    imp = import_labels(path, vol)
    assert imp.resampled
    np.testing.assert_array_equal(imp.array, arr)


def test_png_round_trip(tmp_path):
    vol = Volume(np.zeros((1, 40, 30, 3), np.uint8))
    assert vol.is_2d and vol.is_colour
    labels = LabelSet()
    a, b = labels.add("a").value, labels.add("b").value
    arr = np.zeros(vol.shape, np.uint16)
    arr[0, 5:10, 5:10] = a
    arr[0, 20:30, 10:20] = b
    out = export_labels(tmp_path / "m.png", arr, vol, labels)
    imp = import_labels(out, vol)
    np.testing.assert_array_equal(imp.array, arr)
    assert [lab.name for lab in imp.labels] == ["a", "b"]


_WRITER = r"""
import sys, numpy as np
from medplib_core.annotation import LabelSet
from medplib_core.export import write_nifti_labels
from medplib_core.volume import Volume
vol = Volume(np.zeros((160, 256, 256), np.int16))
labels = LabelSet(); labels.add("noise")
rng = np.random.default_rng(1)
arr = (rng.random(vol.shape) > 0.5).astype(np.uint16)
print("ready", flush=True)
while True:
    write_nifti_labels(sys.argv[1], arr, vol, labels)
"""


def test_killed_export_never_leaves_a_partial_file(tmp_path):
    target = tmp_path / "labels.nii.gz"
    for delay in (0.3, 0.9, 1.7):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if target.exists():  # whatever is there must be a complete, readable file
            data = np.asarray(nib.load(str(target)).dataobj)
            assert data.shape == (256, 256, 160)
    leftovers = [p for p in os.listdir(tmp_path) if p.startswith(".labels") and p != target.name]
    # temporaries may remain from a kill, but never under the target's name
    assert all(".partial" in p for p in leftovers)


def test_export_rejects_wrong_grid(tmp_path):
    from medplib_core.errors import ExportError

    vol = Volume(np.zeros((4, 8, 8), np.int16))
    with pytest.raises(ExportError):
        write_nifti_labels(tmp_path / "x.nii.gz", np.zeros((4, 8, 9), np.uint16), vol, LabelSet())
    with pytest.raises(ExportError):
        export_labels(tmp_path / "x.txt", np.zeros((4, 8, 8), np.uint16), vol, LabelSet())
