"""Host memory while loading: a released-layout checkpoint of a few hundred MB is read tensor
by tensor, so the host holds the model once (CPU load) or only about two tensors at a time
(what a GPU load keeps on the host), never a whole shard or a second copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

_PROBE = r"""
import json, math, sys, torch
from pathlib import Path
from medplib_core.medplib.checkpoint_files import scan_checkpoint
from medplib_core.medplib.weight_stream import peak_rss_bytes, stream_safetensors

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

mode, folder = sys.argv[1], Path(sys.argv[2])
files = scan_checkpoint(folder)
from medplib_core.medplib.config import clip_vision_config, read_config, vision_from_shapes
from medplib_core.medplib.loader import load_medplib
from medplib_core.medplib.model import build_model

cfg = read_config(folder)  # imports and one-time set-up (~250 MB of code) before the baseline
dims = vision_from_shapes({k: e.shape for k, e in files.entries.items()}, cfg.raw.get("mm_vision_config"))
build_model(cfg, clip_vision_config(None, "sdpa", dims), "meta")
before, out = rss(), {}
if mode == "stream":  # what a GPU load leaves on the host: every tensor read, then dropped
    n = 0
    for name, t in stream_safetensors(files.shards, None, "cpu"):
        n += t.numel() * t.element_size()
        del t
    out["bytes"] = n
else:
    loaded = load_medplib(folder, device="cpu", dtype=torch.bfloat16)
    out["bytes"] = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
out["growth"] = peak_rss_bytes() - before
out["largest"] = max(math.prod(e.shape) * (4 if e.dtype == "F32" else 2)
                     for e in files.entries.values())
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def medium_checkpoint(tmp_path_factory):
    """~270 MB of bf16 weights in the released layout (7b key names, smaller dimensions)."""
    from medplib_core.medplib.config import parse_config, released_config
    from medplib_core.medplib.layout import expected_keys
    from medplib_core.medplib.tiny import train_sentencepiece, write_tokenizer
    from medplib_core.medplib.writer import random_checkpoint_tensors, write_shards

    folder = tmp_path_factory.mktemp("medplib-medium") / "ckpt"
    raw = released_config()
    raw.update(hidden_size=768, intermediate_size=2064, num_hidden_layers=6,
               num_attention_heads=6, num_key_value_heads=6, mm_hidden_size=256,
               mm_vision_config={"hidden_size": 256, "intermediate_size": 1024,
                                 "num_hidden_layers": 4, "num_attention_heads": 4},
               sam_config={"encoder_embed_dim": 192, "encoder_depth": 4, "encoder_num_heads": 3,
                           "encoder_global_attn_indexes": [1, 3]})
    raw["moe"].update(moe_layers_idx=list(range(6)), num_experts=[2] * 6)
    write_tokenizer(folder, train_sentencepiece())
    (folder / "config.json").write_text(json.dumps(raw))
    from medplib_core.medplib.config import CLIP_L14_336_VISION, clip_vision_config

    dims = dict(CLIP_L14_336_VISION, **raw["mm_vision_config"])
    cfg, vision = parse_config(raw), clip_vision_config(None, dims=dims)
    assert len(expected_keys(cfg, vision)) > 350  # the released key layout
    write_shards(folder, random_checkpoint_tensors(cfg, vision), shard_bytes=120 << 20)
    return folder


def _probe(mode: str, folder: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", _PROBE, mode, str(folder)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_streaming_holds_about_two_tensors_on_the_host(medium_checkpoint):
    size = sum(p.stat().st_size for p in medium_checkpoint.glob("*.safetensors"))
    assert size > 200 << 20
    r = _probe("stream", medium_checkpoint)
    assert r["bytes"] > 200 << 20
    # whole shards are 120 MB; the host never holds more than a couple of tensors
    assert r["growth"] < 2 * r["largest"] + (48 << 20), (r, size)


def test_cpu_load_holds_the_weights_once(medium_checkpoint):
    r = _probe("load", medium_checkpoint)
    assert r["bytes"] > 200 << 20
    assert r["growth"] < r["bytes"] + 2 * r["largest"] + (64 << 20), r
