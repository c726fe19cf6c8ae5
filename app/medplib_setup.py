"""MedPLIB setup in the GUI: where the weights are, the research-only notice, the about text.

`MedplibSetupDialog` edits the settings keys ``medplib/checkpoint|clip|sam|device`` (the same
keys `MedplibSettings.from_sources` reads; environment variables still take precedence) and
checks the folders as they are typed. `ensure_notice` shows the model's licence and intended
use once (remembered in settings) before the first use; `about_section` is its part of the
about box.
"""

from __future__ import annotations

import html
import os

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout,
                               QHBoxLayout, QLabel, QLineEdit, QMessageBox, QPushButton,
                               QVBoxLayout, QWidget)

from medplib_core.medplib.notice import MEDPLIB_NOTICE
from medplib_core.medplib.selection import ENV, SETTINGS_KEYS, WEIGHTS_HELP, MedplibSettings

NOTICE_KEY = "medplib/notice_accepted"
NOTICE_TITLE = "MedPLIB — research use only"
DEVICES = ("auto", "cpu", "cuda")


def notice_html() -> str:
    paras = html.escape(MEDPLIB_NOTICE).split("\n\n")
    return "".join(f"<p>{p}</p>" for p in paras)


def about_section(settings=None) -> str:
    """The MedPLIB section of Help ▸ About: licence, intended use, the configured weights."""
    extra = "<h4>MedPLIB model</h4>" + notice_html()
    if settings is not None:
        cfg = MedplibSettings.from_sources(settings)
        ok, _ = cfg.availability()
        extra += (f"<p>Weights: {html.escape(str(cfg.checkpoint))} (device {html.escape(cfg.device)})</p>"
                  if ok else "<p>Weights: not configured (Settings ▸ MedPLIB…); segmentation "
                             "uses LiteMedSAM.</p>")
    return extra


def notice_accepted(settings) -> bool:
    return bool(settings.get(NOTICE_KEY, False, bool))


def ensure_notice(parent: QWidget, settings, then) -> QMessageBox | None:
    """Run ``then`` once the user has seen the notice: at once if already acknowledged, else
    after "I understand" in a window-modal box (returned, so tests can click it)."""
    if notice_accepted(settings):
        then()
        return None
    box = QMessageBox(QMessageBox.Icon.Information, NOTICE_TITLE, "", QMessageBox.StandardButton.NoButton,
                      parent)
    box.setTextFormat(Qt.TextFormat.RichText)
    box.setText("<b>Before the first question:</b>" + notice_html())
    ok = box.addButton("I understand", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(ok)
    box.setWindowModality(Qt.WindowModality.WindowModal)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

    def finished(*_):
        parent.window().activateWindow()  # give the keyboard back to the main window
        if box.clickedButton() is ok:
            settings.set(NOTICE_KEY, True)
            settings.sync()
            then()

    box.finished.connect(finished)
    box.open()
    return box


def show_notice(parent: QWidget) -> QMessageBox:
    """The notice on demand (non-blocking)."""
    box = QMessageBox(QMessageBox.Icon.Information, NOTICE_TITLE, notice_html(),
                      QMessageBox.StandardButton.Ok, parent)
    box.setTextFormat(Qt.TextFormat.RichText)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


class MedplibSetupDialog(QDialog):
    """Point the app at the MedPLIB checkpoint, CLIP folder, SAM-Med2D file and device."""

    def __init__(self, settings, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("MedPLIB settings")
        self.settings = settings
        saved = {k: str(settings.get(v, "") or "") for k, v in SETTINGS_KEYS.items()}
        self.edits: dict[str, QLineEdit] = {}
        form = QFormLayout()
        for key, title, is_dir in (("checkpoint", "Checkpoint folder", True),
                                   ("clip", "CLIP folder (optional)", True),
                                   ("sam", "SAM-Med2D file (optional)", False)):
            edit = QLineEdit(saved[key])
            edit.setObjectName(f"medplib_{key}")
            edit.setPlaceholderText({"checkpoint": ".../MedPLIB-7b-2e",
                                     "clip": ".../clip-vit-large-patch14-336",
                                     "sam": ".../sam-med2d_b.pth"}[key])
            edit.textChanged.connect(self._check)
            browse = QPushButton("Browse…")
            browse.clicked.connect(lambda *_, k=key, d=is_dir: self._browse(k, d))
            row = QHBoxLayout()
            row.addWidget(edit, 1)
            row.addWidget(browse)
            form.addRow(title, row)
            self.edits[key] = edit
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.device.setCurrentText(saved["device"] if saved["device"] in DEVICES else "auto")
        self.device.currentTextChanged.connect(self._check)
        form.addRow("Device", self.device)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.env_note = QLabel()
        self.env_note.setWordWrap(True)
        self.help = QLabel(WEIGHTS_HELP)
        self.help.setWordWrap(True)
        self.help.setStyleSheet("color: palette(placeholder-text); font-size: 11px;")
        self.help.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.status)
        lay.addWidget(self.env_note)
        lay.addWidget(self.help)
        lay.addWidget(buttons)
        self.resize(680, 460)
        self._check()

    def values(self) -> dict[str, str]:
        out = {k: e.text().strip() for k, e in self.edits.items()}
        out["device"] = self.device.currentText()
        return out

    def _browse(self, key: str, is_dir: bool) -> None:
        start = self.edits[key].text() or os.path.expanduser("~")
        if is_dir:
            path = QFileDialog.getExistingDirectory(self, "Choose a folder", start)
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Choose the SAM-Med2D weights", start,
                                                  "PyTorch weights (*.pth *.pt);;All files (*)")
        if path:
            self.edits[key].setText(path)

    def _check(self, *_) -> None:
        v = self.values()
        cfg = MedplibSettings(v["checkpoint"] or None, v["clip"] or None, v["sam"] or None, v["device"])
        probs = cfg.problems()
        if probs:
            self.status.setText("⚠ " + "; ".join(probs) + ".")
            self.status.setStyleSheet("color: #b35c00;")
        else:
            self.status.setText("✔ The folders look complete. The model loads when the chat first needs it.")
            self.status.setStyleSheet("color: #1b7f3b;")
        env = [f"{name}={os.environ[name]}" for name in ENV.values() if os.environ.get(name)]
        self.env_note.setText(("The environment overrides these settings: " + ", ".join(env)) if env else "")
        self.env_note.setVisible(bool(env))

    def save(self) -> None:
        for key, value in self.values().items():
            self.settings.set(SETTINGS_KEYS[key], value)
        self.settings.sync()

    def accept(self) -> None:  # noqa: D102
        self.save()
        super().accept()
