"""Slice → QImage conversion with NumPy lookup tables (no per-pixel Python).

Windowing matches `medplib_core.display.apply_window` (linear, clipped, truncated to uint8), so
the GUI hands engines the same pixels a batch run would.

`WindowLUT` maps integer scans through one precomputed uint8 table; floats use vectorised
arithmetic. Label slices map through a uint32 ARGB table, so the overlay costs one gather.
QImages built here keep a reference to their NumPy buffer (``img._np``) so it outlives them.
"""

from __future__ import annotations

import cv2  # imported with the app, not on the first stroke or outline
import numpy as np
from PySide6.QtCore import QPointF
from PySide6.QtGui import QImage, QPainterPath, QPolygonF


def window_bounds(centre: float, width: float) -> tuple[float, float]:
    width = max(float(width), 1e-6)
    return float(centre) - width / 2.0, float(centre) + width / 2.0


class WindowLUT:
    """Window/level for one volume: integer data uses a table indexed by ``value - vmin``."""

    def __init__(self, array: np.ndarray, value_range: tuple[int, int] | None = None):
        self.kind = array.dtype.kind
        self.vmin = self.vmax = 0
        self.integer = self.kind in "iub" and array.size > 0
        if self.integer:
            self.vmin, self.vmax = value_range or value_range_of(array)
            self.integer = (self.vmax - self.vmin) < 2**20
        self._key: tuple[float, float] | None = None
        self._lut: np.ndarray | None = None

    def table(self, centre: float, width: float) -> np.ndarray:
        key = (float(centre), float(width))
        if key != self._key or self._lut is None:
            lo, _ = window_bounds(centre, width)
            vals = np.arange(self.vmin, self.vmax + 1, dtype=np.float64)
            self._lut = np.clip((vals - lo) * (255.0 / max(width, 1e-6)), 0, 255).astype(np.uint8)
            self._key = key
        return self._lut

    def apply(self, plane: np.ndarray, centre: float, width: float) -> np.ndarray:
        """A windowed, C-contiguous uint8 copy of ``plane`` (2D, or 2D + channels)."""
        if self.integer:
            lut = self.table(centre, width)
            if self.vmin == 0 and plane.dtype in (np.uint8, np.uint16):
                return np.ascontiguousarray(lut[plane])
            idx = plane.astype(np.int32) - self.vmin
            return lut[idx]
        lo, _ = window_bounds(centre, width)
        out = (plane.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / max(width, 1e-6))
        np.nan_to_num(out, copy=False, nan=0.0)
        np.clip(out, 0, 255, out=out)
        return out.astype(np.uint8)


def value_range_of(array: np.ndarray) -> tuple[int, int] | None:
    """(min, max) of an integer array (computed once per scan, on the loading thread)."""
    if array.dtype.kind not in "iub" or array.size == 0:
        return None
    return int(array.min()), int(array.max())


def gray_qimage(gray: np.ndarray) -> QImage:
    """uint8 (H, W) → Grayscale8 QImage sharing the buffer."""
    gray = np.ascontiguousarray(gray)
    h, w = gray.shape
    img = QImage(gray.data, w, h, gray.strides[0], QImage.Format.Format_Grayscale8)
    img._np = gray  # keep the buffer alive
    return img


def rgb_qimage(rgb: np.ndarray) -> QImage:
    """uint8 (H, W, 3|4) → RGB32 QImage."""
    rgb = rgb[..., :3].astype(np.uint32)
    packed = np.ascontiguousarray(0xFF000000 | (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2])
    return argb_qimage(packed, QImage.Format.Format_RGB32)


def argb_qimage(packed: np.ndarray, fmt=QImage.Format.Format_ARGB32_Premultiplied) -> QImage:
    """uint32 (H, W) ARGB words → QImage sharing the buffer."""
    packed = np.ascontiguousarray(packed, dtype=np.uint32)
    h, w = packed.shape
    img = QImage(packed.data, w, h, packed.strides[0], fmt)
    img._np = packed
    return img


def label_lut(label_set, max_value: int) -> np.ndarray:
    """uint32 ARGB (opaque) per label value; 0, hidden and unknown values are transparent."""
    lut = np.zeros(max(int(max_value), 1) + 1, dtype=np.uint32)
    for lab in label_set:
        if lab.visible and lab.value < lut.size:
            r, g, b = (int(c) for c in lab.color)
            lut[lab.value] = 0xFF000000 | (r << 16) | (g << 8) | b
    return lut


def label_qimage(labels2d: np.ndarray, lut: np.ndarray) -> QImage | None:
    """The overlay image of one label slice, or None when nothing on it is visible."""
    if not labels2d.any():
        return None
    top = int(lut.size - 1)
    idx = labels2d if int(labels2d.max()) <= top else np.minimum(labels2d, top)
    packed = lut[idx]
    if not packed.any():
        return None
    return argb_qimage(packed)


def mask_qimage(mask: np.ndarray, color: tuple[int, int, int], alpha: int = 140) -> QImage:
    """A bool mask as a translucent, premultiplied single-colour image."""
    r, g, b = (int(c * alpha / 255) for c in color)
    word = np.uint32((alpha << 24) | (r << 16) | (g << 8) | b)
    packed = np.where(np.asarray(mask, dtype=bool), word, np.uint32(0)).astype(np.uint32)
    return argb_qimage(packed)


def mask_outline(mask: np.ndarray) -> QPainterPath:
    """Outer and hole contours of a bool mask as one path in image coordinates (through the
    centres of the edge pixels), built once per proposal rather than on every paint."""
    m = np.ascontiguousarray(np.asarray(mask, dtype=np.uint8))
    path = QPainterPath()
    if not m.any():
        return path
    contours, _ = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    for c in contours:
        pts = c.reshape(-1, 2).astype(np.float64) + 0.5
        if len(pts) >= 2:
            path.addPolygon(QPolygonF([QPointF(x, y) for x, y in pts]))
            path.closeSubpath()
    return path
