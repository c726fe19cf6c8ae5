"""Brush footprints in mm on anisotropic and oblique views, the 3D ball, the value-range limit,
painted through LabelMap.apply."""

from __future__ import annotations

import numpy as np
import pytest

from medplib_core import load
from medplib_core.analysis.brush import brush_2d, brush_ball, brush_balls, footprint, limit_to_range, stamp_stroke
from medplib_core.annotation import LabelMap, LabelSet
from medplib_core.errors import MedplibError
from medplib_core.slicing import slice_geometry
from medplib_core.volume import Volume


def _oblique() -> np.ndarray:
    a, b = np.deg2rad(25.0), np.deg2rad(-35.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


def test_footprint_is_an_ellipse_in_pixels_and_a_disc_in_mm():
    fp = footprint((3.0, 0.5), 6.0)  # coronal view of a 3 mm / 0.5 mm scan
    assert fp.shape == (5, 25)
    assert fp[2].sum() == 25 and fp[:, 12].sum() == 5
    r = np.arange(-2, 3)[:, None] * 3.0
    c = np.arange(-12, 13)[None, :] * 0.5
    np.testing.assert_array_equal(fp, np.hypot(r, c) <= 6.0)
    assert footprint((2.0, 2.0), 0.5).sum() == 1
    with pytest.raises(MedplibError):
        footprint((1.0, 1.0), 0)


@pytest.mark.parametrize("orientation", ["axial", "coronal", "sagittal"])
def test_stroke_paints_a_disc_in_world_mm(orientation):
    vol = Volume(np.zeros((20, 30, 40), np.int16), spacing=(0.5, 0.9, 2.5), origin=(3, 4, 5),
                 direction=_oblique())
    labels = LabelSet()
    labels.add("x", value=1)
    lm = LabelMap(vol.shape, labels)
    g = slice_geometry(vol, orientation, 7)
    centre = (g.shape[0] // 2, g.shape[1] // 2)
    stamp = brush_2d(vol, orientation, 7, [centre], 5.0)
    edit = lm.apply(stamp.mask, 1, view=stamp.view)
    painted = np.argwhere(lm.array == 1)[:, ::-1]  # (i, j, k)
    world = vol.index_to_world(painted)
    centre_world = g.to_world(*centre)
    assert np.all(np.linalg.norm(world - centre_world, axis=1) <= 5.0 + 1e-9)
    assert np.all(painted[:, 2 - g.axis] == 7)  # only on that slice
    expected = footprint(g.pixel_spacing, 5.0).sum()
    assert len(painted) == expected
    lm.revert(edit)  # the stamp's edit is an ordinary undoable one
    assert not lm.array.any()
    # a drag from one side to the other fills the segment (no gaps between mouse events)
    a, b = (centre[0], 2), (centre[0], g.shape[1] - 3)
    stroke = brush_2d(vol, orientation, 7, [a, b], 2.0)
    lm.apply(stroke.mask, 1, view=stroke.view)
    row = g.take(lm.array)[centre[0]]
    assert row[2:g.shape[1] - 2].all()


def test_stroke_at_the_edge_is_clipped():
    vol = Volume(np.zeros((3, 10, 12), np.int16), spacing=(1.0, 1.0, 1.0))
    stamp = brush_2d(vol, "axial", 1, [(0, 0)], 3.0)
    assert stamp.mask.shape == (4, 4) and stamp.mask[0, 0]
    arr = np.zeros(vol.shape, np.uint16)
    stamp.view(arr)[stamp.mask] = 1
    assert arr[1].sum() == stamp.mask.sum() and arr[0].sum() == 0


def test_ball_on_an_oblique_anisotropic_grid():
    vol = Volume(np.zeros((30, 40, 50), np.int16), spacing=(0.6, 0.8, 1.5), origin=(-3, 2, 9),
                 direction=_oblique())
    centre = vol.index_to_world([24.4, 18.3, 14.6])
    stamp = brush_ball(vol, centre, 7.0)
    arr = np.zeros(vol.shape, np.uint16)
    stamp.view(arr)[stamp.mask] = 1
    k, j, i = np.indices(vol.shape)
    world = vol.index_to_world(np.stack([i, j, k], -1).reshape(-1, 3)).reshape(vol.shape + (3,))
    np.testing.assert_array_equal(arr == 1, np.linalg.norm(world - centre, axis=-1) <= 7.0)
    assert arr.sum() * np.prod(vol.spacing) == pytest.approx(4 / 3 * np.pi * 7 ** 3, rel=0.03)


@pytest.mark.shared_data
def test_value_range_brush_on_the_ct(shared_data):
    vol = load(shared_data / "volumes" / "ct_series_j2k")
    k, r, c = 10, 256, 256
    stamp = brush_2d(vol, "axial", k, [(r, c)], 30.0, value_range=(20, 100))
    ball = brush_ball(vol, slice_geometry(vol, "axial", k).to_world(r, c), 30.0, value_range=(100, 20))
    for s in (stamp, ball):
        values = s.view(vol.array)[s.mask]
        assert values.size and values.min() >= 20 and values.max() <= 100
        unlimited = brush_2d(vol, "axial", k, [(r, c)], 30.0) if s is stamp else \
            brush_ball(vol, slice_geometry(vol, "axial", k).to_world(r, c), 30.0)
        inside = unlimited.view(vol.array)[unlimited.mask]
        assert s.mask.sum() == np.count_nonzero((inside >= 20) & (inside <= 100)) < unlimited.mask.sum()
    colour = Volume(np.zeros((1, 5, 5, 3), np.uint8))
    with pytest.raises(MedplibError, match="colour"):
        brush_2d(colour, "axial", 0, [(2, 2)], 1.0, value_range=(0, 10))


def test_ball_stroke_is_the_union_of_balls_along_the_drag():
    vol = Volume(np.zeros((30, 40, 50), np.int16), spacing=(0.6, 0.8, 1.5), origin=(-3, 2, 9),
                 direction=_oblique())
    a, b = vol.index_to_world([10.2, 12.0, 8.0]), vol.index_to_world([35.0, 25.5, 20.3])
    stamp = brush_balls(vol, [a, b], 4.0)
    arr = np.zeros(vol.shape, np.uint16)
    stamp.view(arr)[stamp.mask] = 1
    k, j, i = np.indices(vol.shape)
    world = vol.index_to_world(np.stack([i, j, k], -1).reshape(-1, 3)).reshape(vol.shape + (3,))
    # distance of every voxel centre to the segment a-b, in world mm
    ab = b - a
    t = np.clip(((world - a) @ ab) / (ab @ ab), 0, 1)
    dist = np.linalg.norm(world - (a + t[..., None] * ab), axis=-1)
    painted = arr == 1
    assert np.all(dist[painted] <= 4.0 + 1e-9)  # nothing outside the swept ball
    # the dense balls cover the capsule except a sliver at its surface (samples are r/4 apart)
    assert np.all(painted[dist <= 4.0 * 0.95])
    one = brush_balls(vol, [a], 4.0)
    np.testing.assert_array_equal(one.mask, brush_ball(vol, a, 4.0).mask)


def test_stroke_preview_equals_the_stroke_and_range_limit():
    vol = Volume(np.arange(20 * 30 * 40, dtype=np.int16).reshape(20, 30, 40) % 97, spacing=(0.5, 0.9, 2.5),
                 direction=_oblique())
    for orientation in ("axial", "coronal", "sagittal"):
        g = slice_geometry(vol, orientation, 5)
        points = [(3.0, 2.0), (g.shape[0] - 4.0, g.shape[1] / 2), (g.shape[0] / 2, g.shape[1] - 1.0)]
        stroke = brush_2d(vol, orientation, 5, points, 3.0)
        full = np.zeros(vol.shape, bool)
        stroke.view(full)[stroke.mask] = True
        preview = np.zeros(g.shape, bool)
        for a, b in zip(points[:-1], points[1:]):  # segment by segment, as the mouse moves
            stamp_stroke(preview, g.pixel_spacing, [a, b], 3.0)
        np.testing.assert_array_equal(preview, g.take(full))
        limited = brush_2d(vol, orientation, 5, points, 3.0, value_range=(10, 40))
        full[:] = False
        limited.view(full)[limited.mask] = True
        np.testing.assert_array_equal(limit_to_range(preview, g.take(vol.array), (40, 10)), g.take(full))
    np.testing.assert_array_equal(limit_to_range(preview, g.take(vol.array), None), preview)
