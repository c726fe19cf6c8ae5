"""The HTTP side of the remote engine: handshake, token, errors, retries, event streams.

Every failure becomes one `MedplibError` a user can act on: the server is unreachable or
went away (`EngineConnectionError`, "engine connection lost"), speaks another API version
(`EngineVersionError`, naming both), refuses the token (`EngineAuthError`), stays busy
(`EngineBusyError`) or failed (`EngineServerError`). A lost connection is re-established
(with a fresh handshake) by the next request. Needs only httpx: no torch, no FastAPI.
"""

from __future__ import annotations

import json
import os
import ssl
import threading
import time
import uuid
from typing import Any, Iterator

import httpx

from medplib_core import __version__
from medplib_core.errors import MedplibError, PromptError
from medplib_core.server import API_HEADER, API_VERSION, CA_ENV, CLIENT_HEADER, TOKEN_ENV


class EngineConnectionError(MedplibError):
    """The engine server cannot be reached, or the connection dropped during a request."""


class EngineVersionError(MedplibError):
    """Client and server speak different versions of the engine API."""


class EngineAuthError(MedplibError):
    """The server refused the token (or none was given)."""


class EngineBusyError(MedplibError):
    """The server kept answering 429/503 for longer than the client waits."""


class EngineServerError(MedplibError):
    """The server failed on a valid request (its log has the details)."""


class EngineRequestError(MedplibError):
    """The server refused a request as malformed; ``field`` names the part at fault."""

    def __init__(self, message: str, field: str | None = None, status: int = 400):
        self.field, self.status = field, status
        super().__init__(message)


