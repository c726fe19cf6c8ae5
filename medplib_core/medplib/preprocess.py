"""Image preprocessing shared by both branches (spec §6).

Engines receive the displayed slice as ``uint8`` (H, W) or (H, W, 3/4). Both MedPLIB branches
start from the same RGB image: CLIP gets a 336 px centre-padded copy (`clip_branch.clip_pixels`),
SAM-Med2D a 256 px normalised, centre-padded copy (`sam_pixels`).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from medplib_core.errors import PromptError

SAM_MEAN = (123.675, 116.28, 103.53)
SAM_STD = (58.395, 57.12, 57.375)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """A contiguous uint8 (H, W, 3) copy of a grey, RGB or RGBA image."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        if a.dtype == bool:
            a = a.astype(np.uint8) * 255
        elif np.issubdtype(a.dtype, np.floating) and a.size and a.max() <= 1.0:
            a = np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8)
        else:
            a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise PromptError(f"unsupported image shape {np.asarray(image).shape}")
    return np.ascontiguousarray(a)


def longest_side_hw(h: int, w: int, target: int) -> tuple[int, int]:
    """SAM's ResizeLongestSide output size: ``int(x * target / max(h, w) + 0.5)``."""
    scale = target * 1.0 / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def resize_longest(img: np.ndarray, target: int) -> np.ndarray:
    """Longest-side resize with PIL bilinear (antialiased when shrinking), like the reference."""
    h, w = img.shape[:2]
    nh, nw = longest_side_hw(h, w, target)
    if (nh, nw) == (h, w):
        return img.copy()
    return np.array(Image.fromarray(img).resize((nw, nh), Image.BILINEAR))


def sam_pixels(rgb: np.ndarray, size: int = 256) -> tuple[torch.Tensor, tuple[int, int]]:
    """§6.2: longest-side resize, normalise on the 0-255 scale, centre-pad with zeros.

    Returns [1, 3, size, size] fp32 and ``resize_hw`` (h2, w2) for post-processing."""
    img = resize_longest(rgb, size)
    h2, w2 = img.shape[:2]
    x = (torch.from_numpy(img).float() - torch.tensor(SAM_MEAN)) / torch.tensor(SAM_STD)
    canvas = torch.zeros(size, size, 3)
    top, left = (size - h2) // 2, (size - w2) // 2
    canvas[top:top + h2, left:left + w2] = x
    return canvas.permute(2, 0, 1)[None].contiguous(), (h2, w2)
