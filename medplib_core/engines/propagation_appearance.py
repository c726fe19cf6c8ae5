"""What the object looks like: the seed's grey levels against its surroundings.

Propagation uses this as evidence next to the model's own: where a box should grow or shrink,
whether a re-prompt improved the mask, whether the object has ended, and which rim of a mask is
not the object. Grey levels are those of the displayed slice (the user's window applied).
"""

from __future__ import annotations

import cv2
import numpy as np


class Appearance:
    """Grey levels of the object against its surroundings on the seed slice.

    ``likely(image)`` marks pixels whose grey level is more common inside the seed than in a
    ring around it (smoothed histograms, equal priors). ``informative`` says whether that
    separates the seed from its ring at all; where it does not, appearance is no evidence.
    """

    def __init__(self, image: np.ndarray, seed: np.ndarray, sigma: float = 4.0):
        grey = _grey(image)
        r = max(2, int(round(0.15 * np.sqrt(seed.sum()))))
        ring = cv2.dilate(seed.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2)) > 0
        ring &= ~seed
        self.inside = _hist(grey[seed], sigma)
        self.outside = _hist(grey[ring], sigma) if ring.any() else np.full(256, 1 / 256)
        self.table = self.inside >= self.outside
        self.hit_inside = float(self.table[grey[seed]].mean())
        self.hit_outside = float(self.table[grey[ring]].mean()) if ring.any() else 0.0

    @property
    def informative(self) -> bool:
        """The seed's pixels pass `likely` clearly more often than its ring's (30 points)."""
        return self.hit_inside - self.hit_outside >= 0.3

    def likely(self, image: np.ndarray) -> np.ndarray:
        """Pixels whose grey level is more common inside the seed than around it."""
        return self.table[_grey(image)]

    def likely_region(self, image: np.ndarray) -> np.ndarray:
        """`likely` with isolated pixels voted away (3x3 median)."""
        return cv2.medianBlur(self.likely(image).astype(np.uint8), 3) > 0

    @staticmethod
    def trim(mask: np.ndarray, likely: np.ndarray) -> np.ndarray:
        """``mask`` without its rim that is not object-like (``likely``); enclosed holes stay."""
        core = cv2.morphologyEx((mask & likely).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)) > 0
        return fill_holes(core) & mask


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its enclosed background filled (4-connected, as seen from outside the mask's
    bounding box; only that box is flooded, so a small object on a 512x512 slice costs little)."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return mask.astype(bool)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = np.pad(mask[y0:y1, x0:x1].astype(np.uint8), 1)
    h, w = crop.shape
    cv2.floodFill(crop, np.zeros((h + 2, w + 2), np.uint8), (0, 0), 1)
    out = mask.astype(bool)  # a copy
    out[y0:y1, x0:x1] |= crop[1:-1, 1:-1] == 0
    return out


def _grey(image: np.ndarray) -> np.ndarray:
    img = image.mean(axis=2) if image.ndim == 3 else image
    return np.clip(np.round(img), 0, 255).astype(np.intp)


def _hist(values: np.ndarray, sigma: float) -> np.ndarray:
    h = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    x = np.arange(-int(3 * sigma), int(3 * sigma) + 1)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    h = np.convolve(h, k / k.sum(), mode="same")
    return h / max(h.sum(), 1e-12)
