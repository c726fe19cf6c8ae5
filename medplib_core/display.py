"""Display windowing: a slice as the user sees it (uint8), the input every engine receives.

One arithmetic for everyone: a value ``v`` becomes ``uint8(clip((f32(v) - f32(lo)) * f32(255 /
width), 0, 255))`` with ``lo = centre - width / 2`` (truncated; NaN becomes 0). `apply_window` runs it
on an image; `Windowing` runs the same arithmetic once per possible value of an integer scan
and then looks pixels up in that table (the viewer's fast path), so both give identical bytes.
Colour ``uint8`` images are windowed per channel (the default window of a colour image,
centre 127.5 and width 255, leaves them unchanged); a fourth (alpha) channel is dropped.
"""

from __future__ import annotations

import numpy as np

MIN_WIDTH = 1e-6
MAX_TABLE = 2**20  # integer scans with a wider value range are windowed without a table


def _windowed(values: np.ndarray, centre: float, width: float) -> np.ndarray:
    """The one windowing arithmetic (float32), on any array of values."""
    width = max(float(width), MIN_WIDTH)
    lo = float(centre) - width / 2.0
    out = (values.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / width)
    np.nan_to_num(out, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def _plane(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 4:
        img = img[..., :3]
    return img


def apply_window(image: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Map ``[centre - width/2, centre + width/2]`` linearly to 0..255 (uint8), clipping outside."""
    return _windowed(_plane(image), centre, width)


def value_range(array: np.ndarray) -> tuple[int, int] | None:
    """``(min, max)`` of an integer (or bool) array; None for floats and empty arrays."""
    a = np.asarray(array)
    if a.dtype.kind not in "iub" or a.size == 0:
        return None
    return int(a.min()), int(a.max())


class Windowing:
    """Window/level for one scan; integer scans use one table indexed by ``value - vmin``.

    ``value_range`` is the scan's ``(min, max)`` (`Volume.value_range`); without it (or for
    float scans, or value ranges wider than `MAX_TABLE`) pixels are windowed arithmetically.
    The table of the last window used is kept, so scrolling through slices costs one gather each.
    """

    def __init__(self, value_range: tuple[int, int] | None = None):
        self.vmin, self.vmax = value_range or (0, -1)
        self.table_ok = value_range is not None and self.vmax - self.vmin < MAX_TABLE
        self._key: tuple[float, float] | None = None
        self._lut: np.ndarray | None = None

    @classmethod
    def for_volume(cls, volume) -> "Windowing":
        return cls(volume.value_range)

    def table(self, centre: float, width: float) -> np.ndarray:
        """uint8 per integer value ``vmin..vmax`` (the same arithmetic as `apply_window`)."""
        key = (float(centre), float(width))
        if key != self._key or self._lut is None:
            self._lut = _windowed(np.arange(self.vmin, self.vmax + 1, dtype=np.int64), centre, width)
            self._key = key
        return self._lut

    def apply(self, plane: np.ndarray, centre: float, width: float) -> np.ndarray:
        """A windowed, C-contiguous uint8 copy of ``plane`` (2D, or 2D + colour channels)."""
        plane = _plane(plane)
        if not self.table_ok or plane.dtype.kind not in "iub":
            return _windowed(plane, centre, width)
        lut = self.table(centre, width)
        if self.vmin == 0 and plane.dtype in (np.uint8, np.uint16):
            return np.ascontiguousarray(lut[plane])
        return lut[plane.astype(np.int64) - self.vmin]
