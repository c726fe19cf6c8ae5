"""`medplib-studio serve --ray`: the engine server's app on Ray Serve, replicas behind one URL.

Each engine replica is a Serve deployment of one replica (``engine-0``, ``engine-1``, ...: one
per GPU, or N on CPUs) holding the app of `create_app` and its engines, answering through an
in-process ASGI bridge. One thin ``router`` deployment is the HTTP ingress: it reads a request,
picks the replica that holds its image, volume, conversation or job (`ray_routing.Affinity`)
and streams that replica's answer back, server-sent events included. The URL, the token and
the API are those of a single server; answers carry ``X-Medplib-Replica``. A replica that dies
is restarted by Serve; until then its requests get 503 with Retry-After (the client retries),
then 404 for what it held (the client uploads again).
"""

from __future__ import annotations

import time
from typing import Any, AsyncIterator

from ..errors import MedplibError
from .config import ServerConfig

REPLICA_HEADER = "X-Medplib-Replica"
APP_NAME = "medplib-engine"
_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}


class EngineReplica:
    """One engine server (engines loaded once) behind the router."""

    def __init__(self, config: ServerConfig, index: int):
        from .app import create_app
        from .asgi_bridge import AsgiBridge

        self.index = index
        self.bridge = AsgiBridge(create_app(config))

    async def handle(self, method: str, path: str, query: bytes, headers: list, body: bytes) -> AsyncIterator[Any]:
        async for item in self.bridge.request(method, path, query, headers, body):
            yield item

    async def __del__(self):
        await self.bridge.stop()


class Router:
    """The ingress: one URL, requests routed by what they name."""

    def __init__(self, engines: list, max_body: int):
        from .ray_routing import Affinity

        self.engines = engines
        self.affinity = Affinity(len(engines))
        self.max_body = max_body

    async def __call__(self, request):
        from starlette.responses import Response

        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_body:
                return _error(413, "too_large", f"the request body exceeds the server's limit of {self.max_body} bytes")
        method, path = request.method, request.url.path
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        query = request.url.query.encode("latin-1")
        from .ray_routing import body_json

        data = body_json(bytes(body), request.headers.get("content-type", ""))
        if method == "POST" and path.endswith("/preencode") and data and isinstance(data.get("images"), list):
            return await self._preencode(path, query, headers, data)
        replica, learned = self.affinity.route(method, path, data)
        if replica is None:
            replica = await self._find(learned, headers)
        try:
            head, stream = await self._open(replica, method, path, query, headers, bytes(body))
        except Exception as exc:  # noqa: BLE001 - a replica that died or restarts: the client retries
            return _error(503, "busy", f"engine replica {replica} is unavailable ({type(exc).__name__}); retry",
                          {"Retry-After": "1"})
        out_headers = {k: v for k, v in head["headers"] if k.lower() not in _HOP}
        out_headers[REPLICA_HEADER] = str(replica)
        if out_headers.get("content-type", "").startswith("text/event-stream"):
            from starlette.responses import StreamingResponse

            return StreamingResponse(stream, status_code=head["status"], headers=out_headers)
        reply = b"".join([chunk async for chunk in stream])
        self.affinity.learn(path, replica, head["status"], reply)
        return Response(reply, status_code=head["status"], headers=out_headers)

    async def _open(self, replica: int, method, path, query, headers, body):
        gen = self.engines[replica].options(stream=True).handle.remote(method, path, query, headers, body)
        head = await gen.__anext__()
        return head, gen

    async def _call(self, replica: int, method, path, query, headers, body) -> tuple[int, bytes]:
        head, stream = await self._open(replica, method, path, query, headers, body)
        return head["status"], b"".join([chunk async for chunk in stream])

    async def _find(self, learned: str, headers) -> int:
        """Ask the replicas which holds a conversation or job this router does not remember."""
        kind, ident = learned.split("/", 1)
        for replica in self.affinity.candidates(learned):
            try:
                status, _ = await self._call(replica, "GET", f"/v1/{kind}/{ident}", b"", headers, b"")
            except Exception:  # noqa: BLE001 - a replica that is down holds nothing
                continue
            if status == 200 or status == 401:
                if status == 200:
                    self.affinity.remember(learned, replica)
                return replica
        return 0  # nobody has it: that replica answers 404 as a single server would

    async def _preencode(self, path, query, headers, data):
        """A preencode list names images of several replicas: each gets its own part."""
        import json

        from starlette.responses import Response

        queued = 0
        for replica, images in self.affinity.split(data["images"]).items():
            part = json.dumps(dict(data, images=images)).encode()
            hdrs = [(k, v) for k, v in headers if k.lower() != "content-length"]
            try:
                status, reply = await self._call(replica, "POST", path, query, hdrs, part)
            except Exception as exc:  # noqa: BLE001
                return _error(503, "busy", f"engine replica {replica} is unavailable ({type(exc).__name__}); retry",
                              {"Retry-After": "1"})
            if status >= 300:
                return Response(reply, status_code=status, media_type="application/json")
            queued += int(json.loads(reply).get("queued", 0))
        return Response(json.dumps({"queued": queued}).encode(), status_code=202, media_type="application/json")


