"""File work for the window: open scans (series chooser, progress, cancel), export and import
labels, save and open projects, restore autosaves. Every slow step runs on a worker thread."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QWidget

import medplib_core
from medplib_core.errors import LoadError
from medplib_core.pacs import is_url
from medplib_core.export import export_labels, import_labels, write_rtstruct
from medplib_core.project import is_project, load_project, project_folder, save_project
from medplib_core.session import SaveTarget

from .dialogs import SeriesDialog, error_from_exception, progress_dialog, show_error
from .document import Document
from .workers import TaskRunner


def load_for_display(path, series=None, progress=None, cancel=None):
    """`medplib_core.load`, with the scan's value range (the windowing table needs it) computed
    here on the worker so the first frame does not wait for it."""
    vol = medplib_core.load(path, series=series, progress=progress, cancel=cancel)
    _ = vol.value_range  # a cached property, filled now
    return vol


class FileController(QObject):
    """Owns the I/O worker pool and the dialogs around slow file operations."""

    opened = Signal(str)  # path of a scan or project that finished loading
    message = Signal(str)
    saved = Signal(str)

    def __init__(self, doc: Document, parent_widget: QWidget):
        super().__init__(parent_widget)
        self.doc = doc  # signals
        self.session = doc.session  # state and operations
        self.win = parent_widget
        self.runner = TaskRunner(2, self, "files")
        self._progress = None
        self.loading = False

    # ----- progress helper -------------------------------------------------------------------
    def _start(self, text: str, fn, *args, on_done, title: str, cancellable: bool = True, **kw):
        holder: dict = {}
        dlg = progress_dialog(self.win, text, lambda: holder["task"].cancel())
        if not cancellable:
            dlg.setCancelButton(None)
        self._progress = dlg
        self.loading = True

        def progress(done, total):
            dlg.setMaximum(max(total, 1))
            dlg.setValue(min(done, max(total, 1)))

        def finish():
            self.loading = False
            dlg.reset()
            dlg.close()
            dlg.deleteLater()
            self._progress = None
            self.win.activateWindow()  # give the keyboard back to the main window

        def ok(result):
            finish()
            on_done(result)

        def err(exc):
            finish()
            error_from_exception(self.win, title, exc)

        def cancelled():
            finish()
            self.message.emit("Cancelled.")

        holder["task"] = self.runner.submit(fn, *args, on_done=ok, on_error=err, on_cancel=cancelled,
                                            on_progress=progress, pass_progress=True, pass_cancel=True,
                                            name=title, **kw)
        return holder["task"]

    # ----- opening scans ---------------------------------------------------------------------
    def open_path(self, path: str, series=None, then: Callable | None = None) -> None:
        """Open a scan file, a DICOM folder (asking for the series if several) or a project."""
        path = str(path)
        if is_project(path):
            self.open_project(path)
            return
        if os.path.isdir(path) and series is None:
            from medplib_core.io import list_series

            self.runner.submit(list_series, path, name="list series",
                               on_done=lambda infos: self._chose_series(path, infos, then),
                               on_error=lambda exc: error_from_exception(self.win, "Cannot open the folder", exc))
            return
        self._load(path, series, then)

    def series_of(self, path: str, on_done: Callable) -> None:
        """``on_done(SeriesInfo | None)``: the series of the folder that DICOM file ``path``
        belongs to (listed on a worker; None when the folder cannot be read)."""
        from medplib_core.io import list_series

        target = os.path.realpath(path)

        def work():
            for info in list_series(os.path.dirname(target)):
                if any(os.path.realpath(f) == target for f in info.files):
                    return info
            return None

        self.runner.submit(work, name="series of a file", on_done=on_done, on_error=lambda exc: on_done(None))

    def _chose_series(self, path: str, infos, then) -> None:
        if len(infos) <= 1:
            self._load(path, infos[0].uid if infos else None, then)
            return
        dlg = SeriesDialog(infos, self.win)
        self.series_dialog = dlg

        def done(code):
            chosen = dlg.chosen()
            if code and chosen is not None:
                self._load(path, chosen.uid, then)

        dlg.finished.connect(done)
        dlg.open()

    def _load(self, path: str, series, then) -> None:
        def done(vol):
            self.session.open(vol, path, series)  # belongs to no project
            self.session.save_state.saved(SaveTarget.PROJECT)  # nothing to save yet
            for note in (vol.source.notes if vol.source else [])[:2]:
                self.message.emit(note)
            self.opened.emit(path)
            if then:
                then(vol)

        self._start(f"Loading {Path(path).name}…", load_for_display, path, series=series,
                    on_done=done, title="Cannot open the scan")

    # ----- projects --------------------------------------------------------------------------
    @property
    def project_path(self) -> str | None:
        """The project folder the open work is saved to (the session's), or None."""
        return self.session.save_state.location(SaveTarget.PROJECT)

    def open_project(self, source, on_loaded: Callable | None = None) -> None:
        """Open a project folder (or its project.json: the folder is the project) or an already
        read `Project` (a recovered autosave, which keeps the project it belonged to)."""
        is_path = isinstance(source, (str, os.PathLike))
        if is_path:
            source = str(project_folder(source))

        def work(progress, cancel):
            project = load_project(source) if is_path else source
            scan = project.scan.get("path", "")
            if not scan or not (os.path.exists(scan) or is_url(scan)):  # a URL is fetched from its PACS
                raise LoadError(scan or str(source), "the project's scan is missing",
                                hint="move the scan back to where it was, or open the scan and import the labels")
            vol = load_for_display(scan, series=project.scan.get("series"), progress=progress, cancel=cancel)
            return project, vol

        def done(result):
            project, vol = result
            try:
                self.session.load_project(vol, project, folder=source if is_path else None)
            except ValueError as exc:
                show_error(self.win, "Cannot open the project", str(exc),
                           "The scan on disk changed since the project was saved.")
                return
            self.opened.emit(str(source) if is_path else project.scan.get("path", ""))
            if on_loaded:
                on_loaded()

        self._start("Opening the project…", work, on_done=done, title="Cannot open the project")

    def save_project(self, folder: str | None = None, on_saved: Callable | None = None) -> bool:
        """Save into ``folder`` (default: the project the work belongs to) on a worker; False
        when there is no folder to save to."""
        folder = folder or self.project_path
        if not folder or self.session.volume is None:
            return False
        folder = str(project_folder(folder))  # a project.json names its folder

        def write(project):
            project.meta["project_folder"] = folder
            return save_project(folder, project)

        job = self.session.project_job(write)
        mark = self.session.save_state.mark()

        def done(_):
            self.session.save_state.saved(SaveTarget.PROJECT, mark, location=folder)
            self.saved.emit(str(folder))
            self.message.emit(f"Project saved: {folder}")
            if on_saved:
                on_saved()

        self.runner.submit(job, name="save project", on_done=done,
                           on_error=lambda exc: error_from_exception(self.win, "Cannot save the project", exc))
        return True

    @property
    def dirty(self) -> bool:
        """Changes not in the project file (a scan opened and left untouched has none)."""
        return self.session.save_state.dirty(SaveTarget.PROJECT)

    # ----- labels in and out -----------------------------------------------------------------
    def export(self, path: str, on_done: Callable | None = None, fmt: str | None = None):
        """Write the labels (format by extension; ``fmt="rtstruct"``: an RT Structure Set) with
        their sidecar; returns the task."""
        if self.session.volume is None:
            return None
        vol = self.session.volume
        extra = self.session.export_extra()
        write = write_rtstruct if fmt == "rtstruct" else export_labels
        job = self.session.project_job(lambda p: write(path, p.label_array, vol, p.labels, extra))

        def done(written):
            self.message.emit(f"Exported labels: {written}")
            if on_done:
                on_done(written)

        return self.runner.submit(job, name="export",
                                  on_done=done,
                                  on_error=lambda exc: error_from_exception(self.win, "Export failed", exc))

    def import_labels(self, path: str) -> None:
        vol = self.session.volume
        if vol is None:
            return

        def done(imported):
            self.session.replace_labels(imported.array, imported.labels, description=f"import {Path(path).name}")
            for note in imported.notes:
                self.message.emit(note)
            if not imported.array.any():
                show_error(self.win, "Imported labels are empty", f"{path}: no labelled voxel lies on this scan.",
                           "Check that the label file belongs to this scan.")

        self.runner.submit(import_labels, path, vol, name="import", on_done=done,
                           on_error=lambda exc: error_from_exception(self.win, "Import failed", exc))

    def shutdown(self) -> None:
        self.runner.cancel_all()
        self.runner.wait(5000)
