"""MedPLIB configuration: parse the checkpoint's ``config.json`` without ``AutoConfig``.

The released config has ``model_type = "medplib_moe_llama"``, which transformers 5 does not
know, so the JSON is read directly (spec §4, §16). LLaMA fields become a `LlamaConfig`; the
MedPLIB extras (``mm_*``, ``moe``, region and SAM fields) live in `MedplibConfig`. Fields the
reference reads without defaults (spec §19.4) get the released value when missing, and every
such substitution is recorded in ``notes`` so the load report can show it.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medplib_core.errors import LoadError

# Values of the released MedPLIB-7b-2e config as far as the spec could establish them (§4).
RELEASED_CONFIG: dict[str, Any] = {
    "architectures": ["MedPLIBForCausalLM"],
    "model_type": "medplib_moe_llama",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "rms_norm_eps": 1e-5,
    "max_position_embeddings": 4096,
    "rope_scaling": None,
    "hidden_act": "silu",
    "vocab_size": 32267,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "use_cache": False,
    "mm_vision_tower": "/author/path/clip-vit-large-patch14-336",
    "vision_tower": "/author/path/clip-vit-large-patch14-336",
    "mm_hidden_size": 1024,
    "mm_projector_type": "mlp2x_gelu",
    "mm_vision_select_layer": -2,
    "mm_vision_select_feature": "patch",
    "mm_use_im_start_end": True,
    "mm_use_im_patch_token": False,
    "tune_mm_mlp_adapter": False,
    "freeze_mm_mlp_adapter": True,
    "image_aspect_ratio": "square",
    "out_dim": 256,
    "train_mask_decoder": True,
    "max_sample_point": 512,
    "region_fea_adapter": True,
    "region_geo_sampler": False,
    "sampler_pooler_mode": "max",
    "pretrain_mm_mlp_adapter": None,
    "moe": {
        "moe_enable": True,
        "moe_mode": "dense",
        "moe_layers_idx": list(range(32)),
        "num_experts": [2] * 32,
        "top_k_experts": 1,
        "capacity_factor": 1.5,
        "eval_capacity_factor": 2.0,
        "min_capacity": 0,
        "use_residual": False,
        "router_aux_loss_coef": 0.0,
        "ep_size": 1,
    },
}

# CLIP ViT-L/14-336 vision tower (used when no CLIP folder config is available).
CLIP_L14_336_VISION: dict[str, Any] = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 336,
    "patch_size": 14,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 768,
}

_MOE_REQUIRED = (
    "num_experts", "moe_layers_idx", "ep_size", "top_k_experts", "capacity_factor",
    "eval_capacity_factor", "min_capacity", "use_residual", "router_aux_loss_coef",
)
_REQUIRED_NO_DEFAULT = (
    "train_mask_decoder", "out_dim", "mm_hidden_size", "mm_vision_select_layer", "max_sample_point",
)
_LLAMA_FIELDS = (
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "rms_norm_eps", "max_position_embeddings", "hidden_act", "vocab_size",
)


@dataclass
class SamConfig:
    """SAM-Med2D dimensions; ViT-B with adapters at 256 px by default (spec §12).

    The real checkpoint has no such object; a tiny test checkpoint may carry a non-standard
    ``"sam_config"`` entry in ``config.json`` that overrides these defaults (spec §17.1).
    """

    image_size: int = 256
    patch_size: int = 16
    encoder_embed_dim: int = 768
    encoder_depth: int = 12
    encoder_num_heads: int = 12
    encoder_global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    mlp_ratio: float = 4.0
    adapter: bool = True
    adapter_ratio: float = 0.25
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_num_heads: int = 8
    decoder_mlp_dim: int = 2048
    iou_head_hidden_dim: int = 256
    attention_downsample_rate: int = 2
    num_multimask_outputs: int = 3

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "SamConfig":
        d = dict(d or {})
        if "encoder_global_attn_indexes" in d:
            d["encoder_global_attn_indexes"] = tuple(d["encoder_global_attn_indexes"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["encoder_global_attn_indexes"] = list(self.encoder_global_attn_indexes)
        return d


@dataclass
class MoEConfig:
    """DeepSpeed-MoE settings of the LLM (spec §4, §9.2)."""

    layers_idx: list[int]
    num_experts: list[int]  # per layer in ``layers_idx`` order
    top_k: int = 1
    capacity_factor: float = 1.5
    eval_capacity_factor: float = 2.0
    min_capacity: int = 0
    use_residual: bool = False
    ep_size: int = 1

    def experts_for(self, layer: int) -> int:
        """Experts in decoder layer ``layer`` (0 means a dense MLP)."""
        if layer not in self.layers_idx:
            return 0
        return int(self.num_experts[self.layers_idx.index(layer)])

    def capacity(self, tokens: int, experts: int) -> int:
        """DeepSpeed's eval capacity for one forward call of ``tokens`` tokens."""
        return max(math.ceil(tokens / experts * self.eval_capacity_factor), self.min_capacity)

    def never_drops(self, experts: int) -> bool:
        """True when the capacity is at least the token count for every call size."""
        return self.eval_capacity_factor / experts >= 1.0


