"""The engine interface shared by LiteMedSAM, MedPLIB and remote engines.

Like segment-anything's ``set_image``/``predict`` split, the expensive work (encoding one
image) happens once in `SegmentationEngine.encode`, which returns an `EngineSession`; the
session then answers many cheap prompts with `EngineSession.predict`.

Images handed to engines are slices *as the user sees them*: the display window is already
applied, as ``uint8`` arrays of shape ``(H, W)`` or ``(H, W, 3)``. Coordinates are pixel
coordinates of that slice: ``x`` is the column, ``y`` the row. Masks come back in the same grid.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Iterable

import numpy as np


@dataclass
class Prompt:
    """What the user drew (or typed) on one slice."""

    points: list[tuple[float, float]] = field(default_factory=list)  # (x, y)
    point_labels: list[int] = field(default_factory=list)  # 1 positive, 0 negative
    box: tuple[float, float, float, float] | None = None  # (x0, y0, x1, y1)
    polygon: list[tuple[float, float]] | None = None  # free-form outline, (x, y) vertices
    region: np.ndarray | None = None  # free-form painted region, bool (H, W)
    mask_input: np.ndarray | None = None  # current mask to refine, bool (H, W)
    text: str | None = None  # grounding target or question (MedPLIB)

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly record of the prompt, for provenance."""
        out: dict[str, Any] = {}
        if self.points:
            out["points"] = [[float(x), float(y)] for x, y in self.points]
            out["point_labels"] = [int(v) for v in self.point_labels]
        if self.box is not None:
            out["box"] = [float(v) for v in self.box]
        if self.polygon is not None:
            out["polygon"] = [[float(x), float(y)] for x, y in self.polygon]
        if self.region is not None:
            out["region_pixels"] = int(np.count_nonzero(self.region))
        if self.mask_input is not None:
            out["mask_input_pixels"] = int(np.count_nonzero(self.mask_input))
        if self.text:
            out["text"] = self.text
        return out

    def is_empty(self) -> bool:
        return (
            not self.points
            and self.box is None
            and self.polygon is None
            and self.region is None
            and not self.text
        )


@dataclass
class SegResult:
    """A mask in the slice's pixel grid with a quality score and where it came from."""

    mask: np.ndarray  # bool (H, W)
    score: float
    provenance: dict[str, Any]
    reason: str | None = None  # why the mask is empty, when it is

    @property
    def empty(self) -> bool:
        return not bool(self.mask.any())


@dataclass
class EngineInfo:
    name: str
    version: str
    weights: str  # path or identifier
    weights_sha256: str
    device: str

    def to_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


class Capability(str, Enum):
    """Optional features an engine declares, so callers ask instead of probing."""

    PREENCODE = "preencode"  # `preencode` / `cancel_preencode` / `wait_idle` do real work
    CACHE_QUERY = "cache_query"  # `is_cached` answers True/False (otherwise None: unknown)
    PROPAGATE = "propagate"  # fit for 3D propagation (`medplib_core.engines.propagation`)
    TEXT = "text"  # understands `Prompt.text` (grounding a named target)
    CHAT = "chat"  # its sessions hold a conversation about the image (MedPLIB)


class EngineSession(ABC):
    """One encoded image; answers prompts cheaply."""

    image_shape: tuple[int, int]

    @abstractmethod
    def predict(self, prompt: Prompt) -> SegResult:
        """Decode one prompt into a mask on this image."""

    def predict_views(self, prompt: Prompt) -> list[SegResult]:
        """The prompt decoded at each scale the engine can look at it, its own choice first
        (an engine that zooms into small targets adds the whole slice); by default just one."""
        return [self.predict(prompt)]


class SegmentationEngine(ABC):
    """An interactive segmentation model."""

    @property
    @abstractmethod
    def info(self) -> EngineInfo:
        """Name, version, weights checksum and device, for provenance and the status bar."""

    @abstractmethod
    def encode(self, image: np.ndarray) -> EngineSession:
        """Encode a displayed slice (uint8, (H, W) or (H, W, 3)) into a session."""

    def segment(self, image: np.ndarray, prompt: Prompt) -> SegResult:
        """Encode and decode in one call (no caching); convenient for scripts."""
        return self.encode(image).predict(prompt)

    # ----- optional capabilities: no-ops unless the engine declares them --------------------
    capabilities: frozenset[Capability] = frozenset()

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def preencode(self, images: Iterable[np.ndarray | Callable[[], np.ndarray]]) -> None:
        """Encode ``images`` (arrays, or callables returning them; nearest first) in the
        background, replacing whatever was queued before; returns at once."""

    def cancel_preencode(self) -> None:
        """Drop queued background encodings (an encoding already running finishes)."""

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until background encoding is done; True when idle (scripts, benchmarks)."""
        return True

    def is_cached(self, image: np.ndarray) -> bool | None:
        """Whether a prompt on ``image`` will find its encoding ready; None when unknown."""
        return None

    def close(self) -> None:
        """Stop background work and free what the engine holds (idempotent)."""


def provenance(info: EngineInfo, prompt: Prompt, started: float, **extra: Any) -> dict[str, Any]:
    """The provenance record attached to every `SegResult`."""
    rec = {
        "engine": info.name,
        "engine_version": info.version,
        "weights": info.weights,
        "weights_sha256": info.weights_sha256,
        "device": info.device,
        "prompt": prompt.describe(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "latency_ms": round((time.perf_counter() - started) * 1000.0, 2),
    }
    rec.update(extra)
    return rec


ProgressFn = Callable[[int, int], None]  # (done, total)
CancelFn = Callable[[], bool]  # returns True when the caller wants to stop
