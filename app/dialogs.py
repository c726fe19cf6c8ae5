"""Dialogs: errors with a reason (never a traceback), the series chooser, about, progress."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QLabel, QMessageBox, QProgressDialog,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget, QAbstractItemView,
                               QHeaderView)

from medplib_core import __version__
from medplib_core.errors import ExportError, LoadError, MedplibError

_HINTS = {
    LoadError: "Check that the file is a DICOM, NIfTI or image file and that it is complete; "
               "for a DICOM series, open its folder.",
    ExportError: "Check the target folder exists and is writable, and that the file name ends "
                 "in .nii.gz, .dcm or .png.",
}


def explain(exc: BaseException) -> tuple[str, str]:
    """(reason, what to do) for an exception, in words a user can act on."""
    hint = getattr(exc, "hint", None)
    for cls, text in _HINTS.items():
        if isinstance(exc, cls):
            return str(exc), hint or text
    if isinstance(exc, MemoryError):
        return "not enough memory for this operation", "Close other programs or open a smaller scan."
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}", "Choose a folder you can write to."
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), \
            "Check the path and the free disk space."
    if isinstance(exc, MedplibError):
        return str(exc), hint or ""
    return f"{type(exc).__name__}: {exc}", "If this keeps happening, please report it with the log file."


def show_error(parent: QWidget | None, title: str, reason: str, hint: str = "") -> QMessageBox:
    """A non-blocking (window-modal) error box with the reason and what to do."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, reason, QMessageBox.StandardButton.Ok, parent)
    if hint:
        box.setInformativeText(hint)
    box.setTextFormat(Qt.TextFormat.PlainText)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setWindowModality(Qt.WindowModality.WindowModal)
    box.open()
    return box


def error_from_exception(parent: QWidget | None, title: str, exc: BaseException) -> QMessageBox:
    reason, hint = explain(exc)
    return show_error(parent, title, reason, hint)


class SeriesDialog(QDialog):
    """Pick one series when a folder holds several."""

    def __init__(self, series: list, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Choose a series")
        self.series = series
        self.table = QTableWidget(len(series), 5)
        self.table.setHorizontalHeaderLabels(["Modality", "Description", "Images", "Size", "Series UID"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        for r, s in enumerate(series):
            vals = [getattr(s, "modality", ""), getattr(s, "description", ""),
                    getattr(s, "n_frames", 0) or getattr(s, "n_files", ""),
                    _size_text(s), getattr(s, "uid", "")]
            for c, v in enumerate(vals):
                self.table.setItem(r, c, QTableWidgetItem(str(v)))
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.selectRow(0)
        self.table.doubleClicked.connect(self.accept)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("This folder holds several series. Which one should open?"))
        lay.addWidget(self.table)
        lay.addWidget(buttons)
        self.resize(720, 320)

    def chosen(self):
        rows = self.table.selectionModel().selectedRows()
        return self.series[rows[0].row()] if rows else None


def _size_text(s) -> str:
    rows, cols = getattr(s, "rows", None), getattr(s, "columns", None)
    return f"{cols}×{rows}" if rows and cols else ""


def progress_dialog(parent: QWidget, text: str, on_cancel) -> QProgressDialog:
    """A window-modal progress dialog whose Cancel button calls ``on_cancel``."""
    dlg = QProgressDialog(text, "Cancel", 0, 0, parent)
    dlg.setWindowTitle("MedPLIB Studio")
    dlg.setWindowModality(Qt.WindowModality.WindowModal)
    dlg.setMinimumDuration(300)
    dlg.setAutoClose(False)
    dlg.setAutoReset(False)
    dlg.canceled.connect(on_cancel)
    return dlg


ABOUT = f"""<h3>MedPLIB Studio {__version__}</h3>
<p>A desktop annotation studio for medical images: view DICOM, NIfTI and 2D images, segment with
LiteMedSAM, correct, propagate in 3D and export geometry-exact labels (NIfTI, DICOM SEG, PNG).</p>
<p><b>Research use only.</b> Not a medical device; not for clinical decisions. Models such as
MedPLIB are released for research only.</p>
<p>Settings, recent files and autosave recovery are stored per user.</p>"""


def show_about(parent: QWidget) -> None:
    QMessageBox.about(parent, "About MedPLIB Studio", ABOUT)
