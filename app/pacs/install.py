"""`install_pacs(window)`: the File menu entries for the PACS and the dialogs behind them,
added through the window's extension points."""

from __future__ import annotations

from PySide6.QtCore import QObject

from .browser import StudyBrowser
from .send_dialog import SendDialog
from .servers import ServerStore


class PacsUI(QObject):
    def __init__(self, window):
        super().__init__(window)
        self.win = window
        self.store = ServerStore(window.settings)
        self.browser: StudyBrowser | None = None
        self.send_dialog: SendDialog | None = None
        # File ▸ Open from PACS… after Open project…, Send to PACS… after Import labels…
        self.open_action = window.add_action("pacs_open", "Open from PACS…", self.show_browser, "open_folder",
                                             menu="file", after="open_project")
        self.send_action = window.add_action("pacs_send", "Send to PACS…", self.show_send, "export",
                                             menu="file", after="import_labels")
        self.open_action.setToolTip("Search a PACS (DICOMweb) and open a series")
        self.send_action.setToolTip("Store the labels on a PACS as a DICOM SEG (STOW-RS)")
        window.doc.volume_changed.connect(self._update)
        self._update()

    def _update(self) -> None:
        vol = self.win.session.volume
        self.send_action.setEnabled(bool(vol is not None and vol.source and vol.source.kind == "dicom"))

    def show_browser(self) -> StudyBrowser:
        if self.browser is None:
            self.browser = StudyBrowser(self.store, self.win)
            self.browser.open_series.connect(self.win.open_path)
        self.browser.reload_servers(select=self.browser.current_server().service
                                    if self.browser.current_server() else None)
        self.browser.show()
        self.browser.raise_()
        return self.browser

    def show_send(self) -> SendDialog | None:
        if self.win.session.volume is None:
            return None
        self.send_dialog = SendDialog(self.win, self.store)
        self.send_dialog.sent.connect(lambda obj: self.win.status.showMessage(
            f"Sent the labels to {obj.service} (SEG series {obj.series_uid}).", 10000))
        self.send_dialog.open()
        return self.send_dialog


def install_pacs(window) -> PacsUI:
    """Add the PACS entries to ``window`` (once); kept as ``window.extension("pacs")``."""
    existing = window.extension("pacs")
    if existing is not None:
        return existing
    return window.add_extension("pacs", PacsUI(window))
