"""`SendDialog` (File ▸ Send to PACS…): store the labels as a DICOM SEG or an RT Structure Set
with STOW-RS.

The server the scan came from is offered first; the object is written by the same writers as
File ▸ Export and references the scan's series. The store runs on a worker thread.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QComboBox, QDialog, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout,
                               QWidget)

from medplib_core.pacs import PacsError, is_series_url, parse_series_url
from medplib_core.pacs.send import FORMATS

from ..workers import TaskRunner
from .servers import ServerConfig, ServerStore


def _send(service: str, creds, labels, volume, label_set, kind: str):
    from medplib_core.pacs.client import PacsClient
    from medplib_core.pacs.send import send_labels

    return send_labels(service, labels, volume, label_set, client=PacsClient(service, creds), kind=kind)


class SendDialog(QDialog):
    """Choose a server and send; ``sent`` carries the `SentObject`."""

    sent = Signal(object)

    def __init__(self, window, store: ServerStore, parent: QWidget | None = None):
        super().__init__(parent or window)
        self.setWindowTitle("Send to PACS")
        self.win, self.store = window, store
        self.runner = TaskRunner(1, self, "pacs-send")
        self.result = None
        self.target = QComboBox()
        self.target.setMinimumWidth(420)
        origin = self.origin_service()
        servers = store.servers()
        if origin:
            known = store.for_service(origin)
            self.target.addItem(f"{known.label() if known else origin}  (where the scan came from)",
                                known or ServerConfig("", origin))
        for s in servers:
            if s.service != origin:
                self.target.addItem(s.label(), s)
        counts = window.session.counts if window.session.volume is not None else {}
        n = sum(1 for lab in window.session.labels if counts.get(lab.value))
        self.format = QComboBox()
        for key, text in FORMATS.items():
            self.format.addItem(text, key)
        self.what = QLabel(f"{n} label{'s' if n != 1 else ''}, referencing the scan's series.")
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.hide()
        self.status = QLabel("" if self.target.count() else "No PACS server yet: add one in File ▸ Open from PACS…")
        self.status.setWordWrap(True)
        self.send_button = QPushButton("Send")
        self.send_button.setDefault(True)
        self.send_button.clicked.connect(self.send)
        self.send_button.setEnabled(self.target.count() > 0 and n > 0)
        close = QPushButton("Close")
        close.clicked.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(QLabel("Server"))
        row.addWidget(self.target, 1)
        row.addWidget(QLabel("as"))
        row.addWidget(self.format)
        buttons = QHBoxLayout()
        buttons.addWidget(self.busy)
        buttons.addStretch(1)
        buttons.addWidget(self.send_button)
        buttons.addWidget(close)
        lay = QVBoxLayout(self)
        lay.addLayout(row)
        lay.addWidget(self.what)
        lay.addWidget(self.status)
        lay.addLayout(buttons)

    def origin_service(self) -> str:
        path = self.win.session.path or ""
        return parse_series_url(path).service if is_series_url(path) else ""

    def _show(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet("color: #b00020;" if error else "color: #1b5e20;")
        self.status.setText(text)

    def send(self) -> None:
        server: ServerConfig | None = self.target.currentData()
        session = self.win.session
        if server is None or session.volume is None:
            return
        creds = self.store.credentials(server) if server.name or self.store.for_service(server.service) else None
        if creds is None:
            from medplib_core.pacs.credentials import credentials_for

            creds = credentials_for(server.service)[0]
        vol = session.volume
        kind = self.format.currentData()
        job = session.project_job(lambda p: _send(server.service, creds, p.label_array, vol, p.labels, kind))
        self.send_button.setEnabled(False)
        self.busy.show()
        self._show(f"Sending to {server.service}…")

        def done(obj):
            self.busy.hide()
            self.result = obj
            self._show(f"Stored in {obj.service}: {FORMATS[kind]} series {obj.series_uid} in study {obj.study_uid}.")
            self.sent.emit(obj)

        def failed(exc):
            self.busy.hide()
            self.send_button.setEnabled(True)
            self._show(str(exc) if isinstance(exc, PacsError) else f"{server.service}: {type(exc).__name__}: {exc}",
                       error=True)

        self.runner.submit(job, name="send to PACS", on_done=done, on_error=failed)
