"""MedPLIB inference benchmark: load time and host memory, time to first token with the 576
image tokens, decode tokens/s at batch 1, grounding end to end (image in -> mask out), aggregate
tokens/s and p95 per-token latency at 4/16/32 concurrent streams, peak GPU memory; today's
reference loop and the fast path (static cache, device-side routing, CUDA graphs, continuous
batching) in the same run, with a parity line on their greedy ids.

On a GPU it uses the full-size model (11,687,144,240 parameters) with random weights in bf16,
written as a checkpoint folder with the released layout and loaded through the real loader
(``--in-memory`` skips the disk and assigns random weights directly). On a CPU it runs
automatically at a reduced size (``--size reduced``) in fp32 and prints the same table.
``--checkpoint/--clip/--sam`` benchmark real weights instead of random ones.

    python bench/medplib_gpu.py [--size auto|full|reduced] [--decode-tokens 128] [--repeats 3]

``bench/medplib_gpu_lease.sh`` runs it in stages on a lent GPU machine.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import signal
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

GOALS = {"decode_tok_s": ">= 200 (H200), >= 150 (H100)", "ttft": "<= 100 ms",
         "grounding_s": "<= 0.5 s", "peak_gb": "<= 26 GB", "aggregate": ">= 2,000 tokens/s"}
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
    chunk: dict = {}
    for name, t in random_checkpoint_tensors(cfg, vision, include_inv_freq=False, device=device):
        chunk[name] = t.to(dtype)
        if len(chunk) == 64:  # each call walks the whole module tree: assign in chunks
            model.load_state_dict(chunk, strict=False, assign=True)
            chunk = {}
    model.load_state_dict(chunk, strict=False, assign=True)
    model.reset_buffers(device)
    rep = LoadReport(str(folder), str(device), str(dtype))
    return LoadedMedplib(model, MedplibTokenizer.from_folder(folder), cfg, rep, folder, "random")


_T0 = time.perf_counter()


def _progress(what: str) -> None:
    """One line per row on stderr, so that a run cut short still says how far it came."""
    print(f"[{time.perf_counter() - _T0:7.1f} s] {what}", file=sys.stderr, flush=True)


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
    from medplib_core.medplib.loader import resolve_device

    dev = resolve_device(args.device)
    size = args.size if args.size != "auto" else ("full" if dev.type == "cuda" else "reduced")
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}.get(
        args.dtype, torch.bfloat16 if dev.type == "cuda" else torch.float32)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="medplib-bench-"))
    res: dict = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                 "size": "real weights" if args.checkpoint else size, "dtype": str(dtype)[6:]}
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    try:
        if args.checkpoint:
            loaded = _timed_load(args.checkpoint, args.clip, args.sam, dev, dtype, res)
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
                if args.load_only:  # a fresh process: its host peak is the loader's own
                    res.update(_load_in_child(work / "ckpt", args))
                    return res
                if dev.type == "cuda":  # the writer's GPU buffers are not part of the load
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(dev)
                # the writer's own host peak hides the loader's here (0.33 GB against 0.61 GB in a
                # fresh process, reduced size): --load-only measures it in a new process
                loaded = _timed_load(work / "ckpt", None, None, dev, dtype, res, host=False)
                res["load_note"] = ("from local safetensors shards (page cache warm); host peak: "
                                    "--load-only")
        res["load_peak_gb"] = _peak(dev)
        _progress(f"loaded in {res['load_s']:.1f} s")
        if not args.load_only:
            measure(loaded, args, dev, res)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return res


def _timed_load(folder, clip, sam, dev, dtype, res: dict, host: bool = True):
    """Load through the real loader; record the load time and (``host``) the host peak's growth."""
    from medplib_core.medplib.loader import load_medplib

    base = _host_peak()
    t0 = time.perf_counter()
    loaded = load_medplib(folder, clip, sam, device=dev, dtype=dtype)
    res["load_s"] = time.perf_counter() - t0
    if host:
        res["load_host_growth_gb"] = (_host_peak() - base) / 1e9
    return loaded


def _load_in_child(folder: Path, args) -> dict:
    """Load ``folder`` in a new process (--checkpoint --load-only) and return its load rows."""
    import subprocess

    cmd = [sys.executable, __file__, "--checkpoint", str(folder), "--load-only", "--json",
           "--device", args.device, "--dtype", args.dtype]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    child = json.loads(out[out.index("{"):])
    note = "in a fresh process, from local safetensors shards (page cache warm)"
    return {"load_s": child["load_s"], "load_host_growth_gb": child["load_host_growth_gb"],
            "load_peak_gb": child["load_peak_gb"], "load_note": note}


