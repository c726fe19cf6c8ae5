"""Label surfaces: vertices where the world mapping puts the label's edge, outward normals and
winding on flipped/oblique grids, enclosed volume = label volume, bounded triangle count."""

from __future__ import annotations

import numpy as np
import pytest

from medplib_core import load
from medplib_core.analysis.surface import label_surface, label_surfaces
from medplib_core.annotation import LabelSet
from medplib_core.errors import CancelledError
from medplib_core.export import import_labels
from medplib_core.volume import Volume


def _rot(deg_z: float, deg_x: float) -> np.ndarray:
    a, b = np.deg2rad(deg_z), np.deg2rad(deg_x)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


GRIDS = {"identity": np.eye(3), "flipped": np.diag([-1.0, 1.0, -1.0]),  # left-handed
         "oblique": _rot(30, -25), "oblique-flipped": _rot(-15, 40) @ np.diag([1.0, -1.0, 1.0])}


def _sphere(direction: np.ndarray):
    vol = Volume(np.zeros((30, 40, 50), np.int16), spacing=(0.8, 1.1, 1.9), origin=(-20, 15, 40),
                 direction=direction)
    centre = vol.index_to_world([24.3, 19.6, 14.2])
    k, j, i = np.indices(vol.shape)
    world = vol.index_to_world(np.stack([i, j, k], -1).reshape(-1, 3)).reshape(vol.shape + (3,))
    labels = (np.linalg.norm(world - centre, axis=-1) <= 12.0).astype(np.uint8) * 7
    return vol, labels, centre


@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_vertices_sit_between_a_label_voxel_and_its_outside_neighbour(grid):
    vol, labels, centre = _sphere(GRIDS[grid])
    surf = label_surface(vol, labels, 7)
    ijk = vol.world_to_index(surf.vertices.astype(float))
    frac = np.abs(ijk - np.round(ijk))
    half = np.isclose(frac, 0.5, atol=1e-4)
    assert np.all(half.sum(1) == 1) and np.all(np.isclose(frac[~half], 0, atol=1e-4))
    axis = np.argmax(half, axis=1)
    lo, hi = np.floor(ijk).astype(int), np.floor(ijk).astype(int)
    rows = np.arange(len(ijk))
    lo[~half] = np.round(ijk[~half]).astype(int)
    hi[~half] = lo[~half]
    hi[rows, axis] = lo[rows, axis] + 1
    a = labels[lo[:, 2], lo[:, 1], lo[:, 0]]
    b = labels[hi[:, 2], hi[:, 1], hi[:, 0]]
    assert np.all((a == 7) != (b == 7))  # one side labelled, the other not
    # outward normals, and triangles wound counter-clockwise seen from outside
    radial = surf.vertices - centre
    assert np.mean(np.einsum("ij,ij->i", surf.normals, radial) > 0) > 0.99
    assert surf.enclosed_volume_mm3() > 0
    n_vox = np.count_nonzero(labels)
    assert surf.enclosed_volume_mm3() == pytest.approx(n_vox * np.prod(vol.spacing), rel=0.03)
    assert surf.enclosed_volume_mm3() == pytest.approx(4 / 3 * np.pi * 12 ** 3, rel=0.05)


@pytest.mark.shared_data
def test_organ_surfaces_on_the_ct_series(shared_data):
    vol = load(shared_data / "volumes" / "ct_series_j2k")
    imported = import_labels(shared_data / "volumes" / "ct_series_j2k_labels.nii.gz", vol)
    liver = label_surface(vol, imported.array, 5)
    ml = np.count_nonzero(imported.array == 5) * np.prod(vol.spacing) / 1000.0
    assert liver.enclosed_volume_mm3() / 1000.0 == pytest.approx(ml, rel=0.01)
    lo, hi = liver.vertices.min(0), liver.vertices.max(0)
    ijk = np.argwhere(imported.array == 5)[:, ::-1]
    world = vol.index_to_world(ijk)
    np.testing.assert_allclose(lo, world.min(0) - np.array(vol.spacing) / 2, atol=1e-3)
    np.testing.assert_allclose(hi, world.max(0) + np.array(vol.spacing) / 2, atol=1e-3)
    coarse = label_surface(vol, imported.array, 5, max_triangles=20_000)
    assert 19_000 <= coarse.n_triangles <= 20_000 < liver.n_triangles
    assert coarse.enclosed_volume_mm3() / 1000.0 == pytest.approx(ml, rel=0.01)
    centre = imported.array == 5
    radial = coarse.vertices - vol.index_to_world(np.argwhere(centre).mean(0)[::-1])
    assert np.mean(np.einsum("ij,ij->i", coarse.normals, radial) > 0) > 0.9  # still outward
    smooth = label_surface(vol, imported.array, 5, smoothing=1.0)
    assert smooth.enclosed_volume_mm3() / 1000.0 == pytest.approx(ml, rel=0.03)
    labels = imported.labels
    labels.update(1, visible=False)
    seen = []
    every = label_surfaces(vol, imported.array, labels, max_triangles=100_000,
                           on_surface=lambda s, done, total: seen.append((s.label, done, total)))
    assert [x[0] for x in seen] == [s.label for s in every] and seen[-1][1] == seen[-1][2] == len(every)
    assert 1 not in {s.label for s in every} and 5 in {s.label for s in every}
    assert sum(s.n_triangles for s in every) <= 100_000 + 2_000 * len(every)
    assert {s.label: s.color for s in every}[5] == labels[5].color
    with pytest.raises(CancelledError):
        label_surfaces(vol, imported.array, labels, cancel=lambda: True)


def test_missing_label_gives_none():
    vol = Volume(np.zeros((4, 5, 6), np.int16))
    assert label_surface(vol, np.zeros(vol.shape, np.uint8), 3) is None
    assert label_surfaces(vol, np.zeros(vol.shape, np.uint8), LabelSet()) == []


@pytest.mark.parametrize("smoothing", [0.0, 1.0])
def test_a_one_voxel_label_still_has_a_surface_when_smoothed(smoothing):
    """A blur wider than the label (one stray voxel, as reference label files have) must not end
    the meshing with "surface level must be within volume data range": the voxel is meshed as is."""
    vol = Volume(np.zeros((12, 12, 12), np.int16), spacing=(3.0, 3.0, 3.0))
    labels = np.zeros(vol.shape, np.uint8)
    labels[6, 5, 4] = 3
    surf = label_surface(vol, labels, 3, smoothing=smoothing)
    assert surf is not None and len(surf.faces) > 0
    centre = vol.index_to_world([4, 5, 6])
    assert np.abs(surf.vertices - centre).max() <= 1.5 + 1e-4  # halfway to the neighbours' centres
