"""What a server instance serves and the limits it enforces (`create_app(config)` takes one)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

MiB = 2**20


@dataclass
class Limits:
    """Bounds on what clients may hold and ask (every one is a command-line option)."""

    max_request_bytes: int = 256 * MiB  # an HTTP body larger than this: 413
    client_memory_bytes: int = 2048 * MiB  # uploaded pixels one client may keep (LRU beyond)
    server_memory_bytes: int = 8192 * MiB  # ... all clients together
    session_ttl_s: float = 1800.0  # images, conversations and jobs idle this long are dropped
    segmentation_queue: int = 64  # waiting segmentation requests, all clients: beyond, 503
    client_inflight: int = 16  # requests one client may have waiting or running: beyond, 429
    max_answers: int = 8  # chat answers generating or waiting at once, all clients: beyond, 503
    client_conversations: int = 8  # open conversations per client (least recently used dropped)
    server_conversations: int = 64
    kv_cache_bytes: int = 16384 * MiB  # estimated KV-cache memory of all conversations
    max_new_tokens: int = 4096  # the most a client may ask one answer to generate
    retry_after_s: int = 1  # the Retry-After a 429/503 carries


@dataclass
class ServerConfig:
    """Engines to load, where to listen, the token, and the limits."""

    engines: tuple[str, ...] = ("litemedsam",)
    engine_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> create_engine kwargs
    host: str = "127.0.0.1"
    port: int = 8765
    token: str = ""
    tls_cert: str | None = None
    tls_key: str | None = None
    limits: Limits = field(default_factory=Limits)

    @staticmethod
    def new_token() -> str:
        return secrets.token_urlsafe(32)
