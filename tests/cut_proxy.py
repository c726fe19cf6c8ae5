"""A TCP relay on 127.0.0.1 that cuts every connection after a number of bytes from the server.

Put between a client and a real server, it reproduces a transfer interrupted mid-way (a
network drop, a proxy time-out) at a chosen point.
"""

from __future__ import annotations

import socket
import threading


class CutProxy:
    def __init__(self, upstream_port: int, cut_after: int):
        self.upstream = ("127.0.0.1", upstream_port)
        self.cut_after = cut_after
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.cuts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "CutProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        server = socket.create_connection(self.upstream, timeout=10)
        done = threading.Event()

        def up() -> None:  # client -> server, unchanged
            try:
                while not done.is_set():
                    data = client.recv(65536)
                    if not data:
                        break
                    server.sendall(data)
            except OSError:
                pass

        threading.Thread(target=up, daemon=True).start()
        sent = 0
        try:
            while sent < self.cut_after:
                data = server.recv(min(65536, self.cut_after - sent))
                if not data:
                    break
                client.sendall(data)
                sent += len(data)
            if sent >= self.cut_after:
                self.cuts += 1
        except OSError:
            pass
        finally:
            done.set()
            for s in (client, server):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
