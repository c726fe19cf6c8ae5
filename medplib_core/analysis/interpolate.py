"""Fill between slices: labels drawn on a few slices, the slices in between filled by shape.

Shape-based interpolation (Raya & Udupa; Herman et al.): every drawn slice becomes an in-plane
signed distance map in millimetres (negative inside), the maps of the two drawn slices around
a gap are blended linearly by slice position, and the blend's negative part is the filled
shape. When the two shapes do not overlap at all (a thin oblique vessel), each map is first
moved toward the shapes' interpolated centre of mass, so the shape travels instead of fading
out. A drawn slice is reproduced exactly; the shape between two drawn slices always lies in
the box around both shapes, so the work is cropped to that box.

(ITK's morphological contour interpolation, which Slicer and ITK-SNAP use, ships only in the
ITK Python wheels, about 1.5 GB installed; SimpleITK's wheel does not include it. The notes
compare both on the shared volumes.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import MedplibError
from ..slicing import slice_geometry
from ..volume import Volume


@dataclass
class SliceFill:
    """The proposal: ``mask`` holds the drawn slices unchanged plus the filled ones."""

    mask: np.ndarray  # bool [k, j, i] on the volume's grid
    axis: int  # array axis interpolated along (0 = k, 1 = j, 2 = i)
    drawn: list[int]  # slice indices along ``axis`` that had voxels
    filled: list[int]  # slice indices that received a shape

    @property
    def added(self) -> np.ndarray:
        """Only the voxels the interpolation added (what the GUI shows as the proposal)."""
        out = self.mask.copy()
        idx = [slice(None)] * 3
        idx[self.axis] = self.drawn
        out[tuple(idx)] = False
        return out


def _signed_distance(plane: np.ndarray, sampling: tuple[float, float]) -> np.ndarray:
    """Millimetres to the shape's edge: negative inside, positive outside, never zero."""
    outside = ndimage.distance_transform_edt(~plane, sampling=sampling)
    inside = ndimage.distance_transform_edt(plane, sampling=sampling)
    return outside - inside


def axis_of(volume: Volume, orientation: str) -> int:
    """The array axis that ``orientation``'s slices cut (0 = k, 1 = j, 2 = i)."""
    return slice_geometry(volume, orientation, 0).axis


def fill_between_slices(mask: np.ndarray, volume: Volume, orientation: str | None = "axial",
                        axis: int | None = None) -> SliceFill:
    """Fill the empty slices between the drawn slices of ``mask`` along one direction.

    ``mask`` is a bool [k, j, i] array on ``volume``'s grid; the direction is the one that
    ``orientation``'s slices cut, or the array ``axis`` when given. Slices outside the first
    and last drawn slice stay empty. At least two drawn slices are needed.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != volume.shape:
        raise MedplibError(f"mask {mask.shape} is not on the scan's grid {volume.shape}")
    if axis is None:
        axis = axis_of(volume, orientation or "axial")
    if axis not in (0, 1, 2):
        raise MedplibError(f"axis must be 0, 1 or 2, got {axis}")
    moved = np.moveaxis(mask, axis, 0)  # a view: slices first
    drawn = [int(s) for s in np.flatnonzero(moved.any(axis=(1, 2)))]
    if len(drawn) < 2:
        raise MedplibError("fill between slices needs a shape on at least two slices "
                           f"(found {len(drawn)})")
    in_plane = [a for a in range(3) if a != axis]
    sampling = (volume.spacing[2 - in_plane[0]], volume.spacing[2 - in_plane[1]])
    out = np.zeros_like(mask)
    out_moved = np.moveaxis(out, axis, 0)
    out_moved[drawn] = moved[drawn]
    filled: list[int] = []
    for s0, s1 in zip(drawn[:-1], drawn[1:]):
        if s1 - s0 < 2:
            continue
        both = moved[s0] | moved[s1]
        rows, cols = np.flatnonzero(both.any(1)), np.flatnonzero(both.any(0))
        r0, r1 = max(rows[0] - 1, 0), min(rows[-1] + 2, both.shape[0])
        c0, c1 = max(cols[0] - 1, 0), min(cols[-1] + 2, both.shape[1])
        box = (slice(r0, r1), slice(c0, c1))
        pad = ((int(r0 == 0), int(r1 == both.shape[0])), (int(c0 == 0), int(c1 == both.shape[1])))
        d0 = _signed_distance(np.pad(moved[s0][box], pad), sampling)
        d1 = _signed_distance(np.pad(moved[s1][box], pad), sampling)
        core = (slice(pad[0][0], d0.shape[0] - pad[0][1]), slice(pad[1][0], d0.shape[1] - pad[1][1]))
        travel = not (moved[s0] & moved[s1]).any()
        c0 = np.array(ndimage.center_of_mass(d0 < 0))
        c1 = np.array(ndimage.center_of_mass(d1 < 0))
        for s in range(s0 + 1, s1):
            t = (s - s0) / (s1 - s0)
            a, b = d0, d1
            if travel:  # move both maps to the interpolated centre (linear in the distances)
                c = (1.0 - t) * c0 + t * c1
                a = ndimage.shift(d0, c - c0, order=1, mode="nearest")
                b = ndimage.shift(d1, c - c1, order=1, mode="nearest")
            shape = ((1.0 - t) * a + t * b)[core] < 0
            if shape.any():
                out_moved[s][box] = shape
                filled.append(s)
    return SliceFill(mask=out, axis=int(axis), drawn=drawn, filled=filled)