def measure(loaded, args, dev, res) -> None:
    """Every row, today's loop ("reference") and the fast path in the same process."""
    from medplib_core.medplib.batched import DecodeRequest, DecodeScheduler
    from medplib_core.medplib.chat import ChatSession, ChatSettings
    from medplib_core.medplib.conversation import Conversation
    from medplib_core.medplib.fast_decode import shared_scheduler
    from medplib_core.medplib.generation import GenerationSettings, generate
    from medplib_core.medplib.llama_moe import KVCache

    model, tok = loaded.model, loaded.tokenizer
    res["parameters"] = sum(p.numel() for p in model.parameters())
    _progress(f"model ready: {res['parameters']:,} parameters")
    image = (np.random.RandomState(0).rand(512, 512) * 255).astype(np.uint8)
    ctx = model.encode_image(image)
    res["encode_image_s"] = _median_time(lambda: model.encode_image(image), args.repeats, dev)
    conv = Conversation()
    conv.add_user("What can you interpret from the overall image?")
    emb = model.embed_ids(tok.encode_prompt(conv.open_prompt()), ctx.image_tokens, [])
    res["prompt_positions"] = int(emb.shape[1])
    n_tok = args.decode_tokens
    gen = GenerationSettings(max_new_tokens=n_tok, ignore_eos=True)
    layers = len(model.model.layers)
    max_len = int(emb.shape[1]) + max(n_tok, args.stream_tokens) + 64

    _progress("image encoded")
    # today's loop
    generate(model, tok, emb, KVCache(layers), GenerationSettings(max_new_tokens=8, ignore_eos=True))
    ttft, rates, ref = [], [], None
    for _ in range(args.repeats):
        ref = generate(model, tok, emb, KVCache(layers), gen)
        ttft.append(ref.prefill_s)
        rates.append((len(ref.ids) - 1) / ref.decode_s)
    res["ref"] = {"ttft_s": statistics.median(ttft), "decode_tok_s": statistics.median(rates)}
    _progress(f"today's loop: {res['ref']}")

    # fast path, batch 1 (also the chat sessions' scheduler, so no extra rows are allocated)
    sched = shared_scheduler(model, tok, max_batch=1, cached_rows=0, max_len=max_len)
    sched.submit(DecodeRequest(emb, GenerationSettings(max_new_tokens=8, ignore_eos=True))).result()
    ttft, rates, fast = [], [], None
    for _ in range(args.repeats):
        h = sched.submit(DecodeRequest(emb, gen))
        fast = h.result()
        ttft.append(h.first_token_at - h.submitted)
        rates.append((len(fast.ids) - 1) / (h.token_times[-1] - h.token_times[0]))
    res["fast"] = {"ttft_s": statistics.median(ttft), "decode_tok_s": statistics.median(rates),
                   "kernels": sched.fast.kernels, "graphs": _graph_state(sched)}
    _progress(f"fast path: {res['fast']}")
    k = min(64, len(ref.ids))
    res["parity"] = {"compared": k, "equal": sum(a == b for a, b in zip(ref.ids[:k], fast.ids[:k])),
                     "dtype": res["dtype"]}

    seg = GenerationSettings(forced_answer="<SEG>")
    for name in ("ref", "fast"):
        decoder = "reference" if name == "ref" else "fast"

        def ground():
            turn = ChatSession(loaded, image, ChatSettings(decoder=decoder)).ask(
                "Could you segment out the liver in this image?", generation=seg)
            assert turn.masks and turn.masks[0].shape == image.shape

        ground()
        res[name]["grounding_s"] = _median_time(ground, args.repeats, dev)
        _progress(f"grounding ({name}): {res[name]['grounding_s']:.3f} s")
    res["peak_b1_gb"] = _peak(dev)
    res["host_peak_gb"] = _host_peak() / 1e9
    model.__dict__.pop("_shared_scheduler", None)
    del sched
    _free(dev)

    res["streams"] = {}
    for n in args.streams:
        s = DecodeScheduler(model, tok, max_batch=n, cached_rows=0, max_len=max_len)
        one = GenerationSettings(max_new_tokens=args.stream_tokens, ignore_eos=True)
        for h in [s.submit(DecodeRequest(emb, one)) for _ in range(n)]:  # warm-up (graphs)
            h.result()
        t0 = time.perf_counter()
        handles = [s.submit(DecodeRequest(emb, one)) for _ in range(n)]
        s.run_until_idle()
        wall = time.perf_counter() - t0
        gaps = [b - a for h in handles for a, b in zip(h.token_times, h.token_times[1:])]
        # steady state: while every stream is decoding (after the last first token)
        t_a = max(h.token_times[0] for h in handles)
        t_b = min(h.token_times[-1] for h in handles)
        inside = sum(t_a < t <= t_b for h in handles for t in h.token_times)
        res["streams"][n] = {"tok_s": sum(len(h.result().ids) for h in handles) / wall,
                             "steady_tok_s": inside / (t_b - t_a) if t_b > t_a else float("nan"),
                             "p95_ms": 1000 * float(np.percentile(gaps, 95)),
                             "peak_gb": _peak(dev)}
        _progress(f"{n} streams: {res['streams'][n]}")
        del s, handles
        _free(dev)


def _graph_state(sched) -> str:
    if sched.graphs is None:
        return "off (no CUDA)" if sched.fast.device.type != "cuda" else "off"
    return sched.graphs.disabled or f"on ({len(sched.graphs.graphs)} captured)"


