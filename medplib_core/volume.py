"""`Volume`: a voxel array with its place in the world (DICOM LPS, millimetres).

Conventions (the same as SimpleITK's, so arrays move between the two unchanged):

* ``array`` is indexed ``[k, j, i]`` (slice, row, column); colour images add a trailing
  channel axis: ``[k, j, i, c]`` (a 2D RGB image is ``(1, H, W, 3)``; a 3D array is always
  a volume, never guessed to be colour).
* ``spacing``, ``origin`` and the columns of ``direction`` are given in ``(i, j, k)`` order.
* World position of voxel ``(i, j, k)`` is ``origin + direction @ (spacing * (i, j, k))``, in
  the DICOM patient coordinate system LPS (x to the patient's left, y posterior, z superior).

Nothing here flips or transposes the voxel data: display orientation is computed by
`medplib_core.slicing`, which only returns views together with the geometry that explains them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from .display import value_range as integer_range
from .errors import GeometryError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class SourceInfo:
    """Where a volume came from, with the identifiers a DICOM SEG needs to reference it."""

    path: str
    kind: str  # "dicom", "nifti" or "image"
    series_instance_uid: str | None = None
    study_instance_uid: str | None = None
    frame_of_reference_uid: str | None = None
    sop_instance_uids: list[str] = field(default_factory=list)  # one per slice k (or per frame)
    sop_class_uid: str | None = None
    files: list[str] = field(default_factory=list)  # one per slice k for single-frame series
    frame_numbers: list[int] = field(default_factory=list)  # 1-based source frame per slice k (multi-frame)
    series_description: str = ""
    patient_id: str = ""
    patient_name: str = ""
    notes: list[str] = field(default_factory=list)  # gaps, uneven spacing, conversions done

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "series_instance_uid": self.series_instance_uid,
            "study_instance_uid": self.study_instance_uid,
            "frame_of_reference_uid": self.frame_of_reference_uid,
            "sop_class_uid": self.sop_class_uid,
            "n_instances": len(set(self.sop_instance_uids)),
            "series_description": self.series_description,
            "notes": list(self.notes),
        }


@dataclass
class Volume:
    """A scan: voxels plus geometry, modality, units and a default display window."""

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    modality: str = "OT"
    units: str = ""
    window: tuple[float, float] | None = None  # (centre, width)
    source: SourceInfo | None = None
    # True when the spacing is measured in millimetres (DICOM with PixelSpacing, NIfTI); False
    # when it is a stand-in (a PNG's pixels, DICOM without spacing): no millilitres then. Left
    # out, it is False for a source of kind "image" and True otherwise.
    physical_spacing: bool | None = None

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        if arr.ndim == 2:
            arr = arr[np.newaxis]  # a 2D grey image is a one-slice volume
        if arr.ndim not in (3, 4):
            raise ValueError(f"a Volume needs a 2D, 3D or 3D+colour array, got shape {arr.shape}")
        self.array = arr
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        check_geometry(self.spacing, self.origin, self.direction)
        if self.physical_spacing is None:
            self.physical_spacing = not (self.source is not None and self.source.kind == "image")
        self.physical_spacing = bool(self.physical_spacing)
        if self.window is None:
            self.window = default_window(self)

    # ----- shape -----------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial shape ``(nk, nj, ni)``."""
        return tuple(int(n) for n in self.array.shape[:3])  # type: ignore[return-value]

    @property
    def size_ijk(self) -> tuple[int, int, int]:
        """Spatial size in ``(i, j, k)`` order, as ITK reports it."""
        nk, nj, ni = self.shape
        return ni, nj, nk

    @property
    def is_colour(self) -> bool:
        return self.array.ndim == 4

    @property
    def is_2d(self) -> bool:
        return self.shape[0] == 1

    @cached_property
    def value_range(self) -> tuple[int, int] | None:
        """``(min, max)`` of an integer scan's voxels (None for float scans), computed once."""
        return integer_range(self.array)

    @property
    def voxel_volume_ml(self) -> float | None:
        """Millilitres per voxel, or None when the spacing is not physical (no millimetres)."""
        if not self.physical_spacing:
            return None
        return float(np.prod(self.spacing)) / 1000.0

    # ----- geometry --------------------------------------------------------------------------
    @property
    def affine_lps(self) -> np.ndarray:
        """4×4 matrix mapping ``(i, j, k, 1)`` to LPS millimetres."""
        aff = np.eye(4)
        aff[:3, :3] = self.direction @ np.diag(self.spacing)
        aff[:3, 3] = self.origin
        return aff

    @property
    def affine_ras(self) -> np.ndarray:
        """4×4 matrix mapping ``(i, j, k, 1)`` to RAS millimetres, as NIfTI stores it."""
        return LPS_TO_RAS @ self.affine_lps

    def index_to_world(self, ijk) -> np.ndarray:
        """Continuous index ``(i, j, k)`` (or an ``(n, 3)`` array) to LPS millimetres."""
        p = np.asarray(ijk, dtype=float)
        return (p @ (self.direction @ np.diag(self.spacing)).T) + np.asarray(self.origin)

    def world_to_index(self, xyz) -> np.ndarray:
        """LPS millimetres to continuous index ``(i, j, k)``."""
        p = np.asarray(xyz, dtype=float) - np.asarray(self.origin)
        m = np.linalg.inv(self.direction @ np.diag(self.spacing))
        return p @ m.T

    def orientation_code(self) -> str:
        """Three letters naming where each of the i, j, k axes points, e.g. ``"LPS"``."""
        letters = (("L", "R"), ("P", "A"), ("S", "I"))
        code = ""
        for col in self.direction.T:
            axis = int(np.argmax(np.abs(col)))
            code += letters[axis][0 if col[axis] > 0 else 1]
        return code

    def same_grid(self, other: "Volume", tol: float = 1e-4) -> bool:
        """True when ``other`` has this volume's voxel grid (shape and geometry)."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=tol)
            and np.allclose(self.origin, other.origin, atol=tol * 10)
            and np.allclose(self.direction, other.direction, atol=tol)
        )

    def geometry_dict(self) -> dict[str, Any]:
        return {
            "shape_kji": list(self.shape),
            "size_ijk": list(self.size_ijk),
            "spacing": [round(s, 6) for s in self.spacing],
            "origin": [round(o, 6) for o in self.origin],
            "direction": np.round(self.direction, 6).tolist(),
            "orientation": self.orientation_code(),
            "modality": self.modality,
            "units": self.units,
            "dtype": str(self.array.dtype),
            "colour": self.is_colour,
            "physical_spacing": self.physical_spacing,
            "window": list(self.window) if self.window else None,
        }

    def empty_labels(self, dtype=np.uint16) -> np.ndarray:
        """A zeroed label array on this volume's grid."""
        return np.zeros(self.shape, dtype=dtype)


