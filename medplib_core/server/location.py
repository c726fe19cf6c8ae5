"""Where the engines run for the desktop application: on this computer or on a server.

Settings keys (the GUI's Settings ▸ Engine… edits them)::

    engine/location     "local" (default) or "server"
    engine/server_url   e.g. https://gpu-box:8765
    engine/medplib_process  true (default): on this computer, MedPLIB runs in a separate engine
                        process (`LocalEngineProcess`), so its crash or OOM never takes the
                        window down; false: in the application's process

``MEDPLIB_SERVER_URL`` (what ``medplib-studio gui --server URL`` sets) overrides the settings
for a run: both engines on that server. The server token comes from ``MEDPLIB_SERVER_TOKEN``, else what the user typed this session,
else the platform keyring (service `KEYRING_SERVICE`, saved by the dialog when a keyring
exists). LiteMedSAM stays in the application's process on this computer: through a local
engine process a click cost about 5 % more (bench/server.py, notes), with nothing to isolate
(it is small and does not run out of memory).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from medplib_core.errors import MedplibError

from . import TOKEN_ENV

LOCATION_KEY = "engine/location"
URL_KEY = "engine/server_url"
PROCESS_KEY = "engine/medplib_process"
KEYRING_SERVICE = "MedPLIB Studio engine server"
URL_ENV = "MEDPLIB_SERVER_URL"
LOCATIONS = ("local", "server")

_session_tokens: dict[str, str] = {}
_lock = threading.Lock()


def _get(settings: Any, key: str, default: Any = None) -> Any:
    if settings is None:
        return default
    value = settings.get(key, default)
    return default if value is None else value


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() not in ("0", "false", "no", "off", "")


@dataclass
class EngineLocation:
    where: str = "local"
    url: str = ""
    token: str = field(default="", repr=False)
    token_source: str = "none"  # environment, session, keyring or none
    medplib_process: bool = True

    @classmethod
    def from_settings(cls, settings: Any = None, env: Mapping[str, str] | None = None) -> "EngineLocation":
        env = os.environ if env is None else env
        where = str(_get(settings, LOCATION_KEY, "local"))
        where = where if where in LOCATIONS else "local"
        url = str(_get(settings, URL_KEY, "") or "").strip().rstrip("/")
        if env.get(URL_ENV):
            where, url = "server", env[URL_ENV].strip().rstrip("/")
        token, source = find_token(url, env)
        return cls(where, url, token, source, _truthy(_get(settings, PROCESS_KEY, True)))

    @property
    def remote(self) -> bool:
        return self.where == "server"

    def problems(self) -> list[str]:
        if not self.remote:
            return []
        out = []
        if not self.url.startswith(("http://", "https://")):
            out.append("the server URL must start with http:// or https://")
        if not self.token:
            out.append(f"no token for the server (type it in Settings ▸ Engine… or set {TOKEN_ENV})")
        return out

    def describe(self) -> str:
        return f"on the server {self.url}" if self.remote else "on this computer"

    def save(self, settings: Any) -> str:
        """Write the location to ``settings`` and keep the token; returns where it was kept."""
        settings.set(LOCATION_KEY, self.where)
        settings.set(URL_KEY, self.url)
        settings.set(PROCESS_KEY, bool(self.medplib_process))
        if not self.token or self.token_source == "environment":
            return self.token_source
        return remember_token(self.url, self.token)


def find_token(url: str, env: Mapping[str, str]) -> tuple[str, str]:
    if env.get(TOKEN_ENV):
        return env[TOKEN_ENV], "environment"
    with _lock:
        if url in _session_tokens:
            return _session_tokens[url], "session"
    saved = _keyring_get(url) if url else None
    return (saved, "keyring") if saved else ("", "none")


def remember_token(url: str, token: str) -> str:
    """Keep ``token`` for ``url``: in the platform keyring when there is one, and for this session."""
    with _lock:
        _session_tokens[url] = token
    try:
        from medplib_core.pacs.credentials import keyring_status

        ok, _ = keyring_status()
        if ok:
            import keyring

            keyring.set_password(KEYRING_SERVICE, url, token)
            return "keyring"
    except Exception:  # noqa: BLE001 - a locked or broken keyring: the session keeps it
        pass
    return "session"


def _keyring_get(url: str) -> str | None:
    try:
        from medplib_core.pacs.credentials import keyring_status

        if not keyring_status()[0]:
            return None
        import keyring

        return keyring.get_password(KEYRING_SERVICE, url)
    except Exception:  # noqa: BLE001 - behave as if nothing were saved
        return None


def segmentation_engine(location: EngineLocation, name: str = "litemedsam"):
    """The segmentation engine for the window: remote on a server, else in this process."""
    if location.remote:
        from medplib_core.engines.remote import RemoteEngine

        _check(location)
        return RemoteEngine(location.url, engine=name, token=location.token)
    from medplib_core.engines.registry import create_engine

    return create_engine(name)


def medplib_engine(location: EngineLocation, cfg, progress: Callable[[int, int], None] | None = None,
                   cancel: Callable[[], bool] | None = None):
    """``(engine, process)`` for the chat: a `RemoteEngine` to the server, to a new local engine
    process (returned too, so its owner can watch and restart it), or the in-process engine."""
    if location.remote:
        from medplib_core.engines.remote import RemoteEngine

        _check(location)
        return RemoteEngine(location.url, engine="medplib", token=location.token), None
    ok, message = cfg.availability()
    if not ok:
        from medplib_core.errors import LoadError

        raise LoadError(cfg.checkpoint or "MedPLIB", message)
    if not location.medplib_process:
        from medplib_core.engines.medplib_engine import medplib_engine_for

        return medplib_engine_for(cfg, progress), None
    from .local_process import LocalEngineProcess

    proc = LocalEngineProcess("medplib", {"checkpoint": cfg.checkpoint, "clip": cfg.clip,
                                          "sam": cfg.sam, "device": cfg.device})
    try:
        return proc.start(cancel), proc
    except BaseException:
        proc.stop()
        raise


def _check(location: EngineLocation) -> None:
    probs = location.problems()
    if probs:
        raise MedplibError("the engine server is not set up: " + "; ".join(probs))
