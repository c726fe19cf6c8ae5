"""Icons (qtawesome, named in resources/icons.json) and window presets (resources/presets.json)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from PySide6.QtGui import QIcon

from medplib_core.volume import WINDOW_PRESETS

RESOURCES = Path(__file__).resolve().parents[1] / "resources"

_FALLBACK_ICONS = {"undo": "mdi6.undo", "redo": "mdi6.redo"}


@lru_cache(maxsize=1)
def _icon_names() -> dict[str, str]:
    try:
        data = json.loads((RESOURCES / "icons.json").read_text())
        return {k: v for k, v in data.items() if not k.startswith("_")}
    except (OSError, ValueError):
        return dict(_FALLBACK_ICONS)


def icon(name: str, color: str | None = None) -> QIcon:
    """The icon for an action name; an empty icon if qtawesome or the name is missing."""
    qta_name = _icon_names().get(name)
    if not qta_name:
        return QIcon()
    try:
        import qtawesome as qta

        return qta.icon(qta_name, color=color) if color else qta.icon(qta_name)
    except Exception:  # a font that failed to load must not stop the app
        return QIcon()


@lru_cache(maxsize=1)
def window_presets() -> list[tuple[str, float, float]]:
    """(name, centre, width) in menu order."""
    try:
        data = json.loads((RESOURCES / "presets.json").read_text())
        return [(str(p["name"]), float(p["centre"]), float(p["width"])) for p in data["presets"]]
    except (OSError, ValueError, KeyError, TypeError):
        return [(n, c, w) for n, (c, w) in WINDOW_PRESETS.items()]
