"""What a prompt record is (`PromptKind`) and what became of it (`PromptStatus`).

Both are `TextEnum`s: a member equals its JSON value (``PromptStatus.ACCEPTED == "accepted"``)
and is written and printed as that string, so project files keep the values they always had.
"""

from __future__ import annotations

from ..text_enum import TextEnum


class PromptKind(TextEnum):
    """How a prompt record's mask was made."""

    BOX = "box"  # a drawn box
    LASSO = "lasso"  # a drawn outline
    CLICK = "click"  # a positive click
    REFINE = "refine"  # corrective clicks on a proposal
    SEGMENT = "segment"  # a prompt from a script or a batch row (box and/or points)
    TEXT = "text"  # a named target grounded by a text-capable engine (batch)
    PROPAGATE = "propagate"  # 3D propagation from a slice
    GROUNDING = "grounding"  # a <SEG> mask of a chat answer
    CHAT_REGION = "chat-region"  # a mask snapshot used as a chat question's <region>
    INTERPOLATE = "interpolate"  # slices filled between drawn ones (shape-based interpolation)

    @property
    def restates_drawing(self) -> bool:
        """True for kinds whose mask only restates what was drawn (box, outline, click)."""
        return self in (PromptKind.BOX, PromptKind.LASSO, PromptKind.CLICK)


class PromptStatus(TextEnum):
    """What became of a prompt record."""

    PROPOSED = "proposed"  # shown, waiting for accept or discard (or left behind)
    ACCEPTED = "accepted"  # written into a label
    DISCARDED = "discarded"
    REFERENCE = "reference"  # kept only as a chat region (never a proposal)
