"""`create_app(config)`: the FastAPI application of `medplib-studio serve`.

Every route but ``/health`` and ``/openapi.json`` needs ``Authorization: Bearer TOKEN``.
Errors are JSON bodies (`schemas.ErrorBody`) naming the field at fault; no request gets a
traceback. Engine state lives in an `EngineHost`; the app is a thin translation of HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from medplib_core import __version__
from medplib_core.errors import CancelledError, MedplibError

from . import API_HEADER, API_VERSION, CLIENT_HEADER
from .body_limit import BodyLimit
from .config import ServerConfig
from .conversations import Conflict
from .host import EngineHost, Unknown
from .lanes import Busy, ClientCounter
from .schemas import ErrorBody, Health, Info, Stats
from .wire import WireError

log = logging.getLogger("medplib_core.server")
EXPIRE_EVERY_S = 30.0
_CLIENT_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str, field: str | None = None,
                 headers: dict[str, str] | None = None):
        self.status, self.code, self.detail, self.field = status, code, detail, field
        self.headers = headers or {}
        super().__init__(detail)


def error_response(status: int, code: str, detail: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorBody(error=code, detail=detail, field=field).model_dump(),
                        status_code=status, headers=headers)


def _errors(codes: tuple[int, ...]) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": ErrorBody} for c in codes}


COMMON_ERRORS = _errors((400, 401, 404, 409, 413, 422, 429, 503))


def create_app(config: ServerConfig, host: EngineHost | None = None) -> FastAPI:
    """The application; builds an `EngineHost` from ``config`` unless one is given."""
    host = host or EngineHost(config)
    inflight = ClientCounter(config.limits.client_inflight, config.limits.retry_after_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        reaper = asyncio.create_task(_reap(host))
        try:
            yield
        finally:
            reaper.cancel()
            await asyncio.to_thread(host.close)

    app = FastAPI(title="MedPLIB Studio engine server", version=API_VERSION, lifespan=lifespan,
                  description="Segmentation (LiteMedSAM, MedPLIB) and chat (MedPLIB) over HTTP. "
                              "Upload a slice once by its content id, then encode and prompt it; "
                              "ask questions about it in a conversation whose answer streams as "
                              "server-sent events.")
    app.add_middleware(BodyLimit, max_bytes=config.limits.max_request_bytes)
    app.state.host = host
    app.state.config = config
    app.state.inflight = inflight
    _install_error_handlers(app)

    bearer = HTTPBearer(auto_error=False, description="the server's token (MEDPLIB_SERVER_TOKEN)")

    async def authorised(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if cred is None or not hmac.compare_digest(cred.credentials.encode(), config.token.encode()):
            why = "no bearer token was sent" if cred is None else "the token is wrong"
            raise ApiError(401, "unauthorized", f"{why}: send 'Authorization: Bearer TOKEN' with the "
                           "server's token (MEDPLIB_SERVER_TOKEN)", headers={"WWW-Authenticate": "Bearer"})
        wanted = request.headers.get(API_HEADER)
        if wanted is not None and wanted != API_VERSION:
            raise ApiError(400, "api_version_mismatch", f"this server speaks engine API {API_VERSION} "
                           f"(medplib-studio {__version__}), the client speaks API {wanted}: "
                           "install matching versions", API_HEADER)

    @app.get("/health", response_model=Health, tags=["server"])
    async def health() -> dict[str, Any]:
        """Liveness and versions (no token needed): clients check the API version here first."""
        return {"status": "ok", "server": "medplib-studio", "server_version": __version__,
                "api_version": API_VERSION}

    @app.get("/info", response_model=Info, tags=["server"], dependencies=[Depends(authorised)],
             responses=_errors((400, 401)))
    async def info() -> dict[str, Any]:
        """Server and API version, engines with versions, weights checksums and devices, limits."""
        return host.info()

    @app.get("/v1/stats", response_model=Stats, tags=["server"], dependencies=[Depends(authorised)],
             responses=_errors((400, 401)))
    async def stats() -> dict[str, Any]:
        """Uploads, memory, queues and open sessions."""
        return host.stats()

    from .routes_chat import chat_router
    from .routes_images import images_router
    from .routes_segment import segment_router

    for router in (images_router(), segment_router(), chat_router()):
        app.include_router(router, prefix="/v1", dependencies=[Depends(authorised)],
                           responses=COMMON_ERRORS)
    return app


def client_of(request: Request) -> str:
    """The client's self-chosen id (header), for memory caps and fairness; "anonymous" without."""
    cid = request.headers.get(CLIENT_HEADER, "anonymous")
    return cid if _CLIENT_RE.match(cid) else "anonymous"


async def counted_client(request: Request):
    """Dependency: the client id, counted in flight for the request's duration (429 beyond)."""
    client = client_of(request)
    counter: ClientCounter = request.app.state.inflight
    try:
        counter.enter(client)
    except Busy as exc:
        raise ApiError(exc.status, "busy", exc.reason, headers={"Retry-After": str(exc.retry_after)}) from exc
    try:
        yield client
    finally:
        counter.leave(client)


async def _reap(host: EngineHost) -> None:
    while True:
        await asyncio.sleep(EXPIRE_EVERY_S)
        try:
            await asyncio.to_thread(host.expire)
        except Exception:  # the reaper must keep running
            log.exception("expiring sessions")


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.detail, exc.field, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        errs = exc.errors()
        first = errs[0] if errs else {"loc": ("body",), "msg": "invalid request"}
        field = _field(tuple(first.get("loc", ())))
        more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
        return error_response(422, "invalid_request", f"{field}: {first.get('msg')}{more}", field)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "http_error")
        detail = str(exc.detail)
        if exc.status_code == 413:
            detail = (f"the request body exceeds the server's limit of "
                      f"{request.app.state.config.limits.max_request_bytes} bytes")
        return error_response(exc.status_code, code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(Unknown)
    async def unknown(request: Request, exc: Unknown):
        detail = str(exc)
        if exc.kind == "engine":
            detail = (f"engine {exc.ident!r} is not served here; this server runs: "
                      f"{', '.join(request.app.state.host.engines)}")
        return error_response(404, f"{exc.kind}_unknown", detail, exc.field)

    @app.exception_handler(Busy)
    async def busy(request: Request, exc: Busy):
        code = "too_large" if exc.status == 413 else "busy"
        headers = None if exc.status == 413 else {"Retry-After": str(exc.retry_after)}
        return error_response(exc.status, code, exc.reason, headers=headers)

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict):
        return error_response(409, "conversation_busy", str(exc), "conversation")

    @app.exception_handler(WireError)
    async def wire_error(request: Request, exc: WireError):
        code = "too_large" if exc.status == 413 else "invalid_payload"
        return error_response(exc.status, code, str(exc), exc.field)

    @app.exception_handler(CancelledError)
    async def cancelled(request: Request, exc: CancelledError):
        return error_response(409, "cancelled", str(exc))

    @app.exception_handler(MedplibError)
    async def medplib_error(request: Request, exc: MedplibError):
        msg = str(exc)
        m = re.match(r"^([A-Za-z_][\w.\[\]]*): ", msg)
        return error_response(400, "invalid_prompt", msg, m.group(1) if m else None)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal", f"internal error ({type(exc).__name__}); the server "
                              "log has the details")
