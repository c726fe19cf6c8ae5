"""The MedPLIB decoder as plain tensor code over the loaded weights, for fast decoding.

Same mathematics as `llama_moe.LlamaMoEDecoder` (transformers' LLaMA layer, DeepSpeed top-1
MoE eval semantics of spec §9.2), written so that one decode step has static shapes and no
host synchronisation, and can therefore be captured in a CUDA graph:

* q/k/v of a layer are one fused ``[3H, H]`` matrix and the experts of a MoE layer are stacked
  as ``gate_up [E, 2F, H]`` and ``down [E, H, F]``. The module's own parameters become views
  of these, so the weights are never held twice and the reference path keeps working.
* Top-1 routing stays on the device: the router (fp32, §9.3) picks an expert per token, the
  tokens are ordered by expert and ``torch._grouped_mm`` multiplies each group by its own
  expert's weights, reading only the experts that were chosen. The selected probability
  scales the output (not renormalised), as in DeepSpeed.
* Keys/values go to a `StaticKVCache`; prefill uses SDPA (flash / memory-efficient kernels on
  a GPU), a decode step attends over a fixed-length window with a length mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .kv_cache import StaticKVCache
from .llama_moe import MoEMLP


@dataclass
class PackedLayer:
    ln1: torch.Tensor
    wqkv: torch.Tensor  # [(heads + 2 kv_heads) * d, H]
    wo: torch.Tensor
    ln2: torch.Tensor
    router: torch.Tensor | None  # [E, H] fp32, None for a dense MLP layer
    gate_up: torch.Tensor  # [E, 2F, H]
    down: torch.Tensor  # [E, H, F]


def _fuse(parts: list[nn.Linear]) -> torch.Tensor:
    """Concatenate Linear weights along dim 0 and turn each Linear's weight into a view."""
    fused = torch.cat([p.weight.detach() for p in parts], dim=0)
    start = 0
    for p in parts:
        n = p.weight.shape[0]
        p.weight = nn.Parameter(fused[start:start + n], requires_grad=False)
        start += n
    return fused


def _stack(mlps: list[nn.Module]) -> tuple[torch.Tensor, torch.Tensor]:
    """``gate_up [E, 2F, H]`` and ``down [E, H, F]``; the experts' weights become views."""
    f, h = mlps[0].gate_proj.weight.shape
    gate_up = torch.empty((len(mlps), 2 * f, h), dtype=mlps[0].gate_proj.weight.dtype,
                          device=mlps[0].gate_proj.weight.device)
    down = torch.empty((len(mlps), h, f), dtype=gate_up.dtype, device=gate_up.device)
    for e, m in enumerate(mlps):
        gate_up[e, :f] = m.gate_proj.weight
        gate_up[e, f:] = m.up_proj.weight
        down[e] = m.down_proj.weight
        m.gate_proj.weight = nn.Parameter(gate_up[e, :f], requires_grad=False)
        m.up_proj.weight = nn.Parameter(gate_up[e, f:], requires_grad=False)
        m.down_proj.weight = nn.Parameter(down[e], requires_grad=False)
    return gate_up, down


@torch.no_grad()
def pack_layers(decoder) -> list[PackedLayer]:
    """Fuse/stack every layer's weights in place (idempotent: cached on the decoder)."""
    cached = getattr(decoder, "_packed_layers", None)
    if cached is not None:
        return cached
    out = []
    for layer in decoder.layers:
        at = layer.self_attn
        wqkv = _fuse([at.q_proj, at.k_proj, at.v_proj])
        if isinstance(layer.mlp, MoEMLP):
            mlps = list(layer.mlp.deepspeed_moe.experts.deepspeed_experts)
            router = layer.mlp.deepspeed_moe.gate.wg.weight.detach().float()
        else:
            mlps, router = [layer.mlp], None
        gate_up, down = _stack(mlps)
        out.append(PackedLayer(layer.input_layernorm.weight, wqkv, at.o_proj.weight,
                               layer.post_attention_layernorm.weight, router, gate_up, down))
    decoder._packed_layers = out
    return out


# -- top-1 MoE kernels ------------------------------------------------------------------------

def _route(x: torch.Tensor, router: torch.Tensor | None):
    if router is None:
        return None, None
    probs = torch.softmax(F.linear(x.float(), router), dim=-1)
    choice = probs.argmax(dim=-1)
    return choice, probs.gather(1, choice[:, None]).to(x.dtype)


