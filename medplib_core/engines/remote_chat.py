"""`RemoteChatSession`: `medplib.chat.ChatSession`'s interface, answered by an engine server.

    chat = RemoteEngine(url, engine="medplib").encode(image).chat()
    turn = chat.ask("Can you describe the area <region>?", regions=[(120, 88)],
                    on_token=print_delta, cancel=stop_requested)
    turn.text, turn.masks, turn.provenance

The server keeps one `ChatSession` per conversation, so follow-up questions reuse its KV
cache. ``on_token`` and ``cancel`` are called on the thread that called `ask` (``cancel`` at
least four times a second, also while nothing streams). If the connection drops mid-answer,
`ask` raises `EngineConnectionError` ("engine connection lost"); the next `ask` reconnects
and, if the server lost the conversation, rebuilds it from the turns this client holds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from medplib_core.errors import CancelledError, MedplibError, PromptError
from medplib_core.server import wire
from medplib_core.medplib.turn import ChatTurn  # noqa: F401 (remote_chat.ChatTurn)

from .remote_http import EngineConnectionError, EngineServerError, UnknownOnServer



@dataclass
class RemoteGeneration:
    """`GenerationSettings` options a server takes; None leaves the server's default."""

    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    forced_answer: str | None = None
    ignore_eos: bool | None = None
    seg_fallback: bool | None = None
    stop_strings: tuple[str, ...] | None = None


@dataclass
class RemoteChatSettings:
    """`ChatSettings` options a server takes (the default settings of a `RemoteChatSession`)."""

    generation: RemoteGeneration = field(default_factory=RemoteGeneration)
    crop_mode: str | None = None
    threshold: float | None = None
    drop_regions: bool | None = None
    region_max_points: int | None = None
    region_seed: int | None = None


GENERATION_FIELDS = tuple(f.name for f in dataclasses.fields(RemoteGeneration))
SETTINGS_FIELDS = GENERATION_FIELDS + tuple(f.name for f in dataclasses.fields(RemoteChatSettings)
                                            if f.name != "generation")


def _fields(obj: Any, names: Sequence[str]) -> dict[str, Any]:
    """Settings as a dict: a mapping, or a `ChatSettings`/`GenerationSettings`-like object."""
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        src = dict(obj)
    else:
        src = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else vars(obj)
        gen = src.pop("generation", None)
        if gen is not None:
            src = {**_fields(gen, GENERATION_FIELDS), **src}
    return {k: src[k] for k in names if src.get(k) is not None}


def region_body(obj: Any) -> dict[str, Any]:
    """A region (a `Region`, a bool mask, a point, a box, a polygon) as the server's RegionBody."""
    kind = data = None
    if hasattr(obj, "kind") and hasattr(obj, "data"):
        kind, data = obj.kind, obj.data
    elif isinstance(obj, Mapping) and "kind" in obj:
        kind, data = obj["kind"], obj.get("data")
    elif isinstance(obj, np.ndarray) and obj.ndim == 2 and obj.dtype == bool:
        kind, data = "mask", obj
    else:
        arr = np.asarray(obj, dtype=float)
        kind = {(2,): "point", (4,): "box"}.get(arr.shape)
        if kind is None and arr.ndim == 2 and arr.shape[1] == 2:
            kind = "polygon"
        if kind is None:
            raise PromptError(f"cannot interpret {type(obj).__name__} of shape {arr.shape} as a region")
        data = arr
    if kind == "mask":
        return {"kind": "mask", "mask": wire.mask_payload(np.asarray(data, bool))}
    if kind not in ("point", "points", "box", "polygon"):
        raise PromptError(f"unknown region kind {kind!r}")
    return {"kind": kind, kind: np.asarray(data, dtype=float).tolist()}


