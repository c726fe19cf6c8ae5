"""Embedding cache bounded in bytes, and background pre-encoding of slices.

Keys are content hashes: the displayed slice already has its window applied, so hashing its
pixels covers the window too; callers may add the window (or anything else) explicitly. The
engine id and the encoded region are part of every key.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Callable, Iterable

import numpy as np


def image_key(image: np.ndarray, engine_id: str = "", window: Any = None, region: Any = None) -> str:
    """A content hash of a displayed slice (shape, dtype, pixels), engine, window and region."""
    arr = np.ascontiguousarray(image)
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{engine_id}|{arr.shape}|{arr.dtype}|{window!r}|{region!r}".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


class EmbeddingCache:
    """Thread-safe LRU mapping keys to numpy embeddings, bounded by total bytes."""

    def __init__(self, max_bytes: int = 512 * 2**20):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            val = self._items.get(key)
            if val is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return val

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def put(self, key: str, value: np.ndarray) -> None:
        value = np.asarray(value)
        value.setflags(write=False)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            if value.nbytes > self.max_bytes:
                return
            self._items[key] = value
            self._bytes += value.nbytes
            while self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)


class PreEncoder:
    """Encodes given slices on one worker thread so later `encode` calls hit the cache.

    ``schedule`` returns at once; a new schedule replaces the pending queue (the user moved
    on). ``cancel`` stops before the next slice; an encoding already running finishes and is
    cached whole, so the cache never holds partial state.
    """

    def __init__(self, embed: Callable[[np.ndarray], Any], is_cached: Callable[[np.ndarray], bool]):
        self._embed = embed
        self._is_cached = is_cached
        self._cond = threading.Condition()
        self._queue: list[Callable[[], np.ndarray] | np.ndarray] = []
        self._cancel = threading.Event()
        self._busy = False
        self._closed = False
        self.encoded = 0
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._work, name="medplib-preencode", daemon=True)
        self._thread.start()

    def schedule(self, slices: Iterable[np.ndarray | Callable[[], np.ndarray]]) -> None:
        """Queue slices (arrays, or callables returning them, nearest first)."""
        with self._cond:
            self._queue = list(slices)
            self._cancel.clear()
            self._cond.notify_all()

    def cancel(self) -> None:
        """Drop everything queued; the worker stops before its next slice."""
        with self._cond:
            self._queue = []
            self._cancel.set()
            self._cond.notify_all()

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
        self._thread.join(timeout=5)

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                item = self._queue.pop(0)
                self._busy = True
            try:
                if not self._cancel.is_set():
                    image = item() if callable(item) else item
                    if not self._cancel.is_set() and not self._is_cached(image):
                        self._embed(image)
                        self.encoded += 1
            except Exception as exc:  # a bad slice must not kill the worker
                self.errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
