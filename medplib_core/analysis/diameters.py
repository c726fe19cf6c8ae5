"""RECIST-style diameters of a mask: the longest in-plane diameter and its longest perpendicular.

Distances are between voxel centres, in world millimetres (so a sheared or oblique grid is
measured correctly), the convention ITK's Feret diameter uses. The long axis is the largest
diameter over all slices of the chosen orientation; the short axis lies on the same slice and
is the longest chord perpendicular to it (to within one pixel's width along the long axis).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from ..slicing import slice_geometry
from ..volume import Volume
from .measure import Ruler
from .physical import length_unit


@dataclass(frozen=True)
class Diameters:
    orientation: str
    slice_index: int  # plain array index along the sliced axis, as `slicing` counts slices
    long: float
    long_ends: np.ndarray  # (2, 3) world LPS
    short: float
    short_ends: np.ndarray  # (2, 3) world LPS
    unit: str  # "mm", or "px" for images without physical spacing

    def to_dict(self) -> dict:
        return {"orientation": self.orientation, "slice": self.slice_index,
                "long": round(float(self.long), 4), "short": round(float(self.short), 4),
                "long_ends": np.round(self.long_ends, 4).tolist(),
                "short_ends": np.round(self.short_ends, 4).tolist(), "unit": self.unit}


def _row_extremes(plane: np.ndarray) -> np.ndarray:
    """Index points (r, c) of the first and last set pixel of each row: their hull is the mask's."""
    rows = np.flatnonzero(plane.any(axis=1))
    sub = plane[rows]
    first = np.argmax(sub, axis=1)
    last = plane.shape[1] - 1 - np.argmax(sub[:, ::-1], axis=1)
    return np.concatenate([np.stack([rows, first], 1), np.stack([rows, last], 1)]).astype(float)


def _hull_points(points: np.ndarray) -> np.ndarray:
    if len(points) < 4:
        return points
    try:
        return points[ConvexHull(points).vertices]
    except QhullError:  # all points on one line
        return points


class _Plane:
    """Index (r, c) on slice s of ``axis`` -> world, for the two in-plane array axes."""

    def __init__(self, volume: Volume, axis: int, offset: tuple[int, int, int]):
        self.axis = axis
        self.in_plane = [a for a in range(3) if a != axis]  # array axes, ascending
        self.aff = volume.affine_lps
        self.offset = np.asarray(offset, dtype=float)  # [k, j, i] of the mask's corner

    def world(self, s: float, rc: np.ndarray) -> np.ndarray:
        kji = np.empty((len(rc), 3))
        kji[:, self.axis] = s
        kji[:, self.in_plane[0]] = rc[:, 0]
        kji[:, self.in_plane[1]] = rc[:, 1]
        kji += self.offset
        return kji[:, ::-1] @ self.aff[:3, :3].T + self.aff[:3, 3]

    def vector(self, array_axis: int) -> np.ndarray:
        return self.aff[:3, 2 - array_axis]


def _longest_pair(world: np.ndarray) -> tuple[float, int, int]:
    d = np.linalg.norm(world[:, None, :] - world[None, :, :], axis=-1)
    a, b = np.unravel_index(int(np.argmax(d)), d.shape)
    return float(d[a, b]), int(a), int(b)


def _short_axis(world: np.ndarray, u: np.ndarray, v: np.ndarray, bin_mm: float):
    t, w = world @ u, world @ v
    bins = np.floor((t - t.min()) / bin_mm).astype(np.int64)
    order = np.lexsort((w, bins))
    bins_sorted = bins[order]
    starts = np.flatnonzero(np.r_[True, bins_sorted[1:] != bins_sorted[:-1]])
    ends = np.r_[starts[1:], len(order)] - 1
    widths = w[order[ends]] - w[order[starts]]
    best = int(np.argmax(widths))
    lo, hi = world[order[starts[best]]], world[order[ends[best]]]
    t_mid = 0.5 * (lo @ u + hi @ u)
    lo = lo + (t_mid - lo @ u) * u
    hi = hi + (t_mid - hi @ u) * u
    return float(widths[best]), np.stack([lo, hi])


def in_plane_diameters(mask: np.ndarray, volume: Volume, orientation: str = "axial",
                       offset: tuple[int, int, int] = (0, 0, 0)) -> Diameters | None:
    """Long and short axis of ``mask`` ([k, j, i] bool, its corner at voxel ``offset`` [k, j, i]).

    Returns None for an empty mask. Slices are visited largest bounding box first and the
    search stops once no remaining slice's box diagonal can beat the best diameter found.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return None
    axis = slice_geometry(volume, orientation, 0).axis
    plane = _Plane(volume, axis, tuple(offset))
    a1, a2 = plane.in_plane
    occupied = mask.any(axis=tuple(a for a in range(3) if a != axis))
    slices = np.flatnonzero(occupied)
    # per-slice bounding-box diagonal in world mm: an upper bound of that slice's diameter
    bounds = []
    for s in slices:
        p = np.take(mask, s, axis=axis)
        r = np.flatnonzero(p.any(1))
        c = np.flatnonzero(p.any(0))
        span = (r[-1] - r[0]) * plane.vector(a1) + (c[-1] - c[0]) * plane.vector(a2)
        span2 = (r[-1] - r[0]) * plane.vector(a1) - (c[-1] - c[0]) * plane.vector(a2)
        bounds.append(max(np.linalg.norm(span), np.linalg.norm(span2)))
    best = (-1.0, None, None)
    for n in np.argsort(bounds)[::-1]:
        if bounds[n] <= best[0]:
            break
        s = int(slices[n])
        hull = _hull_points(_row_extremes(np.take(mask, s, axis=axis)))
        world = plane.world(s, hull)
        length, ia, ib = _longest_pair(world)
        if length > best[0]:
            best = (length, s, world[[ia, ib]])
    length, s, long_ends = best
    rc = np.argwhere(np.take(mask, s, axis=axis)).astype(float)
    world = plane.world(s, rc)
    normal = np.cross(plane.vector(a1), plane.vector(a2))
    if length > 0:
        u = (long_ends[1] - long_ends[0]) / length
    else:
        u = plane.vector(a2) / np.linalg.norm(plane.vector(a2))
    v = np.cross(normal, u)
    v /= np.linalg.norm(v)
    pitch = min(np.linalg.norm(plane.vector(a1)), np.linalg.norm(plane.vector(a2)))
    short, short_ends = _short_axis(world, u, v, pitch)
    return Diameters(orientation=orientation, slice_index=int(s + offset[axis]), long=length,
                     long_ends=long_ends, short=short, short_ends=short_ends,
                     unit=length_unit(volume))


def axes_as_rulers(volume: Volume, d: Diameters, name: str) -> tuple[Ruler, Ruler]:
    """The long and short axes as rulers on their slice, so the views draw them like any ruler
    (their lengths equal ``d.long`` and ``d.short``: the ends are the same world points)."""
    g = slice_geometry(volume, d.orientation, d.slice_index)

    def ruler(ends: np.ndarray, what: str) -> Ruler:
        start, end = (g.from_voxel(*volume.world_to_index(p)) for p in ends)
        return Ruler(d.orientation, d.slice_index, start, end, name=f"{name} {what}")

    return ruler(d.long_ends, "long axis"), ruler(d.short_ends, "short axis")
