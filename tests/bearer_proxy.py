"""An HTTP gateway on 127.0.0.1 that admits only ``Authorization: Bearer TOKEN`` and forwards
to a real Orthanc with the Orthanc's own basic credentials.

Orthanc has no bearer authentication of its own; sites that use tokens put such a gateway
(nginx, oauth2-proxy, a hospital API gateway) in front of it. This one lets the tests check
that a bearer token is sent on every request and that the series comes through intact.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length",
              "proxy-authenticate", "proxy-authorization", "te", "trailers", "upgrade", "host", "authorization"}


class BearerGateway:
    def __init__(self, upstream: str, token: str, upstream_auth: tuple[str, str]):
        self.upstream, self.token, self.auth = upstream.rstrip("/"), token, upstream_auth
        self.seen: list[tuple[str, str | None]] = []  # (path, Authorization header) of each request
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _forward(self) -> None:
                header = self.headers.get("Authorization")
                gateway.seen.append((self.path, header))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if header != f"Bearer {gateway.token}":
                    self._reply(401, b'{"error": "a valid bearer token is required"}',
                                {"Content-Type": "application/json", "WWW-Authenticate": "Bearer"})
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                r = requests.request(self.command, gateway.upstream + self.path, headers=headers, data=body,
                                     auth=gateway.auth, timeout=60)
                self._reply(r.status_code, r.content,
                            {k: v for k, v in r.headers.items() if k.lower() not in HOP_BY_HOP})

            def _reply(self, status: int, content: bytes, headers: dict) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_DELETE = _forward  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def dicomweb(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicom-web"

    def __enter__(self) -> "BearerGateway":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
