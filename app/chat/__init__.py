"""The MedPLIB chat panel of the window (`install_chat_panel`).

Package layout: ``panel`` (the dock widget), ``controller`` (model loading and answering on a
worker thread), ``rendering`` (the core transcript as rich text), ``regions`` (region
candidates from what the user drew or corrected) and ``widgets``. The chat model itself —
transcript, region references, asking, the conversation cache — is `medplib_core.session`.
"""

from __future__ import annotations

from ..medplib_setup import about_section
from .controller import ChatController
from .panel import ChatPanel

__all__ = ["ChatController", "ChatPanel", "install_chat_panel"]


def install_chat_panel(window, controller: ChatController | None = None) -> ChatPanel:
    """Add the chat dock to ``window`` (a MainWindow), Settings ▸ MedPLIB… and Settings ▸
    Engine… entries and the MedPLIB licence and intended use to Help ▸ About; returns the panel
    (installed once)."""
    existing = window.extension("chat")
    if existing is not None:
        return existing
    panel = window.add_extension("chat", ChatPanel(window, controller))
    window.add_panel("MedPLIB chat", panel, "chat_dock")
    window.add_action("medplib_settings", "MedPLIB…", panel.open_setup, menu="settings")
    window.add_action("engine_settings", "Engine…", panel.open_engine_setup, menu="settings")
    window.add_about_section(lambda: about_section(window.settings))
    window.on_close(panel.shutdown)
    return panel
