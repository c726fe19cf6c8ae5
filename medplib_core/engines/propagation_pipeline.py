"""Encoding ahead for 3D propagation: the slices it needs, in the order it needs them.

Propagation walks both directions from the seed at once (one slice up, one slice down, in
turn), so while one direction decodes its slice the other direction's next slice is being
encoded on a background thread, and every slice encoded that way is one a live direction is
about to use. Only when a single direction is left is the slice after the next one encoded
speculatively (at most one wasted encoding, where that direction ends). Engines that do not
declare background encoding (`Capability.PREENCODE`) are encoded on the calling thread.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Sequence

import numpy as np

from .base import Capability, EngineSession, SegmentationEngine


class SliceEncoder:
    """``request(k)`` starts encoding slice ``k``; ``take(k)`` returns ``(image, session)``."""

    def __init__(self, engine: SegmentationEngine, slices: Sequence[np.ndarray] | np.ndarray,
                 background: bool | None = None):
        self.engine, self.slices = engine, slices
        if background is None:
            background = engine.supports(Capability.PREENCODE)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="medplib-propagate") if background else None
        self._pending: dict[int, Future] = {}
        self.encoded: list[int] = []  # slice indices in the order their encoding started
        self.used: list[int] = []  # slice indices in the order they were taken
        self.encode_s = 0.0  # time spent encoding (any thread)
        self.wait_s = 0.0  # time the caller waited for an encoding (the rest overlapped its work)

    @property
    def background(self) -> bool:
        return self._pool is not None

    def request(self, k: int) -> None:
        """Encode slice ``k`` in the background (no-op when in-line, out of range or asked)."""
        if self._pool is None or k in self._pending or k in self.used or not 0 <= k < len(self.slices):
            return
        self._pending[k] = self._pool.submit(self._encode, k)

    def take(self, k: int) -> tuple[np.ndarray, EngineSession]:
        t = time.perf_counter()
        fut = self._pending.pop(k, None)
        out = fut.result() if fut is not None else self._encode(k)
        self.wait_s += time.perf_counter() - t
        self.used.append(k)
        return out

    def _encode(self, k: int) -> tuple[np.ndarray, EngineSession]:
        t = time.perf_counter()
        self.encoded.append(k)
        image = np.asarray(self.slices[k])
        session = self.engine.encode(image)
        self.encode_s += time.perf_counter() - t
        return image, session

    @property
    def wasted(self) -> list[int]:
        """Slices encoded that propagation never used."""
        return [k for k in self.encoded if k not in self.used]

    def close(self, wait: bool = True) -> None:
        """Drop queued encodings; with ``wait`` also let the one running finish first."""
        if self._pool is not None:
            for fut in self._pending.values():
                fut.cancel()
            self._pool.shutdown(wait=wait, cancel_futures=True)
