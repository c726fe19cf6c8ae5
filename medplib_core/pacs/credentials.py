"""Credentials for DICOMweb servers: none, HTTP basic, or a bearer token.

Where they come from, first match wins, for a service URL:

1. this process's session store (`remember`), filled by the application for the server the
   user configured (also the fallback when the platform has no keyring);
2. the environment: ``MEDPLIB_DICOMWEB_TOKEN`` (bearer), or ``MEDPLIB_DICOMWEB_USER`` with
   ``MEDPLIB_DICOMWEB_PASSWORD`` (basic);
3. the platform keyring (Secret Service, macOS Keychain, Windows Credential Locker), where the
   application saves a server's secret under the service name `KEYRING_SERVICE`.

Secrets never appear in a `repr`, a message, a project, a log or an export.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field

from .errors import PacsError

ENV_TOKEN = "MEDPLIB_DICOMWEB_TOKEN"
ENV_USER = "MEDPLIB_DICOMWEB_USER"
ENV_PASSWORD = "MEDPLIB_DICOMWEB_PASSWORD"
KEYRING_SERVICE = "MedPLIB Studio DICOMweb"
KINDS = ("none", "basic", "bearer")

_lock = threading.Lock()
_session: dict[str, "Credentials"] = {}


@dataclass(frozen=True)
class Credentials:
    """How to authenticate to one server; ``secret`` is the password or the token."""

    kind: str = "none"
    username: str = ""
    secret: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise PacsError("credentials", f"unknown authentication '{self.kind}' (use none, basic or bearer)")

    def apply(self, session) -> None:
        """Set up a `requests.Session` to send these credentials."""
        if self.kind == "basic":
            session.auth = (self.username, self.secret)
        elif self.kind == "bearer":
            session.headers["Authorization"] = f"Bearer {self.secret}"

    def describe(self) -> str:
        # no user name either: messages end up in logs, and credentials never do
        return {"none": "no authentication", "basic": "a user name and password",
                "bearer": "a bearer token"}[self.kind]


NONE = Credentials()


def remember(service: str, creds: Credentials) -> None:
    """Use ``creds`` for ``service`` for the rest of this process (never written anywhere)."""
    from .urls import normalise_service

    with _lock:
        _session[normalise_service(service)] = creds


def forget(service: str) -> None:
    from .urls import normalise_service

    with _lock:
        _session.pop(normalise_service(service), None)


def from_environment() -> Credentials | None:
    token = os.environ.get(ENV_TOKEN, "")
    if token:
        return Credentials("bearer", secret=token)
    user = os.environ.get(ENV_USER, "")
    if user:
        return Credentials("basic", user, os.environ.get(ENV_PASSWORD, ""))
    return None


def credentials_for(service: str) -> tuple[Credentials, str]:
    """(credentials, where they came from: "session", "environment", "keyring" or "none")."""
    from .urls import normalise_service

    key = normalise_service(service)
    with _lock:
        found = _session.get(key)
    if found is not None:
        return found, "session"
    env = from_environment()
    if env is not None:
        return env, "environment"
    saved = load_from_keyring(key)
    if saved is not None:
        return saved, "keyring"
    return NONE, "none"


# ----- the platform keyring ----------------------------------------------------------------------
def keyring_status() -> tuple[bool, str]:
    """(available, description): whether secrets can be saved in a platform keyring."""
    try:
        import keyring
        from keyring.backends import fail
    except Exception as exc:  # noqa: BLE001 - an absent or broken keyring package
        return False, f"the keyring package cannot be used ({type(exc).__name__}: {exc})"
    try:
        backend = keyring.get_keyring()
    except Exception as exc:  # noqa: BLE001
        return False, f"no keyring backend ({exc})"
    name = f"{type(backend).__module__}.{type(backend).__name__}"
    if isinstance(backend, fail.Keyring) or "null" in type(backend).__module__:
        return False, "no keyring backend is available on this system"
    if "plaintext" in type(backend).__name__.lower():
        return False, f"only a plain-text keyring is configured ({name}); secrets are not written there"
    return True, name


def save_to_keyring(service: str, creds: Credentials) -> None:
    """Save (or, for "none", delete) a server's credentials in the platform keyring."""
    from .urls import normalise_service

    key = normalise_service(service)
    ok, why = keyring_status()
    if not ok:
        raise PacsError(key, f"cannot save the credentials: {why}",
                        hint="they are kept for this session only; set MEDPLIB_DICOMWEB_* to avoid typing them again")
    import keyring

    try:
        if creds.kind == "none":
            delete_from_keyring(key)
            return
        keyring.set_password(KEYRING_SERVICE, key, json.dumps(
            {"kind": creds.kind, "username": creds.username, "secret": creds.secret}))
    except keyring.errors.KeyringError as exc:
        raise PacsError(key, f"the keyring refused to save the credentials ({exc})") from None


def load_from_keyring(service: str) -> Credentials | None:
    ok, _ = keyring_status()
    if not ok:
        return None
    import keyring

    try:
        text = keyring.get_password(KEYRING_SERVICE, service)
    except Exception:  # noqa: BLE001 - a locked or broken keyring: behave as if nothing is saved
        return None
    if not text:
        return None
    try:
        d = json.loads(text)
        return Credentials(d.get("kind", "none"), d.get("username", ""), d.get("secret", ""))
    except (ValueError, TypeError, AttributeError, PacsError):
        return None


def delete_from_keyring(service: str) -> None:
    ok, _ = keyring_status()
    if not ok:
        return
    import keyring

    try:
        keyring.delete_password(KEYRING_SERVICE, service)
    except keyring.errors.PasswordDeleteError:
        pass
