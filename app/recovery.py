"""Autosave into the recovery store a few seconds after changes, and the restore offer.

The first change starts a timer; when it fires, a snapshot of the document (labels copied on
the GUI thread, written by a worker) goes into this session's recovery folder. Changes made
during a save start the timer again. A clean exit removes the folder; after a crash or kill the
next start finds it and offers to restore it.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from medplib_core.project import Orphan, RecoveryStore
from medplib_core.session import SaveTarget

from .document import Document
from .workers import TaskRunner

log = logging.getLogger(__name__)


class Autosaver(QObject):
    """Writes snapshots of the session into a `RecoverySession` (``slot``)."""

    saved = Signal(int)  # the session revision now safe on disk

    def __init__(self, doc: Document, store: RecoveryStore, interval_ms: int = 3000,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.doc = doc  # signals
        self.session = doc.session  # state and operations
        self.store = store
        self.slot = store.start_session()  # this process's autosave folder
        self.runner = TaskRunner(1, self, "autosave")
        self.failures = 0
        self._saving = False
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(int(interval_ms))
        self.timer.timeout.connect(self.save_now)
        doc.changed.connect(self._changed)
        doc.volume_changed.connect(self._changed)

    def _changed(self) -> None:
        if not self.timer.isActive():
            self.timer.start()

    @property
    def pending(self) -> bool:
        """Changes not yet in the snapshot."""
        return self.session.save_state.dirty(SaveTarget.AUTOSAVE)

    def save_now(self) -> None:
        """Snapshot now (no-op when nothing changed since the last snapshot)."""
        if not self.pending:
            return
        if self._saving:
            self.timer.start()
            return
        if not self.session.prompts and not self.session.counts and not self.session.history.can_undo and not len(self.session.labels):
            return  # an untouched scan: nothing worth recovering
        self._saving = True
        mark = self.session.save_state.mark()
        job = self.session.project_job(lambda project, edits: self.slot.save(project, edits))

        def done(_):
            self._saving = False
            self.session.save_state.saved(SaveTarget.AUTOSAVE, mark)
            self.saved.emit(mark.revision)
            if self.pending:
                self.timer.start()

        def failed(exc):
            self._saving = False
            self.failures += 1
            log.warning("autosave failed: %s", exc)

        self.runner.submit(job, mark.revision, name="autosave", on_done=done, on_error=failed)

    def orphans(self) -> list[Orphan]:
        return [o for o in self.store.orphans() if o.folder != self.slot.folder]

    def close(self) -> None:
        """Clean exit: wait for a running save, then remove this session's folder."""
        self.timer.stop()
        self.runner.wait(10000)
        self.slot.close()


def offer_restore(parent: QWidget, orphans: list[Orphan], on_restore, on_discard) -> QMessageBox:
    """Ask (non-blocking) whether to restore the newest unsaved session."""
    o = orphans[0]
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("Restore unsaved work?")
    box.setText("MedPLIB Studio did not close normally last time." if o.crashed
                else "MedPLIB Studio was closed with unsaved changes last time.")
    more = f"\n({len(orphans) - 1} older unsaved sessions are kept too.)" if len(orphans) > 1 else ""
    box.setInformativeText(f"Restore the autosaved work on {o.describe()}?{more}")
    restore = box.addButton("Restore", QMessageBox.ButtonRole.AcceptRole)
    discard = box.addButton("Discard", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton("Later", QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(restore)
    box.restore_button = restore  # for tests and automation

    def clicked(button):
        if button is restore:
            on_restore(o)
        elif button is discard:
            on_discard(o)

    box.buttonClicked.connect(clicked)
    box.open()
    return box
