"""Per-label statistics of a label map on a scan: size, volume, intensities, extent, diameters.

Each label is measured inside its own bounding box (`scipy.ndimage.find_objects`), so the cost
is the sum of the labels' boxes, never labels x whole volume. Intensity SD is the sample SD
(n - 1 in the denominator), as ITK's LabelStatisticsImageFilter reports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from ..annotation.labels import LabelSet
from ..errors import MedplibError
from ..volume import Volume
from .diameters import Diameters, in_plane_diameters
from .physical import has_physical_spacing

TABLE_COLUMNS = ("label", "name", "voxels", "volume_ml", "mean", "sd", "min", "max")


@dataclass
class LabelStats:
    label: int
    name: str
    voxels: int
    volume_ml: float | None  # None when the scan has no physical spacing
    mean: float | None  # None for colour images
    sd: float | None
    min: float | None
    max: float | None
    units: str  # the scan's unit ("HU" for CT), "" when unknown
    bbox_min_ijk: tuple[int, int, int]
    bbox_max_ijk: tuple[int, int, int]  # inclusive
    centroid_ijk: tuple[float, float, float]  # centre of mass, continuous index
    centroid_world: tuple[float, float, float]  # LPS mm ("jump to label")
    diameters: Diameters | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """The table columns only (`TABLE_COLUMNS`)."""
        return {k: getattr(self, k) for k in TABLE_COLUMNS}

    def to_dict(self) -> dict[str, Any]:
        d = self.row()
        d.update(units=self.units, bbox_min_ijk=list(self.bbox_min_ijk),
                 bbox_max_ijk=list(self.bbox_max_ijk),
                 centroid_ijk=[round(c, 4) for c in self.centroid_ijk],
                 centroid_world=[round(c, 4) for c in self.centroid_world],
                 diameters=self.diameters.to_dict() if self.diameters else None)
        d.update(self.extra)
        return d


def _check(volume: Volume, labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if tuple(labels.shape) != volume.shape:
        raise MedplibError(f"label array {labels.shape} is not on the scan's grid {volume.shape}")
    if labels.dtype.kind not in "ui":
        raise MedplibError(f"labels must be integers, got {labels.dtype}")
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise MedplibError("label values must not be negative")
    return labels


def label_statistics(volume: Volume, labels: np.ndarray, label_set: LabelSet | None = None,
                     values: list[int] | None = None, diameters: bool = True,
                     orientation: str = "axial") -> list[LabelStats]:
    """Statistics of every label present in ``labels`` (or of ``values``), sorted by value.

    ``labels`` is an integer array on ``volume``'s grid. Names come from ``label_set`` (else
    "label N"). ``diameters`` adds the RECIST-style long/short axes in ``orientation``.
    """
    labels = _check(volume, labels)
    physical = has_physical_spacing(volume)
    voxel_ml = float(np.prod(volume.spacing)) / 1000.0
    scan = None if volume.is_colour else volume.array
    boxes = ndimage.find_objects(labels)
    present = [v + 1 for v, box in enumerate(boxes) if box is not None]
    if values is not None:
        present = [v for v in sorted(set(int(x) for x in values)) if v in present]
    out = []
    for v in present:
        box = boxes[v - 1]
        sub = labels[box] == v
        n = int(np.count_nonzero(sub))
        corner = np.array([s.start for s in box])  # [k, j, i]
        com_kji = np.array([
            (np.arange(sub.shape[a]) * sub.sum(axis=tuple(b for b in range(3) if b != a))).sum() / n
            for a in range(3)]) + corner
        centroid_ijk = tuple(float(c) for c in com_kji[::-1])
        stats: dict[str, float | None] = dict(mean=None, sd=None, min=None, max=None)
        if scan is not None:
            vals = scan[box][sub].astype(np.float64)
            mean = float(vals.mean())
            stats = dict(mean=mean, sd=float(vals.std(ddof=1)) if n > 1 else 0.0,
                         min=float(vals.min()), max=float(vals.max()))
        lab = label_set.get(v) if label_set is not None else None
        out.append(LabelStats(
            label=v, name=lab.name if lab else f"label {v}", voxels=n,
            volume_ml=n * voxel_ml if physical else None, units=volume.units,
            bbox_min_ijk=tuple(int(s.start) for s in box[::-1]),
            bbox_max_ijk=tuple(int(s.stop - 1) for s in box[::-1]),
            centroid_ijk=centroid_ijk,
            centroid_world=tuple(float(c) for c in volume.index_to_world(centroid_ijk)),
            diameters=in_plane_diameters(sub, volume, orientation, tuple(int(c) for c in corner))
            if diameters else None,
            **stats))
    return out
