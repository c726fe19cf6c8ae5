"""Measurements drawn on a view: a ruler and ellipse / rectangle regions of interest.

Every measurement remembers the view it was drawn on (orientation, slice index, screen
positions, voxel centres at integer positions) and is measured in world coordinates, so a
length is in millimetres whatever the view's pixel aspect. A region's statistics use the
pixels whose centres lie inside the drawn outline; its area is the outline's own area
(pi*a*b for an ellipse, width*height for a rectangle) in mm², or px² for images without
physical spacing. Everything serialises to plain JSON (`to_dict` / `measurement_from_dict`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import MedplibError
from ..slicing import SliceGeometry, slice_geometry
from ..volume import Volume
from .physical import length_unit

MEASUREMENTS_FORMAT = "medplib-studio-measurements/1"
ROI_SHAPES = ("ellipse", "rectangle")


@dataclass
class Ruler:
    """A straight line between two screen points of one view."""

    orientation: str
    index: int
    start: tuple[float, float]  # (row, col)
    end: tuple[float, float]
    name: str = ""
    kind: str = "ruler"

    def world_points(self, volume: Volume) -> np.ndarray:
        g = slice_geometry(volume, self.orientation, self.index)
        return np.stack([g.to_world(*self.start), g.to_world(*self.end)])

    def length(self, volume: Volume) -> float:
        """Length in mm (px for images without physical spacing)."""
        a, b = self.world_points(volume)
        return float(np.linalg.norm(b - a))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "orientation": self.orientation,
                "index": int(self.index), "start": [float(v) for v in self.start],
                "end": [float(v) for v in self.end]}

    def result(self, volume: Volume) -> dict[str, Any]:
        """The geometry plus the measured values, as exported in the sidecar."""
        d = self.to_dict()
        d.update(length=round(self.length(volume), 4), unit=length_unit(volume),
                 world=np.round(self.world_points(volume), 4).tolist())
        return d


@dataclass
class RoiStats:
    mean: float | None  # None for colour images or an ROI that covers no pixel centre
    sd: float | None  # sample SD (n - 1), like the label statistics
    min: float | None
    max: float | None
    pixels: int
    area: float  # the drawn outline's area, in ``area_unit``
    area_unit: str  # "mm2" or "px2"
    units: str  # the scan's value unit ("HU" for CT)

    def to_dict(self) -> dict[str, Any]:
        r = lambda v: None if v is None else round(float(v), 4)  # noqa: E731
        return {"mean": r(self.mean), "sd": r(self.sd), "min": r(self.min), "max": r(self.max),
                "pixels": self.pixels, "area": r(self.area), "area_unit": self.area_unit,
                "units": self.units}


@dataclass
class Roi:
    """An ellipse or rectangle on one view, given by two opposite corners of its box."""

    shape: str
    orientation: str
    index: int
    corner0: tuple[float, float]  # (row, col)
    corner1: tuple[float, float]
    name: str = ""

    def __post_init__(self) -> None:
        if self.shape not in ROI_SHAPES:
            raise MedplibError(f"an ROI is one of {ROI_SHAPES}, got {self.shape!r}")

    @property
    def kind(self) -> str:
        return self.shape

    def mask(self, geom: SliceGeometry) -> np.ndarray:
        """Pixels of the view (``geom.shape``) whose centres lie inside the outline."""
        (r0, c0), (r1, c1) = self.corner0, self.corner1
        rows = np.arange(geom.shape[0], dtype=float)[:, None]
        cols = np.arange(geom.shape[1], dtype=float)[None, :]
        lo_r, hi_r, lo_c, hi_c = min(r0, r1), max(r0, r1), min(c0, c1), max(c0, c1)
        if self.shape == "rectangle":
            return (rows >= lo_r) & (rows <= hi_r) & (cols >= lo_c) & (cols <= hi_c)
        a, b = (hi_r - lo_r) / 2.0, (hi_c - lo_c) / 2.0
        if a <= 0 or b <= 0:
            return np.zeros(geom.shape, bool)
        return ((rows - (lo_r + a)) / a) ** 2 + ((cols - (lo_c + b)) / b) ** 2 <= 1.0

    def area(self, volume: Volume, geom: SliceGeometry | None = None) -> float:
        g = geom or slice_geometry(volume, self.orientation, self.index)
        down = g.to_world(1, 0) - g.to_world(0, 0)
        across = g.to_world(0, 1) - g.to_world(0, 0)
        pixel_area = float(np.linalg.norm(np.cross(down, across)))
        h = abs(self.corner1[0] - self.corner0[0])
        w = abs(self.corner1[1] - self.corner0[1])
        box = h * w * pixel_area
        return box * np.pi / 4.0 if self.shape == "ellipse" else box

    def statistics(self, volume: Volume) -> RoiStats:
        g = slice_geometry(volume, self.orientation, self.index)
        inside = self.mask(g)
        n = int(np.count_nonzero(inside))
        stats: dict[str, float | None] = dict(mean=None, sd=None, min=None, max=None)
        if n and not volume.is_colour:
            vals = g.take(volume.array)[inside].astype(np.float64)
            stats = dict(mean=float(vals.mean()), sd=float(vals.std(ddof=1)) if n > 1 else 0.0,
                         min=float(vals.min()), max=float(vals.max()))
        unit = length_unit(volume)
        return RoiStats(pixels=n, area=self.area(volume, g), area_unit=f"{unit}2",
                        units=volume.units, **stats)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.shape, "name": self.name, "orientation": self.orientation,
                "index": int(self.index), "corner0": [float(v) for v in self.corner0],
                "corner1": [float(v) for v in self.corner1]}

    def result(self, volume: Volume) -> dict[str, Any]:
        d = self.to_dict()
        d.update(self.statistics(volume).to_dict())
        g = slice_geometry(volume, self.orientation, self.index)
        d["world"] = np.round(np.stack([g.to_world(*self.corner0), g.to_world(*self.corner1)]), 4).tolist()
        return d


Measurement = Ruler | Roi


def measurement_from_dict(d: dict[str, Any]) -> Measurement:
    """A ruler or ROI back from `to_dict` (extra keys, such as exported results, are ignored)."""
    try:
        kind = d["kind"]
        common = dict(orientation=str(d["orientation"]), index=int(d["index"]), name=str(d.get("name", "")))
        if kind == "ruler":
            return Ruler(start=tuple(float(v) for v in d["start"]),
                         end=tuple(float(v) for v in d["end"]), **common)
        if kind in ROI_SHAPES:
            return Roi(shape=kind, corner0=tuple(float(v) for v in d["corner0"]),
                       corner1=tuple(float(v) for v in d["corner1"]), **common)
    except (KeyError, TypeError, ValueError) as exc:
        raise MedplibError(f"not a measurement: {exc}") from exc
    raise MedplibError(f"unknown measurement kind {kind!r}")


def sidecar_measurements(items: list[Measurement], volume: Volume) -> list[dict[str, Any]]:
    """The ``"measurements"`` entry of an export sidecar: geometry plus measured values."""
    return [m.result(volume) for m in items]


def measurements_from_sidecar(label_path) -> list[Measurement]:
    """The measurements an export wrote into its sidecar (none when it has no sidecar)."""
    from ..export.sidecar import read_sidecar

    data = read_sidecar(label_path) or {}
    return [measurement_from_dict(d) for d in data.get("measurements", [])]


def measurements_to_json(items: list[Measurement], volume: Volume | None = None) -> str:
    """JSON of the measurements; with ``volume`` each item also carries its measured values."""
    data = sidecar_measurements(items, volume) if volume is not None else [m.to_dict() for m in items]
    return json.dumps({"format": MEASUREMENTS_FORMAT, "items": data}, indent=1)


def measurements_from_json(text: str) -> list[Measurement]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise MedplibError(f"measurements are not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != MEASUREMENTS_FORMAT:
        raise MedplibError(f"measurements must be a {MEASUREMENTS_FORMAT} document")
    return [measurement_from_dict(d) for d in data.get("items", [])]
