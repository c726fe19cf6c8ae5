"""Outlines of 2D masks and their fill: the two halves of a contour round trip (RTSTRUCT,
outline display), and the edge pixels of a label slice (the outline display mode).

Outlines run at the 0.5 level between set and unset pixel centres (marching squares), so the
even-odd fill of a mask's outlines, testing pixel centres, gives back exactly that mask.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import approximate_polygon, find_contours


def mask_outlines(plane: np.ndarray) -> list[np.ndarray]:
    """Closed outlines (n, 2) in (row, col) pixel coordinates of a 2D bool mask, holes included.

    The last point is not repeated; straight runs keep only their end points.
    """
    padded = np.pad(np.asarray(plane, dtype=np.uint8), 1)
    out = []
    for c in find_contours(padded, 0.5):
        c = approximate_polygon(c - 1.0, tolerance=0)
        if len(c) > 1 and np.allclose(c[0], c[-1]):
            c = c[:-1]
        if len(c) >= 3:
            out.append(c)
    return out


def fill_outlines(polygons: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Pixels (of a ``shape`` plane) whose centres lie inside an odd number of ``polygons``.

    Each polygon is (n, 2) in (row, col), closed implicitly. Scanline fill: every edge is cut
    with the pixel-centre rows it spans (half-open, so a vertex counts once), the cuts of a row
    are sorted and paired, and the columns between each pair are filled; cost grows with the
    rows and edges, not with the polygon's area times its edges.
    """
    plane_rows, plane_cols = shape
    starts, ends = [], []
    for p in polygons:
        p = np.asarray(p, dtype=float)
        if len(p) < 3:
            continue
        starts.append(p)
        ends.append(np.roll(p, -1, axis=0))
    out = np.zeros(shape, bool)
    if not starts:
        return out
    a, b = np.concatenate(starts), np.concatenate(ends)
    lo, hi = np.minimum(a[:, 0], b[:, 0]), np.maximum(a[:, 0], b[:, 0])
    first, stop = np.ceil(lo).astype(np.int64), np.ceil(hi).astype(np.int64)  # rows first..stop-1
    n = np.maximum(stop - first, 0)
    if not n.any():
        return out
    edge = np.repeat(np.arange(len(a)), n)
    row = first[edge] + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
    t = (row - a[edge, 0]) / (b[edge, 0] - a[edge, 0])
    col = a[edge, 1] + t * (b[edge, 1] - a[edge, 1])
    order = np.lexsort((col, row))
    row, col = row[order], col[order]
    left, right = col[0::2], col[1::2]
    row = row[0::2]
    keep = (row >= 0) & (row < plane_rows)
    row, c0 = row[keep], np.clip(np.ceil(left[keep]), 0, plane_cols).astype(np.int64)
    c1 = np.clip(np.ceil(right[keep]), 0, plane_cols).astype(np.int64)
    if not len(row):
        return out
    r_lo, r_hi, c_lo, c_hi = row.min(), row.max() + 1, c0.min(), c1.max()
    diff = np.zeros((r_hi - r_lo, c_hi - c_lo + 1), np.int32)  # only the polygons' box
    np.add.at(diff, (row - r_lo, c0 - c_lo), 1)
    np.add.at(diff, (row - r_lo, c1 - c_lo), -1)
    out[r_lo:r_hi, c_lo:c_hi] = np.cumsum(diff[:, :-1], axis=1) > 0
    return out


def label_edges(plane: np.ndarray, width: int = 1) -> np.ndarray:
    """The labelled pixels of a 2D label slice that touch another value (4-neighbours; the
    slice's border counts as background), ``width`` pixels deep: what an outline display
    draws in each label's colour. Same shape and dtype as ``plane``, 0 elsewhere."""
    plane = np.asarray(plane)
    edge = np.zeros(plane.shape, bool)
    cur = plane
    for _ in range(max(int(width), 1)):
        p = np.pad(cur, 1)
        centre = p[1:-1, 1:-1]
        ring = ((p[:-2, 1:-1] != centre) | (p[2:, 1:-1] != centre)
                | (p[1:-1, :-2] != centre) | (p[1:-1, 2:] != centre))
        new = ring & (centre != 0) & ~edge
        edge |= new
        cur = np.where(edge, 0, plane)  # the next ring lies inside the one found
    return np.where(edge, plane, 0).astype(plane.dtype)
