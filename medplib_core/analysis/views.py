"""Linked views: one cursor in the world, its place in the axial, coronal and sagittal views.

A cursor is a world point (LPS mm). For each orientation it has a slice (the nearest one along
that view's sliced array axis) and a continuous screen position (row, col) in that slice, both
from `medplib_core.slicing`, so a crosshair drawn from them sits on the same voxel the
`SliceGeometry` of that view names. Because every view cuts the volume along an array axis,
the other views' slice planes cross a view along straight screen rows and columns: the
reference lines are a row or a column position, nothing oblique (also for oblique scans).

Screen convention: ``row`` runs down, ``col`` across, voxel centres at integer positions
(``x = col``, ``y = row`` for a painter).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..slicing import available_orientations, n_slices, slice_geometry
from ..volume import Volume


@dataclass(frozen=True)
class ViewPosition:
    """Where the cursor is in one orientation."""

    orientation: str
    index: int  # the slice to show (nearest to the cursor, clipped into the volume)
    row: float  # continuous screen row of the cursor in that slice
    col: float  # continuous screen column
    inside: bool  # the cursor lies within the volume's extent in this view (slice and pixel)
    off_plane_mm: float  # distance from the cursor to the shown slice's plane

    @property
    def x(self) -> float:
        return self.col

    @property
    def y(self) -> float:
        return self.row


@dataclass(frozen=True)
class ReferenceLine:
    """Another view's slice plane as seen in this view: a screen row or a screen column."""

    orientation: str  # the other view
    along: str  # "row" (a horizontal line at ``position``) or "col" (a vertical line)
    position: float


@dataclass(frozen=True, eq=False)
class Cursor:
    world: np.ndarray  # (3,) LPS mm
    ijk: np.ndarray  # (3,) continuous voxel index
    voxel: tuple[int, int, int] | None  # nearest voxel (i, j, k), None outside the volume
    views: dict[str, ViewPosition] = field(default_factory=dict)


def _view_position(volume: Volume, orientation: str, ijk: np.ndarray) -> ViewPosition:
    n = n_slices(volume, orientation)
    g0 = slice_geometry(volume, orientation, 0)
    along = float(ijk[2 - g0.axis])
    index = int(np.clip(np.floor(along + 0.5), 0, n - 1))
    g = slice_geometry(volume, orientation, index)
    row, col = g.from_voxel(*ijk)
    shown = ijk.copy()
    shown[2 - g.axis] = index
    world, on_plane = volume.index_to_world(ijk), volume.index_to_world(shown)
    inside = (-0.5 <= along <= n - 0.5 and -0.5 <= row <= g.shape[0] - 0.5
              and -0.5 <= col <= g.shape[1] - 0.5)
    return ViewPosition(orientation, index, float(row), float(col), bool(inside),
                        float(np.linalg.norm(world - on_plane)))


def cursor_at_world(volume: Volume, world) -> Cursor:
    """The cursor at a world point: its voxel and its place in every view the volume has."""
    world = np.asarray(world, dtype=float).reshape(3)
    ijk = volume.world_to_index(world)
    nearest = np.floor(ijk + 0.5).astype(int)
    size = np.array(volume.size_ijk)
    voxel = tuple(int(v) for v in nearest) if np.all((nearest >= 0) & (nearest < size)) else None
    views = {o: _view_position(volume, o, ijk) for o in available_orientations(volume)}
    return Cursor(world=world, ijk=ijk, voxel=voxel, views=views)


def cursor_at_view(volume: Volume, orientation: str, index: int, row: float, col: float) -> Cursor:
    """The cursor a click at screen (row, col) on slice ``index`` of ``orientation`` sets."""
    g = slice_geometry(volume, orientation, index)
    return cursor_at_world(volume, g.to_world(row, col))


def reference_lines(volume: Volume, cursor: Cursor, orientation: str) -> list[ReferenceLine]:
    """The other views' current slices, drawn in ``orientation`` as screen rows and columns."""
    me = cursor.views[orientation]
    g = slice_geometry(volume, orientation, me.index)
    lines = []
    for other, pos in cursor.views.items():
        if other == orientation:
            continue
        axis = slice_geometry(volume, other, pos.index).axis
        # the other slice's voxel centres, in this view's screen coordinates
        ijk = np.zeros(3)
        ijk[2 - axis] = pos.index
        r, c = g.from_voxel(*ijk)
        if axis == g.row_axis:
            lines.append(ReferenceLine(other, "row", float(r)))
        elif axis == g.col_axis:
            lines.append(ReferenceLine(other, "col", float(c)))
    return lines
