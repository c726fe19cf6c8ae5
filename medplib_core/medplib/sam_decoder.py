"""SAM-Med2D prompt encoder and mask decoder (spec §12.2, §12.3).

MedPLIB prompts SAM with one text embedding (the projected ``<SEG>`` state) as the only
sparse token and ``no_mask_embed`` as the dense embedding; the point/box/mask parts of the
prompt encoder exist for the key layout but are not used on this path.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import SamConfig
from .sam_encoder import LayerNorm2d, MLPBlock


class PositionEmbeddingRandom(nn.Module):
    """Random-Fourier positional encoding; the Gaussian matrix is a *persistent* buffer."""

    def __init__(self, num_feats: int):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_feats))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        coords = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix.float()
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        h, w = size
        dev = self.positional_encoding_gaussian_matrix.device
        y = (torch.arange(h, device=dev, dtype=torch.float32) + 0.5) / h
        x = (torch.arange(w, device=dev, dtype=torch.float32) + 0.5) / w
        grid = torch.stack([x[None, :].expand(h, w), y[:, None].expand(h, w)], dim=-1)
        return self._encode(grid).permute(2, 0, 1)  # C x H x W


class PromptEncoder(nn.Module):
    def __init__(self, s: SamConfig):
        super().__init__()
        d, mc = s.prompt_embed_dim, s.mask_in_chans
        self.embed_dim = d
        self.image_embedding_size = (s.grid, s.grid)
        self.pe_layer = PositionEmbeddingRandom(d // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, d) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, d)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mc // 4, kernel_size=2, stride=2), LayerNorm2d(mc // 4), nn.GELU(),
            nn.Conv2d(mc // 4, mc, kernel_size=2, stride=2), LayerNorm2d(mc), nn.GELU(),
            nn.Conv2d(mc, d, kernel_size=1))
        self.no_mask_embed = nn.Embedding(1, d)

    def get_dense_pe(self) -> torch.Tensor:
        """[1, C, h, w] positional encoding of the image embedding grid (fp32)."""
        return self.pe_layer(self.image_embedding_size)[None]

    def text_prompt(self, text_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse [B, 1, C] (the text embedding) and dense [B, C, h, w] (``no_mask_embed``)."""
        b = text_embeds.shape[0]
        sparse = text_embeds.reshape(b, -1, self.embed_dim)
        h, w = self.image_embedding_size
        dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(b, -1, h, w)
        return sparse, dense


class TokenAttention(nn.Module):
    """Attention with an optional internal down-projection (``downsample`` > 1)."""

    def __init__(self, dim: int, heads: int, downsample: int = 1):
        super().__init__()
        inner = dim // downsample
        self.heads = heads
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.q_proj(q)), self._split(self.k_proj(k)), self._split(self.v_proj(v))
        attn = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        out = attn.softmax(dim=-1) @ v
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


class TwoWayBlock(nn.Module):
    def __init__(self, s: SamConfig, skip_first_pe: bool):
        super().__init__()
        d, heads, ds = s.prompt_embed_dim, s.decoder_num_heads, s.attention_downsample_rate
        self.self_attn = TokenAttention(d, heads)
        self.norm1 = nn.LayerNorm(d)
        self.cross_attn_token_to_image = TokenAttention(d, heads, ds)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = MLPBlock(d, s.decoder_mlp_dim, nn.ReLU)
        self.norm3 = nn.LayerNorm(d)
        self.norm4 = nn.LayerNorm(d)
        self.cross_attn_image_to_token = TokenAttention(d, heads, ds)
        self.skip_first_pe = skip_first_pe

    def forward(self, queries, keys, query_pe, key_pe):
        if self.skip_first_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, s: SamConfig):
        super().__init__()
        d = s.prompt_embed_dim
        self.layers = nn.ModuleList(TwoWayBlock(s, i == 0) for i in range(s.decoder_depth))
        self.final_attn_token_to_image = TokenAttention(d, s.decoder_num_heads,
                                                        s.attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(d)

    def forward(self, image, image_pe, tokens):
        keys = image.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        q, k = queries + tokens, keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys


class MLP(nn.Module):
    """``layers.{0..n-1}`` Linear stack with ReLU between (SAM's hypernetwork/IoU heads)."""

    def __init__(self, dims: list[int]):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class MaskDecoder(nn.Module):
    def __init__(self, s: SamConfig):
        super().__init__()
        d = s.prompt_embed_dim
        self.num_mask_tokens = s.num_multimask_outputs + 1
        self.transformer = TwoWayTransformer(s)
        self.iou_token = nn.Embedding(1, d)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, d)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(d, d // 4, kernel_size=2, stride=2), LayerNorm2d(d // 4), nn.GELU(),
            nn.ConvTranspose2d(d // 4, d // 8, kernel_size=2, stride=2), nn.GELU())
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP([d, d, d, d // 8]) for _ in range(self.num_mask_tokens))
        h = s.iou_head_hidden_dim
        self.iou_prediction_head = MLP([d, h, h, self.num_mask_tokens])

    def forward(self, image_embeddings, image_pe, sparse, dense, multimask_output: bool = False):
        """Low-res mask logits [B, 1 or 3, 4h, 4w] and IoU predictions."""
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        out_tokens = out_tokens[None].expand(sparse.shape[0], -1, -1)
        tokens = torch.cat([out_tokens, sparse.to(out_tokens.dtype)], dim=1)
        src = image_embeddings + dense.to(image_embeddings.dtype)
        pos = image_pe.to(src.dtype).expand(src.shape[0], -1, -1, -1)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos, tokens)
        iou_out = hs[:, 0]
        mask_out = hs[:, 1:1 + self.num_mask_tokens]
        up = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper = torch.stack([mlp(mask_out[:, i]) for i, mlp in
                             enumerate(self.output_hypernetworks_mlps)], dim=1)
        bu, cu, hu, wu = up.shape
        masks = (hyper @ up.view(bu, cu, hu * wu)).view(bu, -1, hu, wu)
        iou = self.iou_prediction_head(iou_out)
        sl = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, sl], iou[:, sl]
