"""Settings ▸ Engine…: where the engines run — on this computer or on an engine server.

On this computer LiteMedSAM runs in the application and MedPLIB in a separate engine process
(unless unticked), so a crash or an out-of-memory kill of the model never closes the window.
On a server (``medplib-studio serve`` on a GPU box) both run there; the dialog takes its URL and
token and checks them (version handshake and token) off the GUI thread. The values are the core's
`EngineLocation` settings; the token goes to the platform keyring when there is one, else it is
kept for this session.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QDialog, QDialogButtonBox, QFormLayout,
                               QHBoxLayout, QLabel, QLineEdit, QPushButton, QRadioButton,
                               QVBoxLayout, QWidget)

from medplib_core.server import TOKEN_ENV
from medplib_core.server.location import EngineLocation

from .workers import TaskRunner


def check_server(url: str, token: str) -> str:
    """Handshake with a server (worker thread): a line describing it, or a `MedplibError`."""
    from medplib_core.engines.remote_http import Connection

    conn = Connection(url, token=token, timeout=15)
    try:
        engines = ", ".join(f"{e['name']} on {e['device']}" for e in conn.info.get("engines", []))
        return f"medplib-studio {conn.info.get('server_version')} (engine API {conn.info.get('api_version')}): {engines}"
    finally:
        conn.close()


class EngineSetupDialog(QDialog):
    def __init__(self, settings, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Engine")
        self.settings = settings
        loc = EngineLocation.from_settings(settings)
        self.local = QRadioButton("On this computer")
        self.remote = QRadioButton("On a server")
        group = QButtonGroup(self)
        for b in (self.local, self.remote):
            group.addButton(b)
        (self.remote if loc.remote else self.local).setChecked(True)
        self.process = QCheckBox("Run MedPLIB in a separate engine process (a crash or out-of-memory "
                                 "error of the model cannot close this window)")
        self.process.setChecked(loc.medplib_process)
        self.url = QLineEdit(loc.url)
        self.url.setObjectName("engine_url")
        self.url.setPlaceholderText("https://gpu-box:8765")
        self.token = QLineEdit("" if loc.token_source == "environment" else loc.token)
        self.token.setObjectName("engine_token")
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText(f"the token `medplib-studio serve` printed (or set {TOKEN_ENV})")
        if loc.token_source == "environment":
            self.token.setEnabled(False)
            self.token.setPlaceholderText(f"taken from {TOKEN_ENV}")
        self.check = QPushButton("Check connection")
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form = QFormLayout()
        form.addRow("Server URL", self.url)
        form.addRow("Token", self.token)
        row = QHBoxLayout()
        row.addWidget(self.check)
        row.addStretch(1)
        form.addRow("", row)
        self.server_box = QWidget()
        self.server_box.setLayout(form)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Where do LiteMedSAM and MedPLIB run?"))
        lay.addWidget(self.local)
        lay.addWidget(self.process)
        lay.addWidget(self.remote)
        lay.addWidget(self.server_box)
        lay.addWidget(self.status)
        lay.addWidget(buttons)
        self.runner = TaskRunner(1, self, "engine-check")
        self.local.toggled.connect(self._sync)
        self.url.textChanged.connect(self._sync)
        self.token.textChanged.connect(self._sync)
        self.check.clicked.connect(self.check_connection)
        self.resize(620, 320)
        self._sync()

    def location(self) -> EngineLocation:
        env = EngineLocation.from_settings(None)  # the environment's token, if any
        token = env.token if env.token_source == "environment" else self.token.text().strip()
        return EngineLocation("server" if self.remote.isChecked() else "local",
                              self.url.text().strip().rstrip("/"), token,
                              env.token_source if env.token_source == "environment" else "dialog",
                              self.process.isChecked())

    def _sync(self, *_) -> None:
        remote = self.remote.isChecked()
        self.server_box.setEnabled(remote)
        self.process.setEnabled(not remote)
        probs = self.location().problems()
        self.check.setEnabled(remote and not probs)
        if remote and probs:
            self._say("⚠ " + "; ".join(probs) + ".", "#b35c00")
        elif not remote:
            self._say("LiteMedSAM runs in this application; MedPLIB uses the weights of "
                      "Settings ▸ MedPLIB….", None)
        else:
            self._say("", None)

    def _say(self, text: str, colour: str | None) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {colour};" if colour else "")

    def check_connection(self) -> None:
        loc = self.location()
        self._say(f"connecting to {loc.url}…", None)
        self.check.setEnabled(False)

        def done(text: str) -> None:
            self._say("✔ " + text, "#1b7f3b")
            self.check.setEnabled(True)

        def failed(exc) -> None:
            self._say(f"⚠ {exc}", "#b00020")
            self.check.setEnabled(True)

        self.runner.submit(check_server, loc.url, loc.token, name="check server", on_done=done,
                           on_error=failed)

    def accept(self) -> None:  # noqa: D102
        where = self.location().save(self.settings)
        self.settings.sync()
        self.token_kept = where
        super().accept()

    def done(self, result: int) -> None:  # noqa: D102
        self.runner.cancel_all()
        super().done(result)
