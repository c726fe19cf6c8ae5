"""Display windowing: a slice as the user sees it (uint8), the input every engine receives."""

from __future__ import annotations

import numpy as np


def apply_window(image: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Map ``[centre - width/2, centre + width/2]`` linearly to 0..255 (uint8), clipping outside.

    Colour (``(H, W, 3)`` uint8) images pass through unchanged; NaNs become 0.
    """
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] in (3, 4) and img.dtype == np.uint8:
        return img[..., :3]
    width = max(float(width), 1e-6)
    lo = float(centre) - width / 2.0
    out = (img.astype(np.float32) - lo) * (255.0 / width)
    out = np.nan_to_num(out, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(out, 0, 255).astype(np.uint8)
