"""Load MedPLIB from local folders: checkpoint, CLIP folder, ``sam-med2d_b.pth`` (spec §3.4).

The model is built on the meta device; tensors are read one at a time straight to the
target device (`weight_stream`: plain reads, pinned double-buffered copies to a GPU) and
assigned in place (``load_state_dict(assign=True)``), so no weight is ever held twice and the
host footprint of a GPU load stays near twice the largest tensor. The checkpoint's own
CLIP and SAM tensors win (evaluation behaviour, §19.3); the CLIP folder and the .pth only
fill keys the checkpoint lacks, and a few of their tensors are compared with the checkpoint's.
bf16 on a GPU, fp32 on a CPU. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from medplib_core.errors import LoadError

from .checkpoint_files import (
    clip_folder_tensors, iter_tensors, load_sam_pth, read_clip_tensors, scan_checkpoint)
from .config import MedplibConfig, clip_vision_config, read_config, vision_from_shapes
from .layout import IGNORED_SUFFIXES, PREFIX_CLIP, PREFIX_SAM, group_of
from .model import MedplibForCausalLM, build_model
from .report import LoadReport
from .tokenizer import MedplibTokenizer
from .weight_stream import stream_safetensors

ProgressFn = Callable[[int, int], None]
_COMPARE_CLIP = ("embeddings.patch_embedding.weight", "embeddings.position_embedding.weight",
                 "encoder.layers.0.self_attn.q_proj.weight")
_COMPARE_SAM = ("image_encoder.patch_embed.proj.weight", "image_encoder.pos_embed",
                "image_encoder.blocks.0.attn.qkv.weight", "mask_decoder.iou_token.weight")


@dataclass
class LoadedMedplib:
    model: MedplibForCausalLM
    tokenizer: MedplibTokenizer
    config: MedplibConfig
    report: LoadReport
    checkpoint: Path
    fingerprint: str

    @property
    def device(self) -> torch.device:
        return self.model.device


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"``: the first CUDA GPU if there is one, else the CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LoadError(str(device), "CUDA was requested but no GPU is available")
    return dev


def load_medplib(checkpoint: str | Path, clip: str | Path | None = None,
                 sam: str | Path | None = None, device: str | torch.device | None = None,
                 dtype: torch.dtype | None = None, attn_implementation: str = "sdpa",
                 progress: ProgressFn | None = None) -> LoadedMedplib:
    """Build MedPLIB and load every tensor; raise `LoadError` naming what is wrong."""
    t0 = time.perf_counter()
    folder = Path(checkpoint)
    dev = resolve_device(device)
    dtype = dtype or (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    cfg = read_config(folder)
    tokenizer = MedplibTokenizer.from_folder(folder)
    files = scan_checkpoint(folder)
    dims = None
    if clip is None and PREFIX_CLIP + "embeddings.class_embedding" in files.entries:
        dims = vision_from_shapes({k: e.shape for k, e in files.entries.items()},
                                  cfg.raw.get("mm_vision_config"))
    vision = clip_vision_config(clip, attn_implementation, dims)
    model = build_model(cfg, vision, "meta", attn_implementation=attn_implementation)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    rep = LoadReport(str(folder), str(dev), str(dtype).replace("torch.", ""),
                     shard_format=files.fmt, shards=[p.name for p in files.shards],
                     tensors_in_files=len(files.entries), file_dtypes=files.dtype_counts())
    rep.notes += cfg.notes + files.notes
    if clip is None:
        rep.notes.append("no CLIP folder given: vision config " + (
            "read off the checkpoint's CLIP tensors" if dims else "ViT-L/14-336 assumed"))

    rep.ignored = sorted(k for k in files.entries if k.endswith(IGNORED_SUFFIXES))
    rep.unexpected = sorted(k for k in files.entries if k not in shapes and k not in rep.ignored)
    bad = [f"{k} {files.entries[k].shape} (model {shapes[k]})" for k in files.entries
           if k in shapes and tuple(files.entries[k].shape) != shapes[k]]
    if bad:
        raise LoadError(folder, f"{len(bad)} tensor shapes differ from config.json: {bad[:3]}",
                        "the config and the shards belong to different models")
    wanted = [k for k in files.entries if k in shapes]
    total = len(shapes)
    loaded: set[str] = set()
    for tensors in _checkpoint_batches(files, wanted, dev):
        _assign(model, tensors, dev, dtype)
        loaded.update(tensors)
        del tensors
        if progress:
            progress(len(loaded), total)
    rep.tensors_loaded["checkpoint"] = len(loaded)

    missing = [k for k in shapes if k not in loaded]
    _fill_from_clip(model, clip, missing, loaded, shapes, dev, dtype, rep)
    sam_info = _fill_from_sam(model, sam, missing, loaded, shapes, dev, dtype, rep)
    rep.missing = sorted(k for k in shapes if k not in loaded)
    if rep.missing:
        groups = sorted({group_of(k) for k in rep.missing})
        hint = []
        if "clip" in groups and clip is None:
            hint.append("give the CLIP folder")
        if any(g.startswith("sam") for g in groups) and sam is None:
            hint.append("give sam-med2d_b.pth")
        raise LoadError(folder, f"{len(rep.missing)} tensors missing ({', '.join(groups)}), "
                        f"e.g. {rep.missing[:3]}", "; ".join(hint) or "the checkpoint is incomplete")
    model.reset_buffers(dev)
    leftovers = [n for n, t in list(model.named_parameters()) + list(model.named_buffers())
                 if t.is_meta]
    if leftovers:
        raise LoadError(folder, f"internal: tensors left on the meta device: {leftovers[:3]}")
    rep.parameters = sum(p.numel() for p in model.parameters())
    rep.open_questions = _open_questions(cfg, files, tokenizer, sam_info)
    rep.seconds = time.perf_counter() - t0
    return LoadedMedplib(model, tokenizer, cfg, rep, folder, weights_fingerprint(files))


def _checkpoint_batches(files, wanted: list[str], dev, batch_bytes: int = 64 << 20):
    """Checkpoint tensors in small groups, already on ``dev``: safetensors shards are read
    tensor by tensor straight to the device (`weight_stream`), .bin shards one at a time."""
    if files.fmt != "safetensors":
        for _, tensors in iter_tensors(files, wanted, "cpu"):
            yield tensors
        return
    group: dict[str, torch.Tensor] = {}
    size = 0
    for name, t in stream_safetensors(files.shards, set(wanted), dev):
        group[name] = t
        size += t.numel() * t.element_size()
        if size >= batch_bytes:
            yield group
            group, size = {}, 0
    if group:
        yield group


def _assign(model, tensors: dict[str, torch.Tensor], dev, dtype) -> None:
    cast = {k: (t.to(device=dev, dtype=dtype) if t.is_floating_point() else t.to(dev))
            for k, t in tensors.items()}
    model.load_state_dict(cast, strict=False, assign=True)


def _fill_from_clip(model, clip, missing, loaded, shapes, dev, dtype, rep) -> None:
    if clip is None:
        return
    entries, fmt = clip_folder_tensors(clip)
    if not entries:
        raise LoadError(clip, "no vision_model.* tensors in the CLIP folder")
    need = [k[len(PREFIX_CLIP):] for k in missing if k.startswith(PREFIX_CLIP)]
    absent = [s for s in need if s not in entries]
    if absent:
        raise LoadError(clip, f"the CLIP folder lacks {len(absent)} vision tensors, e.g. {absent[:3]}")
    if need:
        t = read_clip_tensors(entries, fmt, need)
        _assign(model, {PREFIX_CLIP + s: v for s, v in t.items()}, dev, dtype)
        loaded.update(PREFIX_CLIP + s for s in need)
        rep.tensors_loaded["clip_folder"] = len(need)
    have = [s for s in _COMPARE_CLIP if PREFIX_CLIP + s in loaded and s in entries and s not in need]
    if have:
        ref = read_clip_tensors(entries, fmt, have)
        sd = model.state_dict()
        rep.comparisons["checkpoint CLIP vs folder (max |diff|)"] = {
            s: float((sd[PREFIX_CLIP + s].float().cpu() - ref[s].float()).abs().max()) for s in have}


def _fill_from_sam(model, sam, missing, loaded, shapes, dev, dtype, rep) -> dict | None:
    if sam is None:
        return None
    sd, info = load_sam_pth(sam)
    need = [k[len(PREFIX_SAM):] for k in missing if k.startswith(PREFIX_SAM)]
    absent = [s for s in need if s not in sd]
    if absent:
        raise LoadError(sam, f"the .pth lacks {len(absent)} SAM tensors, e.g. {absent[:3]}")
    bad = [s for s in need if tuple(sd[s].shape) != shapes[PREFIX_SAM + s]]
    if bad:
        raise LoadError(sam, f"SAM tensor shapes differ from the 256-px ViT-B model: {bad[:3]}")
    if need:
        _assign(model, {PREFIX_SAM + s: sd[s] for s in need}, dev, dtype)
        loaded.update(PREFIX_SAM + s for s in need)
        rep.tensors_loaded["sam_pth"] = len(need)
    extra = sorted(set(sd) - {k[len(PREFIX_SAM):] for k in shapes if k.startswith(PREFIX_SAM)})
    if extra:
        rep.notes.append(f"the .pth has {len(extra)} keys the model does not use, e.g. {extra[:2]}")
    have = [s for s in _COMPARE_SAM if s in sd and s not in need and PREFIX_SAM + s in loaded]
    if have:
        msd = model.state_dict()
        rep.comparisons["checkpoint SAM vs .pth (max |diff|; mask decoder is fine-tuned)"] = {
            s: float((msd[PREFIX_SAM + s].float().cpu() - sd[s].float()).abs().max()) for s in have}
    del sd
    return info


def _open_questions(cfg: MedplibConfig, files, tokenizer: MedplibTokenizer, sam_info) -> dict:
    """What the real files say about the spec's §18 questions 1-4."""
    wg = sorted({e.dtype for k, e in files.entries.items() if k.endswith("gate.wg.weight")})
    raw = cfg.raw
    ids = tokenizer.id_report()
    q: dict[str, object] = {
        "config (eval_capacity_factor, min_capacity, select_layer, projector)": (
            raw.get("moe", {}).get("eval_capacity_factor"), raw.get("moe", {}).get("min_capacity"),
            raw.get("mm_vision_select_layer"), raw.get("mm_projector_type")),
        "moe never drops tokens": all(cfg.moe.never_drops(n) for n in set(cfg.moe.num_experts)),
        "token ids (<SEG>, <im_end>, vocab) / as assumed for 7b": (
            ids["seg_id"], ids["im_end_id"], ids["vocab_size"], ids["ids_as_assumed_for_7b"]),
        "tokens in reference order after the base vocab": ids["ids_in_reference_order"],
        "config vocab_size == len(tokenizer)": cfg.vocab_size == ids["vocab_size"],
        "CLIP / SAM tensors in shards": (
            sum(k.startswith(PREFIX_CLIP) for k in files.entries),
            sum(k.startswith(PREFIX_SAM) for k in files.entries)),
        "rotary_emb.inv_freq in shards": any(k.endswith("rotary_emb.inv_freq") for k in files.entries),
        "router wg dtype in files": ",".join(wg) or "none",
        "generation_config.json present": files.extra_files.get("generation_config.json", False),
        "bin shards only": files.fmt == "bin",
    }
    if sam_info is not None:
        q["sam .pth pickles an optimizer"] = sam_info.get("optimizer_pickled")
        q["sam .pth skipped classes"] = ", ".join(sam_info.get("skipped_globals", [])) or "none"
    return q


def weights_fingerprint(files) -> str:
    """SHA-256 over the config, every shard's header and size (hashing 24 GB of weights at
    every start would take minutes; this identifies the files for provenance)."""
    h = hashlib.sha256()
    cfg = files.folder / "config.json"
    if cfg.is_file():
        h.update(cfg.read_bytes())
    for p in files.shards:
        h.update(p.name.encode())
        h.update(str(p.stat().st_size).encode())
        with open(p, "rb") as f:
            h.update(f.read(1 << 16))
    return "headers-sha256:" + h.hexdigest()
