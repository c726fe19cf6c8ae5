"""Conversations about one uploaded slice; answers stream as server-sent events.

``POST /v1/conversations/{id}/ask`` answers with ``text/event-stream``::

    event: start     data: {"conversation": ID}
    event: token     data: {"text": "next piece of the answer"}      (repeated)
    event: turn      data: Turn (text, masks, scores, provenance, stop_reason)
  or event: cancelled data: {"partial_text": "..."}
  or event: error    data: ErrorBody

A comment line (``: ping``) is sent whenever nothing else was sent for a quarter second, so a
client notices a dead server and can act on its own cancel button between tokens. A client
that disconnects cancels its answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import StreamingResponse

from medplib_core.errors import CancelledError, MedplibError

from . import convert
from .schemas import AskRequest, Cancelled, ConversationCreate, ConversationStatus, Turn

log = logging.getLogger("medplib_core.server")
KEEPALIVE_S = 0.25
CONV_ID = Path(max_length=64, pattern=r"^[0-9a-f]{1,64}$")
STREAM_DOC = {200: {"description": "server-sent events: start, token..., then turn, cancelled or error",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}}}}


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def chat_router() -> APIRouter:
    from .app import counted_client

    r = APIRouter(tags=["chat"])

    def host_of(request: Request):
        return request.app.state.host

    def regions(host, bodies) -> list[Any]:
        cap = host.config.limits.client_memory_bytes
        return [convert.region(b, f"regions[{i}]", cap) for i, b in enumerate(bodies)]

    def check_tokens(host, n: int | None, field: str) -> None:
        limit = host.config.limits.max_new_tokens
        if n is not None and n > limit:
            from .app import ApiError

            raise ApiError(400, "invalid_request", f"{field}: at most {limit} new tokens", field)

    @r.post("/conversations", response_model=ConversationStatus, status_code=201)
    async def create(request: Request, body: ConversationCreate,
                     client: str = Depends(counted_client)) -> dict[str, Any]:
        """Open a conversation about an uploaded slice (``history`` rebuilds a lost one)."""
        host = host_of(request)
        settings = body.settings.model_dump(exclude_none=True) if body.settings else None
        check_tokens(host, (settings or {}).get("max_new_tokens"), "settings.max_new_tokens")
        history = [{"question": h.question, "regions": regions(host, h.regions), "answer": h.answer}
                   for h in body.history]
        conv = await asyncio.wrap_future(
            host.conversations.create(client, body.engine, body.image, settings, history))
        return conv.describe()

    @r.get("/conversations/{conversation}", response_model=ConversationStatus)
    async def status(request: Request, conversation: str = CONV_ID) -> dict[str, Any]:
        """The conversation's questions and answers so far."""
        return host_of(request).conversations.get(conversation).describe()

    @r.delete("/conversations/{conversation}", response_model=Cancelled)
    async def delete(request: Request, conversation: str = CONV_ID) -> dict[str, Any]:
        """Close the conversation (a running answer is cancelled)."""
        return {"cancelled": host_of(request).conversations.delete(conversation)}

    @r.post("/conversations/{conversation}/reset", response_model=ConversationStatus)
    async def reset(request: Request, conversation: str = CONV_ID) -> dict[str, Any]:
        """Forget the questions and answers (the image encoding is kept)."""
        convs = host_of(request).conversations
        conv = convs.get(conversation)
        convs.reset(conv)
        return conv.describe()

    @r.post("/conversations/{conversation}/cancel", response_model=Cancelled)
    async def cancel(request: Request, conversation: str = CONV_ID) -> dict[str, Any]:
        """Stop the answer being generated (its stream ends with a ``cancelled`` event)."""
        conv = host_of(request).conversations.get(conversation)
        running = conv.busy
        conv.cancel.set()
        return {"cancelled": running}

    @r.post("/conversations/{conversation}/ask", responses=STREAM_DOC,
            response_class=StreamingResponse)
    async def ask(request: Request, body: AskRequest, conversation: str = CONV_ID,
                  client: str = Depends(counted_client)) -> StreamingResponse:
        """Ask one question (``<region>`` marks refer to ``regions`` in order); the answer
        streams token by token and ends with the turn: text, grounded masks, provenance."""
        host = host_of(request)
        conv = host.conversations.get(conversation)
        gen = body.generation.model_dump(exclude_none=True) if body.generation else None
        check_tokens(host, (gen or {}).get("max_new_tokens"), "generation.max_new_tokens")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def on_token(delta: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, ("token", delta))

        fut = host.conversations.ask(conv, body.question, regions(host, body.regions), gen, on_token)
        fut.add_done_callback(lambda f: loop.call_soon_threadsafe(queue.put_nowait, ("done", f)))

        async def events():
            finished = False
            try:
                yield sse("start", {"conversation": conv.id})
                while True:
                    try:
                        kind, value = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                    except asyncio.TimeoutError:
                        yield b": ping\n\n"
                        continue
                    if kind == "token":
                        yield sse("token", {"text": value})
                        continue
                    finished = True
                    yield _final(value)
                    return
            finally:
                if not finished:  # the client went away: stop generating for nobody
                    conv.cancel.set()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return r


def _final(fut) -> bytes:
    if fut.cancelled():
        return sse("error", {"error": "shutting_down", "detail": "the server is shutting down",
                             "field": None})
    exc = fut.exception()
    if exc is None:
        return sse("turn", Turn(**convert.turn(fut.result())).model_dump())
    if isinstance(exc, CancelledError):
        return sse("cancelled", {"partial_text": getattr(exc, "partial_text", "")})
    if isinstance(exc, MedplibError):
        return sse("error", {"error": "invalid_prompt", "detail": str(exc), "field": None})
    log.error("answer failed", exc_info=exc)
    return sse("error", {"error": "internal", "detail": f"the answer failed ({type(exc).__name__}); "
                         "the server log has the details", "field": None})
