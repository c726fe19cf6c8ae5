"""Display slices: orientation choice, screen order, pixel spacing, letters, world mapping."""

from __future__ import annotations

import numpy as np
import pytest

from medplib_core.slicing import (
    available_orientations,
    n_slices,
    slice_geometry,
    world_axis_assignment,
)
from medplib_core.volume import SourceInfo, Volume


def _rot_z(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _permuted_volume() -> Volume:
    """i runs toward Superior, j toward Right (-x), k toward Anterior (-y), slightly oblique."""
    cols = np.array([[0, 0, 1.0], [-1.0, 0, 0], [0, -1.0, 0]]).T  # columns = i, j, k
    direction = _rot_z(10) @ cols
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # nk=4, nj=5, ni=6
    return Volume(arr, spacing=(0.5, 0.8, 3.0), origin=(10.0, -20.0, 30.0), direction=direction,
                  modality="CT", units="HU")


def _standard_axial() -> Volume:
    arr = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    return Volume(arr, spacing=(0.7, 0.9, 2.5), origin=(1, 2, 3), direction=np.eye(3))


def test_standard_axial_is_unflipped() -> None:
    vol = _standard_axial()
    g = slice_geometry(vol, "axial", 1)
    assert g.axis == 0 and g.edge_letters == ("A", "P", "R", "L")
    assert np.shares_memory(g.take(vol.array), vol.array)
    np.testing.assert_array_equal(g.take(vol.array), vol.array[1])
    assert g.pixel_spacing == (0.9, 0.7)
    cor = slice_geometry(vol, "coronal", 2)
    assert cor.edge_letters == ("S", "I", "R", "L")
    np.testing.assert_array_equal(cor.take(vol.array), vol.array[::-1, 2, :])
    assert cor.pixel_spacing == (2.5, 0.7)
    sag = slice_geometry(vol, "sagittal", 3)
    assert sag.edge_letters == ("S", "I", "A", "P")
    np.testing.assert_array_equal(sag.take(vol.array), vol.array[::-1, :, 3])
    assert sag.pixel_spacing == (2.5, 0.9)
    assert [n_slices(vol, o) for o in ("axial", "coronal", "sagittal")] == [3, 4, 5]


def test_assignment_on_permuted_direction() -> None:
    vol = _permuted_volume()
    assert world_axis_assignment(vol.direction) == (1, 2, 0)  # x<-j, y<-k, z<-i
    assert n_slices(vol, "axial") == 6 and n_slices(vol, "coronal") == 4
    assert n_slices(vol, "sagittal") == 5
    ax = slice_geometry(vol, "axial", 2)
    assert ax.axis == 2 and ax.shape == (4, 5)
    assert ax.pixel_spacing == (3.0, 0.8)


@pytest.mark.parametrize("orientation", ["axial", "coronal", "sagittal"])
def test_screen_directions_and_world_mapping(orientation: str) -> None:
    vol = _permuted_volume()
    n = n_slices(vol, orientation)
    g = slice_geometry(vol, orientation, n // 2)
    view = g.take(vol.array)
    assert view.shape == g.shape
    assert np.shares_memory(view, vol.array)
    # every displayed pixel is the voxel to_voxel names, and to_world agrees with the volume
    for r in range(g.shape[0]):
        for c in range(g.shape[1]):
            i, j, k = g.to_voxel(r, c)
            assert view[r, c] == vol.array[k, j, i]
            np.testing.assert_allclose(g.to_world(r, c), vol.index_to_world((i, j, k)))
            assert g.from_voxel(i, j, k) == (r, c)
            assert g.slice_index_of(i, j, k) == g.index
    # radiological conventions: columns go toward L (axial, coronal) or P (sagittal),
    # rows go toward P (axial) or I (coronal, sagittal)
    d_col = g.to_world(0, 1) - g.to_world(0, 0)
    d_row = g.to_world(1, 0) - g.to_world(0, 0)
    col_w, col_sign = {"axial": (0, 1), "coronal": (0, 1), "sagittal": (1, 1)}[orientation]
    row_w, row_sign = {"axial": (1, 1), "coronal": (2, -1), "sagittal": (2, -1)}[orientation]
    assert d_col[col_w] * col_sign > 0 and abs(d_col[col_w]) >= np.abs(d_col).max() - 1e-9
    assert d_row[row_w] * row_sign > 0 and abs(d_row[row_w]) >= np.abs(d_row).max() - 1e-9
    np.testing.assert_allclose([np.linalg.norm(d_row), np.linalg.norm(d_col)], g.pixel_spacing)
    top, bottom, left, right = g.edge_letters
    assert right[0] == {"axial": "L", "coronal": "L", "sagittal": "P"}[orientation]
    assert bottom[0] == {"axial": "P", "coronal": "I", "sagittal": "I"}[orientation]
    assert (top[0], left[0]) == ({"P": "A", "I": "S"}[bottom[0]], {"L": "R", "P": "A"}[right[0]])


def test_oblique_letters_are_compound() -> None:
    vol = Volume(np.zeros((3, 4, 5), np.int16), direction=_rot_z(40))
    top, bottom, left, right = slice_geometry(vol, "axial", 0).edge_letters
    assert len(right) == 2 and right[0] == "L"
    assert len(bottom) == 2 and bottom[0] == "P"


def test_view_is_writable_into_volume() -> None:
    vol = _permuted_volume()
    labels = vol.empty_labels()
    g = slice_geometry(vol, "coronal", 1)
    v = g.take(labels)
    v[0, 0] = 7
    i, j, k = g.to_voxel(0, 0)
    assert labels[k, j, i] == 7 and labels.sum() == 7


def test_colour_volume_keeps_channel_axis() -> None:
    arr = np.zeros((3, 4, 5, 3), np.uint8)
    arr[2, 1, 0] = (1, 2, 3)
    vol = Volume(arr)
    g = slice_geometry(vol, "sagittal", 0)
    view = g.take(vol.array)
    assert view.shape == (3, 4, 3)
    r, c = g.from_voxel(0, 1, 2)
    assert tuple(view[int(r), int(c)]) == (1, 2, 3)


def test_2d_image_shows_as_stored() -> None:
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    vol = Volume(arr, direction=np.diag([-1.0, -1.0, 1.0]),
                 source=SourceInfo(path="x.png", kind="image"))
    assert available_orientations(vol) == ("axial",)
    assert n_slices(vol, "axial") == 1 and n_slices(vol, "coronal") == 0
    g = slice_geometry(vol, "axial", 0)
    np.testing.assert_array_equal(g.take(vol.array), arr)
    assert g.edge_letters == ("", "", "", "")
    with pytest.raises(ValueError):
        slice_geometry(vol, "coronal", 0)
    with pytest.raises(IndexError):
        slice_geometry(vol, "axial", 1)
