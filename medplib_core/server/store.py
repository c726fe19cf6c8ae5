"""Uploaded pixels by content id, under a memory cap per client and for the whole server.

Slices and volumes are stored once however many clients send them; the bytes count against
the client that uploaded them first. Beyond a cap the least recently used items go (their
clients get a 404 "unknown image" and upload them again, which the client library does by
itself); items idle longer than the session lifetime are dropped by `expire`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .lanes import Busy


@dataclass
class _Item:
    kind: str
    value: Any
    nbytes: int
    owner: str
    used: float


class PixelStore:
    def __init__(self, client_cap: int, server_cap: int, ttl_s: float):
        self.client_cap, self.server_cap, self.ttl_s = client_cap, server_cap, ttl_s
        self._items: OrderedDict[tuple[str, str], _Item] = OrderedDict()  # LRU order
        self._per_client: dict[str, int] = {}
        self._total = 0
        self._lock = threading.Lock()
        self.uploads = 0
        self.evictions = 0

    def put(self, kind: str, key: str, value: Any, nbytes: int, client: str) -> bool:
        """Store an upload; False when it was already there. Raises `Busy` (413-like) when
        the item alone exceeds the per-client cap."""
        if nbytes > self.client_cap:
            raise Busy(413, f"{nbytes} bytes exceed the per-client memory cap of {self.client_cap}")
        with self._lock:
            k = (kind, key)
            if k in self._items:
                self._touch(k)
                return False
            self._items[k] = _Item(kind, value, nbytes, client, time.monotonic())
            self._per_client[client] = self._per_client.get(client, 0) + nbytes
            self._total += nbytes
            self.uploads += 1
            self._evict(client, protect=k)
            return True

    def get(self, kind: str, key: str) -> Any | None:
        with self._lock:
            k = (kind, key)
            if k not in self._items:
                return None
            return self._touch(k).value

    def has(self, kind: str, key: str) -> bool:
        return self.get(kind, key) is not None

    def _touch(self, k) -> _Item:
        item = self._items[k]
        item.used = time.monotonic()
        self._items.move_to_end(k)
        return item

    def _drop(self, k) -> None:
        item = self._items.pop(k)
        self._per_client[item.owner] -= item.nbytes
        if self._per_client[item.owner] <= 0:
            del self._per_client[item.owner]
        self._total -= item.nbytes

    def _evict(self, client: str, protect) -> None:
        for k in list(self._items):
            over_client = self._per_client.get(client, 0) > self.client_cap
            over_server = self._total > self.server_cap
            if not (over_client or over_server):
                break
            if k == protect:
                continue
            if over_server or self._items[k].owner == client:
                self._drop(k)
                self.evictions += 1

    def expire(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        with self._lock:
            old = [k for k, it in self._items.items() if now - it.used > self.ttl_s]
            for k in old:
                self._drop(k)
            return len(old)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"items": len(self._items), "bytes": self._total, "uploads": self.uploads,
                    "evictions": self.evictions, "clients": dict(self._per_client)}
