"""Configured PACS servers: name, DICOMweb URL, authentication and user name in the settings;
the password or token in the platform keyring, or only in memory when there is none.

Whatever the user types is also handed to `medplib_core.pacs.credentials.remember`, so every
load of a series URL in this process (viewer, projects, batch) uses it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from medplib_core.pacs import PacsError
from medplib_core.pacs.credentials import (Credentials, credentials_for, keyring_status, remember,
                                           save_to_keyring)
from medplib_core.pacs.urls import normalise_service

SETTINGS_KEY = "pacs/servers"
AUTH_TEXT = {"none": "No authentication", "basic": "User name and password", "bearer": "Bearer token"}


@dataclass
class ServerConfig:
    name: str
    url: str  # the DICOMweb root, e.g. http://pacs:8042/dicom-web
    auth: str = "none"  # none | basic | bearer
    username: str = ""

    @property
    def service(self) -> str:
        return normalise_service(self.url)

    def label(self) -> str:
        return f"{self.name} — {self.service}" if self.name else self.service


class ServerStore:
    """The list of servers in the app's settings, and their secrets."""

    def __init__(self, settings):
        self.settings = settings

    def servers(self) -> list[ServerConfig]:
        raw = self.settings.get(SETTINGS_KEY, "[]")
        try:
            items = json.loads(raw) if isinstance(raw, str) else []
            return [ServerConfig(**{k: str(v) for k, v in d.items() if k in ("name", "url", "auth", "username")})
                    for d in items if isinstance(d, dict) and d.get("url")]
        except (ValueError, TypeError):
            return []

    def save_servers(self, servers: list[ServerConfig]) -> None:
        self.settings.set(SETTINGS_KEY, json.dumps([asdict(s) for s in servers]))
        self.settings.sync()

    def upsert(self, server: ServerConfig, old_url: str | None = None) -> None:
        keep = [s for s in self.servers() if s.service not in {server.service, _norm(old_url)}]
        self.save_servers([server] + keep)

    def remove(self, server: ServerConfig) -> None:
        self.save_servers([s for s in self.servers() if s.service != server.service])

    def for_service(self, service: str) -> ServerConfig | None:
        key = _norm(service)
        return next((s for s in self.servers() if s.service == key), None)

    # ----- secrets -------------------------------------------------------------------------
    def set_secret(self, server: ServerConfig, secret: str) -> str:
        """Use ``secret`` for ``server`` now and keep it where the platform allows; returns a
        sentence saying where it is kept."""
        creds = Credentials(server.auth, server.username, secret if server.auth != "none" else "")
        remember(server.service, creds)
        try:
            save_to_keyring(server.service, creds)
        except PacsError as exc:
            return f"Kept for this session only: {exc.reason.removeprefix('cannot save the credentials: ')}."
        if server.auth == "none":
            return "No secret is needed."
        return "Saved in the system keyring."

    def credentials(self, server: ServerConfig) -> Credentials | None:
        """The credentials to use for ``server``, or None when its secret is not known yet
        (no keyring: asked again in each session). Makes them the ones this process uses."""
        if server.auth == "none":
            creds = Credentials()
        else:
            found, where = credentials_for(server.service)
            if where == "none" or found.kind != server.auth or (server.auth == "basic" and found.username != server.username):
                return None
            creds = found
        remember(server.service, creds)
        return creds

    @staticmethod
    def keyring_text() -> str:
        ok, why = keyring_status()
        return "Secrets are saved in the system keyring." if ok else \
            f"{why[0].upper()}{why[1:]}: passwords and tokens are kept for this session only."


def _norm(url: str | None) -> str:
    try:
        return normalise_service(url) if url else ""
    except PacsError:
        return ""
