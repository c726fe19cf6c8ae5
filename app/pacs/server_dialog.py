"""`ServerDialog`: add or edit one PACS server (name, DICOMweb URL, authentication), with a
Test button that runs a QIDO search off the GUI thread."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit,
                               QPushButton, QVBoxLayout, QWidget)

from medplib_core.pacs import PacsError
from medplib_core.pacs.credentials import Credentials

from ..workers import TaskRunner
from .servers import AUTH_TEXT, ServerConfig, ServerStore


def _ping(server: ServerConfig, creds: Credentials) -> str:
    from medplib_core.pacs.client import PacsClient

    PacsClient(server.service, creds).ping()
    return server.service


class ServerDialog(QDialog):
    """Edit a server; on OK it is saved in the store (secret in the keyring where there is one)."""

    saved = Signal(object)  # the ServerConfig; ``note`` then says where its secret is kept

    def __init__(self, store: ServerStore, server: ServerConfig | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("PACS server")
        self.store, self.original = store, server
        self.note = ""
        self.runner = TaskRunner(1, self, "pacs-test")
        self.name = QLineEdit(server.name if server else "")
        self.name.setPlaceholderText("e.g. Radiology PACS")
        self.url = QLineEdit(server.url if server else "")
        self.url.setPlaceholderText("https://pacs.example.org/dicom-web")
        self.auth = QComboBox()
        for key, text in AUTH_TEXT.items():
            self.auth.addItem(text, key)
        self.auth.setCurrentIndex(max(0, self.auth.findData(server.auth if server else "none")))
        self.username = QLineEdit(server.username if server else "")
        self.secret = QLineEdit()
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.secret.setPlaceholderText("unchanged" if server and server.auth != "none" else "")
        self.secret_label = QLabel("Password")
        self.keyring_note = QLabel(store.keyring_text())
        self.keyring_note.setWordWrap(True)
        self.test_button = QPushButton("Test connection")
        self.test_button.clicked.connect(self.test)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("DICOMweb URL", self.url)
        form.addRow("Authentication", self.auth)
        form.addRow("User name", self.username)
        form.addRow(self.secret_label, self.secret)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.keyring_note)
        lay.addWidget(self.test_button)
        lay.addWidget(self.status)
        lay.addWidget(self.buttons)
        self.auth.currentIndexChanged.connect(self._auth_changed)
        self._auth_changed()
        self.resize(520, self.sizeHint().height())

    def _auth_changed(self) -> None:
        kind = self.auth.currentData()
        self.username.setEnabled(kind == "basic")
        self.secret.setEnabled(kind != "none")
        self.secret_label.setText("Token" if kind == "bearer" else "Password")

    def config(self) -> ServerConfig:
        """The server as typed; raises PacsError for an unusable URL."""
        server = ServerConfig(self.name.text().strip(), self.url.text().strip(), self.auth.currentData(),
                              self.username.text().strip() if self.auth.currentData() == "basic" else "")
        server.url = server.service  # normalised; refuses URLs with credentials in them
        return server

    def _credentials(self, server: ServerConfig) -> Credentials | None:
        if server.auth == "none":
            return Credentials()
        if self.secret.text():
            return Credentials(server.auth, server.username, self.secret.text())
        return self.store.credentials(server)

    def _show(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet("color: #b00020;" if error else "color: #1b5e20;")
        self.status.setText(text)

    def test(self) -> None:
        try:
            server = self.config()
        except PacsError as exc:
            self._show(str(exc), True)
            return
        creds = self._credentials(server)
        if creds is None:
            self._show(f"Type the {self.secret_label.text().lower()} to test {server.service}.", True)
            return
        self.test_button.setEnabled(False)
        self._show(f"Connecting to {server.service}…")

        def done(service):
            self.test_button.setEnabled(True)
            self._show(f"Connected: {service} answers DICOMweb searches.")

        def failed(exc):
            self.test_button.setEnabled(True)
            self._show(str(exc) if isinstance(exc, PacsError) else f"{server.service}: {type(exc).__name__}: {exc}", True)

        self.runner.submit(_ping, server, creds, name="test PACS", on_done=done, on_error=failed)

    def save(self) -> None:
        try:
            server = self.config()
        except PacsError as exc:
            self._show(str(exc), True)
            return
        self.store.upsert(server, self.original.url if self.original else None)
        self.note = ""
        if server.auth == "none" or self.secret.text():
            self.note = self.store.set_secret(server, self.secret.text())
        self.saved.emit(server)
        self.accept()

    def done(self, code: int) -> None:  # noqa: D401 - Qt override
        self.runner.cancel_all()
        super().done(code)
