"""MedPLIB inference benchmark: load time, prefill with the 576 image tokens, decode tokens/s
at batch 1, grounding end to end (image in -> mask out), peak GPU memory.

On a GPU it uses the full-size model (11,687,144,240 parameters) with random weights in bf16,
written as a checkpoint folder with the released layout and loaded through the real loader
(``--in-memory`` skips the disk and assigns random weights directly). On a CPU it runs
automatically at a reduced size (``--size reduced``) in fp32 and prints the same table.
``--checkpoint/--clip/--sam`` benchmark real weights instead of random ones.

    python bench/medplib_gpu.py [--size auto|full|reduced] [--decode-tokens 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medplib_core.medplib.config import (  # noqa: E402
    CLIP_L14_336_VISION, SamConfig, clip_vision_config, parse_config, released_config)

GOALS = {"decode_tok_s": ">= 150 (H100)", "grounding_s": "<= 1.0", "peak_gb": "<= 26"}
REDUCED_SAM = SamConfig(encoder_embed_dim=192, encoder_depth=4, encoder_num_heads=3,
                        encoder_global_attn_indexes=(1, 3))
REDUCED_VISION = {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 6,
                  "num_attention_heads": 4}


def bench_config(size: str) -> dict:
    raw = released_config()
    if size == "reduced":
        raw.update(hidden_size=512, intermediate_size=1376, num_hidden_layers=4,
                   num_attention_heads=8, num_key_value_heads=8,
                   mm_hidden_size=REDUCED_VISION["hidden_size"],
                   sam_config=REDUCED_SAM.to_dict(), mm_vision_config=dict(REDUCED_VISION))
        raw["moe"].update(moe_layers_idx=[0, 1, 2, 3], num_experts=[2] * 4)
    return raw


def write_random_checkpoint(folder: Path, raw: dict, device: str) -> None:
    from medplib_core.medplib.tiny import train_sentencepiece, write_tokenizer
    from medplib_core.medplib.writer import random_checkpoint_tensors, write_shards

    write_tokenizer(folder, train_sentencepiece())
    (folder / "config.json").write_text(json.dumps(raw, indent=1))
    cfg = parse_config(raw)
    vision = clip_vision_config(None, dims=_vision_dims(raw))
    write_shards(folder, random_checkpoint_tensors(cfg, vision, device=device),
                 shard_bytes=5 * 2**30)


def _vision_dims(raw: dict) -> dict:
    dims = dict(CLIP_L14_336_VISION)
    dims.update(raw.get("mm_vision_config") or {})
    return dims


def random_in_memory(folder: Path, raw: dict, device: torch.device, dtype: torch.dtype):
    """Random weights assigned straight onto the device (no disk); tokenizer files on disk."""
    from medplib_core.medplib.loader import LoadedMedplib
    from medplib_core.medplib.model import build_model
    from medplib_core.medplib.report import LoadReport
    from medplib_core.medplib.tiny import train_sentencepiece, write_tokenizer
    from medplib_core.medplib.tokenizer import MedplibTokenizer
    from medplib_core.medplib.writer import random_checkpoint_tensors

    write_tokenizer(folder, train_sentencepiece())
    cfg = parse_config(raw)
    vision = clip_vision_config(None, dims=_vision_dims(raw))
    model = build_model(cfg, vision, "meta")
    for name, t in random_checkpoint_tensors(cfg, vision, include_inv_freq=False, device=device):
        model.load_state_dict({name: t.to(dtype)}, strict=False, assign=True)
    model.reset_buffers(device)
    rep = LoadReport(str(folder), str(device), str(dtype))
    return LoadedMedplib(model, MedplibTokenizer.from_folder(folder), cfg, rep, folder, "random")


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _median_time(fn, repeats: int, dev: torch.device) -> float:
    times = []
    for _ in range(repeats):
        _sync(dev)
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(args) -> dict:
    from medplib_core.medplib.chat import ChatSession
    from medplib_core.medplib.conversation import Conversation
    from medplib_core.medplib.generation import GenerationSettings, generate
    from medplib_core.medplib.llama_moe import KVCache
    from medplib_core.medplib.loader import load_medplib, resolve_device

    dev = resolve_device(args.device)
    size = args.size if args.size != "auto" else ("full" if dev.type == "cuda" else "reduced")
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    work = Path(args.workdir or tempfile.mkdtemp(prefix="medplib-bench-"))
    res: dict = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                 "size": "real weights" if args.checkpoint else size, "dtype": str(dtype)[6:]}
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    try:
        if args.checkpoint:
            t0 = time.perf_counter()
            loaded = load_medplib(args.checkpoint, args.clip, args.sam, device=dev)
            res["load_s"] = time.perf_counter() - t0
        else:
            raw = bench_config(size)
            if args.in_memory:
                t0 = time.perf_counter()
                loaded = random_in_memory(work / "ckpt", raw, dev, dtype)
                res["load_s"] = time.perf_counter() - t0
                res["load_note"] = "random weights generated on the device (no disk)"
            else:
                t0 = time.perf_counter()
                write_random_checkpoint(work / "ckpt", raw, str(dev))
                res["write_s"] = time.perf_counter() - t0
                if dev.type == "cuda":  # the writer's GPU buffers are not part of the load
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(dev)
                t0 = time.perf_counter()
                loaded = load_medplib(work / "ckpt", None, None, device=dev)
                res["load_s"] = time.perf_counter() - t0
                res["load_note"] = "from local safetensors shards (page cache warm)"
        res["load_peak_gb"] = _peak(dev)
        model, tok = loaded.model, loaded.tokenizer
        res["parameters"] = sum(p.numel() for p in model.parameters())
        rng = np.random.RandomState(0)
        image = (rng.rand(512, 512) * 255).astype(np.uint8)

        ctx = model.encode_image(image)
        res["encode_image_s"] = _median_time(lambda: model.encode_image(image), args.repeats, dev)
        conv = Conversation()
        conv.add_user("Could you segment out the liver in this image?")
        ids = tok.encode_prompt(conv.open_prompt())
        emb = model.embed_ids(ids, ctx.image_tokens, [])
        res["prompt_positions"] = int(emb.shape[1])
        res["prefill_s"] = _median_time(
            lambda: model.logits(model.forward_hidden(emb, KVCache(len(model.model.layers)))[:, -1]),
            args.repeats, dev)
        gen = GenerationSettings(max_new_tokens=args.decode_tokens, ignore_eos=True)
        generate(model, tok, emb, KVCache(len(model.model.layers)),
                 GenerationSettings(max_new_tokens=8, ignore_eos=True))  # warm-up
        rates = []
        for _ in range(args.repeats):
            out = generate(model, tok, emb, KVCache(len(model.model.layers)), gen)
            rates.append((len(out.ids) - 1) / out.decode_s)
        res["decode_tok_s"] = statistics.median(rates)
        seg = GenerationSettings(forced_answer="<SEG>")

        def ground():
            turn = ChatSession(loaded, image).ask(
                "Could you segment out the liver in this image?", generation=seg)
            assert turn.masks and turn.masks[0].shape == image.shape

        ground()
        res["grounding_s"] = _median_time(ground, args.repeats, dev)
        res["peak_gb"] = _peak(dev)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return res


def _peak(dev: torch.device) -> float | None:
    if dev.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(dev) / 1e9


def table(res: dict) -> str:
    rows = [
        ("device", res["device"], ""),
        ("model", f"{res['size']}, {res['parameters']:,} parameters, {res['dtype']}", ""),
        ("load time", f"{res['load_s']:.2f} s" + (f" ({res.get('load_note')})" if res.get("load_note") else ""), ""),
        ("image encode (CLIP + SAM)", f"{res['encode_image_s'] * 1000:.1f} ms", ""),
        (f"prefill ({res['prompt_positions']} positions, 576 image tokens)",
         f"{res['prefill_s'] * 1000:.1f} ms", ""),
        ("decode, batch 1", f"{res['decode_tok_s']:.1f} tokens/s", GOALS["decode_tok_s"]),
        ("grounding end to end (image -> mask)", f"{res['grounding_s']:.3f} s", GOALS["grounding_s"]),
        ("peak GPU memory", "n/a (CPU)" if res["peak_gb"] is None else f"{res['peak_gb']:.2f} GB",
         GOALS["peak_gb"]),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"| {'metric':<{w0}} | {'value':<{w1}} | goal |", f"|{'-' * (w0 + 2)}|{'-' * (w1 + 2)}|------|"]
    lines += [f"| {a:<{w0}} | {b:<{w1}} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=("auto", "full", "reduced"), default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--decode-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--in-memory", action="store_true", help="random weights without a disk round trip")
    p.add_argument("--workdir", help="where to write the random checkpoint (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temporary checkpoint")
    p.add_argument("--checkpoint")
    p.add_argument("--clip")
    p.add_argument("--sam")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    res = run(args)
    if not torch.cuda.is_available():
        print("note: no GPU available; ran on the CPU at the reduced size" if res["size"] == "reduced"
              else "note: no GPU available")
    print(json.dumps(res, indent=1, default=str) if args.json else table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
