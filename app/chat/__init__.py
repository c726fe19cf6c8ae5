"""The MedPLIB chat panel of the window (`install_chat_panel`).

Package layout: ``panel`` (the dock widget), ``controller`` (model loading and answering on a
worker thread), ``transcript`` (conversations, JSON, HTML) and ``regions`` (``<region>``
references from what the user drew or corrected).
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QMenu

from ..medplib_setup import show_about
from .controller import ChatController
from .panel import ChatPanel

__all__ = ["ChatController", "ChatPanel", "install_chat_panel"]


class _CloseWatcher(QObject):
    """Stops the chat worker when the window closes (MainWindow knows nothing of it)."""

    def __init__(self, panel: ChatPanel):
        super().__init__(panel)
        self.panel = panel

    def eventFilter(self, obj, ev) -> bool:  # noqa: N802
        if ev.type() == QEvent.Type.Close:
            self.panel.shutdown()
        return False


def install_chat_panel(window, controller: ChatController | None = None) -> ChatPanel:
    """Add the chat dock to ``window`` (a MainWindow), a Settings ▸ MedPLIB… menu entry, and the
    MedPLIB licence and intended use to Help ▸ About; returns the panel."""
    panel = ChatPanel(window, controller)
    dock = window.add_panel("MedPLIB chat", panel, "chat_dock")
    state = window.settings.get("window_state")
    if state is not None and "chat_dock".encode("utf-16-be") in bytes(state):
        window.restoreState(state)  # the saved layout knows the chat dock: apply it again
    else:  # first run with the chat: give it most of the height below the labels
        window.resizeDocks([window.labels_dock, dock], [240, 560], Qt.Orientation.Vertical)
    window.chat_panel = panel
    window.installEventFilter(_CloseWatcher(panel))
    _add_settings_menu(window, panel)
    about = getattr(window, "actions_by_name", {}).get("about")
    if about is not None:  # the about box gains the model's licence and intended use
        about.triggered.disconnect()
        about.triggered.connect(lambda *_: show_about(window, window.settings))
    return panel


def _add_settings_menu(window, panel: ChatPanel) -> None:
    bar = window.menuBar()
    menus = {a.text().replace("&", ""): a for a in bar.actions() if a.menu() is not None}
    if "Settings" in menus:
        menu = menus["Settings"].menu()
    else:
        menu = QMenu("&Settings", window)
        before = menus.get("Help")
        bar.insertMenu(before, menu) if before is not None else bar.addMenu(menu)
    act = menu.addAction("MedPLIB…")
    act.setObjectName("medplib_settings")
    act.triggered.connect(lambda *_: panel.open_setup())