SPACING_RANGE_MM = (1e-6, 1e6)  # a nanometre to a kilometre
ORIGIN_MAX_MM = 1e7


def check_geometry(spacing, origin, direction) -> None:
    """Raise `GeometryError` for geometry no scanner produces: non-finite values, spacing outside
    a nanometre..kilometre, an origin beyond 10 km, direction columns that are not unit vectors
    or that do not span 3D (what a NaN/garbage sform or a denormal pixdim gives)."""
    sp = np.asarray(spacing, dtype=float)
    if not np.all(np.isfinite(sp)) or np.any(sp < SPACING_RANGE_MM[0]) or \
            np.any(sp > SPACING_RANGE_MM[1]):
        raise GeometryError(f"voxel spacing {tuple(float(s) for s in sp)} mm (each must be "
                            f"finite and lie in {SPACING_RANGE_MM[0]:g}..{SPACING_RANGE_MM[1]:g} mm)")
    org = np.asarray(origin, dtype=float)
    if not np.all(np.isfinite(org)) or np.any(np.abs(org) > ORIGIN_MAX_MM):
        raise GeometryError(f"origin {tuple(float(o) for o in org)} mm (not a finite position "
                            "in the scanner)")
    d = np.asarray(direction, dtype=float)
    if not np.all(np.isfinite(d)):
        raise GeometryError("the direction matrix holds NaN or infinite values")
    norms = np.linalg.norm(d, axis=0)
    if np.any(np.abs(norms - 1.0) > 1e-2) or abs(float(np.linalg.det(d))) < 0.5:
        raise GeometryError(f"the direction matrix {np.round(d, 4).tolist()} is not a rotation "
                            "(its axes are not unit vectors spanning 3D)")


WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "CT brain": (40.0, 80.0),
    "CT lung": (-600.0, 1500.0),
    "CT soft tissue / abdomen": (50.0, 400.0),
    "CT bone": (400.0, 1800.0),
    "CT liver": (60.0, 160.0),
}


def robust_window(array: np.ndarray) -> tuple[float, float]:
    """A window spanning the 0.5–99.5 percentiles (what MR and other modalities get)."""
    a = np.asarray(array)
    if a.size > 2_000_000:
        step = int(np.ceil(a.size / 2_000_000))
        a = a.reshape(-1)[::step]
    a = a[np.isfinite(a)] if a.dtype.kind == "f" else a.reshape(-1)
    if a.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(a, [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(a.min()), float(a.max())
    width = max(float(hi - lo), 1e-6)
    return float(lo + width / 2.0), width


def default_window(vol: Volume) -> tuple[float, float]:
    """The window a radiologist expects first: soft tissue for CT, robust range otherwise."""
    if vol.is_colour or vol.array.dtype == np.uint8:
        return 127.5, 255.0
    if vol.modality == "CT" and vol.units.upper() == "HU":
        return WINDOW_PRESETS["CT soft tissue / abdomen"]
    return robust_window(vol.array)
