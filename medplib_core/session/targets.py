"""The structure a grounded chat mask is of ("Segment the liver" → "liver"), so accepting it
goes into a label of that name rather than whichever label happens to be active.

The question names it ("segment (out) the X", "where is the X", "find/show/outline the X"), or
else the answer does ("The liver <SEG>."). Words that name no structure ("region", "area",
"image", …) give no target.
"""

from __future__ import annotations

import re

_VERBS = r"(?:segment(?:\s+out)?|where\s+is|where\s+are|find|show(?:\s+me)?|locate|outline|delineate|mark|highlight)"
_QUESTION = re.compile(
    rf"\b{_VERBS}\s+(?:the\s+|a\s+|an\s+|all\s+)?(?P<t>[a-z][a-z \-']{{1,40}}?)"
    r"(?=\s+(?:in|at|on|from|of|within|inside)\s+(?:this|the|that|<region>)\b|\s*[?.!,;]|\s*<region>|\s*$)",
    re.I)
_ANSWER = re.compile(r"(?P<t>[a-z][a-z \-']{1,40}?)\s*<SEG>", re.I)
_NO_TARGET = {"structure", "region", "area", "image", "object", "mask", "it", "this", "that", "something",
              "segmentation", "lesion area", "the image", "picture", "slice", "scan"}
_LEADING = re.compile(r"^(?:it\s+is\s+|this\s+is\s+|there\s+is\s+|here\s+is\s+|the\s+|a\s+|an\s+)+", re.I)
MAX_WORDS = 3


def _clean(text: str | None) -> str | None:
    if not text:
        return None
    t = _LEADING.sub("", " ".join(text.strip(" -'").split())).lower()
    words = t.split()
    if not words:
        return None
    t = " ".join(words[-MAX_WORDS:])
    return None if t in _NO_TARGET or not re.search(r"[a-z]{2}", t) else t


def grounding_target(question: str | None, answer: str | None = None) -> str | None:
    """The structure a question asks to segment, or the one its answer names before ``<SEG>``;
    None when neither names one."""
    for m in _QUESTION.finditer(question or ""):
        t = _clean(m.group("t"))
        if t:
            return t
    for m in _ANSWER.finditer(answer or ""):
        t = _clean(re.split(r"[.,;:!?]", m.group("t"))[-1])
        if t:
            return t
    return None
