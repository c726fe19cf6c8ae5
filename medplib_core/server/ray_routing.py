"""Session affinity for engine replicas: which replica a request of the engine API belongs to.

Images and volumes are named by their content id (the SHA-256 the client sends), so a request
that names one goes to the replica rendezvous hashing picks for that id: the same replica for
the upload, the encode and every prompt, whoever sends them, with no shared state. Conversations
and propagation jobs are named by ids their replica makes up; the router learns them from the
reply that created them (`Affinity.learn`) and, when it does not know one (it restarted), asks
the replicas (`Affinity.candidates`). Requests that name nothing (health, info) go round-robin.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections import OrderedDict
from typing import Any

_CONTENT = re.compile(r"^/v1/(?:images|volumes)/([^/]+)$|^/v1/engines/[^/]+/cached/([^/]+)$")
_LEARNED = re.compile(r"^/v1/(conversations|jobs)/([^/]+)(?:/[a-z]+)?$")
REMEMBERED = 100_000  # conversation and job ids kept (least recently used forgotten first)


def rendezvous(key: str, replicas: int) -> int:
    """The replica (0..replicas-1) of ``key``: highest hash of (replica, key) wins."""
    return max(range(replicas), key=lambda i: hashlib.sha256(f"{i}|{key}".encode()).digest())


def body_json(body: bytes, content_type: str) -> dict[str, Any] | None:
    if not body or "json" not in content_type.lower():
        return None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None  # the replica answers the malformed body with its own error
    return data if isinstance(data, dict) else None


class Affinity:
    """Route requests of the engine API to ``replicas`` engine replicas."""

    def __init__(self, replicas: int):
        self.replicas = replicas
        self._next = itertools.cycle(range(replicas))
        self._ids: OrderedDict[str, int] = OrderedDict()

    def content_key(self, method: str, path: str, data: dict[str, Any] | None) -> str | None:
        """The content id a request names (path or body), if any."""
        m = _CONTENT.match(path)
        if m:
            return m.group(1) or m.group(2)
        if data is None:
            return None
        if method == "POST" and path in ("/v1/images", "/v1/volumes"):
            ident = data.get("id")
        else:
            ident = data.get("image", data.get("volume"))
        return ident if isinstance(ident, str) else None

    def learned_key(self, path: str) -> str | None:
        m = _LEARNED.match(path)
        return f"{m.group(1)}/{m.group(2)}" if m else None

    def route(self, method: str, path: str, data: dict[str, Any] | None) -> tuple[int | None, str | None]:
        """(replica, learned id): the replica to ask, or None with the learned id when unknown."""
        key = self.content_key(method, path, data)
        if key is not None:
            return rendezvous(key, self.replicas), None
        learned = self.learned_key(path)
        if learned is not None:
            replica = self._ids.get(learned)
            if replica is not None:
                self._ids.move_to_end(learned)
            return replica, learned
        return next(self._next), None

    def candidates(self, learned: str) -> list[int]:
        """Replicas to try, in order, for an id nobody remembers."""
        return list(range(self.replicas))

    def learn(self, path: str, replica: int, status: int, reply: bytes) -> None:
        """Remember the conversation or job a reply created (or forget one that was deleted)."""
        kind = {"/v1/conversations": "conversations"}.get(path)
        if kind is None and re.match(r"^/v1/engines/[^/]+/propagate$", path):
            kind = "jobs"
        if kind is None or status >= 300:
            return
        try:
            data = json.loads(reply)
        except (ValueError, UnicodeDecodeError):
            return
        ident = data.get("conversation") if kind == "conversations" else data.get("job")
        if isinstance(ident, str):
            self.remember(f"{kind}/{ident}", replica)

    def remember(self, learned: str, replica: int) -> None:
        self._ids[learned] = replica
        self._ids.move_to_end(learned)
        while len(self._ids) > REMEMBERED:
            self._ids.popitem(last=False)

    def split(self, images: list[Any]) -> dict[int, list[Any]]:
        """A preencode list, divided by the replica of each image."""
        out: dict[int, list[Any]] = {}
        for ident in images:
            out.setdefault(rendezvous(str(ident), self.replicas), []).append(ident)
        return out
