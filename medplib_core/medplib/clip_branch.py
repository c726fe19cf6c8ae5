"""CLIP vision branch and the multimodal projector (spec §2.2, §2.3, §6.1, §7).

`CLIPVisionTower` mirrors the reference wrapper: it holds transformers' `CLIPVisionModel` in
an attribute named ``vision_tower``, so under ``model.vision_tower`` the keys are
``model.vision_tower.vision_tower.vision_model.*`` as in the released shards. The selected
layer (``mm_vision_select_layer``, -2) is computed by running only the encoder layers needed,
which equals ``hidden_states[select_layer]`` of a full forward with all hidden states.
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_PAD_RGB = (122, 116, 104)  # int(mean * 255), the "pad" canvas colour


class CLIPVisionTower(nn.Module):
    """The frozen CLIP ViT; ``forward`` returns the selected layer's patch features."""

    def __init__(self, vision_config, select_layer: int = -2, select_feature: str = "patch"):
        super().__init__()
        from transformers import CLIPVisionModel

        model = CLIPVisionModel(vision_config)
        if hasattr(model, "vision_model"):  # transformers < 5 kept the prefix in the module
            self.vision_tower = model
        else:  # transformers 5 flattened it; restore the released key names
            self.vision_tower = _VisionModelHolder(model)
        self.select_layer = select_layer
        self.select_feature = select_feature
        layers = vision_config.num_hidden_layers
        index = select_layer % (layers + 1)  # index into (embeddings, layer 1, ..., layer L)
        if index == 0 and select_layer != 0:
            raise ValueError(f"mm_vision_select_layer {select_layer} is out of range")
        self.layers_to_run = index

    @property
    def image_size(self) -> int:
        return self.vision_tower.config.image_size

    @property
    def grid(self) -> int:
        cfg = self.vision_tower.config
        return cfg.image_size // cfg.patch_size

    def reset_buffers(self, device) -> None:
        """Recreate the non-persistent ``position_ids`` buffer after a meta-device build."""
        emb = self._vision().embeddings
        emb.position_ids = torch.arange(emb.num_positions, device=device).expand((1, -1))

    def _vision(self):
        return self.vision_tower.vision_model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``pixels`` [B, 3, 336, 336] -> features [B, 576, C] (CLS dropped for "patch")."""
        vm = self._vision()
        h = vm.embeddings(pixels.to(vm.embeddings.patch_embedding.weight.dtype))
        h = vm.pre_layrnorm(h)
        for layer in vm.encoder.layers[: self.layers_to_run]:
            h = layer(h, None)
        return h[:, 1:] if self.select_feature == "patch" else h


class _VisionModelHolder(nn.Module):
    """Holds a `CLIPVisionModel` as ``vision_model`` so keys read ``vision_model.*``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.vision_model = model

    @property
    def config(self):
        return self.vision_model.config


def build_projector(kind: str, in_dim: int, hidden: int) -> nn.Module:
    """``mm_projector``: "linear" or "mlp{N}x_gelu" (Linear, GELU, Linear, ...)."""
    if kind == "linear":
        return nn.Linear(in_dim, hidden)
    m = re.fullmatch(r"mlp(\d+)x_gelu", kind)
    if not m:
        raise ValueError(f"unknown mm_projector_type {kind!r}")
    mods: list[nn.Module] = [nn.Linear(in_dim, hidden)]
    for _ in range(int(m.group(1)) - 1):
        mods += [nn.GELU(), nn.Linear(hidden, hidden)]
    return nn.Sequential(*mods)


def clip_pixels(rgb: np.ndarray, size: int = 336) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """§6.1: longest-side resize to ``size`` (PIL bilinear), centre-pad with the CLIP mean
    colour, normalise. Returns [1, 3, size, size] fp32 and the placement (top, left, h1, w1)."""
    from .preprocess import resize_longest

    img = resize_longest(rgb, size)
    h1, w1 = img.shape[:2]
    top, left = (size - h1) // 2, (size - w1) // 2
    canvas = np.empty((size, size, 3), dtype=np.uint8)
    canvas[:] = CLIP_PAD_RGB
    canvas[top:top + h1, left:left + w1] = img
    x = torch.from_numpy(canvas).float().div_(255.0)
    x = (x - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    return x.permute(2, 0, 1)[None].contiguous(), (top, left, h1, w1)
