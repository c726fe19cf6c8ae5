"""The chat transcript: conversations per slice, their JSON form (`Project.chat`) and HTML.

One `Conversation` per displayed slice (``orientation``, ``index``; a 2D image has one). A
question keeps its `RegionRef`s; an answer keeps the ids of the `PromptRecord`s its ``<SEG>``
masks became. Answers that were stopped or failed stay visible but are not part of what the
model is told on the next question (`Conversation.turns`).
"""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass, field
from typing import Any

from .regions import RegionRef

REGION_RE = re.compile(r"<region>(?:.*?</region>)?", re.S)
SEG_RE = re.compile(r"\s*<SEG>(?:\s+(?=[.,;:!?]))?")  # the chip keeps punctuation close
CHAT_FORMAT = 1

USER_BG, ANSWER_BG, NOTE_FG = "#e3ecfb", "#f1f1ee", "#6b6b6b"
REGION_STYLE = "background-color:#1f5fbf; color:#ffffff; font-weight:600;"
MASK_STYLE = "background-color:#ffd83a; color:#202020; font-weight:600; text-decoration:none;"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class Message:
    """A question ("user"), an answer ("assistant") or a note ("note")."""

    role: str
    text: str = ""
    regions: list[RegionRef] = field(default_factory=list)
    prompt_ids: list[int] = field(default_factory=list)  # grounded masks of an answer
    state: str = "done"  # "streaming", "done", "stopped" or "failed"
    info: dict[str, Any] = field(default_factory=dict)  # engine, device, timing of an answer
    time: str = field(default_factory=_now)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "text": self.text, "state": self.state,
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
        state = str(d.get("state", "done"))
        return cls(str(d.get("role", "note")), str(d.get("text", "")),
                   [RegionRef.from_json(r) for r in d.get("regions", [])],
                   [int(i) for i in d.get("prompt_ids", [])],
                   "stopped" if state == "streaming" else state,  # saved mid-answer
                   dict(d.get("info", {})), str(d.get("time", "")))


