"""Interactive segmentation engines: one interface (`base`), LiteMedSAM as the embedded default.

Importing this package is cheap; the model code (torch) loads only when an engine is created.
"""

from __future__ import annotations

from .. import threads as _threads  # noqa: F401  (before PyTorch loads: its OpenMP wait policy)
from .base import EngineInfo, EngineSession, Prompt, SegmentationEngine, SegResult, provenance

__all__ = [
    "EngineInfo", "EngineSession", "Prompt", "SegmentationEngine", "SegResult", "provenance",
    "LiteMedSAMEngine", "propagate", "propagate_volume",
]


def __getattr__(name: str):
    if name == "LiteMedSAMEngine":
        from .litemedsam import LiteMedSAMEngine

        return LiteMedSAMEngine
    if name in ("propagate", "propagate_volume"):
        from . import propagation

        return getattr(propagation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
