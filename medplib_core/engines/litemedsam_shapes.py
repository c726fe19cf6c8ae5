"""LiteMedSAM's fixed sizes and the decoder's output record, free of PyTorch.

Shared by the PyTorch engine (`litemedsam_model`) and the model-file runtime (`lite_files`),
which must not import PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODEL_INPUT = 256  # the encoder's square input side
EMBED_SHAPE = (1, 256, 64, 64)
TOKENS = 64  # the embedding's grid side
PATCH = MODEL_INPUT // TOKENS  # model pixels per token side
OUTSIDE = -32.0  # mask logit given to pixels outside a decoding window


@dataclass
class Decoded:
    """Decoder output for a batch of N prompts: logits at model resolution and IoU scores."""

    logits: np.ndarray  # float32 (N, C, 256, 256)
    iou: np.ndarray  # float32 (N, C)


def token_window(window) -> tuple[int, int, int, int]:
    """Model-pixel window (row0, row1, col0, col1) -> the token rows/columns covering it
    (the whole grid for None)."""
    if window is None:
        return 0, TOKENS, 0, TOKENS
    y0, y1, x0, x1 = window
    r0 = int(np.clip(np.floor(y0 / PATCH), 0, TOKENS - 1))
    c0 = int(np.clip(np.floor(x0 / PATCH), 0, TOKENS - 1))
    r1 = int(np.clip(np.ceil(y1 / PATCH), r0 + 1, TOKENS))
    c1 = int(np.clip(np.ceil(x1 / PATCH), c0 + 1, TOKENS))
    return r0, r1, c0, c1


def select_and_place(logits: np.ndarray, iou: np.ndarray, tokens: tuple[int, int, int, int],
                     multimask: bool) -> Decoded:
    """Keep the single-mask output (or the three multimask ones) and put window logits back on
    the full 256x256 grid (``OUTSIDE`` elsewhere)."""
    sel = slice(1, None) if multimask else slice(0, 1)
    logits, iou = logits[:, sel], iou[:, sel]
    r0, r1, c0, c1 = tokens
    if (r0, r1, c0, c1) != (0, TOKENS, 0, TOKENS):
        full = np.full(logits.shape[:2] + (MODEL_INPUT, MODEL_INPUT), OUTSIDE, np.float32)
        full[:, :, PATCH * r0:PATCH * r1, PATCH * c0:PATCH * c1] = logits
        logits = full
    return Decoded(logits, iou)
