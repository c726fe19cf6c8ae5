"""`install_review(window)`: the Review dock, its actions and keys, and File ▸ Review menu,
added through the window's extension points."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog

from .batch_dialog import BatchDialog
from .controller import ReviewController
from .panel import ReviewPanel

MANIFEST_FILTER = "Run manifest (manifest.jsonl);;JSON lines (*.jsonl);;All files (*)"

# action id -> (key, description); added to the window's shortcut table (Help ▸ Keyboard shortcuts)
REVIEW_SHORTCUTS: dict[str, tuple[str, str]] = {
    "review_accept": ("Alt+A", "Review: accept the case's labels"),
    "review_save": ("Alt+S", "Review: save the edited labels (decision “edited”)"),
    "review_reject": ("Alt+R", "Review: reject the case"),
    "review_next": ("Alt+Right", "Review: next case"),
    "review_previous": ("Alt+Left", "Review: previous case"),
}


class ReviewUI(QObject):
    """What `install_review` adds to a window: controller, panel, dock, actions, batch dialog."""

    def __init__(self, window):
        super().__init__(window)
        self.win = window
        self.controller = ReviewController(window)
        window.add_shortcuts(REVIEW_SHORTCUTS)
        self.actions = self._actions()
        self.panel = ReviewPanel(self.controller, self.actions)
        # beside the chat (which stays in front), hidden until a run opens or View ▸ Panels shows it
        self.dock = window.add_panel("Review", self.panel, "review_dock", tab_with="chat_dock", visible=False)
        self.batch_dialog: BatchDialog | None = None
        self._menu()
        window.on_unsaved(self.controller.ask_if_unsaved)  # edits of the shown case: "Save edits?"
        window.on_close(self.shutdown)

    def _actions(self) -> dict[str, QAction]:
        w, c = self.win, self.controller
        acts = {name: w.add_action(name, text, slot, icon_name) for name, text, slot, icon_name in (
            ("review_open", "Open run…", self.open_run_dialog, "open_file"),
            ("review_open_folder", "Open run folder…", self.open_run_folder_dialog, "open_folder"),
            ("review_batch", "Run batch…", self.show_batch_dialog, "engine"),
            ("review_export", "Export accepted…", self.export_dialog, "export"),
            ("review_accept", "Accept", c.accept, "accept"),
            ("review_save", "Save edits", c.save_edits, "save_project"),
            ("review_reject", "Reject", c.reject, "discard"),
            ("review_previous", "◀ Previous", lambda: c.step(-1), None),
            ("review_next", "Next ▶", lambda: c.step(1), None),
        )}
        acts["review_open"].setToolTip("Open a batch run's manifest.jsonl to review its cases")
        acts["review_batch"].setToolTip("Run a batch spec (YAML/JSON) with progress; then review it")
        acts["review_export"].setToolTip("Copy the accepted and edited label maps (with sidecars) to a folder")
        return acts

    def _menu(self) -> None:
        """File ▸ Review, just above Quit."""
        sub = self.win.add_submenu("file", "Review", before="quit")
        for name in ("review_batch", "review_open", "review_open_folder", None, "review_accept", "review_save",
                     "review_reject", "review_previous", "review_next", None, "review_export"):
            if name is None:
                sub.addSeparator()
            else:
                sub.addAction(self.actions[name])
        self.menu = sub

    # ----- dialogs -----------------------------------------------------------------------------
    def _dir(self) -> str:
        s = self.win.settings
        return s.get("review/last_dir", s.get("last_dir", str(Path.home()), str), str)

    def open_run(self, path: str | Path) -> bool:
        """Open a run (asks first when the open work has unsaved changes)."""
        if self.win.ask_unsaved(lambda: self.open_run(path), "open the review run"):
            return False
        self.show_dock()
        ok = self.controller.open_run(path)
        if ok:
            self.win.settings.set("review/last_dir", str(self.controller.queue.run_dir.parent))
        return ok

    def show_dock(self) -> None:
        """Show the dock; the first time, give it most of the column below the labels."""
        first = not self.dock.isVisible()
        self.dock.show()
        self.dock.raise_()
        labels = self.win.labels_dock
        if first and labels.isVisible() and not self.win.tabifiedDockWidgets(self.dock):
            total = labels.height() + self.dock.height()
            self.win.resizeDocks([labels, self.dock], [max(160, total // 4), total - max(160, total // 4)],
                                 Qt.Orientation.Vertical)

    def open_run_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.win, "Open a batch run", self._dir(), MANIFEST_FILTER)
        if path:
            self.open_run(path)

    def open_run_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self.win, "Open a batch run folder", self._dir())
        if path:
            self.open_run(path)

    def export_dialog(self) -> None:
        q = self.controller.queue
        if q is None:
            return
        path = QFileDialog.getExistingDirectory(self.win, "Export the accepted labels into", str(q.run_dir))
        if path:
            self.controller.export_accepted(path)

    def show_batch_dialog(self) -> BatchDialog:
        if self.batch_dialog is None:
            dlg = BatchDialog(self.win, self.win.settings, open_review=self.open_run)
            dlg.progressed.connect(self._batch_progress)
            self.batch_dialog = dlg
        self.batch_dialog.show()
        self.batch_dialog.raise_()
        return self.batch_dialog

    def _batch_progress(self, _p) -> None:
        """Cases finished by a running batch appear in the review list of the same run."""
        q, dlg = self.controller.queue, self.batch_dialog
        if q is not None and dlg is not None and dlg.spec is not None \
                and dlg.spec.output.resolve() == q.run_dir.resolve():
            self.controller.reload()

    # ----- shutdown ----------------------------------------------------------------------------
    def shutdown(self) -> None:
        if self.batch_dialog is not None:
            self.batch_dialog.shutdown()
        self.controller.shutdown()


def install_review(window) -> ReviewUI:
    """Add the Review dock and File ▸ Review menu to ``window`` (once); returns the pieces,
    also kept as ``window.extension("review")``."""
    existing = window.extension("review")
    if existing is not None:
        return existing
    return window.add_extension("review", ReviewUI(window))
