"""The MedPLIB module tree (key names of spec §2) and its per-image and per-prompt steps.

``MedplibForCausalLM.model`` holds the decoder pieces (``embed_tokens``, ``layers``, ``norm``)
next to ``vision_tower``, ``mm_projector``, ``region_fea_adapter``, ``text_hidden_fcs`` and
``visual_model`` (SAM-Med2D), and ``lm_head`` sits at the top, exactly as in the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .clip_branch import CLIPVisionTower, build_projector, clip_pixels
from .config import MedplibConfig
from .llama_moe import KVCache, LlamaMoEDecoder
from .preprocess import sam_pixels, to_rgb
from .region import mask_to_grid, region_vector
from .sam_med2d import SamMed2D

IMAGE_SENTINEL = -200
REGION_SENTINEL = -300


class MedplibBackbone(LlamaMoEDecoder):
    """Everything under the ``model.`` prefix: the decoder plus the vision/grounding parts."""

    def __init__(self, cfg: MedplibConfig, vision_config, attn_implementation: str = "sdpa"):
        super().__init__(cfg, attn_implementation)
        self.vision_tower = CLIPVisionTower(vision_config, cfg.mm_vision_select_layer,
                                            cfg.mm_vision_select_feature)
        self.mm_projector = build_projector(cfg.mm_projector_type, cfg.mm_hidden_size,
                                            cfg.hidden_size)
        self.region_fea_adapter = nn.Linear(cfg.mm_hidden_size, cfg.hidden_size)
        self.text_hidden_fcs = nn.ModuleList([nn.Sequential(
            nn.Linear(cfg.hidden_size, cfg.hidden_size), nn.ReLU(inplace=True),
            nn.Linear(cfg.hidden_size, cfg.out_dim), nn.Dropout(0.0))])
        self.visual_model = SamMed2D(cfg.sam)


class MedplibForCausalLM(nn.Module):
    """The full model; see `medplib_core.medplib.loader.load_medplib` to get one with weights."""

    def __init__(self, cfg: MedplibConfig, vision_config, attn_implementation: str = "sdpa"):
        super().__init__()
        self.config = cfg
        self.vision_config = vision_config
        self.model = MedplibBackbone(cfg, vision_config, attn_implementation)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    # -- plumbing -----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    def reset_buffers(self, device) -> None:
        """Recreate the non-persistent buffers (RoPE, CLIP position ids) on ``device``."""
        self.model.reset_rope(device)
        self.model.vision_tower.reset_buffers(device)

    # -- per image ----------------------------------------------------------------------------
    @torch.no_grad()
    def encode_image(self, image: np.ndarray) -> "ImageContext":
        """Both branches of §6/§7 for one displayed slice."""
        rgb = to_rgb(image)
        vt = self.model.vision_tower
        pix, placement = clip_pixels(rgb, vt.image_size)
        feats = vt(pix.to(self.device, self.dtype))[0]  # [576, C]
        tokens = self.model.mm_projector(feats)  # [576, H]
        sam_in, resize_hw = sam_pixels(rgb, self.model.visual_model.config.image_size)
        sam_emb = self.model.visual_model.embed_image(sam_in.to(self.device))
        return ImageContext(rgb.shape[:2], feats, tokens, sam_emb, resize_hw, placement)

    @torch.no_grad()
    def region_vectors(self, ctx: "ImageContext", masks: list[np.ndarray],
                       max_points: int | None = 512, seed: int = 42,
                       largest_component_only: bool = False) -> list[torch.Tensor]:
        """One 4096-d vector per region mask (§8.2-§8.3)."""
        from .region import largest_component

        if ctx.region_features is None:
            ctx.region_features = self.model.region_fea_adapter(ctx.clip_features)
        vt = self.model.vision_tower
        patch = vt.image_size // vt.grid
        out, grids = [], []
        for m in masks:
            grid = mask_to_grid(m, vt.image_size, patch)
            if largest_component_only:
                grid = largest_component(grid)
            grids.append(grid)
            out.append(region_vector(ctx.region_features, grid, max_points, seed))
        ctx.extra["last_region_grids"] = grids
        return out

    # -- sequence assembly --------------------------------------------------------------------
    @torch.no_grad()
    def embed_ids(self, ids: list[int], image_tokens: torch.Tensor | None,
                  regions: list[torch.Tensor]) -> torch.Tensor:
        """Embeddings [1, L_exp, H]: -200 -> the image tokens, each -300 -> the next region vector."""
        parts: list[torch.Tensor] = []
        run: list[int] = []
        emb = self.model.embed_tokens
        reg = iter(regions)

        def flush():
            if run:
                parts.append(emb(torch.tensor(run, device=self.device)))
                run.clear()

        for t in ids:
            if t >= 0:
                run.append(t)
                continue
            flush()
            if t == IMAGE_SENTINEL:
                if image_tokens is None:
                    raise ValueError("the prompt has an image placeholder but no image tokens")
                parts.append(image_tokens.to(self.dtype))
            elif t == REGION_SENTINEL:
                try:
                    parts.append(next(reg).to(self.device, self.dtype)[None])
                except StopIteration:
                    raise ValueError("more region placeholders than region vectors") from None
            else:
                raise ValueError(f"unknown sentinel id {t}")
        flush()
        if next(reg, None) is not None:
            raise ValueError("more region vectors than region placeholders")
        return torch.cat(parts, dim=0)[None]

    @torch.no_grad()
    def forward_hidden(self, embeds: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Final-norm hidden states [1, L, H]."""
        return self.model(embeds, cache)

    @torch.no_grad()
    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden).float()

    # -- grounding ----------------------------------------------------------------------------
    @torch.no_grad()
    def seg_logits(self, ctx: "ImageContext", seg_state: torch.Tensor):
        """§11.2: ``text_hidden_fcs`` then the SAM decoder -> (low-res logits [1,1,64,64], IoU)."""
        s = self.model.text_hidden_fcs[0](seg_state.to(self.device, self.dtype).reshape(1, -1))
        low, iou = self.model.visual_model.decode_text(ctx.sam_embedding, s[0])
        return low.float(), iou.float()


@dataclass
class ImageContext:
    """Per-image tensors computed once and reused for every question about the image."""

    image_hw: tuple[int, int]
    clip_features: torch.Tensor  # [576, mm_hidden]
    image_tokens: torch.Tensor  # [576, hidden]
    sam_embedding: torch.Tensor  # [1, C, 16, 16]
    resize_hw: tuple[int, int]  # SAM branch size (h2, w2)
    clip_placement: tuple[int, int, int, int]  # top, left, h1, w1 on the 336 canvas
    region_features: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def build_model(cfg: MedplibConfig, vision_config, device: str | torch.device = "meta",
                dtype: torch.dtype | None = None, attn_implementation: str = "sdpa"):
    """Build the module tree on ``device`` (``"meta"``: no memory; weights come from the loader)."""
    with torch.device(device):
        model = MedplibForCausalLM(cfg, vision_config, attn_implementation)
    if dtype is not None and str(device) != "meta":
        model.to(dtype)
    return model.eval().requires_grad_(False)
