"""Foreground work first: background pre-encoding yields to prompts and on-demand encodes.

A prompt's few tens of milliseconds must not share two cores with a background encoding of a
neighbouring slice (which takes several times longer). `ForegroundGate` counts foreground work
(``with gate.active(): ...``); while any is running, and for a short grace period after (the
next click usually follows), `PreEncoder` starts nothing, and entering the gate interrupts the
background encoding already running (the engine passes an ``interrupt`` callback). An
interrupted slice goes back to the front of the queue and is encoded again later, whole: the
cache never holds partial results.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

import numpy as np

GRACE_S = 0.3  # background work waits this long after the last foreground work ended


class EncodeInterrupted(Exception):
    """A background encoding was stopped to make room for foreground work."""


class ForegroundGate:
    """Counts running foreground work; background work waits until it is clear."""

    def __init__(self, grace_s: float = GRACE_S):
        self.grace_s = grace_s
        self._cond = threading.Condition()
        self._active = 0
        self._last_end = 0.0
        self.on_enter: Callable[[Any], None] | None = None  # called with ``keep`` on every entry

    @contextmanager
    def active(self, keep: Any = None) -> Iterator[None]:
        """Foreground work; ``keep`` is passed to ``on_enter`` (e.g. the key it will wait for)."""
        with self._cond:
            self._active += 1
        try:
            if self.on_enter is not None:
                self.on_enter(keep)
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._last_end = time.monotonic()
                self._cond.notify_all()

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._active > 0

    def wait_clear(self, stop: Callable[[], bool] = lambda: False, timeout: float | None = None) -> bool:
        """Block until no foreground work ran for ``grace_s``; False on ``stop()`` or timeout."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if stop():
                    return False
                now = time.monotonic()
                if self._active == 0 and now - self._last_end >= self.grace_s:
                    return True
                left = self.grace_s - (now - self._last_end) if self._active == 0 else 0.1
                if end is not None:
                    if now >= end:
                        return False
                    left = min(left, end - now)
                self._cond.wait(max(left, 0.005))

    def poke(self) -> None:
        """Wake waiters (after a stop condition changed)."""
        with self._cond:
            self._cond.notify_all()


class PreEncoder:
    """Encodes given slices on one worker thread so later `encode` calls hit the cache.

    ``schedule`` returns at once; a new schedule replaces the pending queue (the user moved
    on). ``cancel`` stops before the next slice; an encoding already running finishes and is
    cached whole, so the cache never holds partial state. With a ``gate``, each slice waits
    until foreground work is clear; an encoding that raises `EncodeInterrupted` is queued
    again at the front (unless the queue was replaced meanwhile).
    """

    def __init__(self, embed: Callable[[np.ndarray], Any], is_cached: Callable[[np.ndarray], bool],
                 gate: ForegroundGate | None = None):
        self._embed = embed
        self._is_cached = is_cached
        self._gate = gate
        self._cond = threading.Condition()
        self._queue: list[Callable[[], np.ndarray] | np.ndarray] = []
        self._generation = 0
        self._cancel = threading.Event()
        self._busy = False
        self._closed = False
        self.encoded = 0
        self.interrupted = 0
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._work, name="medplib-preencode", daemon=True)
        self._thread.start()

    def schedule(self, slices: Iterable[np.ndarray | Callable[[], np.ndarray]]) -> None:
        """Queue slices (arrays, or callables returning them, nearest first)."""
        with self._cond:
            self._queue = list(slices)
            self._generation += 1
            self._cancel.clear()
            self._cond.notify_all()

    def cancel(self) -> None:
        """Drop everything queued; the worker stops before its next slice."""
        with self._cond:
            self._queue = []
            self._generation += 1
            self._cancel.set()
            self._cond.notify_all()
        if self._gate is not None:
            self._gate.poke()

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._busy or bool(self._queue)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the queue is drained (for tests and scripts); True when idle."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._busy and not self._queue, timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._queue = []
            self._cancel.set()
            self._cond.notify_all()
        if self._gate is not None:
            self._gate.poke()
        self._thread.join(timeout=5)

    def _stopped(self) -> bool:
        return self._closed or self._cancel.is_set()

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                self._busy = True
            try:
                if self._gate is not None:
                    self._gate.wait_clear(self._stopped)
                with self._cond:
                    if not self._queue or self._stopped():
                        continue
                    item, generation = self._queue.pop(0), self._generation
                self._run(item, generation)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _run(self, item, generation: int) -> None:
        try:
            image = item() if callable(item) else item
            if self._stopped() or self._is_cached(image):
                return
            self._embed(image)
            self.encoded += 1
        except EncodeInterrupted:
            self.interrupted += 1
            with self._cond:
                if generation == self._generation and not self._stopped():
                    self._queue.insert(0, image)
        except Exception as exc:  # a bad slice must not kill the worker
            self.errors.append(f"{type(exc).__name__}: {exc}")
