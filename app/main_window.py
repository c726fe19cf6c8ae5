"""`MainWindow`: the viewer in the centre, the labels panel and extension docks on the right,
menus, toolbars and the status bar; wires documents, engines, files and autosave together.

Extensions (the chat and review panels, the PACS entries and the analysis tools by default) are functions ``install(window)`` that use
the window's extension points only: `add_panel`, `menu`, `add_action`, `add_shortcuts`,
`add_about_section`, `on_close` and `add_extension`/`extension`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent
from PySide6.QtWidgets import QDockWidget, QMainWindow, QMenu, QMessageBox, QWidget

from medplib_core.pacs import is_url
from medplib_core.project import RecoveryStore

from . import actions
from .dialogs import ABOUT, show_error
from .document import Document
from .engine_controller import EngineController, default_engine_factory
from .files import FileController
from .key_routing import CanvasKeyRouter
from .labels_panel import LabelsPanel
from .propagate import PropagationController
from .recovery import Autosaver, offer_restore
from .resources import icon
from .segment_controller import SegmentController
from .settings import Settings, recovery_dir
from .shortcuts import SHORTCUTS, ShortcutsDialog
from .status_bar import StatusBar
from .tools import ToolState
from .viewer import ViewerArea
from .window_files import FileCommands


def default_extensions() -> tuple[Callable[["MainWindow"], Any], ...]:
    """The chat dock, the review queue, the PACS entries, the analysis tools and the click
    option."""
    from .analysis_tools import install_analysis
    from .chat import install_chat_panel
    from .click_options import install_click_options
    from .pacs import install_pacs
    from .review import install_review

    return (install_chat_panel, install_review, install_pacs, install_analysis, install_click_options)


class MainWindow(FileCommands, QMainWindow):
    """The application window."""

    def __init__(self, engine_factory=None, settings: Settings | None = None, autosave_ms: int | None = None,
                 load_engine: bool = True, extensions: Iterable[Callable[["MainWindow"], Any]] | None = None):
        super().__init__()
        self.setWindowTitle("MedPLIB Studio")
        self.setWindowIcon(icon("engine"))
        self.setAcceptDrops(True)
        self.actions_by_name: dict[str, QAction] = {}
        self.menus: dict[str, QMenu] = {}
        self.shortcuts: dict[str, tuple[str, str]] = dict(SHORTCUTS)  # this window's keys
        self._about_sections: list[Callable[[], str]] = []
        self._close_hooks: list[Callable[[], None]] = []
        self._extensions: dict[str, Any] = {}
        self._init_file_commands()
        self._close_ok = False  # the user answered the unsaved-changes question
        self._discarded = False  # ... with Discard
        self.settings = settings or Settings()
        self.doc = Document(parent=self)  # the session's signals
        self.session = self.doc.session  # what the user is doing to the open scan
        self.tools = ToolState(self.settings.get("tool", "box", str), self.settings.get("brush_mm", 10.0, float), self)
        self.viewer = ViewerArea(self.doc, self.tools)
        self.session.view_state_provider = self.viewer.state
        self.setCentralWidget(self.viewer)
        self.status = StatusBar(self)
        self.setStatusBar(self.status)
        if engine_factory is None:
            name = self.settings.get("engine", "litemedsam", str)
            engine_factory = lambda: default_engine_factory(name, self.settings)  # noqa: E731
        self.engine = EngineController(self.doc, engine_factory, self)
        self.segment = SegmentController(self.doc, self.engine, self)
        for v in self.viewer.views:
            self.segment.attach(v)
        self.key_router = CanvasKeyRouter(self, [v.canvas for v in self.viewer.views])
        self.files = FileController(self.doc, self)
        self.propagation = PropagationController(self.doc, self.engine, self)
        self.labels_panel = LabelsPanel(self.doc)
        self.labels_dock = self._dock("Labels", self.labels_panel, "labels_dock")
        self.docks: dict[str, QDockWidget] = {"labels_dock": self.labels_dock}
        autosave_ms = autosave_ms or self.settings.get("autosave_ms", 3000, int)
        self.autosaver = Autosaver(self.doc, RecoveryStore(recovery_dir()), autosave_ms, self)
        actions.build(self)
        self._connect()
        for install in default_extensions() if extensions is None else extensions:
            install(self)
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
        return dock

    # ----- extension points ------------------------------------------------------------------
    def add_panel(self, title: str, widget: QWidget, name: str, tab_with: str | None = None,
                  visible: bool = True) -> QDockWidget:
        """A dockable panel on the right, below the labels, or tabbed with dock ``tab_with``;
        listed in View ▸ Panels and kept in the saved window layout under ``name``."""
        dock = self._dock(title, widget, name)
        self.panels_menu.addAction(dock.toggleViewAction())
        if tab_with in self.docks:
            self.tabifyDockWidget(self.docks[tab_with], dock)
            self.docks[tab_with].raise_()
        else:
            self.splitDockWidget(self.labels_dock, dock, Qt.Orientation.Vertical)
        self.docks[name] = dock
        if not visible:
            dock.hide()  # until shown, or the saved layout shows it
        return dock

    def menu(self, name: str) -> QMenu:
        """A menu of the bar by id ("file", "edit", "tools", "view", "window", "help", or
        "settings", made before Help on first use)."""
        if name not in self.menus:
            if name != "settings":
                raise KeyError(f"no menu {name!r}")
            self.menus[name] = m = QMenu("Setti&ngs", self)  # Alt+S is the review's Save edits
            self._check_mnemonic(m.title())
            self.menuBar().insertMenu(self.menus["help"].menuAction(), m)
        return self.menus[name]

    def menu_mnemonics(self) -> dict[str, str]:
        """The Alt+letter keys the menu bar's titles use: {"Alt+F": "&File", ...}."""
        out = {}
        for act in self.menuBar().actions():
            text = act.text().replace("&&", "")
            if "&" in text and text.index("&") + 1 < len(text):
                out[f"Alt+{text[text.index('&') + 1].upper()}"] = act.text()
        return out

    def _check_mnemonic(self, title: str) -> None:
        text = title.replace("&&", "")
        key = f"Alt+{text[text.index('&') + 1].upper()}" if "&" in text else None
        taken = {k: n for n, (k, _) in self.shortcuts.items()}
        if key in taken or key in self.menu_mnemonics():
            raise ValueError(f"menu {title}: {key} is taken by {taken.get(key) or self.menu_mnemonics()[key]}")

    def add_action(self, name: str, text: str, slot: Callable[[], Any], icon_name: str | None = None,
                   menu: str | QMenu | None = None, before: str | None = None,
                   after: str | None = None) -> QAction:
        """A window action (its key from the shortcut table), added to ``menu`` just above
        action ``before`` or just below action ``after`` when given (else at the end)."""
        act = actions.make_action(self, name, text, slot, icon_name)
        if menu is not None:
            m = self.menu(menu) if isinstance(menu, str) else menu
            items = m.actions()
            anchor = self.actions_by_name.get(before) if before else None
            if after and self.actions_by_name.get(after) in items:
                i = items.index(self.actions_by_name[after]) + 1
                anchor = items[i] if i < len(items) else None
            m.insertAction(anchor, act) if anchor in items else m.addAction(act)
        return act

    def add_submenu(self, menu: str, title: str, before: str | None = None) -> QMenu:
        """A submenu of ``menu`` (above action ``before``, with a separator, when given)."""
        parent = self.menu(menu)
        sub = QMenu(title, parent)
        anchor = self.actions_by_name.get(before) if before else None
        if anchor in parent.actions():
            parent.insertMenu(anchor, sub)
            parent.insertSeparator(anchor)
        else:
            parent.addMenu(sub)
        return sub

    def add_shortcuts(self, table: dict[str, tuple[str, str]]) -> None:
        """Keys of an extension's actions: ``{action name: (key, description)}``; a key the
        window already uses for another action or a menu title (Alt+letter) is refused."""
        used = {key: n for n, (key, _) in self.shortcuts.items()}
        used.update({key: f"the {title} menu" for key, title in self.menu_mnemonics().items()})
        for name, (key, text) in table.items():
            if used.get(key, name) != name:
                raise ValueError(f"{name}: key {key} is taken by {used[key]}")
            self.shortcuts[name] = (key, text)

    def add_about_section(self, html: Callable[[], str]) -> None:
        """More rich text for Help ▸ About (called each time the box opens)."""
        self._about_sections.append(html)

    def on_close(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` when the window closes, before the engine and files shut down."""
        self._close_hooks.append(fn)

    def add_extension(self, name: str, obj: Any) -> Any:
        """Keep an installed extension under ``name`` (installing twice returns the first)."""
        return self._extensions.setdefault(name, obj)

    def extension(self, name: str) -> Any | None:
        return self._extensions.get(name)

    def _connect(self) -> None:
        d, s = self.doc, self.status
        self.panels_menu.addAction(self.labels_dock.toggleViewAction())
        self.viewer.cursor_info.connect(lambda info: s.set_cursor(info, {l.value: l.name for l in self.session.labels}))
        d.focus_changed.connect(lambda *_: self._current_slice_changed())
        d.window_changed.connect(lambda *_: self._current_slice_changed())
        d.window_changed.connect(self._sync_preset)
        d.volume_changed.connect(self._on_volume)
        d.history_changed.connect(self._update_actions)
        d.proposal_changed.connect(self._update_actions)
        d.changed.connect(self._update_title)
        d.save_state_changed.connect(self._update_title)
        self.engine.status_changed.connect(s.set_engine)
        self.engine.status_changed.connect(lambda _: self._update_actions())  # Esc abandons a prompt
        self.engine.error.connect(lambda t, m: show_error(self, t, m))
        self.segment.error.connect(lambda t, m: show_error(self, t, m))
        self.segment.message.connect(lambda m: s.showMessage(m, 6000))
        self.propagation.message.connect(lambda m: s.showMessage(m, 8000))
        self.propagation.started.connect(lambda text: s.start_task(text, self.propagation.cancel))
        self.propagation.progressed.connect(s.task_progress)
        self.propagation.finished.connect(lambda _: (s.end_task(), self._update_actions()))
        self.propagation.started.connect(lambda _: self._update_actions())
        self.segment.busy_reason = self.propagation.busy_reason
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
        if state is None or not self.restoreState(state):  # first run: the labels and the panels below share the height
            self.resizeDocks([self.labels_dock], [420], Qt.Orientation.Horizontal)
            below = [d for n, d in self.docks.items() if d is not self.labels_dock and not d.isHidden()]
            if below:
                self.resizeDocks([self.labels_dock, below[0]], [400, 400], Qt.Orientation.Vertical)
        self.labels_panel.opacity.setValue(self.settings.get("opacity", 45, int))
        self.set_opacity(self.labels_panel.opacity.value() / 100.0)

    # ----- slots -----------------------------------------------------------------------------
    def _on_tool(self) -> None:
        t = self.tools
        act = self.actions_by_name.get(f"tool_{t.tool}")
        if act is not None and not act.isChecked():
            act.setChecked(True)
        if self.brush_spin.value() != t.brush_size:
            self.brush_spin.setValue(t.brush_size)
        self.status.set_tool(t.tool, t.brush_size)

    def _on_volume(self) -> None:
        vol = self.session.volume
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
        if self.session.volume is None:
            return
        orientation, index, n = v.orientation, v.index, v.n_slices()

        def neighbours():
            return [v.renderer.pixels(orientation, index + d) for d in (1, -1, 2, -2, 3, -3) if 0 <= index + d < n]

        self.engine.set_current_slice(v.renderer.pixels(orientation, index), neighbours)

    def _update_actions(self) -> None:
        a, h = self.actions_by_name, self.session.history
        if not a:
            return
        a["undo"].setEnabled(bool(h and h.can_undo))
        a["redo"].setEnabled(bool(h and h.can_redo))
        a["undo"].setText(f"Undo {h.undo_text()}" if h and h.can_undo else "Undo")
        a["redo"].setText(f"Redo {h.redo_text()}" if h and h.can_redo else "Redo")
        has = self.session.proposal is not None
        a["accept"].setEnabled(has)
        a["discard"].setEnabled(has or self.engine.pending is not None or self.propagation.running)
        a["propagate"].setEnabled(self.session.volume is not None and not self.session.volume.is_2d
                                  and not self.propagation.running)
        for n in ("save_project", "save_project_as", "export_nifti", "import_labels"):
            a[n].setEnabled(self.session.volume is not None)

    def _update_title(self) -> None:
        name = Path(self.files.project_path or self.session.path).name if self.session.volume is not None else ""
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
            self.auto_window()
        elif data:
            self.session.set_window(*data)
        self._sync_preset()

    def auto_window(self) -> None:
        self._auto_window = self.session.auto_window()
        self._sync_preset()

    def _sync_preset(self, *_) -> None:
        """The preset box shows the window in use: its preset, "Automatic", or the values."""
        combo, window = self.preset_combo, tuple(float(v) for v in self.session.window)
        index = 0
        for n in range(1, combo.count()):
            data = combo.itemData(n)
            if (data == "auto" and getattr(self, "_auto_window", None) == window) or \
                    (isinstance(data, tuple) and tuple(float(v) for v in data) == window):
                index = n
                break
        c, w = window
        combo.setItemText(0, "Window…" if self.session.volume is None else f"L {c:.0f} / W {w:.0f}")
        combo.setCurrentIndex(index)

    def undo(self) -> None:
        if not self.session.undo():
            self.status.showMessage("Nothing to undo.", 3000)

    def redo(self) -> None:
        if not self.session.redo():
            self.status.showMessage("Nothing to redo.", 3000)

    def propagate(self) -> None:
        self.propagation.start(self.viewer.active)

    def discard(self) -> None:
        """Esc: cancel a running propagation, else abandon the running prompt or drop the proposal."""
        if self.propagation.running:
            self.propagation.cancel()
        else:
            self.segment.discard()

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
            self.session.mark_changed()  # write it into this session's autosave at once
            self.autosaver.save_now()
            self.autosaver.store.discard(orphan)
            self.status.showMessage("Restored the autosaved session.", 8000)

        self.files.open_project(project, on_loaded=loaded)

    # ----- help and exit ---------------------------------------------------------------------
    def _close_answered(self) -> None:
        """Saved or discarded: close now."""
        self._close_ok = True
        self.close()

    def show_shortcuts(self) -> None:
        self.shortcuts_dialog = ShortcutsDialog(self.shortcuts, self)
        self.shortcuts_dialog.open()

    def about_html(self) -> str:
        return ABOUT + "".join(section() for section in self._about_sections)

    def show_about(self) -> None:
        QMessageBox.about(self, "About MedPLIB Studio", self.about_html())

    def closeEvent(self, ev: QCloseEvent) -> None:  # noqa: N802
        if not self._close_ok and self.ask_unsaved(self._close_answered, "quit"):
            ev.ignore()  # the question decides
            return
        self._close_ok = True
        for fn in self._close_hooks:
            fn()
        self.settings.set("geometry", self.saveGeometry())
        self.settings.set("window_state", self.saveState())
        self.settings.set("tool", str(self.tools.tool))
        self.settings.set("brush_mm", self.tools.brush_size)
        self.settings.set("opacity", self.labels_panel.opacity.value())
        self.settings.sync()
        self.propagation.cancel()
        self.segment.runner.wait(60000)  # a 3D accept being written finishes first
        self.engine.shutdown()
        self.files.shutdown()
        if self.files.dirty and not self._discarded and os.environ.get("MEDPLIB_STUDIO_KEEP_RECOVERY") != "0":
            self.autosaver.save_now()
            self.autosaver.runner.wait(10000)
            self.autosaver.slot.mark_closed()  # unsaved work stays: the next start offers it
        else:
            self.autosaver.close()
        super().closeEvent(ev)
