"""Call an ASGI application in-process: one request in, its response out as it streams.

A Ray Serve replica holds the engine server's app (`create_app`) and answers the router's
calls through `AsgiBridge`: the request is one buffered body, the response comes back as a
``{"status", "headers"}`` head followed by body chunks, so server-sent events stream through.
When the caller stops reading (the client went away), the app sees ``http.disconnect``. The
app's lifespan (its background reaper, its shutdown) runs with `start` and `stop`.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

Headers = list[tuple[str, str]]


class AsgiBridge:
    def __init__(self, app):
        self.app = app
        self._lifespan: asyncio.Task | None = None
        self._events: asyncio.Queue | None = None
        self._started = asyncio.Event()
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        """Run the app's lifespan startup (once)."""
        if self._lifespan is not None:
            await self._started.wait()
            return
        self._events = asyncio.Queue()
        self._events.put_nowait({"type": "lifespan.startup"})

        async def send(msg: dict[str, Any]) -> None:
            if msg["type"].startswith("lifespan.startup"):
                self._started.set()
            elif msg["type"].startswith("lifespan.shutdown"):
                self._stopped.set()

        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._lifespan = asyncio.create_task(self.app(scope, self._events.get, send))
        await self._started.wait()

    async def stop(self) -> None:
        if self._lifespan is None or self._lifespan.done():
            return
        self._events.put_nowait({"type": "lifespan.shutdown"})
        await asyncio.wait_for(self._stopped.wait(), timeout=30)

    async def request(self, method: str, path: str, query: bytes, headers: Headers, body: bytes,
                      client: tuple[str, int] = ("127.0.0.1", 0)) -> AsyncIterator[Any]:
        """Yield the response head ``{"status": int, "headers": [(name, value)]}``, then body chunks."""
        await self.start()
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
                 "method": method, "scheme": "http", "path": path, "raw_path": path.encode("latin-1"),
                 "query_string": query, "root_path": "", "client": client, "server": ("127.0.0.1", 80),
                 "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]}
        out: asyncio.Queue = asyncio.Queue()
        gone = asyncio.Event()
        sent_body = False

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        task = asyncio.create_task(self.app(scope, receive, out.put))
        try:
            while True:
                getter = asyncio.ensure_future(out.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    task.result()  # the app raised (or ended without a response): let it show
                    raise RuntimeError("the application ended without completing its response")
                msg = getter.result()
                if msg["type"] == "http.response.start":
                    yield {"status": int(msg["status"]),
                           "headers": [(k.decode("latin-1"), v.decode("latin-1")) for k, v in msg.get("headers", [])]}
                elif msg["type"] == "http.response.body":
                    if msg.get("body"):
                        yield bytes(msg["body"])
                    if not msg.get("more_body", False):
                        break
        finally:
            gone.set()
            if not task.done():
                try:
                    await asyncio.wait_for(asyncio.shield(task), timeout=5)
                except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - the app's own end, or a stuck one
                    task.cancel()