def _error(status: int, code: str, detail: str, headers: dict[str, str] | None = None):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": code, "detail": detail, "field": None}, status_code=status, headers=headers)


def replica_plan(ray, config: ServerConfig, replicas: int | None, cpus: float | None) -> tuple[int, float, float]:
    """(replicas, CPUs each, GPUs each): one per GPU when the cluster has GPUs, else ``replicas`` on CPUs."""
    gpus_total = ray.cluster_resources().get("GPU", 0.0)
    on_cpu = all(str(o.get("device") or "auto") == "cpu" for o in config.engine_options.values()) \
        and bool(config.engine_options)
    if gpus_total >= 1 and not on_cpu:
        return replicas or int(gpus_total), cpus or 1.0, 1.0
    if "medplib" in config.engines and not on_cpu:
        raise MedplibError("the Ray cluster has no GPU for MedPLIB replicas (use --device cpu to run them on CPUs)")
    return replicas or 1, cpus or 1.0, 0.0


def deploy(config: ServerConfig, address: str | None, replicas: int | None = None, cpus: float | None = None):
    """Start the router and the engine replicas; returns (url, replica count, connected, ray)."""
    from ..ray_cluster import connect

    ray, connected = connect(address)
    try:
        from ray import serve

        count, each_cpus, each_gpus = replica_plan(ray, config, replicas, cpus)
        http = {"host": config.host, "port": config.port}
        if config.tls_cert:
            http.update(ssl_certfile=config.tls_cert, ssl_keyfile=config.tls_key)
        serve.start(http_options=http, proxy_location="HeadOnly")
        concurrent = config.limits.segmentation_queue + config.limits.max_answers + 16
        engine = serve.deployment(EngineReplica)
        engines = [engine.options(name=f"engine-{i}", num_replicas=1, max_ongoing_requests=concurrent,
                                  ray_actor_options={"num_cpus": each_cpus, "num_gpus": each_gpus}).bind(config, i)
                   for i in range(count)]
        router = serve.deployment(Router).options(name="router", num_replicas=1, max_ongoing_requests=10_000,
                                                  ray_actor_options={"num_cpus": 0})
        serve.run(router.bind(engines, config.limits.max_request_bytes), name=APP_NAME, route_prefix="/",
                  blocking=False)
    except BaseException:
        if connected:
            ray.shutdown()
        raise
    scheme = "https" if config.tls_cert else "http"
    shown = f"[{config.host}]" if ":" in config.host else config.host
    return f"{scheme}://{shown}:{config.port}", count, connected, ray


def serve_cli(config: ServerConfig, generated: bool, address: str | None, replicas: int | None,
              cpus: float | None) -> int:
    """`medplib-studio serve --ray`: deploy, say where, serve until Ctrl+C or SIGTERM."""
    import dataclasses
    import signal
    import socket

    if config.port == 0:  # Serve needs a number: take one that is free now
        with socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET) as sock:
            sock.bind((config.host, 0))
            config = dataclasses.replace(config, port=sock.getsockname()[1])
    url, count, connected, ray = deploy(config, address, replicas, cpus)
    print(f"{count} engine replica(s) of {', '.join(config.engines)} on Ray Serve", flush=True)
    if generated:
        print(f"token (generated; give clients MEDPLIB_SERVER_TOKEN): {config.token}", flush=True)
    print(f"listening on {url}", flush=True)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    serve_forever(ray, connected)
    return 0


def serve_forever(ray, connected: bool) -> None:
    """Block until Ctrl+C, then take the application down (and Ray, when this process started it)."""
    from ray import serve

    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        try:
            serve.delete(APP_NAME)
            serve.shutdown()
        finally:
            if connected:
                ray.shutdown()
