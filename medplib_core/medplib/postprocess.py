"""Low-res SAM logits -> a mask at the original image size (spec §11.3).

The reference (`MedPLIBForCausalLM.postprocess_masks`) crops the 64x64 logits as if they were
256x256, with Python slice semantics, then resizes bilinearly to (H, W); training used the
same function, so this is the default. ``"correct"`` is SAM's geometric variant (upsample to
256, crop the centred image area, resize), offered as an option.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_THRESHOLD = 0.1  # sigmoid(logit) > 0.1, as in the eval script and the demo
CROP_MODES = ("reference", "correct")


def reference_crop(resize_hw: tuple[int, int], size: int = 64) -> tuple[range, range]:
    """Rows and columns of the ``size`` x ``size`` logits the reference keeps."""
    h2, w2 = resize_hw
    top, left = (size - h2) // 2, (size - w2) // 2
    axis = range(size)
    return axis[slice(top, top + h2)], axis[slice(left, left + w2)]


def correct_crop(resize_hw: tuple[int, int], canvas: int = 256) -> tuple[range, range]:
    """Rows and columns of the image area on the centre-padded ``canvas`` (SAM input)."""
    h2, w2 = resize_hw
    top, left = (canvas - h2) // 2, (canvas - w2) // 2
    return range(top, top + h2), range(left, left + w2)


def full_res_logits(low: torch.Tensor, resize_hw: tuple[int, int], image_hw: tuple[int, int],
                    mode: str = "reference", canvas: int = 256) -> torch.Tensor:
    """[1, 1, 64, 64] logits -> [H, W] fp32 logits at the original image size."""
    low = low.float().reshape(1, 1, *low.shape[-2:])
    if mode == "reference":
        rows, cols = reference_crop(resize_hw, low.shape[-1])
        src = low
    elif mode == "correct":
        src = F.interpolate(low, (canvas, canvas), mode="bilinear", align_corners=False)
        rows, cols = correct_crop(resize_hw, canvas)
    else:
        raise ValueError(f"unknown crop mode {mode!r}; use one of {CROP_MODES}")
    if len(rows) == 0 or len(cols) == 0:
        return torch.full(image_hw, -torch.inf)
    crop = src[..., rows.start:rows.stop, cols.start:cols.stop]
    out = F.interpolate(crop, tuple(image_hw), mode="bilinear", align_corners=False)
    return out[0, 0]


def logits_to_mask(low: torch.Tensor, resize_hw: tuple[int, int], image_hw: tuple[int, int],
                   mode: str = "reference", threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Bool (H, W) mask: ``sigmoid(full-resolution logits) > threshold``."""
    full = full_res_logits(low, resize_hw, image_hw, mode)
    return (torch.sigmoid(full) > threshold).cpu().numpy()
