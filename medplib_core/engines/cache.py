"""Embedding cache bounded in bytes (background pre-encoding: `scheduling.PreEncoder`).

Keys are content hashes: the displayed slice already has its window applied, so hashing its
pixels covers the window too; callers may add the window (or anything else) explicitly. The
engine id and the encoded region are part of every key.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import numpy as np


def image_key(image: np.ndarray, engine_id: str = "", window: Any = None, region: Any = None) -> str:
    """A content hash of a displayed slice (shape, dtype, pixels), engine, window and region."""
    arr = np.ascontiguousarray(image)
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{engine_id}|{arr.shape}|{arr.dtype}|{window!r}|{region!r}".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def region_key(slice_key: str, region: Any) -> str:
    """The key of a region of the slice whose `image_key` is ``slice_key``."""
    return hashlib.blake2b(f"{slice_key}|region={region!r}".encode(), digest_size=20).hexdigest()


class EmbeddingCache:
    """Thread-safe LRU mapping keys to numpy embeddings, bounded by total bytes."""

    def __init__(self, max_bytes: int = 512 * 2**20):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str, count: bool = True) -> np.ndarray | None:
        """The value (now the most recently used), or None; ``count``: in ``hits`` / ``misses``."""
        with self._lock:
            val = self._items.get(key)
            if val is not None:
                self._items.move_to_end(key)
            if count:
                self.hits += val is not None
                self.misses += val is None
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