@dataclass
class MedplibConfig:
    """Everything the port needs from ``config.json``."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    rms_norm_eps: float
    max_position_embeddings: int
    hidden_act: str
    vocab_size: int
    rope_theta: float
    bos_token_id: int
    eos_token_id: int
    pad_token_id: int
    mm_hidden_size: int
    mm_projector_type: str
    mm_vision_select_layer: int
    mm_vision_select_feature: str
    mm_use_im_start_end: bool
    out_dim: int
    max_sample_point: int
    moe: MoEConfig
    sam: SamConfig
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def llama_config(self, attn_implementation: str = "sdpa"):
        """A transformers `LlamaConfig` for the decoder (RoPE base 10000, no scaling)."""
        from transformers import LlamaConfig

        cfg = LlamaConfig(
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            rms_norm_eps=self.rms_norm_eps,
            max_position_embeddings=self.max_position_embeddings,
            hidden_act=self.hidden_act,
            vocab_size=self.vocab_size,
            rope_theta=self.rope_theta,
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
            pad_token_id=self.pad_token_id,
            tie_word_embeddings=False,
            attention_bias=False,
            mlp_bias=False,
            use_cache=True,
        )
        cfg._attn_implementation = attn_implementation
        return cfg


def released_config() -> dict[str, Any]:
    """A fresh copy of the released config values (for the layout check and the benchmark)."""
    return copy.deepcopy(RELEASED_CONFIG)


def read_config(folder: str | Path) -> MedplibConfig:
    """Read ``folder/config.json`` into a `MedplibConfig`; raise `LoadError` when unusable."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise LoadError(folder, "no config.json in the checkpoint folder",
                        "point the checkpoint setting at the MedPLIB-7b-2e folder")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LoadError(path, f"config.json cannot be parsed: {exc}") from exc
    return parse_config(raw, source=path)


def parse_config(raw: dict[str, Any], source: str | Path = "config.json") -> MedplibConfig:
    """Turn a ``config.json`` dict into a `MedplibConfig` (see the module docstring)."""
    notes: list[str] = []
    d = dict(raw)
    if d.get("model_type") not in (None, "medplib_moe_llama"):
        notes.append(f"model_type is {d.get('model_type')!r}, expected 'medplib_moe_llama'")
    for key in _LLAMA_FIELDS:
        if key not in d:
            raise LoadError(source, f"config.json lacks the field {key!r}",
                            f"model_type is {d.get('model_type')!r}: this does not look like "
                            "the MedPLIB-7b-2e folder")
    for key in _REQUIRED_NO_DEFAULT:
        if key not in d:
            d[key] = RELEASED_CONFIG[key]
            notes.append(f"config.json lacks {key!r}; using the released value {d[key]!r}")
    if "mm_projector_type" not in d:
        d["mm_projector_type"] = "mlp2x_gelu"
        notes.append("config.json lacks 'mm_projector_type'; assuming 'mlp2x_gelu' "
                     "(the reference would silently build a single linear layer)")
    if d.get("region_geo_sampler"):
        raise LoadError(source, "region_geo_sampler is true, but this port (like the released "
                        "checkpoint) has no GeoRegionSampler")
    if d.get("rope_scaling"):
        raise LoadError(source, f"rope_scaling {d['rope_scaling']!r} is not supported")
    feature = d.get("mm_vision_select_feature", "patch")
    if feature not in ("patch", "cls_patch"):
        raise LoadError(source, f"unknown mm_vision_select_feature {feature!r}")
    if d.get("mm_vision_tower"):
        notes.append(f"mm_vision_tower {d['mm_vision_tower']!r} is ignored: the local CLIP folder "
                     "(or the checkpoint's own CLIP tensors) is used")
    if d.get("pretrain_mm_mlp_adapter"):
        notes.append("pretrain_mm_mlp_adapter is set; ignored (the checkpoint's projector is used)")
    moe = _parse_moe(d, source, notes)
    return MedplibConfig(
        hidden_size=int(d["hidden_size"]),
        intermediate_size=int(d["intermediate_size"]),
        num_hidden_layers=int(d["num_hidden_layers"]),
        num_attention_heads=int(d["num_attention_heads"]),
        num_key_value_heads=int(d.get("num_key_value_heads") or d["num_attention_heads"]),
        rms_norm_eps=float(d["rms_norm_eps"]),
        max_position_embeddings=int(d["max_position_embeddings"]),
        hidden_act=str(d["hidden_act"]),
        vocab_size=int(d["vocab_size"]),
        rope_theta=float(d.get("rope_theta", 10000.0)),
        bos_token_id=int(d.get("bos_token_id", 1)),
        eos_token_id=int(d.get("eos_token_id", 2)),
        pad_token_id=int(d.get("pad_token_id") if d.get("pad_token_id") is not None else 0),
        mm_hidden_size=int(d["mm_hidden_size"]),
        mm_projector_type=str(d["mm_projector_type"]),
        mm_vision_select_layer=int(d["mm_vision_select_layer"]),
        mm_vision_select_feature=feature,
        mm_use_im_start_end=bool(d.get("mm_use_im_start_end", True)),
        out_dim=int(d["out_dim"]),
        max_sample_point=int(d["max_sample_point"]),
        moe=moe,
        sam=SamConfig.from_dict(d.get("sam_config")),
        raw=raw,
        notes=notes,
    )


