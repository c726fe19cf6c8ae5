"""Linked views: one world cursor, its slice and screen position in every view, reference lines;
on flipped, permuted and oblique grids and on the shared CT with its flipped label file."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from medplib_core import load
from medplib_core.analysis.views import cursor_at_view, cursor_at_world, reference_lines
from medplib_core.export import import_labels
from medplib_core.slicing import ORIENTATIONS, n_slices, slice_geometry
from medplib_core.volume import SourceInfo, Volume


def _rot(ax: int, deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    m = np.eye(3)
    a, b = [n for n in range(3) if n != ax]
    m[a, a], m[a, b], m[b, a], m[b, b] = c, -s, s, c
    return m


GRIDS = {
    "flipped": np.diag([-1.0, 1.0, -1.0]),  # i toward R, k toward I
    "permuted": _rot(2, 10) @ np.array([[0, 0, 1.0], [-1.0, 0, 0], [0, -1.0, 0]]).T,
    "oblique": _rot(2, 25) @ _rot(0, -35) @ _rot(1, 15),
}


def _volume(direction: np.ndarray) -> Volume:
    arr = np.arange(9 * 11 * 13, dtype=np.int16).reshape(9, 11, 13)
    return Volume(arr, spacing=(0.7, 1.3, 2.5), origin=(12.0, -40.0, 7.0), direction=direction,
                  modality="CT", units="HU")


@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_a_voxel_centre_is_the_same_voxel_in_every_view(grid):
    vol = _volume(GRIDS[grid])
    rng = np.random.default_rng(1)
    for _ in range(20):
        ijk = rng.integers([0, 0, 0], vol.size_ijk)
        cur = cursor_at_world(vol, vol.index_to_world(ijk))
        assert cur.voxel == tuple(int(v) for v in ijk)
        for o in ORIENTATIONS:
            pos = cur.views[o]
            assert pos.inside and pos.off_plane_mm == pytest.approx(0, abs=1e-9)
            g = slice_geometry(vol, o, pos.index)
            assert g.to_voxel(pos.row, pos.col) == cur.voxel
            np.testing.assert_allclose(g.to_world(pos.row, pos.col), cur.world, atol=1e-9)
            # the pixel under the crosshair shows that voxel's value
            i, j, k = cur.voxel
            assert g.take(vol.array)[round(pos.row), round(pos.col)] == vol.array[k, j, i]


@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_a_click_in_one_view_moves_the_others(grid):
    vol = _volume(GRIDS[grid])
    for o in ORIENTATIONS:
        g = slice_geometry(vol, o, 3)
        cur = cursor_at_view(vol, o, 3, 4.25, 2.75)  # between pixel centres
        assert cur.views[o].index == 3
        assert (cur.views[o].row, cur.views[o].col) == pytest.approx((4.25, 2.75))
        np.testing.assert_allclose(cur.world, g.to_world(4.25, 2.75))
        for other in ORIENTATIONS:
            pos = cur.views[other]
            go = slice_geometry(vol, other, pos.index)
            # shown point = the cursor moved onto that view's slice plane, along the sliced axis
            shown = go.to_world(pos.row, pos.col)
            step = vol.affine_lps[:3, 2 - go.axis]
            off = cur.world - shown
            assert np.linalg.norm(np.cross(off, step)) == pytest.approx(0, abs=1e-9)
            assert pos.off_plane_mm == pytest.approx(np.linalg.norm(off), abs=1e-9)
            assert np.linalg.norm(off) <= 0.5 * np.linalg.norm(step) + 1e-9
        lines = reference_lines(vol, cur, o)
        assert sorted(line.orientation for line in lines) == sorted(set(ORIENTATIONS) - {o})
        for line in lines:  # each line passes through the crosshair (voxel centres)
            r, c = g.from_voxel(*np.round(cur.ijk))
            assert line.position == pytest.approx(r if line.along == "row" else c)
        assert {line.along for line in lines} == {"row", "col"}


def test_outside_points_are_marked_and_clipped():
    vol = _volume(GRIDS["oblique"])
    cur = cursor_at_world(vol, vol.index_to_world([-5.0, 3.0, 40.0]))
    assert cur.voxel is None
    assert not any(p.inside for p in cur.views.values())
    for o, p in cur.views.items():  # the slice shown is the nearest one that exists
        n = n_slices(vol, o)
        along = cur.ijk[2 - slice_geometry(vol, o, 0).axis]
        assert p.index == int(np.clip(round(along), 0, n - 1))


def test_a_2d_image_has_only_the_axial_view():
    vol = Volume(np.zeros((1, 20, 30), np.uint8), source=SourceInfo(path="x.png", kind="image"))
    cur = cursor_at_view(vol, "axial", 0, 5, 7)
    assert list(cur.views) == ["axial"] and cur.voxel == (7, 5, 0)
    assert reference_lines(vol, cur, "axial") == []


@pytest.mark.shared_data
def test_crosshair_on_the_liver_of_the_flipped_label_file(shared_data):
    """The liver centre taken from the label file's OWN geometry lands on liver in every view."""
    folder = shared_data / "volumes"
    vol = load(folder / "ct_series_j2k")
    labels = import_labels(folder / "ct_series_j2k_labels.nii.gz", vol).array
    own = sitk.ReadImage(str(folder / "ct_series_j2k_labels.nii.gz"))
    arr = sitk.GetArrayFromImage(own)
    k, j, i = np.argwhere(arr == 5)[len(np.argwhere(arr == 5)) // 2]  # a liver voxel
    world = own.TransformIndexToPhysicalPoint((int(i), int(j), int(k)))
    cur = cursor_at_world(vol, world)
    assert cur.voxel is not None
    for o, pos in cur.views.items():
        g = slice_geometry(vol, o, pos.index)
        assert g.take(labels)[round(pos.row), round(pos.col)] == 5
