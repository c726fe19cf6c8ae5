"""Write random weights with the released checkpoint layout (spec §17.2, item 2).

Used by the tiny test fixture and by the GPU benchmark (full size). Keys come from
`layout.expected_keys`; most tensors are stored in bf16, the routers ``gate.wg`` in fp32;
4.31-style ``rotary_emb.inv_freq`` buffers are added; shards are named
``pytorch_model-0000k-of-0000N.safetensors`` and the index names ``.bin`` files, like the
real repository.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterator

import torch

from .layout import PREFIX_CLIP, PREFIX_SAM, Shape, expected_keys, numel


def init_tensor(name: str, shape: Shape, gen: torch.Generator, device="cpu") -> torch.Tensor:
    """A plausible random value for a tensor named ``name`` (fp32)."""
    if name.endswith("positional_encoding_gaussian_matrix"):
        return torch.randn(shape, generator=gen, device=device)
    last = name.rsplit(".", 1)[-1]
    is_norm = any(s in name for s in ("norm", "layrnorm", "layer_norm", "neck.1", "neck.3",
                                      "output_upscaling.1", "mask_downscaling.1",
                                      "mask_downscaling.4"))
    if is_norm and last == "weight":
        return 1.0 + 0.02 * torch.randn(shape, generator=gen, device=device)
    if last == "bias":
        return 0.02 * torch.randn(shape, generator=gen, device=device)
    fan_in = numel(shape[1:]) if len(shape) > 1 else shape[0]
    std = 1.0 / math.sqrt(max(fan_in, 1))
    if "embed_tokens" in name or "lm_head" in name:
        std = 0.05
    if "gate.wg" in name:
        std = 0.5
    return std * torch.randn(shape, generator=gen, device=device)


def storage_dtype(name: str, default: torch.dtype = torch.bfloat16) -> torch.dtype:
    """Routers as DeepSpeed creates them (fp32); everything else in the default dtype."""
    return torch.float32 if name.endswith("gate.wg.weight") else default


def inv_freq_keys(cfg) -> dict[str, Shape]:
    hd = cfg.hidden_size // cfg.num_attention_heads
    return {f"model.layers.{i}.self_attn.rotary_emb.inv_freq": (hd // 2,)
            for i in range(cfg.num_hidden_layers)}


def random_checkpoint_tensors(cfg, vision, seed: int = 0, dtype: torch.dtype = torch.bfloat16,
                              include_clip: bool = True, include_sam: bool = True,
                              include_inv_freq: bool = True, device="cpu"
                              ) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs of a random checkpoint, in key order, generated lazily."""
    gen = torch.Generator(device=device).manual_seed(seed)
    keys = dict(expected_keys(cfg, vision))
    if include_inv_freq:
        keys.update(inv_freq_keys(cfg))
    for name, shape in keys.items():
        if not include_clip and name.startswith(PREFIX_CLIP):
            continue
        if not include_sam and name.startswith(PREFIX_SAM):
            continue
        if name.endswith("rotary_emb.inv_freq"):
            hd = 2 * shape[0]
            t = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, dtype=torch.float32, device=device) / hd))
            yield name, t
            continue
        yield name, init_tensor(name, shape, gen, device).to(storage_dtype(name, dtype))


def write_shards(folder: Path, tensors: Iterator[tuple[str, torch.Tensor]],
                 shard_bytes: int, index: bool = True) -> list[Path]:
    """Save tensors into ``pytorch_model-0000k-of-0000N.safetensors`` files (a shard closes
    once it reaches ``shard_bytes``) plus a ``pytorch_model.bin.index.json`` naming ``.bin``."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tmp_names: list[Path] = []
    weight_map: dict[str, int] = {}
    cur: dict[str, torch.Tensor] = {}
    size = 0

    def flush():
        nonlocal cur, size
        if cur:
            p = folder / f".shard-{len(tmp_names):05d}.tmp"
            save_file({k: v.contiguous().cpu() for k, v in cur.items()}, str(p),
                      metadata={"format": "pt"})
            tmp_names.append(p)
            cur, size = {}, 0

    for name, t in tensors:
        cur[name] = t
        weight_map[name] = len(tmp_names)
        size += t.numel() * t.element_size()
        if size >= shard_bytes:
            flush()
    flush()
    n = len(tmp_names)
    final = []
    for i, p in enumerate(tmp_names):
        dst = folder / f"pytorch_model-{i + 1:05d}-of-{n:05d}.safetensors"
        p.replace(dst)
        final.append(dst)
    if index:
        total = sum(p.stat().st_size for p in final)
        idx = {"metadata": {"total_size": total},
               "weight_map": {k: f"pytorch_model-{i + 1:05d}-of-{n:05d}.bin"
                              for k, i in weight_map.items()}}
        (folder / "pytorch_model.bin.index.json").write_text(json.dumps(idx, indent=2))
    return final
