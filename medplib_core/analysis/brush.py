"""Brush footprints in millimetres: a disc on any view (an ellipse in pixels where pixels are
not square), a 3D ball, and a value-range limit (paint only where the scan is inside a window).

Every function returns a `BrushStamp`: a small bool mask and the box of the label array it
covers, with `view` ready for `LabelMap.apply(stamp.mask, value, view=stamp.view)`, so a
stroke costs its own box, never a whole slice or volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import MedplibError
from ..slicing import slice_geometry
from ..volume import Volume


@dataclass
class BrushStamp:
    mask: np.ndarray  # bool, the shape of ``view(label_array)``
    view: Callable[[np.ndarray], np.ndarray]  # label array -> the (writable) box it covers

    @property
    def empty(self) -> bool:
        return not self.mask.any()


def footprint(pixel_spacing: tuple[float, float], radius_mm: float) -> np.ndarray:
    """Disc of ``radius_mm`` sampled on pixels of (row_mm, col_mm): pixel centres within it.

    Odd-sized, centred; always at least the centre pixel.
    """
    if not radius_mm > 0:
        raise MedplibError(f"brush radius must be positive, got {radius_mm}")
    row_mm, col_mm = pixel_spacing
    hr, hc = int(np.floor(radius_mm / row_mm)), int(np.floor(radius_mm / col_mm))
    r = np.arange(-hr, hr + 1)[:, None] * row_mm
    c = np.arange(-hc, hc + 1)[None, :] * col_mm
    return r * r + c * c <= radius_mm * radius_mm


def _within(values: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray | bool:
    if value_range is None:
        return True
    lo, hi = sorted(float(v) for v in value_range)
    return (values >= lo) & (values <= hi)


def _dense_2d(points, pixel_spacing: tuple[float, float], radius_mm: float) -> np.ndarray:
    """Stroke points (row, col) with the segments between them sampled no further apart than a
    quarter radius (a drag of any speed leaves no gaps)."""
    pts = np.atleast_2d(np.asarray(points, dtype=float))
    if len(pts) > 1:
        step_px = max(0.25 * radius_mm / max(pixel_spacing), 0.5)
        dense = [pts[0]]
        for a, b in zip(pts[:-1], pts[1:]):
            n = int(np.ceil(np.linalg.norm(b - a) / step_px))
            dense.extend(a + (b - a) * t for t in np.linspace(0, 1, n + 1)[1:])
        pts = np.array(dense)
    return pts


def stamp_stroke(plane: np.ndarray, pixel_spacing: tuple[float, float], points, radius_mm: float) -> None:
    """Add a stroke's discs (as `brush_2d` paints them) into a bool ``plane`` of a view, in place:
    the stroke preview a canvas draws while the mouse moves (one segment at a time)."""
    disc = footprint(pixel_spacing, radius_mm)
    hr, hc = disc.shape[0] // 2, disc.shape[1] // 2
    for r, c in np.unique(np.round(_dense_2d(points, pixel_spacing, radius_mm)).astype(int), axis=0):
        r0, c0 = r - hr, c - hc
        sr = slice(max(-r0, 0), min(disc.shape[0], plane.shape[0] - r0))
        sc = slice(max(-c0, 0), min(disc.shape[1], plane.shape[1] - c0))
        if sr.start < sr.stop and sc.start < sc.stop:
            plane[r0 + sr.start: r0 + sr.stop, c0 + sc.start: c0 + sc.stop] |= disc[sr, sc]


def limit_to_range(mask: np.ndarray, values: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """``mask`` where ``values`` (the scan under it) lie in ``value_range`` (either order), e.g.
    a stroke kept inside an HU window; the mask itself without a range."""
    if value_range is None:
        return np.asarray(mask, bool)
    if values.ndim != np.ndim(mask):
        raise MedplibError("a value-range brush needs a grey-value scan, not a colour image")
    return np.asarray(mask, bool) & _within(values, value_range)


def brush_2d(volume: Volume, orientation: str, index: int, points, radius_mm: float,
             value_range: tuple[float, float] | None = None) -> BrushStamp:
    """A stroke on one view: discs at ``points`` [(row, col), ...] and along the segments
    between them, clipped to the slice; with ``value_range`` only where the scan lies in it."""
    g = slice_geometry(volume, orientation, index)
    if value_range is not None and volume.is_colour:
        raise MedplibError("a value-range brush needs a grey-value scan, not a colour image")
    pts = _dense_2d(points, g.pixel_spacing, radius_mm)
    disc = footprint(g.pixel_spacing, radius_mm)
    hr, hc = disc.shape[0] // 2, disc.shape[1] // 2
    centres = np.round(pts).astype(int)
    r0, c0 = max(centres[:, 0].min() - hr, 0), max(centres[:, 1].min() - hc, 0)
    r1 = min(centres[:, 0].max() + hr + 1, g.shape[0])
    c1 = min(centres[:, 1].max() + hc + 1, g.shape[1])
    box = (slice(r0, max(r1, r0)), slice(c0, max(c1, c0)))
    mask = np.zeros((max(r1 - r0, 0), max(c1 - c0, 0)), bool)
    for r, c in np.unique(centres, axis=0):
        # the disc's rows/cols that land inside the box
        dr0, dc0 = r - hr - r0, c - hc - c0
        sr, sc = slice(max(-dr0, 0), min(disc.shape[0], mask.shape[0] - dr0)), \
            slice(max(-dc0, 0), min(disc.shape[1], mask.shape[1] - dc0))
        if sr.start >= sr.stop or sc.start >= sc.stop:
            continue
        mask[dr0 + sr.start: dr0 + sr.stop, dc0 + sc.start: dc0 + sc.stop] |= disc[sr, sc]
    if value_range is not None and mask.size:
        mask &= _within(g.take(volume.array)[box], value_range)
    return BrushStamp(mask=mask, view=lambda a, g=g, box=box: g.take(a)[box])


def brush_ball(volume: Volume, centre_world, radius_mm: float,
               value_range: tuple[float, float] | None = None) -> BrushStamp:
    """A 3D ball of ``radius_mm`` around a world point (voxel centres within it, world distance)."""
    return brush_balls(volume, [centre_world], radius_mm, value_range)


def brush_balls(volume: Volume, centres_world, radius_mm: float,
                value_range: tuple[float, float] | None = None) -> BrushStamp:
    """A 3D stroke: the union of balls of ``radius_mm`` around world points, one stamp over the
    box they share (consecutive points further apart than a quarter radius are joined by
    intermediate balls, so a quick drag leaves no gaps)."""
    if not radius_mm > 0:
        raise MedplibError(f"brush radius must be positive, got {radius_mm}")
    if value_range is not None and volume.is_colour:
        raise MedplibError("a value-range brush needs a grey-value scan, not a colour image")
    pts = np.atleast_2d(np.asarray(centres_world, dtype=float))
    if len(pts) > 1:
        dense = [pts[0]]
        for a, b in zip(pts[:-1], pts[1:]):
            n = int(np.ceil(np.linalg.norm(b - a) / (0.25 * radius_mm)))
            dense.extend(a + (b - a) * t for t in np.linspace(0, 1, max(n, 1) + 1)[1:])
        pts = np.array(dense)
    linear = volume.affine_lps[:3, :3]
    centres = np.array([volume.world_to_index(p) for p in pts])  # (n, 3) continuous (i, j, k)
    half = radius_mm * np.linalg.norm(np.linalg.inv(linear), axis=1)  # index extent per axis
    size = np.array(volume.size_ijk)
    lo = np.clip(np.ceil(centres.min(axis=0) - half), 0, size).astype(int)
    hi = np.clip(np.floor(centres.max(axis=0) + half) + 1, 0, size).astype(int)
    box = (slice(lo[2], max(hi[2], lo[2])), slice(lo[1], max(hi[1], lo[1])), slice(lo[0], max(hi[0], lo[0])))
    mask = np.zeros(tuple(max(b.stop - b.start, 0) for b in box), bool)
    for c in centres:
        # each ball only within its own index box, inside the shared one
        blo = np.clip(np.ceil(c - half), lo, hi).astype(int)
        bhi = np.clip(np.floor(c + half) + 1, lo, hi).astype(int)
        if np.any(bhi <= blo):
            continue
        k, j, i = np.ogrid[blo[2]:bhi[2], blo[1]:bhi[1], blo[0]:bhi[0]]
        d = (i - c[0])[..., None] * linear[:, 0] + (j - c[1])[..., None] * linear[:, 1] \
            + (k - c[2])[..., None] * linear[:, 2]
        sub = (slice(blo[2] - lo[2], bhi[2] - lo[2]), slice(blo[1] - lo[1], bhi[1] - lo[1]),
               slice(blo[0] - lo[0], bhi[0] - lo[0]))
        mask[sub] |= np.einsum("...x,...x->...", d, d) <= radius_mm * radius_mm
    if value_range is not None and mask.size:
        mask &= _within(volume.array[box], value_range)
    return BrushStamp(mask=mask, view=lambda a, box=box: a[box])
