"""The Vicuna-v1 / LLaVA-v1 conversation template MedPLIB was trained with (spec §5.4, §8.4).

Rendered open prompt of the first turn::

    {system} USER: <im_start><image><im_end>\\n{question} ASSISTANT:

Finished assistant turns end with ``</s>``; the next user turn follows directly. The image
appears only in the first user turn. ``<region>`` in a question marks where a drawn region
goes; it is rewritten to ``<region></region>`` (the region vector is inserted between them).
The drop-region mode keeps the pair too: only the placeholder id between the two tokens is
removed (`MedplibTokenizer.encode_prompt` with ``region_placeholders=False``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SYSTEM_HUMAN = ("A chat between a curious human and an artificial intelligence assistant. "
                "The assistant gives helpful, detailed, and polite answers to the human's questions.")
# the batch evaluation script's 'v1' template (keep for reproducing the authors' eval logs)
SYSTEM_USER = ("A chat between a curious user and an artificial intelligence assistant. "
               "The assistant gives helpful, detailed, and polite answers to the user's questions.")
ROLES = ("USER", "ASSISTANT")
SEP, SEP2 = " ", "</s>"
IMAGE_PROMPT = "<im_start><image><im_end>"
REGION_PAIR = "<region></region>"

_REGION_RE = re.compile(r"<region>(?:.*?</region>)?", re.S)


def normalise_regions(question: str, n_regions: int) -> str:
    """Make the question carry exactly ``n_regions`` ``<region></region>`` pairs.

    ``<region>`` / ``<region>path</region>`` become empty pairs; missing pairs are appended at
    the end (the demo appends them before `` ASSISTANT:``); surplus marks without a drawn
    region are an error."""
    found = len(_REGION_RE.findall(question))
    if found > n_regions:
        raise ValueError(f"the question refers to {found} regions but {n_regions} were drawn")
    q = _REGION_RE.sub(REGION_PAIR, question)
    for _ in range(n_regions - found):
        q = q.rstrip() + " " + REGION_PAIR
    return q


def count_region_marks(question: str) -> int:
    """How many ``<region>`` marks (bare or ``<region>...</region>``) the question carries."""
    return len(_REGION_RE.findall(question))


@dataclass
class Conversation:
    """Messages as (role, text); ``None`` text renders an open ``ASSISTANT:`` turn."""

    system: str = SYSTEM_HUMAN
    messages: list[tuple[str, str | None]] = field(default_factory=list)

    def add_user(self, question: str, with_image: bool | None = None) -> None:
        if with_image is None:
            with_image = not any(r == ROLES[0] for r, _ in self.messages)
        text = f"{IMAGE_PROMPT}\n{question}" if with_image else question
        self.messages.append((ROLES[0], text))

    def add_assistant(self, answer: str | None) -> None:
        self.messages.append((ROLES[1], answer))

    def prompt(self) -> str:
        """The rendered conversation (TWO separator style)."""
        out = self.system + SEP
        seps = (SEP, SEP2)
        for i, (role, text) in enumerate(self.messages):
            if text is None:
                out += role + ":"
            else:
                out += role + ": " + text + seps[i % 2]
        return out

    def open_prompt(self) -> str:
        """The prompt with an open assistant turn (what the model continues)."""
        conv = Conversation(self.system, list(self.messages))
        if not conv.messages or conv.messages[-1] != (ROLES[1], None):
            conv.add_assistant(None)
        return conv.prompt()
