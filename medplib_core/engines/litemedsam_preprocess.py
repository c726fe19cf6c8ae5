"""LiteMedSAM pre- and post-processing, as the model was trained.

A `Frame` is one square model input cut from a displayed slice: either the whole slice or a
zoom region around a prompt. The region is resized so its longest side is 256 px (area
interpolation when shrinking, bilinear when enlarging), min-max normalised to 0..1 and padded at
the bottom/right to 256x256. Coordinates map by ``model = (image - region origin) * scale``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .litemedsam_shapes import MODEL_INPUT
from .prompts import Box

Region = tuple[int, int, int, int]  # x0, y0, x1, y1 with exclusive ends


@dataclass(frozen=True)
class Frame:
    """Geometry of one model input cut from an image of ``image_shape``."""

    image_shape: tuple[int, int]
    region: Region
    scale: float
    size: tuple[int, int]  # (h, w) of the resized region inside the 256x256 input

    @property
    def is_whole(self) -> bool:
        h, w = self.image_shape
        return self.region == (0, 0, w, h)

    def to_model(self, xy: np.ndarray) -> np.ndarray:
        """Pixel-centre ``(..., 2)`` x/y image coordinates to model-input coordinates."""
        xy = np.asarray(xy, dtype=np.float64)
        origin = np.array(self.region[:2], dtype=np.float64)
        return (xy - origin + 0.5) * self.scale - 0.5

    def box_to_model(self, box: Box, pad: float = 0.0) -> np.ndarray:
        """An inclusive pixel box to the inclusive box of model pixels it covers (+ ``pad``)."""
        x0, y0, x1, y1 = (float(v) for v in box)
        ox, oy = self.region[:2]
        s = self.scale
        lo = np.array([(x0 - ox) * s, (y0 - oy) * s])
        hi = np.maximum(np.array([(x1 + 1 - ox) * s - 1, (y1 + 1 - oy) * s - 1]), lo)
        lo, hi = lo - pad, hi + pad
        lim = np.array([self.size[1] - 1, self.size[0] - 1], dtype=np.float64)
        return np.concatenate([np.clip(lo, 0, lim), np.clip(hi, 0, lim)])

    def logits_to_image(self, logits: np.ndarray) -> np.ndarray:
        """Model-resolution logits (256, 256) to float logits over the whole image.

        Outside the region the result is a large negative value (background).
        """
        h, w = self.size
        x0, y0, x1, y1 = self.region
        crop = np.ascontiguousarray(logits[:h, :w], dtype=np.float32)
        up = cv2.resize(crop, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        if self.is_whole:
            return up
        out = np.full(self.image_shape, -20.0, np.float32)
        out[y0:y1, x0:x1] = up
        return out

    def mask_to_model(self, mask: np.ndarray, value: float = 8.0) -> np.ndarray:
        """A bool image mask as (1, 256, 256) logits (``+value`` inside, ``-value`` outside)."""
        x0, y0, x1, y1 = self.region
        h, w = self.size
        sub = mask[y0:y1, x0:x1].astype(np.float32)
        small = cv2.resize(sub, (w, h), interpolation=cv2.INTER_LINEAR)
        out = np.full((MODEL_INPUT, MODEL_INPUT), -value, np.float32)
        out[:h, :w] = np.where(small >= 0.5, value, -value)
        return out[None]


def make_frame(image_shape: tuple[int, int], region: Region | None = None) -> Frame:
    h, w = image_shape
    region = region or (0, 0, w, h)
    rw, rh = region[2] - region[0], region[3] - region[1]
    scale = MODEL_INPUT / max(rh, rw)
    size = (max(1, min(MODEL_INPUT, int(rh * scale + 0.5))), max(1, min(MODEL_INPUT, int(rw * scale + 0.5))))
    return Frame((h, w), tuple(int(v) for v in region), scale, size)  # type: ignore[arg-type]


def model_input(image: np.ndarray, frame: Frame) -> np.ndarray:
    """The normalised, padded ``(1, 3, 256, 256)`` float32 input for ``frame`` of ``image``."""
    x0, y0, x1, y1 = frame.region
    sub = image[y0:y1, x0:x1]
    h, w = frame.size
    interp = cv2.INTER_AREA if frame.scale < 1.0 else cv2.INTER_LINEAR
    small = cv2.resize(sub, (w, h), interpolation=interp).astype(np.float32)
    if small.ndim == 2:
        small = np.repeat(small[:, :, None], 3, axis=2)
    lo, hi = float(small.min()), float(small.max())
    small = (small - lo) / max(hi - lo, 1e-8)
    out = np.zeros((1, 3, MODEL_INPUT, MODEL_INPUT), np.float32)
    out[0, :, :h, :w] = small.transpose(2, 0, 1)
    return out


def zoom_region(box: Box, image_shape: tuple[int, int], context: float, min_side: int) -> Region | None:
    """A square region around ``box`` for the crop-and-zoom path, or None for the whole image.

    The side is ``context`` times the box's longest side (at least ``min_side`` px), snapped to
    a coarse grid so that nearby prompts share one cached embedding. None when the region would
    cover most of the image anyway.
    """
    h, w = image_shape
    x0, y0, x1, y1 = box
    side = max((max(x1 - x0, y1 - y0) + 1) * context, float(min_side))
    side = _snap_side(side)
    if side >= 0.8 * max(h, w):
        return None
    side_x, side_y = min(side, w), min(side, h)
    step = max(8, side // 8)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    rx0 = int(round((cx - side_x / 2) / step)) * step
    ry0 = int(round((cy - side_y / 2) / step)) * step
    rx0 = min(max(0, rx0), w - side_x)
    ry0 = min(max(0, ry0), h - side_y)
    # the snapped square must still hold the box with a little margin
    if rx0 > x0 or ry0 > y0 or rx0 + side_x <= x1 or ry0 + side_y <= y1:
        rx0 = min(max(0, int(cx - side_x / 2)), w - side_x)
        ry0 = min(max(0, int(cy - side_y / 2)), h - side_y)
    return rx0, ry0, rx0 + side_x, ry0 + side_y


def _snap_side(side: float) -> int:
    """Round a side length up to one of a geometric ladder of sizes (ratio 2**0.25)."""
    return int(np.ceil(2 ** (np.ceil(np.log2(max(side, 8.0)) * 4) / 4)))
