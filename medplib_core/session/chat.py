"""The chat transcript: conversations per slice as typed records, and their JSON (`Project.chat`).

One `Conversation` per displayed slice (``orientation``, ``index``; a 2D image has one). A
question keeps its `RegionRef`s; an answer keeps the ids of the `PromptRecord`s its ``<SEG>``
masks became. Answers that were stopped or failed stay in the transcript but are not part of
what the model is told on the next question (`Conversation.turns`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..text_enum import TextEnum
from .regions import RegionRef

CHAT_FORMAT = 1

SliceKey = tuple[str, int]  # (orientation, index) of a displayed slice


class Role(TextEnum):
    USER = "user"  # a question
    ASSISTANT = "assistant"  # an answer
    NOTE = "note"  # a hint shown in the transcript, never saved


class AnswerState(TextEnum):
    STREAMING = "streaming"
    DONE = "done"
    STOPPED = "stopped"
    FAILED = "failed"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class Message:
    """A question, an answer or a note."""

    role: Role
    text: str = ""
    regions: list[RegionRef] = field(default_factory=list)
    prompt_ids: list[int] = field(default_factory=list)  # grounded masks of an answer
    state: AnswerState = AnswerState.DONE
    info: dict[str, Any] = field(default_factory=dict)  # engine, device, timing of an answer
    time: str = field(default_factory=_now)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": str(self.role), "text": self.text, "state": str(self.state),
                             "time": self.time}
        if self.regions:
            d["regions"] = [r.to_json() for r in self.regions]
        if self.prompt_ids:
            d["prompt_ids"] = list(self.prompt_ids)
        if self.info:
            d["info"] = self.info
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Message":
        state = AnswerState(d.get("state", "done"))
        return cls(Role(d.get("role", "note")), str(d.get("text", "")),
                   [RegionRef.from_json(r) for r in d.get("regions", [])],
                   [int(i) for i in d.get("prompt_ids", [])],
                   AnswerState.STOPPED if state is AnswerState.STREAMING else state,  # saved mid-answer
                   dict(d.get("info", {})), str(d.get("time", "")))


@dataclass
class Conversation:
    """The messages about one slice."""

    orientation: str
    index: int
    messages: list[Message] = field(default_factory=list)

    @property
    def key(self) -> SliceKey:
        return (self.orientation, self.index)

    def turns(self) -> list[tuple[Message, Message]]:
        """(question, answer) pairs the model has seen: finished answers only."""
        out = []
        for q, a in zip(self.messages, self.messages[1:]):
            if q.role is Role.USER and a.role is Role.ASSISTANT and a.state is AnswerState.DONE:
                out.append((q, a))
        return out

    def questions(self) -> int:
        return sum(m.role is Role.USER for m in self.messages)

    def to_json(self) -> dict[str, Any]:
        return {"format": CHAT_FORMAT, "orientation": self.orientation, "index": self.index,
                "messages": [m.to_json() for m in self.messages if m.role is not Role.NOTE]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Conversation":
        return cls(str(d.get("orientation", "axial")), int(d.get("index", 0)),
                   [Message.from_json(m) for m in d.get("messages", [])])


class ChatBook:
    """All conversations of the open scan, keyed by slice."""

    def __init__(self) -> None:
        self.convs: dict[SliceKey, Conversation] = {}

    def get(self, key: SliceKey) -> Conversation:
        if key not in self.convs:
            self.convs[key] = Conversation(*key)
        return self.convs[key]

    def non_empty(self) -> list[Conversation]:
        return sorted((c for c in self.convs.values() if any(m.role is not Role.NOTE for m in c.messages)),
                      key=lambda c: (c.orientation, c.index))

    def to_json(self) -> list[dict[str, Any]]:
        """A fresh list of fresh dicts (safe to hand to a saving thread)."""
        return [c.to_json() for c in self.non_empty()]

    @classmethod
    def from_json(cls, items: list[dict[str, Any]] | None) -> "ChatBook":
        book = cls()
        for d in items or []:
            if isinstance(d, dict) and "messages" in d:
                c = Conversation.from_json(d)
                book.convs[c.key] = c
        return book