def _expert(x: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    f = down.shape[-1]
    h = F.linear(x, gate_up)
    return F.linear(F.silu(h[:, :f]) * h[:, f:], down)


def moe_grouped(x, router, gate_up, down):
    """Tokens ordered by expert, one grouped GEMM per projection; no host synchronisation."""
    choice, scale = _route(x, router)
    if choice is None:
        return _expert(x, gate_up[0], down[0])
    n_exp, f = gate_up.shape[0], down.shape[-1]
    order = torch.argsort(choice, stable=True)
    counts = (choice[:, None] == torch.arange(n_exp, device=x.device)[None]).sum(0)
    offs = counts.cumsum(0).to(torch.int32)
    xs = x.index_select(0, order)
    h = torch._grouped_mm(xs, gate_up.transpose(1, 2), offs=offs)
    a = F.silu(h[:, :f]) * h[:, f:]
    y = torch._grouped_mm(a, down.transpose(1, 2), offs=offs)
    out = torch.empty_like(y)
    out.index_copy_(0, order, y)
    return scale * out


def moe_loop(x, router, gate_up, down):
    """One expert at a time on its tokens (host reads which experts have tokens)."""
    choice, scale = _route(x, router)
    if choice is None:
        return _expert(x, gate_up[0], down[0])
    if x.shape[0] == 1:
        e = int(choice.item())
        return scale * _expert(x, gate_up[e], down[e])
    out = torch.zeros_like(x)
    for e in range(gate_up.shape[0]):
        idx = (choice == e).nonzero(as_tuple=True)[0]
        if idx.numel():
            out.index_copy_(0, idx, scale[idx] * _expert(x[idx], gate_up[e], down[e]))
    return out


def moe_dense(x, router, gate_up, down):
    """Every expert on every token, the chosen one kept: static and sync-free, but it reads
    all experts (the fallback for CUDA graphs where grouped GEMM is unavailable)."""
    choice, scale = _route(x, router)
    if choice is None:
        return _expert(x, gate_up[0], down[0])
    out = torch.zeros_like(x)
    for e in range(gate_up.shape[0]):
        out += (choice == e)[:, None].to(x.dtype) * _expert(x, gate_up[e], down[e])
    return scale * out


MOE_KERNELS = {"grouped": moe_grouped, "loop": moe_loop, "dense": moe_dense}


def _grouped_works(layer: PackedLayer) -> bool:
    """Run the grouped kernel once against the per-expert loop on these weights."""
    if layer.router is None or not hasattr(torch, "_grouped_mm"):
        return False
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(7, layer.gate_up.shape[-1], generator=gen).to(layer.gate_up)
    try:
        got = moe_grouped(x, layer.router, layer.gate_up, layer.down)
    except (RuntimeError, NotImplementedError, TypeError):
        return False
    want = moe_loop(x, layer.router, layer.gate_up, layer.down)
    tol = 1e-4 if x.dtype == torch.float32 else 3e-2
    return bool(torch.allclose(got.float(), want.float(), rtol=tol, atol=tol))


def decode_kernel(grouped: bool, capability: tuple[int, int] | None, dtype: torch.dtype) -> str:
    """The MoE kernel of a decode step. On CUDA it must not synchronise with the host (the
    step is captured in a graph): grouped GEMM is free of that only in bf16 on compute
    capability 9.0 or newer (older GPUs take a fallback that reads the offsets on the host,
    pytorch/pytorch#169970), else every expert runs on every token ("dense"). ``capability``
    None: a CPU, where the per-expert loop is cheapest if grouped GEMM is unavailable."""
    if capability is None:
        return "grouped" if grouped else "loop"
    if grouped and dtype == torch.bfloat16 and capability >= (9, 0):
        return "grouped"
    return "dense"


# -- the decoder ------------------------------------------------------------------------------

def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """LlamaRMSNorm: statistics in fp32, the weight applied after casting back."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class FastLM:
    """Prefill and decode steps over a `StaticKVCache`, sharing the model's weights."""

    def __init__(self, model, moe_kernel: str = "auto"):
        dec = model.model
        cfg = model.config
        self.model = model
        self.layers = pack_layers(dec)
        self.embed = dec.embed_tokens.weight
        self.norm_w = dec.norm.weight
        self.lm_head = model.lm_head.weight
        self.eps = cfg.rms_norm_eps
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.head_dim = cfg.hidden_size // self.heads
        self.hidden = cfg.hidden_size
        self.device, self.dtype = self.embed.device, self.embed.dtype
        self.max_positions = cfg.max_position_embeddings
        self.cos, self.sin = self._rope_table(dec.rotary_emb)
        self.kernels = self._choose_kernels(moe_kernel)

    @classmethod
    def for_model(cls, model, moe_kernel: str = "auto") -> "FastLM":
        key = ("_fast_lm", moe_kernel)
        fast = getattr(model, "_fast_lm_cache", {}).get(key)
        if fast is None:
            fast = cls(model, moe_kernel)
            model.__dict__.setdefault("_fast_lm_cache", {})[key] = fast
        return fast

    def _rope_table(self, rope) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin for every position, computed as transformers' LlamaRotaryEmbedding does."""
        pos = torch.arange(self.max_positions, device=self.device, dtype=torch.float32)
        freqs = pos[:, None] * rope.inv_freq.to(self.device, torch.float32)[None]
        emb = torch.cat((freqs, freqs), dim=-1)
        scale = rope.attention_scaling
        return (emb.cos() * scale).to(self.dtype), (emb.sin() * scale).to(self.dtype)

    def _choose_kernels(self, wanted: str) -> dict[str, str]:
        if wanted != "auto":
            if wanted not in MOE_KERNELS:
                raise ValueError(f"unknown MoE kernel {wanted!r}")
            return {"prefill": wanted, "decode": wanted}
        grouped = _grouped_works(self.layers[0])
        cap = torch.cuda.get_device_capability(self.device) if self.device.type == "cuda" else None
        return {"prefill": "grouped" if grouped else "loop",
                "decode": decode_kernel(grouped, cap, self.dtype)}

    def new_cache(self, rows: int, max_len: int) -> StaticKVCache:
        return StaticKVCache(len(self.layers), rows, self.kv_heads, max_len, self.head_dim,
                             self.device, self.dtype)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.lm_head).float()

    def _qkv(self, x: torch.Tensor, layer: PackedLayer):
        n = x.shape[0]
        qkv = F.linear(rms_norm(x, layer.ln1, self.eps), layer.wqkv)
        hq, hk, d = self.heads, self.kv_heads, self.head_dim
        q = qkv[:, :hq * d].view(n, hq, d).transpose(0, 1)
        k = qkv[:, hq * d:(hq + hk) * d].view(n, hk, d).transpose(0, 1)
        v = qkv[:, (hq + hk) * d:].view(n, hk, d).transpose(0, 1)
        return q, k, v

    def _mlp(self, h: torch.Tensor, attn: torch.Tensor, layer: PackedLayer, kernel) -> torch.Tensor:
        h = h + F.linear(attn, layer.wo)
        return h + kernel(rms_norm(h, layer.ln2, self.eps), layer.router, layer.gate_up, layer.down)

    @torch.no_grad()
    def prefill(self, cache: StaticKVCache, row: int, start: int, embeds: torch.Tensor) -> torch.Tensor:
        """Feed ``embeds`` [L, H] at positions ``start..`` of ``row``; final-norm states [L, H]."""
        n = embeds.shape[0]
        end = start + n
        if end > min(cache.capacity, self.max_positions):
            raise ValueError(f"{end} positions do not fit the cache row")
        cos, sin = self.cos[start:end][None], self.sin[start:end][None]
        kernel = MOE_KERNELS[self.kernels["prefill"]]
        mask = None
        if start:
            q_pos = torch.arange(start, end, device=self.device)[:, None]
            mask = q_pos >= torch.arange(end, device=self.device)[None]
        h = embeds.to(self.dtype)
        gqa = self.kv_heads != self.heads
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(h, layer)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            cache.write(i, row, start, k, v)
            if start:
                kk, vv = cache.k[i][row, :, :end], cache.v[i][row, :, :end]
                a = F.scaled_dot_product_attention(q[None], kk[None], vv[None], attn_mask=mask,
                                                   scale=self.head_dim ** -0.5, enable_gqa=gqa)
            else:
                a = F.scaled_dot_product_attention(q[None], k[None], v[None], is_causal=n > 1,
                                                   scale=self.head_dim ** -0.5, enable_gqa=gqa)
            h = self._mlp(h, a[0].transpose(0, 1).reshape(n, -1), layer, kernel)
        cache.lengths[row] = end
        return rms_norm(h, self.norm_w, self.eps)

    @torch.no_grad()
    def decode(self, cache: StaticKVCache, tokens: torch.Tensor, pos: torch.Tensor,
               attn_len: torch.Tensor, window: int) -> torch.Tensor:
        """One token for each of rows ``0..b-1``: ``tokens``/``pos``/``attn_len`` are [b] device
        tensors (write position and how many positions each row attends to); ``window`` is
        the static attention length (>= every ``attn_len``). Final-norm states [b, H].
        Static shapes, no host synchronisation: safe to capture in a CUDA graph."""
        b = tokens.shape[0]
        rows = torch.arange(b, device=self.device)
        wpos = pos.clamp(max=cache.scratch)
        rope_pos = wpos.clamp(max=self.max_positions - 1)
        cos, sin = self.cos[rope_pos][:, None], self.sin[rope_pos][:, None]  # [b, 1, d]
        mask = (torch.arange(window, device=self.device)[None] < attn_len[:, None])[:, None, None]
        kernel = MOE_KERNELS[self.kernels["decode"]]
        h = F.embedding(tokens, self.embed)
        gqa = self.kv_heads != self.heads
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(h, layer)  # [heads, b, d]
            q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)  # [b, heads, d]
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            cache.k[i][rows, :, wpos] = k
            cache.v[i][rows, :, wpos] = v
            kk, vv = cache.k[i][:b, :, :window], cache.v[i][:b, :, :window]
            a = F.scaled_dot_product_attention(q[:, :, None], kk, vv, attn_mask=mask,
                                               scale=self.head_dim ** -0.5, enable_gqa=gqa)
            h = self._mlp(h, a.reshape(b, -1), layer, kernel)
        return rms_norm(h, self.norm_w, self.eps)