class UnknownOnServer(MedplibError):
    """The server does not hold an image, volume, conversation or job (any more)."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)


class Connection:
    """One client of one engine server (thread-safe: requests may come from any thread)."""

    def __init__(self, url: str, token: str | None = None, client_id: str | None = None,
                 timeout: float = 120.0, verify: str | bool | None = None,
                 busy_wait_s: float = 30.0, api_version: str = API_VERSION):
        self.url = url.rstrip("/")
        self.api_version = api_version
        self.busy_wait_s = busy_wait_s
        self.client_id = client_id or f"c-{uuid.uuid4().hex[:16]}"
        self._token = token if token is not None else os.environ.get(TOKEN_ENV, "")
        if verify is None:
            verify = os.environ.get(CA_ENV) or True
        if isinstance(verify, str):  # a CA bundle, or the server's own self-signed certificate
            verify = ssl.create_default_context(cafile=verify)
        headers = {API_HEADER: api_version, CLIENT_HEADER: self.client_id,
                   "User-Agent": f"medplib-studio/{__version__}"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        self._http = httpx.Client(base_url=self.url, headers=headers, verify=verify,
                                  timeout=httpx.Timeout(timeout, connect=5.0))
        self._lock = threading.Lock()
        self._connected = False
        self.connects = 0  # successful handshakes (reconnections add one each)
        self.info: dict[str, Any] = {}
        self.connect()

    # ----- handshake ------------------------------------------------------------------------
    def connect(self) -> dict[str, Any]:
        """Check the server's API version (no token needed), then the token; returns /info."""
        try:
            r = self._http.get("/health")
        except httpx.TransportError as exc:
            raise self._lost(exc, "connecting") from exc
        try:
            health = r.json()
        except ValueError:
            health = None
        if r.status_code != 200 or not isinstance(health, dict) or "api_version" not in health:
            raise EngineVersionError(f"{self.url} does not look like a medplib-studio engine server "
                                     f"(GET /health answered {r.status_code})")
        if str(health["api_version"]) != self.api_version:
            raise EngineVersionError(
                f"the engine server at {self.url} speaks engine API {health['api_version']} "
                f"(medplib-studio {health.get('server_version', '?')}); this client speaks API "
                f"{self.api_version} (medplib-studio {__version__}): install the same version on both sides")
        info = self._send("GET", "/info", handshake=True)
        with self._lock:
            self.info, self._connected = info, True
            self.connects += 1
        return info

    @property
    def connected(self) -> bool:
        return self._connected

    def _lost(self, exc: Exception, doing: str) -> EngineConnectionError:
        self._connected = False
        why = _reason(exc)
        if not self.connects:
            return EngineConnectionError(f"cannot reach the engine server at {self.url} ({why}); "
                                         "is `medplib-studio serve` running there?")
        return EngineConnectionError(f"engine connection lost: {why} ({doing} {self.url})")

    # ----- requests -------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> dict[str, Any]:
        """A JSON request; reconnects first when the last one lost the connection."""
        if not self._connected:
            self.connect()
        return self._send(method, path, body, timeout=timeout)

    def _send(self, method: str, path: str, body: Any = None, handshake: bool = False,
              timeout: float | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + self.busy_wait_s
        extra = {} if timeout is None else {"timeout": timeout}
        while True:
            try:
                r = self._http.request(method, path, json=body, **extra)
            except httpx.TransportError as exc:
                raise self._lost(exc, f"{method} {path} on") from exc
            if r.status_code in (429, 503) and time.monotonic() < deadline:
                time.sleep(min(_retry_after(r), max(0.0, deadline - time.monotonic())))
                continue
            if r.status_code >= 400:
                raise self.error(r)
            try:
                return r.json()
            except ValueError as exc:
                raise EngineServerError(f"{self.url}{path} answered with something that is not JSON") from exc

    def stream(self, path: str, body: Any) -> Iterator[tuple[str, Any]]:
        """POST and iterate a server-sent event stream: ``(event, data)``; ``("ping", None)``
        for keep-alive comments (a chance to act on a cancel request)."""
        if not self._connected:
            self.connect()
        deadline = time.monotonic() + self.busy_wait_s
        while True:
            try:
                with self._http.stream("POST", path, json=body) as r:
                    if r.status_code in (429, 503) and time.monotonic() < deadline:
                        r.read()
                        wait = _retry_after(r)
                    else:
                        if r.status_code >= 400:
                            r.read()
                            raise self.error(r)
                        yield from _events(r.iter_lines())
                        return
            except httpx.TransportError as exc:
                raise self._lost(exc, "streaming from") from exc
            time.sleep(min(wait, max(0.0, deadline - time.monotonic())))

    def error(self, r: httpx.Response) -> MedplibError:
        """The project error for an HTTP error response."""
        try:
            body = r.json()
            code, detail, field = body.get("error", ""), body.get("detail", ""), body.get("field")
        except (ValueError, AttributeError):
            code, detail, field = "", r.text[:200], None
        if r.status_code == 401:
            why = (detail or "no token was sent").split(":")[0]
            return EngineAuthError(f"the engine server at {self.url} refused the token ({why}): use the "
                                   f"token `medplib-studio serve` printed ({TOKEN_ENV}, or Settings ▸ Engine…)")
        if code == "api_version_mismatch":
            return EngineVersionError(detail)
        if r.status_code == 404 and code.endswith("_unknown") and code != "engine_unknown":
            return UnknownOnServer(code[: -len("_unknown")], detail)
        if r.status_code in (429, 503):
            return EngineBusyError(f"the engine server at {self.url} stayed busy for {self.busy_wait_s:.0f} s: {detail}")
        if r.status_code >= 500 or not code:
            return EngineServerError(f"the engine server at {self.url} failed ({r.status_code}): {detail}")
        if code == "invalid_prompt":
            return PromptError(detail)
        return EngineRequestError(detail, field, r.status_code)

    def close(self) -> None:
        self._http.close()


def _reason(exc: Exception) -> str:
    """A lost connection in words (the exception's own text stays in the chained traceback)."""
    if isinstance(exc, httpx.ConnectError):
        return "nothing answers there"
    if isinstance(exc, httpx.TimeoutException):
        return "no answer in time"
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return "the connection was cut"
    return type(exc).__name__


def _retry_after(r: httpx.Response) -> float:
    try:
        return max(0.05, min(float(r.headers.get("Retry-After", "1")), 10.0))
    except ValueError:
        return 1.0


def _events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    event, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith(":"):
            yield "ping", None
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
