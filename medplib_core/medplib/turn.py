"""`ChatTurn`: one question and its answer, torch-free (the chat session and the remote client share it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class ChatTurn:
    """One question and its answer."""

    question: str
    text: str
    masks: list[np.ndarray]
    scores: list[float]
    provenance: dict[str, Any]
    stop_reason: str = "eos"

    @property
    def grounded(self) -> bool:
        return bool(self.masks)
