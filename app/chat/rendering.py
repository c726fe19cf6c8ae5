"""The chat transcript (the core's `medplib_core.session.chat`) as rich text for the dock.

Questions show each ``<region>`` as a numbered chip; answers show each ``<SEG>`` as a link to
its mask (``mask:ID``) with what became of it; stopped and failed answers say so.
"""

from __future__ import annotations

import html
import re
from typing import Any

from medplib_core.annotation import PromptStatus
from medplib_core.session import AnswerState, Conversation, Message, RegionRef, Role

REGION_RE = re.compile(r"<region>(?:.*?</region>)?", re.S)
SEG_RE = re.compile(r"\s*<SEG>(?:\s+(?=[.,;:!?]))?")  # the chip keeps punctuation close

USER_BG, ANSWER_BG, NOTE_FG = "#e3ecfb", "#f1f1ee", "#6b6b6b"
REGION_STYLE = "background-color:#1f5fbf; color:#ffffff; font-weight:600;"
MASK_STYLE = "background-color:#ffd83a; color:#202020; font-weight:600; text-decoration:none;"


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
    if m.state is AnswerState.STOPPED:
        body += f' <i style="color:{NOTE_FG}">(stopped — not part of the conversation)</i>'
    elif m.state is AnswerState.FAILED:
        body += f' <i style="color:#b00020">(failed: {html.escape(m.info.get("error", ""))})</i>'
    elif m.info.get("empty_mask"):
        body += f' <i style="color:{NOTE_FG}">(the mask was empty)</i>'
    return body


def _mask_link(pid: int, records: dict[int, Any], current: int | None) -> str:
    rec = records.get(pid)
    status = ""
    if rec is not None:
        status = "proposal — Enter accepts" if pid == current else {
            PromptStatus.PROPOSED: "not accepted — click to show", PromptStatus.ACCEPTED: "accepted",
            PromptStatus.DISCARDED: "discarded — click to show again"}.get(rec.status, str(rec.status))
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
        if m.role is Role.USER:
            out.append(_bubble("You", question_html(m), USER_BG))
        elif m.role is Role.ASSISTANT:
            meta = ""
            if m.info.get("seconds") is not None:
                meta = f"· {m.info['seconds']:.1f} s"
            body = html.escape(m.text) if m.state is AnswerState.STREAMING else answer_html(m, records, current)
            out.append(_bubble("MedPLIB", body, ANSWER_BG, meta))
        else:
            out.append(f'<p style="color:{NOTE_FG}; margin:4px;"><i>{html.escape(m.text)}</i></p>')
    return "".join(out)

