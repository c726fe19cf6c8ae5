"""KV-cache generation with streaming, cancel and ``<SEG>`` state capture (spec §10, §11.1).

Greedy by default (what the evaluation scripts use); temperature/top-p sampling with a seeded
generator is optional. Whenever the chosen token is ``<SEG>``, the final-norm hidden state of
the position that predicted it is kept: that is the grounding embedding of §11.1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

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

    @property
    def fed_ids(self) -> list[int]:
        """The generated ids whose keys/values are in the cache (all but the last)."""
        return self.ids[:-1]


class TextStream:
    """Incremental detokenisation: decode everything so far, emit what is new."""

    def __init__(self, tokenizer, on_text: TextFn | None):
        self.tok = tokenizer
        self.on_text = on_text
        self.ids: list[int] = []
        self.emitted = ""

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.tok.decode(self.ids)
        if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
            self._emit(text)
        return text

    def _emit(self, text: str) -> None:
        if text.startswith(self.emitted) and len(text) > len(self.emitted):
            delta = text[len(self.emitted):]
            self.emitted = text
            if self.on_text:
                self.on_text(delta)

    def finish(self, text: str) -> None:
        self._emit(text)


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
    stream = TextStream(tokenizer, on_text)
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
    text = ""
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
        text = stream.push(tok)
        if not settings.ignore_eos and any(s in text for s in settings.stop_strings):
            res.stop_reason = "stop_string"
            break
        if step + 1 < limit:
            hidden = model.forward_hidden(model.embed_ids([tok], None, []), cache)[:, -1]
    res.text = tokenizer.decode(res.ids)
    for s in settings.stop_strings:
        if s in res.text:
            res.text = res.text[: res.text.index(s)]
    stream.finish(res.text)
    if settings.seg_fallback and not res.seg_states:
        n = len(res.ids)
        res.fallback_state = predicting[n - 2] if n >= 2 else prev_prompt[0].clone()
    _sync(hidden)
    res.decode_s = time.perf_counter() - t1
    return res


def _sync(t: torch.Tensor) -> None:
    if t.is_cuda:
        torch.cuda.synchronize(t.device)
