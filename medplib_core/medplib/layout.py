"""The checkpoint key layout of spec §2, written from the spec's tables (not from the modules).

`expected_keys` lists every tensor a complete MedPLIB checkpoint holds, with its shape. The
loader compares shard headers against it, the tiny generator writes exactly these keys, and
`check_layout` compares it with the state dict of the model built on the meta device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import MedplibConfig, SamConfig

Shape = tuple[int, ...]

PREFIX_LLM = "model."
PREFIX_CLIP = "model.vision_tower.vision_tower.vision_model."
PREFIX_SAM = "model.visual_model."
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)  # 4.31 persistent RoPE buffers: recomputed


def llm_keys(cfg: MedplibConfig) -> dict[str, Shape]:
    """LLaMA decoder with MoE MLPs (§2.1)."""
    h, f, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    hd = h // cfg.num_attention_heads
    kv = cfg.num_key_value_heads * hd
    out: dict[str, Shape] = {"model.embed_tokens.weight": (v, h)}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = (h,)
        out[p + "self_attn.q_proj.weight"] = (h, h)
        out[p + "self_attn.k_proj.weight"] = (kv, h)
        out[p + "self_attn.v_proj.weight"] = (kv, h)
        out[p + "self_attn.o_proj.weight"] = (h, h)
        out[p + "post_attention_layernorm.weight"] = (h,)
        n = cfg.moe.experts_for(i)
        if n:
            out[p + "mlp.deepspeed_moe.gate.wg.weight"] = (n, h)
            for e in range(n):
                q = p + f"mlp.deepspeed_moe.experts.deepspeed_experts.{e}."
                out[q + "gate_proj.weight"] = (f, h)
                out[q + "up_proj.weight"] = (f, h)
                out[q + "down_proj.weight"] = (h, f)
        else:
            out[p + "mlp.gate_proj.weight"] = (f, h)
            out[p + "mlp.up_proj.weight"] = (f, h)
            out[p + "mlp.down_proj.weight"] = (h, f)
    out["model.norm.weight"] = (h,)
    out["lm_head.weight"] = (v, h)
    return out


def clip_keys(vision: Any) -> dict[str, Shape]:
    """CLIP vision tower under its double prefix (§2.2); ``vision`` is a CLIPVisionConfig."""
    d, m = vision.hidden_size, vision.intermediate_size
    grid = vision.image_size // vision.patch_size
    p = PREFIX_CLIP
    out: dict[str, Shape] = {
        p + "embeddings.class_embedding": (d,),
        p + "embeddings.patch_embedding.weight": (d, vision.num_channels, vision.patch_size,
                                                  vision.patch_size),
        p + "embeddings.position_embedding.weight": (grid * grid + 1, d),
        p + "pre_layrnorm.weight": (d,),
        p + "pre_layrnorm.bias": (d,),
    }
    for j in range(vision.num_hidden_layers):
        q = p + f"encoder.layers.{j}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out[q + f"self_attn.{proj}.weight"] = (d, d)
            out[q + f"self_attn.{proj}.bias"] = (d,)
        for ln in ("layer_norm1", "layer_norm2"):
            out[q + f"{ln}.weight"] = (d,)
            out[q + f"{ln}.bias"] = (d,)
        out[q + "mlp.fc1.weight"] = (m, d)
        out[q + "mlp.fc1.bias"] = (m,)
        out[q + "mlp.fc2.weight"] = (d, m)
        out[q + "mlp.fc2.bias"] = (d,)
    out[p + "post_layernorm.weight"] = (d,)
    out[p + "post_layernorm.bias"] = (d,)
    return out


def projector_keys(cfg: MedplibConfig) -> dict[str, Shape]:
    """mm_projector, region adapter and text_hidden_fcs (§2.3, §2.4)."""
    h, c = cfg.hidden_size, cfg.mm_hidden_size
    out: dict[str, Shape] = {}
    if cfg.mm_projector_type == "linear":
        out["model.mm_projector.weight"] = (h, c)
        out["model.mm_projector.bias"] = (h,)
    else:
        depth = int(cfg.mm_projector_type.split("x")[0][3:])
        for i in range(depth):
            out[f"model.mm_projector.{2 * i}.weight"] = (h, c if i == 0 else h)
            out[f"model.mm_projector.{2 * i}.bias"] = (h,)
    out["model.region_fea_adapter.weight"] = (h, c)
    out["model.region_fea_adapter.bias"] = (h,)
    out["model.text_hidden_fcs.0.0.weight"] = (h, h)
    out["model.text_hidden_fcs.0.0.bias"] = (h,)
    out["model.text_hidden_fcs.0.2.weight"] = (cfg.out_dim, h)
    out["model.text_hidden_fcs.0.2.bias"] = (cfg.out_dim,)
    return out


def sam_keys(s: SamConfig, prefix: str = "") -> dict[str, Shape]:
    """SAM-Med2D keys (§12.4); ``prefix`` is ``""`` for the .pth and `PREFIX_SAM` in shards."""
    d, g, pd = s.encoder_embed_dim, s.grid, s.prompt_embed_dim
    hd = d // s.encoder_num_heads
    mlp = int(d * s.mlp_ratio)
    out: dict[str, Shape] = {}
    e = prefix + "image_encoder."
    out[e + "patch_embed.proj.weight"] = (d, 3, s.patch_size, s.patch_size)
    out[e + "patch_embed.proj.bias"] = (d,)
    out[e + "pos_embed"] = (1, g, g, d)
    for j in range(s.encoder_depth):
        b = e + f"blocks.{j}."
        rel = 2 * (g if j in s.encoder_global_attn_indexes else s.window_size) - 1
        for n in ("norm1", "norm2"):
            out[b + f"{n}.weight"] = (d,)
            out[b + f"{n}.bias"] = (d,)
        out[b + "attn.qkv.weight"] = (3 * d, d)
        out[b + "attn.qkv.bias"] = (3 * d,)
        out[b + "attn.proj.weight"] = (d, d)
        out[b + "attn.proj.bias"] = (d,)
        out[b + "attn.rel_pos_h"] = (rel, hd)
        out[b + "attn.rel_pos_w"] = (rel, hd)
        out[b + "mlp.lin1.weight"] = (mlp, d)
        out[b + "mlp.lin1.bias"] = (mlp,)
        out[b + "mlp.lin2.weight"] = (d, mlp)
        out[b + "mlp.lin2.bias"] = (d,)
        if s.adapter:
            a = int(d * s.adapter_ratio)
            out[b + "Adapter.norm.weight"] = (d,)
            out[b + "Adapter.norm.bias"] = (d,)
            out[b + "Adapter.channel.0.weight"] = (a, d)
            out[b + "Adapter.channel.2.weight"] = (d, a)
            out[b + "Adapter.spatial.0.weight"] = (d, d, 3, 3)
            out[b + "Adapter.spatial.2.weight"] = (d, d, 4, 4)
    out[e + "neck.0.weight"] = (pd, d, 1, 1)
    out[e + "neck.1.weight"] = (pd,)
    out[e + "neck.1.bias"] = (pd,)
    out[e + "neck.2.weight"] = (pd, pd, 3, 3)
    out[e + "neck.3.weight"] = (pd,)
    out[e + "neck.3.bias"] = (pd,)
    out.update(_prompt_encoder_keys(s, prefix + "prompt_encoder."))
    out.update(_mask_decoder_keys(s, prefix + "mask_decoder."))
    return out


def _prompt_encoder_keys(s: SamConfig, p: str) -> dict[str, Shape]:
    pd, mc = s.prompt_embed_dim, s.mask_in_chans
    out: dict[str, Shape] = {p + "pe_layer.positional_encoding_gaussian_matrix": (2, pd // 2)}
    for i in range(4):
        out[p + f"point_embeddings.{i}.weight"] = (1, pd)
    out[p + "not_a_point_embed.weight"] = (1, pd)
    out[p + "mask_downscaling.0.weight"] = (mc // 4, 1, 2, 2)
    out[p + "mask_downscaling.0.bias"] = (mc // 4,)
    out[p + "mask_downscaling.1.weight"] = (mc // 4,)
    out[p + "mask_downscaling.1.bias"] = (mc // 4,)
    out[p + "mask_downscaling.3.weight"] = (mc, mc // 4, 2, 2)
    out[p + "mask_downscaling.3.bias"] = (mc,)
    out[p + "mask_downscaling.4.weight"] = (mc,)
    out[p + "mask_downscaling.4.bias"] = (mc,)
    out[p + "mask_downscaling.6.weight"] = (pd, mc, 1, 1)
    out[p + "mask_downscaling.6.bias"] = (pd,)
    out[p + "no_mask_embed.weight"] = (1, pd)
    return out


def _attn_keys(p: str, dim: int, internal: int) -> dict[str, Shape]:
    out: dict[str, Shape] = {}
    for proj in ("q_proj", "k_proj", "v_proj"):
        out[p + f"{proj}.weight"] = (internal, dim)
        out[p + f"{proj}.bias"] = (internal,)
    out[p + "out_proj.weight"] = (dim, internal)
    out[p + "out_proj.bias"] = (dim,)
    return out


def _mask_decoder_keys(s: SamConfig, p: str) -> dict[str, Shape]:
    d, n_masks = s.prompt_embed_dim, s.num_multimask_outputs + 1
    cross = d // s.attention_downsample_rate
    out: dict[str, Shape] = {p + "iou_token.weight": (1, d), p + "mask_tokens.weight": (n_masks, d)}
    for i in range(s.decoder_depth):
        t = p + f"transformer.layers.{i}."
        out.update(_attn_keys(t + "self_attn.", d, d))
        out.update(_attn_keys(t + "cross_attn_token_to_image.", d, cross))
        out[t + "mlp.lin1.weight"] = (s.decoder_mlp_dim, d)
        out[t + "mlp.lin1.bias"] = (s.decoder_mlp_dim,)
        out[t + "mlp.lin2.weight"] = (d, s.decoder_mlp_dim)
        out[t + "mlp.lin2.bias"] = (d,)
        for n in range(1, 5):
            out[t + f"norm{n}.weight"] = (d,)
            out[t + f"norm{n}.bias"] = (d,)
        out.update(_attn_keys(t + "cross_attn_image_to_token.", d, cross))
    out.update(_attn_keys(p + "transformer.final_attn_token_to_image.", d, cross))
    out[p + "transformer.norm_final_attn.weight"] = (d,)
    out[p + "transformer.norm_final_attn.bias"] = (d,)
    out[p + "output_upscaling.0.weight"] = (d, d // 4, 2, 2)
    out[p + "output_upscaling.0.bias"] = (d // 4,)
    out[p + "output_upscaling.1.weight"] = (d // 4,)
    out[p + "output_upscaling.1.bias"] = (d // 4,)
    out[p + "output_upscaling.3.weight"] = (d // 4, d // 8, 2, 2)
    out[p + "output_upscaling.3.bias"] = (d // 8,)
    for k in range(n_masks):
        m = p + f"output_hypernetworks_mlps.{k}.layers."
        for i, (o, ii) in enumerate(((d, d), (d, d), (d // 8, d))):
            out[m + f"{i}.weight"] = (o, ii)
            out[m + f"{i}.bias"] = (o,)
    hid = s.iou_head_hidden_dim
    for i, (o, ii) in enumerate(((hid, d), (hid, hid), (n_masks, hid))):
        out[p + f"iou_prediction_head.layers.{i}.weight"] = (o, ii)
        out[p + f"iou_prediction_head.layers.{i}.bias"] = (o,)
    return out


SAM_BUFFERS = ("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",)


def expected_keys(cfg: MedplibConfig, vision: Any) -> dict[str, Shape]:
    """Every tensor of a complete MedPLIB checkpoint (without the ignored ``inv_freq``)."""
    out = llm_keys(cfg)
    out.update(clip_keys(vision))
    out.update(projector_keys(cfg))
    out.update(sam_keys(cfg.sam, PREFIX_SAM))
    return out


def group_of(key: str) -> str:
    """Which part of the model a checkpoint key belongs to (for reports)."""
    if key.startswith(PREFIX_CLIP):
        return "clip"
    if key.startswith(PREFIX_SAM + "image_encoder."):
        return "sam_image_encoder"
    if key.startswith(PREFIX_SAM + "prompt_encoder."):
        return "sam_prompt_encoder"
    if key.startswith(PREFIX_SAM + "mask_decoder."):
        return "sam_mask_decoder"
    if key.startswith(("model.mm_projector", "model.region_fea_adapter", "model.text_hidden_fcs")):
        return "projectors"
    return "llm"


def numel(shape: Shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


@dataclass
class LayoutReport:
    """Result of `check_layout`."""

    parameters: int
    tensors: int
    expected_tensors: int
    per_group: dict[str, int]
    missing: list[str] = field(default_factory=list)  # expected, absent from the model
    extra: list[str] = field(default_factory=list)  # in the model, not expected
    shape_mismatch: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.shape_mismatch)


RELEASED_PARAMETERS = 11_687_144_240


def check_layout(cfg: MedplibConfig | None = None, vision: Any = None) -> LayoutReport:
    """Build the model on the meta device and compare its state dict with `expected_keys`."""
    from .config import clip_vision_config, parse_config, released_config
    from .model import build_model

    cfg = cfg or parse_config(released_config())
    vision = vision or clip_vision_config(None)
    model = build_model(cfg, vision, device="meta")
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = expected_keys(cfg, vision)
    per_group: dict[str, int] = {}
    for name, p in model.named_parameters():
        g = group_of(name)
        per_group[g] = per_group.get(g, 0) + p.numel()
    return LayoutReport(
        parameters=sum(p.numel() for p in model.parameters()),
        tensors=len(state),
        expected_tensors=len(want),
        per_group=per_group,
        missing=sorted(set(want) - set(state)),
        extra=sorted(set(state) - set(want)),
        shape_mismatch=sorted(k for k in set(want) & set(state) if want[k] != state[k]),
    )
