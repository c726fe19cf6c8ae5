"""SAM-Med2D (ViT-B, 256 px, adapters) as used by MedPLIB's grounding head (spec §11.2, §12).

`SamMed2D` has the three sub-modules under the names of ``sam-med2d_b.pth['model']``; inside
MedPLIB it sits at ``model.visual_model``. ``pixel_mean``/``pixel_std`` are not modules here:
normalisation happens in `preprocess.sam_pixels`.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import SamConfig
from .sam_decoder import MaskDecoder, PromptEncoder
from .sam_encoder import ImageEncoderViT


class SamMed2D(nn.Module):
    def __init__(self, s: SamConfig | None = None):
        super().__init__()
        s = s or SamConfig()
        self.config = s
        self.image_encoder = ImageEncoderViT(s)
        self.prompt_encoder = PromptEncoder(s)
        self.mask_decoder = MaskDecoder(s)

    def embed_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """[1, 3, 256, 256] normalised pixels -> image embedding [1, C, 16, 16]."""
        w = self.image_encoder.patch_embed.proj.weight
        return self.image_encoder(pixels.to(device=w.device, dtype=w.dtype))

    def decode_text(self, image_embedding: torch.Tensor, text_embed: torch.Tensor):
        """Mask logits [1, 1, 64, 64] and IoU prediction [1, 1] for one text embedding [C]."""
        sparse, dense = self.prompt_encoder.text_prompt(text_embed.reshape(1, 1, -1))
        sparse = sparse.to(image_embedding.dtype)
        pe = self.prompt_encoder.get_dense_pe()
        return self.mask_decoder(image_embedding, pe, sparse, dense, multimask_output=False)
