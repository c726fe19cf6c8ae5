"""The window's file dialogs: open a scan (folders and extension-less DICOM files too), open
and save projects as folders, export labels under a name that collides with nothing.

Each dialog is a non-native `QFileDialog` opened with ``open()`` (never a nested event loop);
the caller gets the chosen path through ``then``. Scanner files often have no extension (or a
UID as their name), so the scan dialog lists every file that starts like a DICOM file, and
"Open" on a folder that holds DICOM files opens that folder instead of entering it. A project
is a folder: "Open" or "Save" on a ``.medplib`` folder chooses it instead of entering it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QSortFilterProxyModel
from PySide6.QtWidgets import QDialog, QFileDialog, QMessageBox, QWidget

from medplib_core.export.sidecar import sidecar_path
from medplib_core.project import PROJECT_FILE, PROJECT_SUFFIX, is_project, project_folder

SCAN_SUFFIXES = (".dcm", ".dicom", ".ima", ".nii", ".nii.gz", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
SCAN_FILTER = "Scans: DICOM (any name), NIfTI, images (*)"
ALL_FILES = "All files (*)"
PROJECT_FILTER = f"MedPLIB Studio project (*{PROJECT_SUFFIX} {PROJECT_FILE})"


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True when the file starts like a DICOM Part 10 file (128-byte preamble, then "DICM")."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def has_scan_suffix(name: str) -> bool:
    return name.lower().endswith(SCAN_SUFFIXES)


def folder_has_dicom(folder: str | os.PathLike, limit: int = 64) -> bool:
    """True when one of the first ``limit`` files of ``folder`` is a DICOM file."""
    try:
        with os.scandir(folder) as it:
            for n, entry in enumerate(it):
                if n >= limit:
                    break
                if entry.is_file() and (entry.name.lower().endswith(".dcm") or is_dicom_file(entry.path)):
                    return True
    except OSError:
        return False
    return False


def unused_path(folder: str | os.PathLike, stem: str, ext: str) -> Path:
    """``folder/stem+ext`` unless it (or its JSON sidecar) exists, else ``stem-2``, ``stem-3``…"""
    folder = Path(folder)
    n = 1
    while True:
        candidate = folder / f"{stem}{'' if n == 1 else f'-{n}'}{ext}"
        if not candidate.exists() and not sidecar_path(candidate).exists():
            return candidate
        n += 1


class _ScanFiles(QSortFilterProxyModel):
    """Folders, files with a scan extension and files that are DICOM whatever their name."""

    def __init__(self, dialog: QFileDialog):
        super().__init__(dialog)
        self.dialog = dialog
        self._dicom: dict[tuple[str, float], bool] = {}

    def filterAcceptsRow(self, row, parent) -> bool:  # noqa: N802 (Qt API)
        model = self.sourceModel()
        index = model.index(row, 0, parent)
        if model.isDir(index) or self.dialog.selectedNameFilter() == ALL_FILES:
            return True
        name = model.fileName(index)
        if has_scan_suffix(name):
            return True
        path = model.filePath(index)
        key = (path, model.lastModified(index).toSecsSinceEpoch())
        if key not in self._dicom:
            self._dicom[key] = is_dicom_file(path)
        return self._dicom[key]


class ChooserDialog(QFileDialog):
    """A non-native file dialog whose "Open"/"Save" on a folder ``takes_folder`` accepts says
    that folder (instead of entering it); ``chosen`` is the result."""

    def __init__(self, parent: QWidget, title: str, folder: str, filters: list[str],
                 takes_folder: Callable[[str], bool], save: bool = False, confirm: Callable | None = None):
        super().__init__(parent, title, folder)
        self.setOption(QFileDialog.Option.DontUseNativeDialog, True)
        self.setAcceptMode(QFileDialog.AcceptMode.AcceptSave if save else QFileDialog.AcceptMode.AcceptOpen)
        self.setFileMode(QFileDialog.FileMode.AnyFile if save else QFileDialog.FileMode.ExistingFile)
        self.setNameFilters(filters)
        self.takes_folder = takes_folder
        self.confirm = confirm  # confirm(path, go): may ask first, then calls go()
        self.chosen: str | None = None

    def _typed(self) -> str | None:
        files = self.selectedFiles()
        return files[0] if files else None

    def accept(self) -> None:  # noqa: D102 (Qt API)
        path = self._typed()
        if path and os.path.isdir(path) and self.takes_folder(path):
            self._finish(path)
            return
        super().accept()  # enters folders, checks the file, may ask to overwrite

    def done(self, result: int) -> None:  # noqa: D102
        if result == QDialog.DialogCode.Accepted and self.chosen is None:
            path = self._typed()
            if path and self.confirm is not None and not getattr(self, "_confirmed", False):
                self.confirm(path, lambda: self._confirm_then_done(path))
                return
            self.chosen = path
        super().done(result)

    def _confirm_then_done(self, path: str) -> None:
        self._confirmed = True
        self.chosen = path
        QFileDialog.done(self, QDialog.DialogCode.Accepted)

    def _finish(self, path: str) -> None:
        if self.confirm is not None:
            self.confirm(path, lambda: self._confirm_then_done(path))
        else:
            self.chosen = path
            QDialog.done(self, QDialog.DialogCode.Accepted)


def _open(dlg: ChooserDialog, then: Callable[[str], None]) -> ChooserDialog:
    def finished(code: int) -> None:
        if dlg.parentWidget() is not None:
            dlg.parentWidget().window().activateWindow()  # the keyboard goes back to the window
        if code == QDialog.DialogCode.Accepted and dlg.chosen:
            then(dlg.chosen)

    dlg.finished.connect(finished)
    dlg.open()
    return dlg


def open_scan_dialog(parent: QWidget, folder: str, then: Callable[[str], None]) -> ChooserDialog:
    """Choose a scan file, or a DICOM folder ("Open" on it)."""
    dlg = ChooserDialog(parent, "Open a scan (a file, or a DICOM folder)", folder, [SCAN_FILTER, ALL_FILES],
                        folder_has_dicom)
    dlg.setProxyModel(_ScanFiles(dlg))
    dlg.filterSelected.connect(lambda _: dlg.proxyModel().invalidateFilter())
    return _open(dlg, then)


def open_project_dialog(parent: QWidget, folder: str, then: Callable[[str], None]) -> ChooserDialog:
    """Choose a project folder (or its project.json); the folder is what ``then`` gets."""
    dlg = ChooserDialog(parent, "Open a project", folder, [PROJECT_FILTER, ALL_FILES], is_project)
    return _open(dlg, lambda path: then(str(project_folder(path))))


def save_project_dialog(parent: QWidget, suggested: Path, current: str | None,
                        then: Callable[[str], None]) -> ChooserDialog:
    """Choose the project folder to save into: a new name, or an existing project (another
    project than ``current`` is replaced only after a confirmation)."""

    def confirm(path: str, go: Callable[[], None]) -> None:
        path = str(project_folder(with_suffix(path)))
        if not is_project(path) or (current and Path(path).resolve() == Path(current).resolve()):
            go()
            return
        box = QMessageBox(QMessageBox.Icon.Question, "Replace the project?",
                          f"{path} is another project. Replace it with this work?",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, dlg)
        box.accepted.connect(go)
        dlg.replace_box = box
        box.open()

    dlg = ChooserDialog(parent, "Save the project as a folder", str(suggested.parent),
                        [f"MedPLIB Studio project (*{PROJECT_SUFFIX})"], is_project, save=True, confirm=confirm)
    dlg.setOption(QFileDialog.Option.DontConfirmOverwrite, True)  # a project folder is confirmed above
    dlg.selectFile(suggested.name)
    return _open(dlg, lambda path: then(str(project_folder(with_suffix(path)))))


def with_suffix(path: str) -> str:
    """A project path ends with .medplib (an existing project folder is kept as named)."""
    if is_project(path) or path.endswith(PROJECT_SUFFIX) or Path(path).name == PROJECT_FILE:
        return path
    return path + PROJECT_SUFFIX


def export_dialog(parent: QWidget, suggested: Path, ext: str, then: Callable[[str], None]) -> ChooserDialog:
    """Choose the export file (``suggested`` collides with no file)."""
    dlg = ChooserDialog(parent, "Export labels", str(suggested.parent), [f"Labels (*{ext})"], lambda _: False,
                        save=True)
    dlg.setDefaultSuffix(ext.lstrip("."))
    dlg.selectFile(suggested.name)
    return _open(dlg, lambda path: then(path if path.lower().endswith(ext) else path + ext))
