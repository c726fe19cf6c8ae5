"""`install_pacs(window)`: the File menu entries for the PACS and the dialogs behind them."""

from __future__ import annotations

from PySide6.QtCore import QObject

from ..actions import make_action
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
        self.open_action = make_action(window, "pacs_open", "Open from PACS…", self.show_browser, "open_folder")
        self.send_action = make_action(window, "pacs_send", "Send to PACS…", self.show_send, "export")
        self.open_action.setToolTip("Search a PACS (DICOMweb) and open a series")
        self.send_action.setToolTip("Store the labels on a PACS as a DICOM SEG (STOW-RS)")
        self._menu()
        window.doc.volume_changed.connect(self._update)
        self._update()

    def _menu(self) -> None:
        """Open from PACS after Open project…, Send to PACS after the export menu."""
        bar = self.win.menuBar()
        file_menu = bar.actions()[0].menu()
        acts = file_menu.actions()
        names = self.win.actions_by_name

        def after(action):
            i = acts.index(action) if action in acts else len(acts) - 1
            return acts[i + 1] if i + 1 < len(acts) else None

        anchor = after(names.get("open_project"))
        file_menu.insertAction(anchor, self.open_action) if anchor else file_menu.addAction(self.open_action)
        anchor = after(names.get("import_labels"))
        file_menu.insertAction(anchor, self.send_action) if anchor else file_menu.addAction(self.send_action)

    def _update(self) -> None:
        vol = self.win.doc.volume
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
        if self.win.doc.volume is None:
            return None
        self.send_dialog = SendDialog(self.win, self.store)
        self.send_dialog.sent.connect(lambda obj: self.win.status.showMessage(
            f"Sent the labels to {obj.service} (SEG series {obj.series_uid}).", 10000))
        self.send_dialog.open()
        return self.send_dialog


def install_pacs(window) -> PacsUI:
    window.pacs = PacsUI(window)
    return window.pacs
