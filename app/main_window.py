"""`MainWindow`: the viewer in the centre, the labels panel and a chat dock on the right,
menus, toolbars and the status bar; wires documents, engines, files and autosave together."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QDockWidget, QFileDialog, QMainWindow, QMessageBox, QWidget

from medplib_core.pacs import is_url
from medplib_core.project import PROJECT_FILE, PROJECT_SUFFIX, RecoveryStore

from . import actions
from .chat import install_chat_panel
from .dialogs import show_about, show_error
from .document import Document
from .engine_controller import EngineController, default_engine_factory
from .files import FileController
from .labels_panel import LabelsPanel
from .propagate import PropagationController
from .recovery import Autosaver, offer_restore
from .resources import icon
from .pacs import install_pacs
from .review import install_review
from .segment_controller import SegmentController
from .settings import Settings, recovery_dir
from .shortcuts import ShortcutsDialog
from .status_bar import StatusBar
from .tools import ToolState
from .viewer import ViewerArea

SCAN_FILTER = "Scans (*.dcm *.DCM *.nii *.nii.gz *.png *.jpg *.jpeg *.tif *.tiff *.bmp);;All files (*)"


class MainWindow(QMainWindow):
    """The application window."""

    def __init__(self, engine_factory=None, settings: Settings | None = None, autosave_ms: int | None = None,
                 load_engine: bool = True):
        super().__init__()
        self.setWindowTitle("MedPLIB Studio")
        self.setWindowIcon(icon("engine"))
        self.setAcceptDrops(True)
        self.actions_by_name: dict = {}
        self.settings = settings or Settings()
        self.doc = Document(parent=self)
        self.tools = ToolState(self.settings.get("tool", "box", str), self.settings.get("brush_size", 10, int), self)
        self.viewer = ViewerArea(self.doc, self.tools)
        self.doc.session.view_state_provider = self.viewer.state
        self.setCentralWidget(self.viewer)
        self.status = StatusBar(self)
        self.setStatusBar(self.status)
        if engine_factory is None:
            name = self.settings.get("engine", "litemedsam", str)
            engine_factory = lambda: default_engine_factory(name)  # noqa: E731
        self.engine = EngineController(self.doc, engine_factory, self)
        self.segment = SegmentController(self.doc, self.engine, self)
        for v in self.viewer.views:
            self.segment.attach(v)
        self.files = FileController(self.doc, self)
        self.propagation = PropagationController(self.doc, self.engine, self)
        self.labels_panel = LabelsPanel(self.doc)
        self.labels_dock = self._dock("Labels", self.labels_panel, "labels_dock")
        self.chat_dock: QDockWidget | None = None
        autosave_ms = autosave_ms or self.settings.get("autosave_ms", 3000, int)
        self.autosaver = Autosaver(self.doc, RecoveryStore(recovery_dir()), autosave_ms, self)
        actions.build(self)
        self._connect()
        install_chat_panel(self)
        install_review(self)
        install_pacs(self)
        self._restore_settings()
        self._update_recent_menu()
        self._update_actions()
        if load_engine:
            self.engine.load()
        QTimer.singleShot(0, self.check_recovery)

    # ----- construction ----------------------------------------------------------------------
    def _dock(self, title: str, widget: QWidget, name: str, area=Qt.DockWidgetArea.RightDockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        if hasattr(self, "panels_menu"):
            self.panels_menu.addAction(dock.toggleViewAction())
        return dock

    def add_panel(self, title: str, widget: QWidget, name: str) -> QDockWidget:
        """Add a dockable panel on the right, below the labels (the chat panel plugs in here)."""
        dock = self._dock(title, widget, name)
        self.splitDockWidget(self.labels_dock, dock, Qt.Orientation.Vertical)
        if name == "chat_dock":
            self.chat_dock = dock
        return dock

    def _connect(self) -> None:
        d, s = self.doc, self.status
        self.panels_menu.addAction(self.labels_dock.toggleViewAction())
        self.viewer.cursor_info.connect(lambda info: s.set_cursor(info, {l.value: l.name for l in d.labels}))
        self.viewer.active_changed.connect(lambda _: self._current_slice_changed())
        for v in self.viewer.views:
            v.index_changed.connect(lambda *_: self._current_slice_changed())
        d.window_changed.connect(lambda *_: self._current_slice_changed())
        d.volume_changed.connect(self._on_volume)
        d.history_changed.connect(self._update_actions)
        d.proposal_changed.connect(self._update_actions)
        d.changed.connect(self._update_title)
        self.engine.status_changed.connect(s.set_engine)
        self.engine.error.connect(lambda t, m: show_error(self, t, m))
        self.segment.error.connect(lambda t, m: show_error(self, t, m))
        self.segment.message.connect(lambda m: s.showMessage(m, 6000))
        self.propagation.message.connect(lambda m: s.showMessage(m, 6000))
        self.files.message.connect(lambda m: s.showMessage(m, 8000))
        self.files.opened.connect(self._on_opened)
        self.files.saved.connect(lambda _: self._update_title())
        self.labels_panel.opacity_changed.connect(self.set_opacity)
        self.tools.changed.connect(self._on_tool)
        self._on_tool()
        self.engine.publish()

    def _restore_settings(self) -> None:
        geo = self.settings.get("geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        else:
            self.resize(1280, 820)
        state = self.settings.get("window_state")
        if state is None or not self.restoreState(state):
            self.resizeDocks([self.labels_dock], [420], Qt.Orientation.Horizontal)
        self.labels_panel.opacity.setValue(self.settings.get("opacity", 45, int))
        self.set_opacity(self.labels_panel.opacity.value() / 100.0)

    # ----- slots -----------------------------------------------------------------------------
    def _on_tool(self) -> None:
        t = self.tools
        act = self.actions_by_name.get(f"tool_{t.tool}")
        if act is not None and not act.isChecked():
            act.setChecked(True)
        if hasattr(self, "brush_spin") and self.brush_spin.value() != t.brush_size:
            self.brush_spin.setValue(t.brush_size)
        self.status.set_tool(t.tool, t.brush_size)

    def _on_volume(self) -> None:
        vol = self.doc.volume
        a = self.actions_by_name
        is_dicom = bool(vol.source and vol.source.kind == "dicom")
        a["export_seg"].setEnabled(is_dicom)
        a["export_png"].setEnabled(vol.is_2d)
        a["layout_grid"].setEnabled(not vol.is_2d)
        for o in ("coronal", "sagittal"):
            a[f"view_{o}"].setEnabled(not vol.is_2d)
        a["propagate"].setEnabled(not vol.is_2d)
        self.engine.cancel_prefetch()
        self.engine.abandon()
        self.propagation.cancel()
        self._update_title()
        self._update_actions()
        QTimer.singleShot(0, self._current_slice_changed)

    def _on_opened(self, path: str) -> None:
        if path:
            self.settings.add_recent(path)
            if not is_url(path):  # a PACS series URL is no folder to start file dialogs in
                self.settings.set("last_dir", str(Path(path).parent))
            self._update_recent_menu()

    def _current_slice_changed(self) -> None:
        v = self.viewer.active
        if self.doc.volume is None:
            return
        orientation, index, n = v.orientation, v.index, v.n_slices()

        def neighbours():
            return [v.renderer.pixels(orientation, index + d) for d in (1, -1, 2, -2, 3, -3) if 0 <= index + d < n]

        self.engine.set_current_slice(v.renderer.pixels(orientation, index), neighbours)

    def _update_actions(self) -> None:
        a, h = self.actions_by_name, self.doc.history
        if not a:
            return
        a["undo"].setEnabled(bool(h and h.can_undo))
        a["redo"].setEnabled(bool(h and h.can_redo))
        a["undo"].setText(f"Undo {h.undo_text()}" if h and h.can_undo else "Undo")
        a["redo"].setText(f"Redo {h.redo_text()}" if h and h.can_redo else "Redo")
        has = self.doc.proposal is not None
        a["accept"].setEnabled(has)
        a["discard"].setEnabled(True)
        for n in ("save_project", "save_project_as", "export_nifti", "import_labels"):
            a[n].setEnabled(self.doc.volume is not None)

    def _update_title(self) -> None:
        name = Path(self.files.project_path or self.doc.path).name if self.doc.volume is not None else ""
        star = " *" if self.files.dirty else ""
        self.setWindowTitle(f"{name}{star} — MedPLIB Studio" if name else "MedPLIB Studio")

    def _update_recent_menu(self) -> None:
        m = self.recent_menu
        m.clear()
        items = self.settings.recent_files()
        for p in items:
            m.addAction(p, lambda p=p: self.open_path(p))
        if items:
            m.addSeparator()
            m.addAction("Clear the list", lambda: (self.settings.clear_recent(), self._update_recent_menu()))
        m.setEnabled(bool(items))

    def set_opacity(self, value: float) -> None:
        for v in self.viewer.views:
            v.canvas.opacity = value
            v.canvas.update()

    def set_overlay_visible(self, on: bool) -> None:
        for v in self.viewer.views:
            v.overlay_visible = bool(on)
            v.refresh(scan=False, proposal=False)

    def set_grid(self, on: bool) -> None:
        self.viewer.set_layout("grid" if on else "single")

    def apply_preset_index(self, i: int) -> None:
        data = self.preset_combo.itemData(i)
        if data == "auto":
            self.doc.auto_window()
        elif data:
            self.doc.set_window(*data)
        self.preset_combo.setCurrentIndex(0)

    def undo(self) -> None:
        if not self.doc.undo():
            self.status.showMessage("Nothing to undo.", 3000)

    def redo(self) -> None:
        if not self.doc.redo():
            self.status.showMessage("Nothing to redo.", 3000)

    def propagate(self) -> None:
        self.propagation.start(self.viewer.active)

    # ----- files -----------------------------------------------------------------------------
    def _dir(self) -> str:
        return self.settings.get("last_dir", str(Path.home()), str)

    def open_path(self, path: str, series=None) -> None:
        """Open a scan or project; asks first when the open work has unsaved changes."""
        if not self.files.dirty:
            self.files.open_path(path, series)
            return
        box = QMessageBox(QMessageBox.Icon.Question, "Unsaved changes",
                          f"Save the changes to {Path(self.files.project_path or self.doc.path).name} first?",
                          QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                          | QMessageBox.StandardButton.Cancel, self)

        def answered(button):
            role = box.standardButton(button)
            if role == QMessageBox.StandardButton.Save:
                if self.files.project_path:
                    self.files.save_project(on_saved=lambda: self.files.open_path(path, series))
                else:
                    self.save_project_as()
            elif role == QMessageBox.StandardButton.Discard:
                self.files.open_path(path, series)

        box.buttonClicked.connect(answered)
        box.open()
        self.unsaved_box = box

    def open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a scan", self._dir(), SCAN_FILTER)
        if path:
            self.open_path(path)

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a DICOM folder", self._dir())
        if path:
            self.open_path(path)

    def open_project_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a project", self._dir(),
                                              f"MedPLIB Studio project ({PROJECT_FILE})")
        if path:
            self.files.open_project(path)

    def save_project(self) -> None:
        if not self.files.save_project():
            self.save_project_as()

    def save_project_as(self) -> None:
        if self.doc.volume is None:
            return
        stem = Path(self.doc.path).name.split(".")[0] or "project"
        path, _ = QFileDialog.getSaveFileName(self, "Save the project as a folder",
                                              str(Path(self._dir()) / f"{stem}{PROJECT_SUFFIX}"),
                                              f"MedPLIB Studio project (*{PROJECT_SUFFIX})")
        if path:
            if not path.endswith(PROJECT_SUFFIX):
                path += PROJECT_SUFFIX
            self.files.save_project(path)

    def export_dialog(self, kind: str) -> None:
        if self.doc.volume is None:
            return
        ext = {"nifti": ".nii.gz", "seg": ".dcm", "png": ".png"}[kind]
        stem = Path(self.doc.path).name.split(".")[0] or "labels"
        path, _ = QFileDialog.getSaveFileName(self, "Export labels", str(Path(self._dir()) / f"{stem}_labels{ext}"),
                                              f"Labels (*{ext})")
        if path:
            if not path.lower().endswith(ext):
                path += ext
            self.files.export(path)

    def import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import labels", self._dir(),
                                              "Labels (*.nii *.nii.gz *.dcm *.png);;All files (*)")
        if path:
            self.files.import_labels(path)

    # ----- drag and drop ---------------------------------------------------------------------
    def dragEnterEvent(self, ev) -> None:  # noqa: N802
        if ev.mimeData().hasUrls():
            ev.acceptProposedAction()

    def dropEvent(self, ev) -> None:  # noqa: N802
        urls = [u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()]
        if urls:
            ev.acceptProposedAction()
            parents = {str(Path(u).parent) for u in urls}
            # several files of one folder (DICOM slices): open the folder as a series
            self.open_path(parents.pop() if len(urls) > 1 and len(parents) == 1 else urls[0])

    # ----- recovery --------------------------------------------------------------------------
    def check_recovery(self) -> None:
        orphans = self.autosaver.orphans()
        if orphans:
            self.restore_box = offer_restore(self, orphans, self.restore, self.autosaver.store.discard)

    def restore(self, orphan) -> None:
        try:
            project = self.autosaver.store.load(orphan)
        except Exception as exc:  # a damaged snapshot: say so, keep it for inspection
            show_error(self, "Cannot restore", str(exc), f"The autosave stays in {orphan.folder}.")
            return

        def loaded():
            self.doc.mark_changed()  # write it into this session's autosave at once
            self.autosaver.save_now()
            self.autosaver.store.discard(orphan)
            self.status.showMessage("Restored the autosaved session.", 8000)

        self.files.open_project(project, on_loaded=loaded)

    # ----- help and exit ---------------------------------------------------------------------
    def show_shortcuts(self) -> None:
        self.shortcuts_dialog = ShortcutsDialog(self)
        self.shortcuts_dialog.open()

    def show_about(self) -> None:
        show_about(self)

    def closeEvent(self, ev: QCloseEvent) -> None:  # noqa: N802
        self.settings.set("geometry", self.saveGeometry())
        self.settings.set("window_state", self.saveState())
        self.settings.set("tool", self.tools.tool)
        self.settings.set("brush_size", self.tools.brush_size)
        self.settings.set("opacity", self.labels_panel.opacity.value())
        self.settings.sync()
        self.propagation.cancel()
        self.segment.runner.wait(60000)  # a 3D accept being written finishes first
        self.engine.shutdown()
        self.files.shutdown()
        if self.files.dirty and os.environ.get("MEDPLIB_STUDIO_KEEP_RECOVERY") != "0":
            self.autosaver.save_now()
            self.autosaver.runner.wait(10000)
            self.autosaver.session.mark_closed()  # unsaved work stays: the next start offers it
        else:
            self.autosaver.close()
        super().closeEvent(ev)
