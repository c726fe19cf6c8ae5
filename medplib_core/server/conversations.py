"""Conversations: one `medplib.chat.ChatSession` per conversation, kept between questions.

Keeping the session keeps its KV cache, so a follow-up question only prefills its new
tokens, exactly as in the desktop application. A client that lost its conversation (server
restart, expiry, eviction) recreates it with its ``history``: the earlier questions are
replayed with their answers teacher-forced, which rebuilds the same conversation and cache.
Open conversations are bounded per client and for the server (count and estimated KV-cache
bytes); beyond a bound the least recently used idle conversation is dropped.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from medplib_core.engines.base import Capability
from medplib_core.errors import PromptError

from .lanes import Busy

GENERATION_FIELDS = ("max_new_tokens", "temperature", "top_p", "seed", "forced_answer",
                     "ignore_eos", "seg_fallback", "stop_strings")
CHAT_FIELDS = ("crop_mode", "threshold", "drop_regions", "region_max_points", "region_seed")


class Conflict(Exception):
    """The conversation is answering a question already (409)."""


@dataclass
class Conversation:
    id: str
    client: str
    engine: str
    image: str
    chat: Any  # medplib.chat.ChatSession
    used: float = field(default_factory=time.monotonic)
    busy: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)

    def kv_bytes(self) -> int:
        cache = getattr(self.chat, "_cache", None)  # ChatSession's KVCache (buffers as allocated)
        tensors = list(getattr(cache, "k", [])) + list(getattr(cache, "v", []))
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)

    def describe(self) -> dict[str, Any]:
        return {"conversation": self.id, "engine": self.engine, "image": self.image,
                "busy": self.busy, "turns": [{"question": t.question, "text": t.text,
                                               "grounded": t.grounded} for t in self.chat.turns]}


def generation_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """A request's options without the unset ones; JSON's list of stop strings as the tuple
    `GenerationSettings` holds."""
    opts = {k: v for k, v in (options or {}).items() if v is not None}
    if "stop_strings" in opts:
        opts["stop_strings"] = tuple(opts["stop_strings"])
    return opts


def chat_settings(options: dict[str, Any] | None):
    """`ChatSettings` from a request's ``settings`` (unknown keys are refused by the schema)."""
    from medplib_core.medplib.chat import ChatSettings
    from medplib_core.medplib.generation import GenerationSettings

    opts = generation_options(options)
    gen = GenerationSettings(**{k: opts[k] for k in GENERATION_FIELDS if k in opts})
    return ChatSettings(generation=gen, **{k: opts[k] for k in CHAT_FIELDS if k in opts})


def check_regions(question: str, regions: Sequence[Any], shape: tuple[int, int]) -> None:
    """Raise `PromptError` before anything is generated when the regions cannot be used."""
    from medplib_core.medplib.conversation import normalise_regions
    from medplib_core.medplib.region import as_region, region_mask

    for n, r in enumerate(regions):
        try:
            region_mask(as_region(r), *shape)
        except PromptError as exc:
            raise PromptError(f"regions[{n}]: {exc}") from exc
    try:
        normalise_regions(question, len(regions))
    except ValueError as exc:
        raise PromptError(f"question: {exc}") from exc


class Conversations:
    def __init__(self, host):
        self.host = host
        self.limits = host.config.limits
        self._items: dict[str, Conversation] = {}
        self._lock = threading.Lock()

    def _hosted(self, key: str):
        he = self.host.engine(key)
        if not he.engine.supports(Capability.CHAT):
            raise PromptError(f"engine: {key} does not hold conversations (use medplib)")
        return he

    def create(self, client: str, key: str, image: str, settings: dict | None,
               history: Sequence[dict]) -> Future:
        """Future of a new `Conversation` (its image encoded, ``history`` replayed)."""
        he = self._hosted(key)
        shape = self.host.image(image).shape[:2]
        cs = chat_settings(settings)
        for n, h in enumerate(history):
            try:
                check_regions(h["question"], h.get("regions") or [], shape)
            except PromptError as exc:
                raise PromptError(f"history[{n}].{exc}") from exc
        self._make_room(client)

        def job(step: Callable[[], bool]) -> Conversation:
            chat = self.host.session(key, image, step).chat(cs)
            for h in history:
                forced = dataclasses.replace(cs.generation, forced_answer=h["answer"])
                chat.ask(h["question"], regions=h.get("regions") or [], generation=forced, cancel=step)
            conv = Conversation(uuid.uuid4().hex, client, key, image, chat)
            with self._lock:
                self._items[conv.id] = conv
            return conv

        return he.run(job)

    def get(self, ident: str) -> Conversation:
        from .host import Unknown

        with self._lock:
            conv = self._items.get(ident)
        if conv is None:
            raise Unknown("conversation", ident, "conversation")
        conv.used = time.monotonic()
        return conv

    def ask(self, conv: Conversation, question: str, regions: Sequence[Any],
            generation: dict | None, on_token: Callable[[str], None]) -> Future:
        """Future of the `ChatTurn`; ``on_token`` runs on the generating thread."""
        he = self._hosted(conv.engine)
        check_regions(question, regions, self.host.image(conv.image).shape[:2])
        gen = conv.chat.settings.generation
        if generation:
            gen = dataclasses.replace(gen, **generation_options(generation))
        with self._lock:
            if conv.busy:
                raise Conflict(f"conversation {conv.id} is answering a question already")
            conv.busy = True
        conv.cancel.clear()

        def job(step: Callable[[], bool]):
            try:
                return conv.chat.ask(question, regions=regions, on_token=on_token, cancel=step,
                                     generation=gen)
            finally:
                conv.busy, conv.used = False, time.monotonic()

        try:
            return he.run(job, cancel=conv.cancel.is_set)
        except Busy:
            conv.busy = False
            raise

    def reset(self, conv: Conversation) -> None:
        with self._lock:
            if conv.busy:
                raise Conflict(f"conversation {conv.id} is answering a question; cancel it first")
            conv.chat.reset()

    def delete(self, ident: str) -> bool:
        with self._lock:
            conv = self._items.pop(ident, None)
        if conv is not None:
            conv.cancel.set()
        return conv is not None

    def count(self) -> int:
        with self._lock:
            return len(self._items)

    def _make_room(self, client: str) -> None:
        """Drop least recently used idle conversations until a new one fits the bounds."""
        lim = self.limits
        with self._lock:
            while True:
                convs = sorted(self._items.values(), key=lambda c: c.used)
                mine = [c for c in convs if c.client == client]
                kv = sum(c.kv_bytes() for c in convs)
                if len(mine) >= lim.client_conversations:
                    pool = mine
                elif len(convs) >= lim.server_conversations or kv > lim.kv_cache_bytes:
                    pool = convs
                else:
                    return
                idle = [c for c in pool if not c.busy]
                if not idle:
                    raise Busy(503 if pool is convs else 429,
                               "every open conversation is answering; try again shortly",
                               lim.retry_after_s)
                self._items.pop(idle[0].id)

    def expire(self) -> int:
        now = time.monotonic()
        with self._lock:
            old = [k for k, c in self._items.items()
                   if not c.busy and now - c.used > self.limits.session_ttl_s]
            for k in old:
                del self._items[k]
        return len(old)
