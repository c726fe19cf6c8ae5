"""uint8 pixels and label slices → QImages (no per-pixel Python).

Windowing is the core's (`medplib_core.display.Windowing`): the pixels shown are the pixels
engines are given. Label slices map through a uint32 ARGB table, so the overlay costs one
gather. QImages built here keep a reference to their NumPy buffer (``img._np``) so it outlives them.
"""

from __future__ import annotations

import cv2  # imported with the app, not on the first stroke or outline
import numpy as np
from PySide6.QtCore import QPointF
from PySide6.QtGui import QImage, QPainterPath, QPolygonF


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


def hatch_qimage(mask: np.ndarray, color: tuple[int, int, int], period: int = 6, width: int = 2,
                 alpha: int = 230, phase: int = 0) -> QImage:
    """A bool mask as diagonal stripes (``width`` of every ``period`` pixels) of one colour:
    how a pending proposal is drawn, unlike the solid fill of every label. ``phase``: row +
    column of the mask's first pixel in the slice, when ``mask`` is cut from it (the stripes
    then lie where they would on the whole slice)."""
    m = np.asarray(mask, dtype=bool)
    h, w = m.shape
    diag = np.arange(h)[:, None] + np.arange(w)[None, :] + int(phase)
    stripes = (diag % max(int(period), 2)) < max(int(width), 1)
    r, g, b = (int(c * alpha / 255) for c in color)
    word = np.uint32((alpha << 24) | (r << 16) | (g << 8) | b)
    return argb_qimage(np.where(m & stripes, word, np.uint32(0)).astype(np.uint32))


def mask_outline(mask: np.ndarray, at: tuple[int, int] = (0, 0)) -> QPainterPath:
    """Outer and hole contours of a bool mask as one path in image coordinates (through the
    centres of the edge pixels), built once per proposal rather than on every paint; ``at``:
    the (column, row) of the mask's first pixel when it is cut from the slice."""
    m = np.ascontiguousarray(np.asarray(mask, dtype=np.uint8))
    path = QPainterPath()
    if not m.any():
        return path
    contours, _ = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    for c in contours:
        pts = c.reshape(-1, 2).astype(np.float64) + 0.5 + np.asarray(at, np.float64)
        if len(pts) >= 2:
            path.addPolygon(QPolygonF([QPointF(x, y) for x, y in pts]))
            path.closeSubpath()
    return path
