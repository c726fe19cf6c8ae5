"""The main window's file commands: open scans, folders and projects, save, export, import,
and the "unsaved changes" question before work is dropped (another scan, a review run, quit).

`FileCommands` is a mixin of `MainWindow`; the slow work is `FileController`'s (app/files.py),
the dialogs are `file_dialogs`'. `ask_unsaved(then, verb)` is the one place that asks; an
extension with work of its own (the review queue) adds a guard with `on_unsaved`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from PySide6.QtWidgets import QFileDialog, QMessageBox

from medplib_core.pacs import is_url
from medplib_core.project import PROJECT_SUFFIX

from . import file_dialogs

EXPORT_EXT = {"nifti": ".nii.gz", "seg": ".dcm", "png": ".png", "rtstruct": ".dcm"}

Guard = Callable[[Callable[[], None], str], bool]


class FileCommands:
    """File menu commands of the window (mixed into `MainWindow`)."""

    def _init_file_commands(self) -> None:
        self._unsaved_guards: list[Guard] = []
        self._confirmed = False  # inside a `then` the user already answered for
        self.unsaved_box: QMessageBox | None = None
        self.file_dialog = None  # the open file dialog (tests and automation drive it)
        self.series_box: QMessageBox | None = None

    # ----- unsaved changes ---------------------------------------------------------------------
    def on_unsaved(self, guard: Guard) -> None:
        """``guard(then, verb)`` asks about an extension's own unsaved work and returns True
        when it asked (it runs ``then`` after the user saved or discarded), else False."""
        self._unsaved_guards.append(guard)

    def _run_confirmed(self, then: Callable[[], None]) -> None:
        self._confirmed = True
        try:
            then()
        finally:
            self._confirmed = False

    def ask_unsaved(self, then: Callable[[], None], verb: str = "open another scan") -> bool:
        """With unsaved work, ask (non-blocking) to save it, discard it or stay, and return True:
        ``then`` runs after Save (once saved) or Discard. False: nothing unsaved, go ahead."""
        if self._confirmed:
            return False
        go = lambda: self._run_confirmed(then)  # noqa: E731
        for guard in self._unsaved_guards:
            if guard(go, verb):
                return True
        if not self.files.dirty:
            return False
        name = Path(self.files.project_path or self.session.path).name
        box = QMessageBox(QMessageBox.Icon.Question, "Unsaved changes",
                          f"{name} has changes that are not saved.",
                          QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                          | QMessageBox.StandardButton.Cancel, self)
        box.setInformativeText(f"Save them before you {verb}?" + (
            "" if self.files.project_path else " (Save asks where to put the project.)"))
        box.setDefaultButton(QMessageBox.StandardButton.Save)
        box.save_button = box.button(QMessageBox.StandardButton.Save)
        box.discard_button = box.button(QMessageBox.StandardButton.Discard)

        def answered(button):
            role = box.standardButton(button)
            if role == QMessageBox.StandardButton.Save:
                self.save_project(then=go)
            elif role == QMessageBox.StandardButton.Discard:
                self._discarded = True
                go()

        box.buttonClicked.connect(answered)
        box.finished.connect(lambda *_: setattr(self, "unsaved_box", None))
        self.unsaved_box = box
        box.open()
        return True

    def close_discarding(self) -> None:
        """Close the window dropping unsaved work without a question (scripts, automation)."""
        self._discarded = True
        self._run_confirmed(self.close)

    # ----- opening -----------------------------------------------------------------------------
    def _dir(self) -> str:
        return self.settings.get("last_dir", str(Path.home()), str)

    def open_path(self, path: str, series=None, whole_series: bool = False) -> None:
        """Open a scan or project (asks first when the open work has unsaved changes);
        ``whole_series``: a DICOM file that is one of a series offers the whole series."""
        if self.ask_unsaved(lambda: self.open_path(path, series, whole_series)):
            return
        if whole_series and series is None and not is_url(path) and os.path.isfile(path) \
                and file_dialogs.is_dicom_file(path):
            self.files.series_of(path, lambda info: self._offer_series(path, info))
            return
        self.files.open_path(path, series)

    def _offer_series(self, path: str, info) -> None:
        """Ask whether to open the whole series ``info`` the picked file belongs to."""
        if info is None or len(info.files) <= 1:
            self.files.open_path(path)
            return
        box = QMessageBox(QMessageBox.Icon.Question, "Open the whole series?",
                          f"{Path(path).name} is one of {len(info.files)} images of the series "
                          f"“{info.description or info.uid}” in {Path(path).parent}.", parent=self)
        box.setInformativeText("Open the whole series as a volume, or only this image?")
        whole = box.addButton(f"Whole series ({info.n_frames or len(info.files)} images)",
                              QMessageBox.ButtonRole.AcceptRole)
        single = box.addButton("Only this image", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(whole)
        box.whole_button, box.single_button = whole, single

        def clicked(button):
            if button is whole:
                self.files.open_path(str(Path(path).parent), info.uid)
            elif button is single:
                self.files.open_path(path)

        box.buttonClicked.connect(clicked)
        self.series_box = box
        box.open()

    def open_file_dialog(self) -> None:
        self.file_dialog = file_dialogs.open_scan_dialog(
            self, self._dir(), lambda path: self.open_path(path, whole_series=True))

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a DICOM folder", self._dir())
        if path:
            self.open_path(path)

    def open_project_dialog(self) -> None:
        self.file_dialog = file_dialogs.open_project_dialog(self, self._dir(), self.open_path)

    # ----- saving ------------------------------------------------------------------------------
    def save_project(self, then: Callable[[], None] | None = None) -> None:
        """Save into the project the work belongs to, or ask where (Save as)."""
        if not self.files.save_project(on_saved=then):
            self.save_project_as(then)

    def save_project_as(self, then: Callable[[], None] | None = None) -> None:
        if self.session.volume is None:
            return
        current = self.files.project_path
        if current:
            suggested = Path(current)
        else:
            stem = Path(self.session.path).name.split(".")[0] or "project"
            suggested = Path(self._dir()) / f"{stem}{PROJECT_SUFFIX}"
        self.file_dialog = file_dialogs.save_project_dialog(
            self, suggested, current, lambda folder: self.files.save_project(folder, on_saved=then))

    def export_dialog(self, kind: str) -> None:
        """Export labels; the suggested name collides with no file (a scan folder often holds
        the reference labels already) and the folder is the last one exported to."""
        if self.session.volume is None:
            return
        ext = EXPORT_EXT[kind]
        scan = self.session.path
        folder = self.settings.get("export_dir", "", str) or (
            str(Path(scan).parent) if scan and not is_url(scan) else self._dir())
        if not os.path.isdir(folder):
            folder = self._dir()
        stem = (Path(scan).name.split(".")[0] if scan and not is_url(scan) else "") or "labels"
        suggested = file_dialogs.unused_path(folder, f"{stem}_{'rtstruct' if kind == 'rtstruct' else 'labels'}", ext)

        def chosen(path: str) -> None:
            self.settings.set("export_dir", str(Path(path).parent))
            self.files.export(path, fmt="rtstruct" if kind == "rtstruct" else None)

        self.file_dialog = file_dialogs.export_dialog(self, suggested, ext, chosen)

    def import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import labels", self._dir(),
                                              "Labels (*.nii *.nii.gz *.dcm *.png);;All files (*)")
        if path:
            self.files.import_labels(path)