@dataclass
class Conversation:
    """The messages about one slice."""

    orientation: str
    index: int
    messages: list[Message] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, int]:
        return (self.orientation, self.index)

    def turns(self) -> list[tuple[Message, Message]]:
        """(question, answer) pairs the model has seen: finished answers only."""
        out = []
        for q, a in zip(self.messages, self.messages[1:]):
            if q.role == "user" and a.role == "assistant" and a.state == "done":
                out.append((q, a))
        return out

    def to_json(self) -> dict[str, Any]:
        return {"format": CHAT_FORMAT, "orientation": self.orientation, "index": self.index,
                "messages": [m.to_json() for m in self.messages if m.role != "note"]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Conversation":
        return cls(str(d.get("orientation", "axial")), int(d.get("index", 0)),
                   [Message.from_json(m) for m in d.get("messages", [])])


class ChatBook:
    """All conversations of the open scan, keyed by slice."""

    def __init__(self) -> None:
        self.convs: dict[tuple[str, int], Conversation] = {}

    def get(self, key: tuple[str, int]) -> Conversation:
        if key not in self.convs:
            self.convs[key] = Conversation(*key)
        return self.convs[key]

    def non_empty(self) -> list[Conversation]:
        return sorted((c for c in self.convs.values() if any(m.role != "note" for m in c.messages)),
                      key=lambda c: (c.orientation, c.index))

    def to_json(self) -> list[dict[str, Any]]:
        """A fresh list of fresh dicts (safe to hand to a saving thread)."""
        return [c.to_json() for c in self.non_empty()]

    @classmethod
    def from_json(cls, items: list[dict[str, Any]]) -> "ChatBook":
        book = cls()
        for d in items or []:
            if isinstance(d, dict) and "messages" in d:
                c = Conversation.from_json(d)
                book.convs[c.key] = c
        return book


# ----- rendering ------------------------------------------------------------------------------
def region_chip(n: int, ref: RegionRef) -> str:
    return f'<span style="{REGION_STYLE}">&nbsp;[region {n}: {html.escape(ref.text())}]&nbsp;</span>'


def question_html(m: Message) -> str:
    """The question with each ``<region>`` replaced by its numbered reference."""
    parts, n = [], 0
    pos = 0
    for match in REGION_RE.finditer(m.text):
        parts.append(html.escape(m.text[pos:match.start()]))
        if n < len(m.regions):
            parts.append(region_chip(n + 1, m.regions[n]))
        else:
            parts.append(html.escape(match.group(0)))
        n += 1
        pos = match.end()
    parts.append(html.escape(m.text[pos:]))
    for k in range(n, len(m.regions)):  # regions without a mark: the model appends them
        parts.append(" " + region_chip(k + 1, m.regions[k]))
    return "".join(parts).replace("\n", "<br>")


def answer_html(m: Message, records: dict[int, Any], current: int | None = None) -> str:
    """The answer with ``<SEG>`` shown as a link to its mask (and what became of it)."""
    text = m.text.strip()
    ids = list(m.prompt_ids)
    out, pos = [], 0
    for match in SEG_RE.finditer(text):
        out.append(html.escape(text[pos:match.start()]))
        out.append(" " + (_mask_link(ids.pop(0), records, current) if ids else
                          f'<span style="{MASK_STYLE}">&nbsp;[mask]&nbsp;</span>'))
        pos = match.end()
    out.append(html.escape(text[pos:]))
    for pid in ids:
        out.append(" " + _mask_link(pid, records, current))
    body = "".join(out).replace("\n", "<br>")
    if m.state == "stopped":
        body += f' <i style="color:{NOTE_FG}">(stopped — not part of the conversation)</i>'
    elif m.state == "failed":
        body += f' <i style="color:#b00020">(failed: {html.escape(m.info.get("error", ""))})</i>'
    elif m.info.get("empty_mask"):
        body += f' <i style="color:{NOTE_FG}">(the mask was empty)</i>'
    return body


def _mask_link(pid: int, records: dict[int, Any], current: int | None) -> str:
    rec = records.get(pid)
    status = ""
    if rec is not None:
        status = "proposal — Enter accepts" if pid == current else {
            "proposed": "not accepted — click to show", "accepted": "accepted",
            "discarded": "discarded — click to show again"}.get(rec.status, rec.status)
    label = f"mask #{pid}" + (f": {status}" if status else "")
    return f'<a href="mask:{pid}" style="{MASK_STYLE}">&nbsp;[{html.escape(label)}]&nbsp;</a>'


def _bubble(who: str, body: str, bg: str, meta: str = "") -> str:
    meta_html = f' <span style="color:{NOTE_FG}; font-weight:400;">{html.escape(meta)}</span>' if meta else ""
    return (f'<table width="100%" cellspacing="0" cellpadding="6" style="margin-top:4px; '
            f'margin-bottom:2px; background-color:{bg};"><tr><td style="color:#1d1d1d;">'
            f'<b>{who}</b>{meta_html}<br>{body}</td></tr></table>')


def text_html(text: str) -> str:
    """Hard-wrapped help text as paragraphs: lines are joined, but list items (``1.``) and
    lines after a sentence end start afresh."""
    paras = []
    for para in text.strip().split("\n\n"):
        out = ""
        for line in para.split("\n"):
            if out and (out.rstrip().endswith((".", ":", ")")) or re.match(r"\s*\d+\.", line)):
                out += "<br>"
            elif out:
                out += " "
            out += html.escape(line.strip())
        paras.append(f'<p style="color:#3c3c3c; margin:4px;">{out}</p>')
    return "".join(paras)


def render_html(conv: Conversation | None, records: dict[int, Any], empty_text: str = "",
                current: int | None = None) -> str:
    """The whole conversation as rich text for a QTextBrowser (the streaming answer last);
    ``current``: the id of the proposal on show."""
    if conv is None or not conv.messages:
        return text_html(empty_text)
    out = []
    for m in conv.messages:
        if m.role == "user":
            out.append(_bubble("You", question_html(m), USER_BG))
        elif m.role == "assistant":
            meta = ""
            if m.info.get("seconds") is not None:
                meta = f"· {m.info['seconds']:.1f} s"
            body = html.escape(m.text) if m.state == "streaming" else answer_html(m, records, current)
            out.append(_bubble("MedPLIB", body, ANSWER_BG, meta))
        else:
            out.append(f'<p style="color:{NOTE_FG}; margin:4px;"><i>{html.escape(m.text)}</i></p>')
    return "".join(out)

