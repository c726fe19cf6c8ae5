"""Engine selection: build an engine from a small config dict (settings, CLI, batch specs).

``{"name": "litemedsam", "device": "auto"}`` is the embedded default. ``{"name": "medplib",
"checkpoint": ..., "clip": ..., "sam": ..., "device": ...}`` selects MedPLIB when its weights
are on disk. Imports are lazy so that asking for one engine never loads the other.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import MedplibError
from .base import Capability, SegmentationEngine

ENGINE_NAMES = ("litemedsam", "medplib")


def create_engine(config: dict[str, Any] | str | None = None) -> SegmentationEngine:
    cfg = {"name": config} if isinstance(config, str) else dict(config or {})
    name = str(cfg.pop("name", "litemedsam")).lower()
    device = cfg.pop("device", None)
    device = None if device in (None, "auto") else str(device)
    if name == "litemedsam":
        from .litemedsam import LiteMedSAMEngine

        return LiteMedSAMEngine(device=device, **cfg)
    if name == "medplib":
        from .medplib_engine import create_medplib_engine

        return create_medplib_engine(device=device, **cfg)
    raise MedplibError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINE_NAMES)}")


def propagation_function(engine: SegmentationEngine) -> Callable[..., np.ndarray] | None:
    """``fn(engine, volume, k, mask2d) -> 3D bool mask`` for engines that can propagate."""
    if not engine.supports(Capability.PROPAGATE):
        return None
    try:
        from .propagation import propagate_volume
    except ImportError:
        return None
    return propagate_volume
