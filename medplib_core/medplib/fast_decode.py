"""The fast decode path for one answer at a time, and the scheduler a model shares.

`fast_generate` is a drop-in for `generation.generate` (same arguments and result) that runs
through the static-cache, device-side decode of `batched.DecodeScheduler`; `ChatSession` uses
it when ``ChatSettings.decoder`` resolves to ``"fast"``. Concurrent callers on one model share
`shared_scheduler(model)`, so their answers are batched together.
"""

from __future__ import annotations

import threading
from typing import Callable, Hashable, Sequence

import torch

from .batched import DecodeRequest, DecodeScheduler
from .generation import GenerationResult, GenerationSettings

SHARED_DEFAULTS = {"max_batch": 2, "max_len": 2048, "cached_rows": 1}  # ~3 GB of KV at 7B
_lock = threading.Lock()


def resolve_decoder(name: str, device: torch.device) -> str:
    """``"auto"``: the fast path on a GPU, the reference loop on a CPU."""
    if name == "auto":
        return "fast" if device.type == "cuda" else "reference"
    if name not in ("fast", "reference"):
        raise ValueError(f"unknown decoder {name!r} (auto, fast or reference)")
    return name


def shared_scheduler(model, tokenizer, **options) -> DecodeScheduler:
    """The model's scheduler (created on first use with `SHARED_DEFAULTS` and ``options``)."""
    with _lock:
        sched = model.__dict__.get("_shared_scheduler")
        if sched is None:
            sched = DecodeScheduler(model, tokenizer, **{**SHARED_DEFAULTS, **options})
            model.__dict__["_shared_scheduler"] = sched
        return sched


def fits(model, tokenizer, positions: int, settings: GenerationSettings) -> bool:
    """Whether the shared scheduler's rows hold this prompt and answer."""
    cap = SHARED_DEFAULTS["max_len"] - 1
    sched = model.__dict__.get("_shared_scheduler")
    if sched is not None:
        cap = sched.cache.capacity
    want = settings.max_new_tokens
    if settings.forced_answer is not None:
        want = len(tokenizer.encode(settings.forced_answer, add_bos=False)) + 1
    return positions + want <= cap


@torch.no_grad()
def fast_generate(model, tokenizer, embeds: torch.Tensor, settings: GenerationSettings,
                  on_text: Callable[[str], None] | None = None,
                  cancel: Callable[[], bool] | None = None,
                  prefix_keys: Sequence[Hashable] | None = None,
                  scheduler: DecodeScheduler | None = None) -> GenerationResult:
    """Decode one answer for ``embeds`` [1, L, H] (the whole prompt; cached leading positions
    with equal ``prefix_keys`` are reused) on the fast path."""
    sched = scheduler or shared_scheduler(model, tokenizer)
    handle = sched.submit(DecodeRequest(embeds, settings, prefix_keys, on_text))
    return handle.result(cancel=cancel)
