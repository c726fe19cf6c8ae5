"""SAM-Med2D image encoder: a windowed ViT with decomposed relative positions and parallel
adapters (spec §12.1). Dimensions come from `SamConfig`, ViT-B at 256 px by default.

Key names follow SAM-Med2D (``image_encoder.blocks.{j}.Adapter.*`` etc., spec §12.4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import SamConfig


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)  # channels last


class MLPBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, act: type[nn.Module] = nn.GELU):
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


def _rel_pos_table(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Relative-position embeddings for every (query, key) offset along one axis."""
    span = 2 * max(q_size, k_size) - 1
    if rel_pos.shape[0] != span:
        rel_pos = F.interpolate(rel_pos.T[None], size=span, mode="linear")[0].T
    q = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size, 1.0)
    k = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size, 1.0)
    idx = (q - k) + (k_size - 1) * max(q_size / k_size, 1.0)
    return rel_pos[idx.long()]


class Attention(nn.Module):
    """Multi-head attention on a (B, H, W, C) grid with decomposed relative position bias."""

    def __init__(self, dim: int, heads: int, size: int):
        super().__init__()
        self.heads = heads
        hd = dim // heads
        self.scale = hd ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * size - 1, hd))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * size - 1, hd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * self.heads, h * w, -1).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        rh = _rel_pos_table(h, h, self.rel_pos_h)
        rw = _rel_pos_table(w, w, self.rel_pos_w)
        rq = q.reshape(b * self.heads, h, w, -1)
        bias_h = torch.einsum("bhwc,hkc->bhwk", rq, rh)
        bias_w = torch.einsum("bhwc,wkc->bhwk", rq, rw)
        attn = attn.view(-1, h, w, h, w) + bias_h[..., :, None] + bias_w[..., None, :]
        attn = attn.view(-1, h * w, h * w).softmax(dim=-1)
        out = (attn @ v).view(b, self.heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
        return self.proj(out)


class Adapter(nn.Module):
    """SAM-Med2D adapter: channel gate, then a strided conv / transposed conv spatial branch,
    added to the input and normalised (``norm`` eps 1e-5, channels last)."""

    def __init__(self, dim: int, ratio: float):
        super().__init__()
        hidden = int(dim * ratio)
        self.norm = nn.LayerNorm(dim)
        self.channel = nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.ReLU(),
                                     nn.Linear(hidden, dim, bias=False), nn.Sigmoid())
        self.spatial = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=3, stride=2, padding=1, bias=False), nn.ReLU(),
            nn.ConvTranspose2d(dim, dim, kernel_size=4, stride=2, padding=1, bias=False), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.permute(0, 3, 1, 2)  # NCHW
        gate = self.channel(z.mean(dim=(2, 3)))[:, :, None, None]
        z = z + self.spatial(gate * z)
        return self.norm(z.permute(0, 2, 3, 1))


class Block(nn.Module):
    """Pre-norm ViT block; windowed unless ``window == 0``; adapter parallel to the MLP."""

    def __init__(self, s: SamConfig, window: int):
        super().__init__()
        d = s.encoder_embed_dim
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.attn = Attention(d, s.encoder_num_heads, window if window else s.grid)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = MLPBlock(d, int(d * s.mlp_ratio))
        self.window = window
        if s.adapter:
            self.Adapter = Adapter(d, s.adapter_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window:
            h, w = x.shape[1:3]
            x, padded = _partition(x, self.window)
            x = self.attn(x)
            x = _unpartition(x, self.window, padded, (h, w))
        else:
            x = self.attn(x)
        x = shortcut + x
        y = self.norm2(x)
        out = x + self.mlp(y)
        if hasattr(self, "Adapter"):
            out = out + self.Adapter(y)
        return out


def _partition(x: torch.Tensor, ws: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad (B, H, W, C) to multiples of ``ws`` and cut into windows (B*n, ws, ws, C)."""
    b, h, w, c = x.shape
    ph, pw = (ws - h % ws) % ws, (ws - w % ws) % ws
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.view(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws, ws, c), (hp, wp)


def _unpartition(win: torch.Tensor, ws: int, padded: tuple[int, int], hw: tuple[int, int]):
    hp, wp = padded
    b = win.shape[0] // (hp * wp // ws // ws)
    x = win.view(b, hp // ws, wp // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5)
    x = x.reshape(b, hp, wp, -1)
    return x[:, : hw[0], : hw[1]].contiguous()


class ImageEncoderViT(nn.Module):
    """``image_encoder``: [B, 3, S, S] normalised pixels -> [B, prompt_dim, S/16, S/16]."""

    def __init__(self, s: SamConfig):
        super().__init__()
        d, g = s.encoder_embed_dim, s.grid
        self.patch_embed = PatchEmbed(s.patch_size, d)
        self.pos_embed = nn.Parameter(torch.zeros(1, g, g, d))
        self.blocks = nn.ModuleList(
            Block(s, 0 if j in s.encoder_global_attn_indexes else s.window_size)
            for j in range(s.encoder_depth))
        pd = s.prompt_embed_dim
        self.neck = nn.Sequential(
            nn.Conv2d(d, pd, kernel_size=1, bias=False), LayerNorm2d(pd),
            nn.Conv2d(pd, pd, kernel_size=3, padding=1, bias=False), LayerNorm2d(pd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.neck(x.permute(0, 3, 1, 2))
