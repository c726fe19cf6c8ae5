"""`medplib-studio serve [--host 127.0.0.1] [--port 8765] --engine litemedsam|medplib|both`.

Serves the engines over HTTP (`medplib_core.server`); clients connect with ``--server URL``
and the token in ``MEDPLIB_SERVER_TOKEN``. Without that variable a token is generated and
printed once. ``--port 0`` picks a free port; the line ``listening on URL`` says which.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve LiteMedSAM and/or MedPLIB over HTTP for remote clients")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this computer only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--engine", choices=("litemedsam", "medplib", "both"), default="litemedsam")
    p.add_argument("--device", default=None, help="cpu or cuda (default: automatic)")
    for name in ("checkpoint", "clip", "sam"):
        p.add_argument(f"--{name}", help=f"MedPLIB {name} path (default: $MEDPLIB_{name.upper()} or the settings)")
    p.add_argument("--tls-cert", help="PEM certificate: serve HTTPS")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    g = p.add_argument_group("limits")
    g.add_argument("--max-upload-mb", type=float, default=256, help="largest request body (413 beyond)")
    g.add_argument("--client-memory-mb", type=float, default=2048, help="uploaded pixels kept per client")
    g.add_argument("--server-memory-mb", type=float, default=8192, help="uploaded pixels kept in all")
    g.add_argument("--session-ttl", type=float, default=1800, help="seconds before idle sessions expire")
    g.add_argument("--queue-limit", type=int, default=64, help="waiting segmentation requests (503 beyond)")
    g.add_argument("--client-inflight", type=int, default=16, help="requests per client at once (429 beyond)")
    g.add_argument("--max-answers", type=int, default=8, help="chat answers generated at once (503 beyond)")
    g.add_argument("--conversations", type=int, default=8, help="open conversations per client")
    r = p.add_argument_group("replicas on Ray (medplib-studio[cluster])")
    r.add_argument("--ray", nargs="?", const=True, metavar="ADDRESS",
                   help="serve from engine replicas on Ray Serve behind this one URL: auto, local, HOST:PORT; "
                        "without ADDRESS: RAY_ADDRESS, a cluster started here, else a new local one")
    r.add_argument("--replicas", type=int, help="engine replicas (default: one per GPU of the cluster, else 1)")
    r.add_argument("--replica-cpus", type=float, help="CPUs each replica asks for (default 1)")
    p.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from medplib_core.server import TOKEN_ENV
    from medplib_core.server.config import MiB, Limits, ServerConfig

    engines = ("litemedsam", "medplib") if args.engine == "both" else (args.engine,)
    options = {"litemedsam": {"device": args.device},
               "medplib": {"device": args.device, "checkpoint": args.checkpoint, "clip": args.clip,
                           "sam": args.sam}}
    limits = Limits(max_request_bytes=int(args.max_upload_mb * MiB),
                    client_memory_bytes=int(args.client_memory_mb * MiB),
                    server_memory_bytes=int(args.server_memory_mb * MiB),
                    session_ttl_s=args.session_ttl, segmentation_queue=args.queue_limit,
                    client_inflight=args.client_inflight, max_answers=args.max_answers,
                    client_conversations=args.conversations)
    token = os.environ.get(TOKEN_ENV, "")
    return ServerConfig(engines=engines, engine_options={k: options[k] for k in engines},
                        host=args.host, port=args.port, token=token or ServerConfig.new_token(),
                        tls_cert=args.tls_cert, tls_key=args.tls_key, limits=limits), not token


def run(args: argparse.Namespace) -> int:
    from medplib_core.errors import MedplibError

    if bool(args.tls_cert) != bool(args.tls_key):
        raise MedplibError("--tls-cert and --tls-key go together")
    from medplib_core.server.parent_watch import exit_with_parent

    exit_with_parent()  # a local engine process of the app ends with the app (kill -9 included)
    config, generated = config_from_args(args)
    if args.ray is not None:
        from medplib_core.server.ray_serve import serve_cli

        return serve_cli(config, generated, None if args.ray is True else args.ray, args.replicas, args.replica_cpus)
    sock = _bind(config.host, config.port)
    import uvicorn

    from medplib_core.server.app import create_app
    from medplib_core.server.host import EngineHost

    host = EngineHost(config)
    app = create_app(config, host)
    port = sock.getsockname()[1]
    scheme = "https" if config.tls_cert else "http"
    shown = f"[{config.host}]" if ":" in config.host else config.host
    url = f"{scheme}://{shown}:{port}"
    for he in host.engines.values():
        info = he.engine.info
        print(f"engine {he.key}: {info.name} {info.version} on {info.device}", flush=True)
    if generated:
        print(f"token (generated; give clients MEDPLIB_SERVER_TOKEN): {config.token}", flush=True)
    if config.host not in ("127.0.0.1", "localhost", "::1") and not config.tls_cert:
        print("warning: serving plain HTTP beyond this computer; use --tls-cert/--tls-key", file=sys.stderr)
    print(f"listening on {url}", flush=True)
    server = uvicorn.Server(uvicorn.Config(
        app, log_level=args.log_level, ssl_certfile=config.tls_cert, ssl_keyfile=config.tls_key,
        timeout_keep_alive=30, access_log=args.log_level in ("info", "debug")))
    server.run(sockets=[sock])
    return 0


def _bind(host: str, port: int) -> socket.socket:
    from medplib_core.errors import MedplibError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise MedplibError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
