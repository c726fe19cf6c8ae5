"""Slice geometry from DICOM positions and orientations (shared by single- and multi-frame)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

POSITION_TOL_MM = 0.01  # two slices closer than this along the normal share a position


@dataclass
class StackGeometry:
    """Where a stack of 2D images sits: ``order`` lists the input indices from k = 0 up."""

    order: list[int]
    spacing: tuple[float, float, float]  # (i, j, k)
    origin: tuple[float, float, float]
    direction: np.ndarray  # columns: row cosine, column cosine, normal
    notes: list[str] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)  # duplicates left out
    physical: bool = True  # False when a spacing is a stand-in (no PixelSpacing, no slice step)


def as_floats(value, n: int) -> np.ndarray | None:
    """A DICOM multi-valued numeric attribute as ``n`` floats, or None when unusable."""
    if value is None:
        return None
    seq = [value] if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") \
        else list(value)
    try:
        vals = [float(v) for v in seq]
    except (TypeError, ValueError):
        return None
    if len(vals) != n or not np.all(np.isfinite(vals)):
        return None
    return np.asarray(vals, dtype=float)


def orientation_axes(iop) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(row cosine, column cosine, normal) from ImageOrientationPatient, or None if invalid."""
    v = as_floats(iop, 6)
    if v is None:
        return None
    row, col = v[:3], v[3:]
    nr, nc = np.linalg.norm(row), np.linalg.norm(col)
    if nr < 1e-6 or nc < 1e-6:
        return None
    row, col = row / nr, col / nc
    normal = np.cross(row, col)
    nn = np.linalg.norm(normal)
    if nn < 1e-3:
        return None
    normal /= nn
    col = np.cross(normal, row)  # re-orthogonalise (tiny rounding in the header)
    return row, col, normal


def same_orientation(a, b, tol: float = 1e-3) -> bool:
    return a is not None and b is not None and all(
        np.allclose(x, y, atol=tol) for x, y in zip(a, b))


def stack_geometry(positions: list, iop, pixel_spacing, fallback_dz: float | None,
                   tie_break: list | None = None) -> StackGeometry:
    """Sort images by position along the slice normal and derive the volume geometry.

    ``positions``: ImagePositionPatient per image (entries may be None); ``iop``: the shared
    orientation; ``pixel_spacing``: (row spacing, column spacing) in mm; ``fallback_dz``: the
    slice spacing to use when it cannot be measured (one image, no positions);
    ``tie_break``: per-image keys (e.g. InstanceNumber) to order images without positions and
    to choose among images at the same position.
    """
    n = len(positions)
    notes: list[str] = []
    tie = list(tie_break) if tie_break is not None else list(range(n))
    dy, dx = (float(pixel_spacing[0]), float(pixel_spacing[1])) if pixel_spacing is not None \
        else (1.0, 1.0)
    axes = orientation_axes(iop)
    if axes is None:
        axes = (np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([0, 0, 1.0]))
        notes.append("no usable ImageOrientationPatient: assumed an axial (identity) direction")
    row, col, normal = axes
    direction = np.column_stack([row, col, normal])
    pos = [as_floats(p, 3) for p in positions]
    dz_known = bool(fallback_dz and fallback_dz > 0)
    dz_default = float(fallback_dz) if dz_known else 1.0
    in_plane = pixel_spacing is not None

    if any(p is None for p in pos):
        order = sorted(range(n), key=lambda m: (tie[m], m))
        first = pos[order[0]]
        if n > 1:
            notes.append("images lack ImagePositionPatient (a cine loop or projections?): "
                         f"stacked by instance/frame number, {dz_default:g} mm apart")
        elif first is None:
            notes.append("no ImagePositionPatient: origin set to 0")
        origin = first if first is not None else np.zeros(3)
        return StackGeometry(order, (dx, dy, dz_default), tuple(origin), direction, notes,
                             physical=in_plane and dz_known)

    p = np.vstack(pos)
    dist = p @ normal
    order = sorted(range(n), key=lambda m: (round(float(dist[m]) / POSITION_TOL_MM), tie[m], m))
    dropped: list[int] = []
    kept = [order[0]]
    for m in order[1:]:
        if abs(dist[m] - dist[kept[-1]]) < POSITION_TOL_MM:
            dropped.append(m)
        else:
            kept.append(m)
    if len(kept) == 1 and n > 1:
        # every image at one place: a time series or repeated shots; stack them in order
        order = sorted(range(n), key=lambda m: (tie[m], m))
        notes.append(f"all {n} images share one position (a time series?): stacked by "
                     f"instance number, {dz_default:g} mm apart")
        return StackGeometry(order, (dx, dy, dz_default), tuple(p[order[0]]), direction, notes,
                             physical=in_plane and dz_known)
    if dropped:
        per = n / len(kept)
        notes.append(f"{len(dropped)} image(s) repeat the position of another "
                     f"({per:.3g} per position: several echoes, phases or acquisitions?); "
                     "loaded the first of each position by instance number")
    d = dist[kept]
    diffs = np.diff(d)
    dz = float(np.median(diffs)) if len(diffs) else dz_default
    physical = in_plane and (len(diffs) > 0 or dz_known)
    if len(diffs):
        notes.extend(_spacing_notes(diffs, dz))
        # positions should move along the normal; an in-plane drift means a gantry tilt
        drift = (p[kept] - p[kept[0]]) - np.outer(d - d[0], normal)
        if np.max(np.abs(drift)) > 0.01 * abs(d[-1] - d[0]) + 1e-3:  # more than ~0.6 degrees
            notes.append("slice positions drift in-plane (gantry tilt or sheared stack): "
                         "the volume is stored without shear, positions are approximate")
    return StackGeometry(kept, (dx, dy, dz), tuple(p[kept[0]]), direction, notes, dropped,
                         physical)


def _spacing_notes(diffs: np.ndarray, dz: float) -> list[str]:
    notes = []
    tol = max(0.01 * abs(dz), 1e-3)
    gaps = [int(m) for m in np.nonzero(diffs > 1.5 * dz)[0]]
    if gaps:
        shown = ", ".join(f"{diffs[m]:.3g} mm after slice {m}" for m in gaps[:5])
        more = "" if len(gaps) <= 5 else f" (+{len(gaps) - 5} more)"
        notes.append(f"gap(s) in the series: {shown}{more}; spacing taken as the median "
                     f"{dz:.4g} mm")
    if np.any(np.abs(diffs - dz) > tol):
        notes.append(f"uneven slice spacing: {diffs.min():.4g} to {diffs.max():.4g} mm "
                     f"(median {dz:.4g} mm used)")
    return notes
