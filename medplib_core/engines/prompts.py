"""Engine-independent prompt helpers: checking slices and boxes, rasterising outlines, masks.

Everything here works in the pixel grid of the displayed slice (``x`` column, ``y`` row) and
knows nothing about any particular model.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from ..errors import PromptError

Box = tuple[float, float, float, float]


def check_image(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Validate a displayed slice; return it as ``uint8 (H, W, 3)`` and a reason if unusable.

    Raises `PromptError` for arrays that are not images (wrong rank, NaN, empty). A constant
    slice is returned with a reason (nothing can be segmented on it) instead of an error.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
        raise PromptError(f"a slice must be (H, W) or (H, W, 3), got shape {arr.shape}")
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise PromptError(f"the slice is too small to segment ({arr.shape[0]}x{arr.shape[1]})")
    if arr.dtype != np.uint8:
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise PromptError("the slice contains NaN or infinite values; apply a window first")
        if arr.dtype.kind not in "biuf":
            raise PromptError(f"unsupported slice dtype {arr.dtype}")
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        arr = np.clip((arr.astype(np.float32) - lo) * scale, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    arr = np.ascontiguousarray(arr)
    reason = None
    if int(arr.max()) == int(arr.min()):
        reason = "the slice is constant (no contrast in this window): nothing to segment"
    return arr, reason


def check_box(box: Sequence[float], shape: tuple[int, int]) -> Box:
    """Validate a box ``(x0, y0, x1, y1)`` (inclusive pixel corners) and clip it to the image.

    Raises `PromptError` for non-finite, inverted, empty or fully outside boxes.
    """
    if box is None or len(box) != 4:
        raise PromptError(f"a box needs four numbers (x0, y0, x1, y1), got {box!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise PromptError(f"the box has non-finite coordinates: {box!r}")
    if x1 < x0 or y1 < y0:
        raise PromptError(
            f"the box is inverted (x1 < x0 or y1 < y0): {box!r}; (x0, y0) is the top-left corner"
        )
    h, w = shape
    if x1 < 0 or y1 < 0 or x0 > w - 1 or y0 > h - 1:
        raise PromptError(f"the box {box!r} lies outside the {w}x{h} image")
    x0, x1 = max(0.0, x0), min(float(w - 1), x1)
    y0, y1 = max(0.0, y0), min(float(h - 1), y1)
    if x1 - x0 < 1.0 or y1 - y0 < 1.0:
        raise PromptError(f"the box {box!r} is empty (less than 2 pixels wide or high in the image)")
    return x0, y0, x1, y1


def check_points(points, labels, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Validate clicks; returns ``(N, 2)`` float coordinates and ``(N,)`` labels (1/0)."""
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    labs = np.asarray(labels if labels is not None and len(labels) else [1] * len(pts), dtype=int)
    if labs.shape != (len(pts),):
        raise PromptError(f"{len(pts)} points but {labs.size} point labels")
    if not np.isfinite(pts).all():
        raise PromptError("a point has non-finite coordinates")
    if not np.isin(labs, (0, 1)).all():
        raise PromptError("point labels must be 1 (positive) or 0 (negative)")
    h, w = shape
    inside = (pts[:, 0] >= -0.5) & (pts[:, 0] <= w - 0.5) & (pts[:, 1] >= -0.5) & (pts[:, 1] <= h - 0.5)
    if len(pts) and not inside.all():
        raise PromptError(f"point {pts[~inside][0].tolist()} lies outside the {w}x{h} image")
    return pts, labs


def rasterize_polygon(polygon: Sequence[Sequence[float]], shape: tuple[int, int]) -> np.ndarray:
    """Fill a closed outline of ``(x, y)`` vertices into a bool mask of ``shape``."""
    pts = np.asarray(polygon, dtype=float).reshape(-1, 2)
    if len(pts) < 3 or not np.isfinite(pts).all():
        raise PromptError("a free-form outline needs at least three finite vertices")
    out = np.zeros(shape, np.uint8)
    cv2.fillPoly(out, [np.round(pts * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return out.astype(bool)


def mask_box(mask: np.ndarray) -> Box | None:
    """Tight inclusive box of a mask, or None when it is empty."""
    mask = np.asarray(mask)
    rows = np.flatnonzero(mask.any(axis=1))  # two reductions: a fraction of np.nonzero's cost
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
    return float(cols[0]), float(rows[0]), float(cols[-1]), float(rows[-1])


def box_fit(mask: np.ndarray, box: Box) -> float:
    """How well a mask fills a box drawn around an object: the IoU of the mask's bounding box
    with the box (pixel-inclusive; 0.0 for an empty mask)."""
    mb = mask_box(mask)
    if mb is None:
        return 0.0
    w = min(mb[2], box[2]) - max(mb[0], box[0]) + 1
    h = min(mb[3], box[3]) - max(mb[1], box[1]) + 1
    inter = max(0.0, w) * max(0.0, h)
    union = sum((b[2] - b[0] + 1) * (b[3] - b[1] + 1) for b in (mb, box)) - inter
    return inter / union


def expand_box(box: Box, frac: float, shape: tuple[int, int], min_pad: float = 0.0) -> Box:
    """Grow a box by ``frac`` of its size on each side (at least ``min_pad`` px), clipped."""
    x0, y0, x1, y1 = box
    px = max((x1 - x0) * frac, min_pad)
    py = max((y1 - y0) * frac, min_pad)
    h, w = shape
    return (max(0.0, x0 - px), max(0.0, y0 - py), min(w - 1.0, x1 + px), min(h - 1.0, y1 + py))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two bool masks (1.0 when both are empty)."""
    a, b = a.astype(bool), b.astype(bool)
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks (1.0 when both are empty)."""
    a, b = a.astype(bool), b.astype(bool)
    u = int((a | b).sum())
    return 1.0 if u == 0 else int((a & b).sum()) / u


def interior_point(mask: np.ndarray) -> tuple[float, float] | None:
    """The pixel of a mask farthest from its border, as ``(x, y)``."""
    if not mask.any():
        return None
    d = cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(d)), d.shape)
    return float(x), float(y)
