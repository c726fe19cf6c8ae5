"""Settings remembered between runs (QSettings) and the app's data folders.

The platform's usual place is used (registry on Windows, plist on macOS, ~/.config on Linux).
``MEDPLIB_STUDIO_SETTINGS`` (an .ini path) and ``MEDPLIB_STUDIO_DATA`` (a folder) override
them, which keeps tests and portable installs self-contained.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, QStandardPaths

from medplib_core.pacs import is_url

ORG = "MedPLIB"
APP = "MedPLIB Studio"
MAX_RECENT = 10


def data_dir() -> Path:
    """Folder for the recovery store and logs."""
    env = os.environ.get("MEDPLIB_STUDIO_DATA")
    if env:
        path = Path(env)
    else:
        base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppLocalDataLocation)
        path = Path(base) if base else Path.home() / ".medplib-studio"
    path.mkdir(parents=True, exist_ok=True)
    return path


def recovery_dir() -> Path:
    return data_dir() / "recovery"


class Settings:
    """Typed access to the values the app remembers."""

    def __init__(self) -> None:
        env = os.environ.get("MEDPLIB_STUDIO_SETTINGS")
        if env:
            self.qs = QSettings(env, QSettings.Format.IniFormat)
        else:
            self.qs = QSettings(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, ORG, APP)

    def get(self, key: str, default: Any = None, type_: type | None = None) -> Any:
        val = self.qs.value(key, default)
        if type_ is None or val is None:
            return val
        try:
            if type_ is bool:
                return val if isinstance(val, bool) else str(val).lower() in ("1", "true", "yes")
            return type_(val)
        except (TypeError, ValueError):
            return default

    def set(self, key: str, value: Any) -> None:
        self.qs.setValue(key, value)

    def sync(self) -> None:
        self.qs.sync()

    # ----- recent files ------------------------------------------------------------------------
    def recent_files(self) -> list[str]:
        val = self.qs.value("recent_files", [])
        if isinstance(val, str):
            val = [val]
        return [str(v) for v in (val or []) if v]

    def add_recent(self, path: str) -> list[str]:
        path = path if is_url(path) else str(Path(path).resolve())  # a PACS series URL stays as it is
        items = [p for p in self.recent_files() if p != path]
        items.insert(0, path)
        items = items[:MAX_RECENT]
        self.qs.setValue("recent_files", items)
        return items

    def clear_recent(self) -> None:
        self.qs.setValue("recent_files", [])