def _free(dev) -> None:
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def _peak(dev: torch.device) -> float | None:
    if dev.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(dev) / 1e9


def _host_peak() -> int:
    from medplib_core.medplib.weight_stream import peak_rss_bytes

    return peak_rss_bytes()


def _gb(v) -> str:
    return "n/a (CPU)" if v is None else f"{v:.2f} GB"


def load_table(res: dict) -> str:
    rows = [f"device: {res['device']}; model: {res['size']}, {res['dtype']}"]
    if "write_s" in res:
        rows.append(f"random checkpoint written in {res['write_s']:.1f} s")
    rows.append(f"load: {res['load_s']:.2f} s ({res.get('load_note', 'real weights')}); "
                f"host peak growth {res.get('load_host_growth_gb', float('nan')):.2f} GB (goal < 8 GB); "
                f"GPU peak {_gb(res['load_peak_gb'])}")
    return "\n".join(rows)


def table(res: dict) -> str:
    ref, fast = res["ref"], res["fast"]
    rows = [
        ("device", res["device"], "", ""),
        ("model", f"{res['size']}, {res['parameters']:,} parameters, {res['dtype']}", "", ""),
        ("load time", f"{res['load_s']:.2f} s" + (f" ({res['load_note']})" if res.get("load_note") else ""), "", ""),
        ("load: host peak growth", f"{res['load_host_growth_gb']:.2f} GB" if "load_host_growth_gb" in res else "n/a", "", "< 8 GB"),
        ("image encode (CLIP + SAM)", f"{res['encode_image_s'] * 1000:.1f} ms", "", ""),
        (f"time to first token ({res['prompt_positions']} positions, 576 image tokens)",
         f"{ref['ttft_s'] * 1000:.1f} ms", f"{fast['ttft_s'] * 1000:.1f} ms", GOALS["ttft"]),
        ("decode, batch 1", f"{ref['decode_tok_s']:.1f} tokens/s", f"{fast['decode_tok_s']:.1f} tokens/s",
         GOALS["decode_tok_s"]),
        ("grounding end to end (image -> mask)", f"{ref['grounding_s']:.3f} s", f"{fast['grounding_s']:.3f} s",
         GOALS["grounding_s"]),
        ("peak GPU memory, batch 1", _gb(res["peak_b1_gb"]), "", GOALS["peak_gb"]),
    ]
    for n, r in res["streams"].items():
        rows.append((f"{n} streams: tokens/s all decoding / end to end; p95 per-token",
                     "(one at a time: the batch-1 rate)",
                     f"{r['steady_tok_s']:.1f} / {r['tok_s']:.1f} tokens/s; {r['p95_ms']:.1f} ms",
                     GOALS["aggregate"] if n == 32 else ""))
    rows.append(("fast path: MoE kernel (prefill/decode), CUDA graphs",
                 "", f"{fast['kernels']['prefill']}/{fast['kernels']['decode']}, {fast['graphs']}", ""))
    head = ("metric", "today's loop", "fast path", "goal")
    w = [max(len(str(r[i])) for r in rows + [head]) for i in range(4)]
    line = lambda r: "| " + " | ".join(f"{str(c):<{w[i]}}" for i, c in enumerate(r)) + " |"  # noqa: E731
    out = [line(head), "|" + "|".join("-" * (x + 2) for x in w) + "|"] + [line(r) for r in rows]
    p = res["parity"]
    out.append(f"parity: fast path == today's loop on {p['equal']}/{p['compared']} greedy ids "
               f"({p['dtype']})")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=("auto", "full", "reduced"), default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", choices=("auto", "bf16", "fp32"), default="auto",
                   help="auto: bf16 on a GPU, fp32 on a CPU")
    p.add_argument("--decode-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--stream-tokens", type=int, default=None,
                   help="tokens per stream in the concurrent rows (default 64, 16 on a CPU)")
    p.add_argument("--streams", type=int, nargs="*", default=[4, 16, 32])
    p.add_argument("--in-memory", action="store_true", help="random weights without a disk round trip")
    p.add_argument("--workdir", help="where to write the random checkpoint (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temporary checkpoint")
    p.add_argument("--checkpoint")
    p.add_argument("--clip")
    p.add_argument("--sam")
    p.add_argument("--load-only", action="store_true",
                   help="write (random weights) and load the checkpoint, then print the load rows")
    p.add_argument("--json", action="store_true")
    p.add_argument("--save", help="also write the results as JSON to this file")
    args = p.parse_args(argv)
    faulthandler.register(signal.SIGTERM, all_threads=True)  # `timeout` shows where it was
    if args.stream_tokens is None:
        args.stream_tokens = 64 if torch.cuda.is_available() else 16
    res = run(args)
    if not torch.cuda.is_available():
        print("note: no GPU available; ran on the CPU at the reduced size" if res["size"] == "reduced"
              else "note: no GPU available")
    if args.save:
        Path(args.save).write_text(json.dumps(res, indent=1, default=str))
    if args.json:
        print(json.dumps(res, indent=1, default=str))
    else:
        print(load_table(res) if args.load_only else table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
