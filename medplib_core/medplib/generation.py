"""KV-cache generation with streaming, cancel and ``<SEG>`` state capture (spec §10, §11.1).

This is the reference loop (one Python step per token); `fast_decode` / `batched` are the
fast paths and are tested to give the same greedy ids.

Greedy by default (what the evaluation scripts use); temperature/top-p sampling with a seeded
generator is optional. Whenever the chosen token is ``<SEG>``, the final-norm hidden state of
the position that predicted it is kept: that is the grounding embedding of §11.1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from .detok import IncrementalDetokenizer
from .llama_moe import KVCache

TextFn = Callable[[str], None]
CancelFn = Callable[[], bool]


@dataclass
class GenerationSettings:
    """How to decode one answer."""

    max_new_tokens: int = 512
    temperature: float = 0.0  # < 1e-4: greedy (the demo's rule)
    top_p: float | None = None
    seed: int = 0
    stop_strings: tuple[str, ...] = ("</s>",)
    # Teacher-force this complete answer instead of decoding (tests, scripted prompts); the
    # hidden states are still computed, so a forced "<SEG>" yields a real mask.
    forced_answer: str | None = None
    # §11.4: with no <SEG>, use the state at index -2 of the hidden-state stream (release quirk).
    seg_fallback: bool = False
    ignore_eos: bool = False  # benchmarks: always decode max_new_tokens tokens


@dataclass
class GenerationResult:
    ids: list[int]  # generated ids, including the final EOS when one was produced
    text: str
    stop_reason: str  # "eos", "max_new_tokens", "stop_string", "context_full" or "cancelled"
    seg_states: list[torch.Tensor] = field(default_factory=list)
    seg_steps: list[int] = field(default_factory=list)  # answer position of each <SEG>
    fallback_state: torch.Tensor | None = None
    prefill_s: float = 0.0
    decode_s: float = 0.0
    prompt_positions: int = 0
    reused_positions: int = 0  # leading prompt positions whose keys/values were reused

    @property
    def fed_ids(self) -> list[int]:
        """The generated ids whose keys/values are in the cache (all but the last)."""
        return self.ids[:-1]


def choose_token(logits: torch.Tensor, s: GenerationSettings, gen: torch.Generator | None) -> int:
    """Greedy argmax, or temperature / nucleus sampling with a seeded CPU generator."""
    logits = logits.reshape(-1).float()
    if s.temperature < 1e-4:
        return int(torch.argmax(logits).item())
    probs = torch.softmax(logits / s.temperature, dim=-1).cpu()
    if s.top_p is not None and 0.0 < s.top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(0) - sorted_p < s.top_p
        probs = torch.zeros_like(probs).scatter_(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs, 1, generator=gen).item())


@torch.no_grad()
def generate(model, tokenizer, embeds: torch.Tensor, cache: KVCache, settings: GenerationSettings,
             on_text: TextFn | None = None, cancel: CancelFn | None = None) -> GenerationResult:
    """Prefill ``embeds`` [1, L, H] after what ``cache`` holds, then decode one token at a time."""
    seg_id = tokenizer.added.get("<SEG>")
    eos = tokenizer.eos_id
    forced: list[int] | None = None
    if settings.forced_answer is not None:
        forced = tokenizer.encode(settings.forced_answer, add_bos=False) + [eos]
    gen = torch.Generator().manual_seed(settings.seed) if settings.temperature >= 1e-4 else None
    det = IncrementalDetokenizer(tokenizer)  # O(1) per token (detok.py)
    t0 = time.perf_counter()
    hidden_all = model.forward_hidden(embeds, cache)
    hidden = hidden_all[:, -1]
    prev_prompt = hidden_all[:, -2] if hidden_all.shape[1] > 1 else hidden
    del hidden_all
    _sync(hidden)
    t1 = time.perf_counter()
    res = GenerationResult(ids=[], text="", stop_reason="max_new_tokens", prefill_s=t1 - t0,
                           prompt_positions=int(embeds.shape[1]))
    predicting: list[torch.Tensor] = []  # predicting[j] predicted ids[j] (kept only if needed)
    limit = len(forced) if forced is not None else settings.max_new_tokens
    room = model.config.max_position_embeddings - cache.length  # RoPE positions left
    if limit > room:
        limit = max(room, 0)
        res.stop_reason = "context_full"
    for step in range(limit):
        if cancel is not None and cancel():
            res.stop_reason = "cancelled"
            break
        if forced is not None:
            tok = forced[step]
        else:
            tok = choose_token(model.logits(hidden), settings, gen)
        if settings.seg_fallback:
            predicting.append(hidden[0].clone())
        if tok == seg_id:
            res.seg_states.append(hidden[0].clone())
            res.seg_steps.append(step)
        res.ids.append(tok)
        if tok == eos and not settings.ignore_eos:
            res.stop_reason = "eos"
            break
        delta = det.push(tok)
        if delta and on_text:
            on_text(delta)
        if not settings.ignore_eos and stop_string_seen(det, settings.stop_strings, delta):
            res.stop_reason = "stop_string"
            break
        if step + 1 < limit:
            hidden = model.forward_hidden(model.embed_ids([tok], None, []), cache)[:, -1]
    res.text = tokenizer.decode(res.ids)
    for s in settings.stop_strings:
        if s in res.text:
            res.text = res.text[: res.text.index(s)]
    emitted = det.text
    if on_text and res.text.startswith(emitted) and len(res.text) > len(emitted):
        on_text(res.text[len(emitted):])
    if settings.seg_fallback and not res.seg_states:
        n = len(res.ids)
        res.fallback_state = predicting[n - 2] if n >= 2 else prev_prompt[0].clone()
    _sync(hidden)
    res.decode_s = time.perf_counter() - t1
    return res


def stop_string_seen(det: IncrementalDetokenizer, stops: tuple[str, ...], delta: str) -> bool:
    """Whether the answer decoded so far contains a stop string (only its changed end is
    searched: the text emitted before ``delta`` was searched already)."""
    if not stops:
        return False
    tail = det.text_tail(max(len(s) for s in stops) + det.pending_chars + len(delta))
    return any(s in tail for s in stops)


def _sync(t: torch.Tensor) -> None:
    if t.is_cuda:
        torch.cuda.synchronize(t.device)
