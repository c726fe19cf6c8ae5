"""The LLaMA decoder of MedPLIB with DeepSpeed-named top-1 MoE MLPs (spec §2.1, §9).

The decoder layers are transformers' own `LlamaDecoderLayer` (attention, RMSNorm, RoPE); only
each layer's ``mlp`` is replaced by `MoEMLP`, whose sub-modules are named
``deepspeed_moe.gate.wg`` and ``deepspeed_moe.experts.deepspeed_experts.{e}`` so the released
parameter names load unchanged. The KV cache is a small pre-allocated one of our own (it only
has to offer ``update(k, v, layer_idx)``, which is all `LlamaAttention` calls).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import MedplibConfig, MoEConfig


class ExpertMLP(nn.Module):
    """One LLaMA MLP: ``down(silu(gate(x)) * up(x))``."""

    def __init__(self, hidden: int, intermediate: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class TopKGate(nn.Module):
    """DeepSpeed's router: ``wg`` is a bias-free Linear(hidden -> experts), evaluated in fp32."""

    def __init__(self, hidden: int, experts: int):
        super().__init__()
        self.wg = nn.Linear(hidden, experts, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Routing probabilities [S, E] in fp32 (weights keep their storage rounding, §9.3)."""
        return torch.softmax(F.linear(x.float(), self.wg.weight.float()), dim=-1)


class Experts(nn.Module):
    def __init__(self, hidden: int, intermediate: int, n: int):
        super().__init__()
        self.deepspeed_experts = nn.ModuleList(ExpertMLP(hidden, intermediate) for _ in range(n))


class DeepSpeedMoE(nn.Module):
    def __init__(self, hidden: int, intermediate: int, n: int):
        super().__init__()
        self.gate = TopKGate(hidden, n)
        self.experts = Experts(hidden, intermediate, n)


class MoEMLP(nn.Module):
    """Top-1 MoE with DeepSpeed 0.13.1 eval semantics (§9.2).

    Each token goes to its argmax expert; the expert output is scaled by the selected (not
    renormalised) probability. Capacity ``C = max(ceil(S/E * eval_capacity_factor),
    min_capacity)``; with the released values C >= S and nothing is dropped. When C < S,
    over-capacity tokens get a zero output, picked by a seeded random priority (DeepSpeed
    uses random token selection).
    """

    def __init__(self, hidden: int, intermediate: int, n: int, moe: MoEConfig):
        super().__init__()
        self.deepspeed_moe = DeepSpeedMoE(hidden, intermediate, n)
        self.n = n
        self.moe = moe
        self.last_routing: torch.Tensor | None = None  # expert index per token, for statistics
        self.record_routing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        probs = self.deepspeed_moe.gate(flat)
        choice = probs.argmax(dim=-1)
        scale = probs.gather(1, choice[:, None]).to(flat.dtype)
        keep = self._capacity_mask(choice)
        if self.record_routing:
            self.last_routing = choice.detach().cpu()
        experts = self.deepspeed_moe.experts.deepspeed_experts
        if flat.shape[0] == 1 and keep is None:
            e = int(choice.item())  # one decode token: run just its expert
            return (scale * experts[e](flat)).reshape(shape)
        out = torch.zeros_like(flat)
        for e in range(self.n):
            sel = choice == e
            if keep is not None:
                sel &= keep
            idx = sel.nonzero(as_tuple=True)[0]
            if idx.numel():
                out.index_copy_(0, idx, scale[idx] * experts[e](flat[idx]))
        return out.reshape(shape)

    def _capacity_mask(self, choice: torch.Tensor) -> torch.Tensor | None:
        s = choice.shape[0]
        cap = self.moe.capacity(s, self.n)
        if cap >= s:
            return None
        gen = torch.Generator(device="cpu").manual_seed(0)
        priority = torch.rand(s, generator=gen).to(choice.device)
        keep = torch.zeros(s, dtype=torch.bool, device=choice.device)
        for e in range(self.n):
            idx = (choice == e).nonzero(as_tuple=True)[0]
            if idx.numel() > cap:
                idx = idx[priority[idx].argsort(descending=True)[:cap]]
            keep[idx] = True
        return keep


class KVCache:
    """Pre-allocated, growable key/value cache for batch 1 (the `LlamaAttention` protocol)."""

    def __init__(self, layers: int, step: int = 256):
        self.k: list[torch.Tensor | None] = [None] * layers
        self.v: list[torch.Tensor | None] = [None] * layers
        self.length = 0  # tokens stored (identical for every layer after a full forward)
        self._fill = [0] * layers
        self.step = step

    def update(self, k: torch.Tensor, v: torch.Tensor, layer_idx: int, *args, **kwargs):
        n, start = k.shape[2], self._fill[layer_idx]
        buf_k, buf_v = self.k[layer_idx], self.v[layer_idx]
        if buf_k is None or start + n > buf_k.shape[2]:
            cap = ((start + n + self.step - 1) // self.step) * self.step
            new_k = k.new_empty(k.shape[0], k.shape[1], cap, k.shape[3])
            new_v = v.new_empty(v.shape[0], v.shape[1], cap, v.shape[3])
            if buf_k is not None and start:
                new_k[:, :, :start] = buf_k[:, :, :start]
                new_v[:, :, :start] = buf_v[:, :, :start]
            self.k[layer_idx], self.v[layer_idx] = buf_k, buf_v = new_k, new_v
        buf_k[:, :, start:start + n] = k
        buf_v[:, :, start:start + n] = v
        self._fill[layer_idx] = start + n
        if layer_idx == len(self.k) - 1:
            self.length = start + n
        return buf_k[:, :, :start + n], buf_v[:, :, :start + n]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length

    def crop(self, length: int) -> None:
        """Keep only the first ``length`` positions (used to reuse a shared prompt prefix)."""
        length = min(length, self.length)
        self._fill = [min(f, length) for f in self._fill]
        self.length = length


class LlamaMoEDecoder(nn.Module):
    """``model.embed_tokens``, ``model.layers.*``, ``model.norm`` and RoPE, fed embeddings."""

    def __init__(self, cfg: MedplibConfig, attn_implementation: str = "sdpa"):
        super().__init__()
        from transformers.models.llama.modeling_llama import (
            LlamaDecoderLayer, LlamaRMSNorm, LlamaRotaryEmbedding)

        lcfg = cfg.llama_config(attn_implementation)
        self.config = lcfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        layers = []
        for i in range(cfg.num_hidden_layers):
            layer = LlamaDecoderLayer(lcfg, i)
            n = cfg.moe.experts_for(i)
            if n:
                layer.mlp = MoEMLP(cfg.hidden_size, cfg.intermediate_size, n, cfg.moe)
            layers.append(layer)
        self.layers = nn.ModuleList(layers)
        self.norm = LlamaRMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config=lcfg)

    def reset_rope(self, device: torch.device | str) -> None:
        """Recompute the (non-persistent) RoPE frequencies, e.g. after a meta-device build."""
        inv_freq, scaling = self.rotary_emb.compute_default_rope_parameters(self.config)
        self.rotary_emb.inv_freq = inv_freq.to(device)
        self.rotary_emb.original_inv_freq = inv_freq.clone().to(device)
        self.rotary_emb.attention_scaling = scaling

    def forward(self, embeds: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Final-norm hidden states [1, L, H] for ``embeds`` [1, L, H] appended after ``cache``."""
        past = cache.length if cache is not None else 0
        q = embeds.shape[1]
        pos = torch.arange(past, past + q, device=embeds.device)[None]
        mask = None
        if past and q > 1:  # new tokens see the whole past and are causal among themselves
            allowed = pos[0][:, None] >= torch.arange(past + q, device=embeds.device)[None, :]
            mask = torch.zeros(allowed.shape, dtype=embeds.dtype, device=embeds.device)
            mask.masked_fill_(~allowed, torch.finfo(embeds.dtype).min)
            mask = mask[None, None]
        elif q > 1 and self.config._attn_implementation != "sdpa":
            allowed = torch.ones(q, q, dtype=torch.bool, device=embeds.device).tril()
            mask = torch.zeros(allowed.shape, dtype=embeds.dtype, device=embeds.device)
            mask.masked_fill_(~allowed, torch.finfo(embeds.dtype).min)
            mask = mask[None, None]
        h = embeds
        rope = self.rotary_emb(h, position_ids=pos)
        for layer in self.layers:
            h = layer(h, attention_mask=mask, position_ids=pos, past_key_values=cache,
                      use_cache=cache is not None, position_embeddings=rope)
        return self.norm(h)

    def set_routing_record(self, on: bool) -> None:
        for layer in self.layers:
            if isinstance(layer.mlp, MoEMLP):
                layer.mlp.record_routing = on
                layer.mlp.last_routing = None

    def routing(self) -> list[torch.Tensor | None]:
        """Expert index per token of the last forward call, one entry per layer."""
        return [getattr(layer.mlp, "last_routing", None) for layer in self.layers]