def _parse_moe(d: dict[str, Any], source, notes: list[str]) -> MoEConfig:
    moe = d.get("moe")
    if not isinstance(moe, dict) or not moe.get("moe_enable", True):
        notes.append("no enabled 'moe' section: every decoder MLP is dense")
        return MoEConfig(layers_idx=[], num_experts=[])
    m = dict(moe)
    for key in _MOE_REQUIRED:
        if key not in m:
            m[key] = RELEASED_CONFIG["moe"][key]
            notes.append(f"config.json moe lacks {key!r}; using the released value {m[key]!r}")
    layers = [int(i) for i in m["moe_layers_idx"]]
    experts = m["num_experts"]
    experts = [int(experts)] * len(layers) if isinstance(experts, int) else [int(e) for e in experts]
    if len(experts) != len(layers):
        raise LoadError(source, f"moe.num_experts has {len(experts)} entries for {len(layers)} layers")
    if int(m["top_k_experts"]) != 1:
        raise LoadError(source, f"moe.top_k_experts = {m['top_k_experts']}; only top-1 is supported")
    if m["use_residual"]:
        raise LoadError(source, "moe.use_residual is true; residual MoE is not supported")
    cfg = MoEConfig(
        layers_idx=layers,
        num_experts=experts,
        top_k=1,
        capacity_factor=float(m["capacity_factor"]),
        eval_capacity_factor=float(m["eval_capacity_factor"]),
        min_capacity=int(m["min_capacity"]),
        use_residual=False,
        ep_size=int(m["ep_size"]),
    )
    if cfg.min_capacity != 0:
        notes.append(f"moe.min_capacity = {cfg.min_capacity} (DeepSpeed would assert on "
                     "one-token decode steps; the port allows it)")
    for n in sorted(set(experts)):
        if not cfg.never_drops(n):
            notes.append(f"moe.eval_capacity_factor = {cfg.eval_capacity_factor} with {n} experts: "
                         "tokens over capacity get a zero MLP output, as in DeepSpeed")
    return cfg


def vision_from_shapes(shapes: dict[str, tuple[int, ...]], hint: dict | None = None) -> dict:
    """CLIP vision dimensions read off the checkpoint's own CLIP tensors (no CLIP folder).

    Head count is not in the shapes: ``hint`` (a non-standard ``mm_vision_config`` entry of
    config.json) wins, else hidden/64 (16 for ViT-L/14)."""
    p = "model.vision_tower.vision_tower.vision_model."
    d = shapes[p + "embeddings.class_embedding"][0]
    patch = shapes[p + "embeddings.patch_embedding.weight"][-1]
    grid = round((shapes[p + "embeddings.position_embedding.weight"][0] - 1) ** 0.5)
    layers = 1 + max(int(k[len(p) + len("encoder.layers."):].split(".")[0])
                     for k in shapes if k.startswith(p + "encoder.layers."))
    out = dict(CLIP_L14_336_VISION)
    out.update(hidden_size=d, patch_size=patch, image_size=grid * patch, num_hidden_layers=layers,
               intermediate_size=shapes[p + "encoder.layers.0.mlp.fc1.weight"][0],
               num_attention_heads=max(1, d // 64))
    out.update(hint or {})
    return out


def clip_vision_config(clip_folder: str | Path | None, attn_implementation: str = "sdpa",
                       dims: dict | None = None):
    """The CLIP vision config from a local CLIP folder, else from ``dims`` (see
    `vision_from_shapes`), else the ViT-L/14-336 defaults."""
    from transformers import CLIPVisionConfig

    if clip_folder is None:
        vcfg = CLIPVisionConfig(**(dims or CLIP_L14_336_VISION))
    else:
        path = Path(clip_folder) / "config.json"
        if not path.is_file():
            raise LoadError(clip_folder, "no config.json in the CLIP folder",
                            "expected a local copy of openai/clip-vit-large-patch14-336")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LoadError(path, f"cannot be parsed: {exc}") from exc
        vision = d.get("vision_config", d)
        vision = {k: v for k, v in vision.items() if k not in ("model_type", "transformers_version")}
        vcfg = CLIPVisionConfig(**vision)
    vcfg._attn_implementation = attn_implementation
    return vcfg