class RemoteChatSession:
    """A conversation about one slice, held by the server."""

    def __init__(self, engine, image_id: str, image: np.ndarray, settings: Any = None):
        self.engine = engine
        self.image_id, self.image = image_id, image
        self.settings = settings if settings is not None else RemoteChatSettings()
        self.turns: list[ChatTurn] = []
        self._history: list[dict[str, Any]] = []
        self._cid: str | None = None

    @property
    def conn(self):
        return self.engine.conn

    def _open(self) -> str:
        if self._cid is None:
            body = {"image": self.image_id, "engine": self.engine.key,
                    "settings": _fields(self.settings, SETTINGS_FIELDS) or None, "history": self._history}
            out = self.engine.on_image(self.image_id, self.image,
                                       lambda: self.conn.request("POST", "/v1/conversations", body))
            self._cid = out["conversation"]
        return self._cid

    def ask(self, text: str, regions: Sequence[Any] | None = None,
            on_token: Callable[[str], None] | None = None, cancel: Callable[[], bool] | None = None,
            generation: Any = None) -> ChatTurn:
        """Ask one question; stream the answer through ``on_token``; return the turn.
        Raises `CancelledError` (with ``partial_text``) when ``cancel()`` returned True."""
        regs = [region_body(r) for r in (regions or [])]
        body = {"question": text, "regions": regs,
                "generation": _fields(generation, GENERATION_FIELDS) or None}
        for attempt in (0, 1):
            cid = self._open()
            try:
                turn = self._stream(cid, body, on_token, cancel)
            except UnknownOnServer as exc:
                if attempt or exc.kind != "conversation":
                    raise
                self._cid = None  # the server lost it (restart, expiry): rebuild it from history
                continue
            except EngineConnectionError as exc:
                self._cid = None  # the next question reconnects and rebuilds the conversation
                raise EngineConnectionError(str(exc).replace(
                    "engine connection lost:", "engine connection lost while MedPLIB was answering:", 1)) from exc
            self.turns.append(turn)
            self._history.append({"question": text, "regions": regs, "answer": turn.text})
            return turn
        raise AssertionError("unreachable")

    def _stream(self, cid: str, body: dict, on_token, cancel) -> ChatTurn:
        asked_to_stop = False
        for event, data in self.conn.stream(f"/v1/conversations/{cid}/ask", body):
            if event == "token" and on_token is not None:
                on_token(data["text"])
            elif event == "turn":
                masks = [wire.mask_from_payload(m, "masks") for m in data["masks"]]
                prov = data["provenance"]
                if self.engine.mark_server:
                    prov = dict(prov, server=self.conn.url, conversation=cid)
                return ChatTurn(data["question"], data["text"], masks, list(data["scores"]), prov,
                                data["stop_reason"])
            elif event == "cancelled":
                err = CancelledError("the answer was cancelled")
                err.partial_text = data.get("partial_text", "")  # type: ignore[attr-defined]
                raise err
            elif event == "error":
                if data.get("error") == "invalid_prompt":
                    raise PromptError(data.get("detail", ""))
                raise EngineServerError(f"the engine server failed to answer: {data.get('detail')}")
            if cancel is not None and not asked_to_stop and cancel():
                self.conn.request("POST", f"/v1/conversations/{cid}/cancel")
                asked_to_stop = True
        raise EngineConnectionError(f"engine connection lost: the answer stream ended early ({self.conn.url})")

    def reset(self) -> None:
        """Forget the conversation (the server keeps the image encoding)."""
        self.turns, self._history = [], []
        if self._cid is not None:
            try:
                self.conn.request("POST", f"/v1/conversations/{self._cid}/reset")
            except UnknownOnServer:
                self._cid = None

    def with_settings(self, **changes) -> "RemoteChatSession":
        settings = dataclasses.replace(self.settings, **changes) if dataclasses.is_dataclass(self.settings) \
            else {**_fields(self.settings, SETTINGS_FIELDS), **changes}
        return RemoteChatSession(self.engine, self.image_id, self.image, settings)

    def close(self) -> None:
        if self._cid is not None:
            try:
                self.conn.request("DELETE", f"/v1/conversations/{self._cid}")
            except MedplibError:
                pass  # the server is gone or forgot it: nothing to close
            self._cid = None
