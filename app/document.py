"""`Document`: the Qt face of the core `AnnotationSession`: its events become signals.

The session (`medplib_core.session.AnnotationSession`, ``doc.session``) holds the scan, labels,
prompts, the proposal, the window, the chat and the undo history, and does every operation;
views read it and call it. The document only turns the session's events into Qt signals, so
widgets connect the way Qt widgets do (queued across threads when needed).
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from medplib_core.session import AnnotationSession


class Document(QObject):
    """Signals for the session's events (those the GUI listens to)."""

    volume_changed = Signal()
    labels_changed = Signal()  # label definitions (name, colour, visibility, lock, ...)
    voxels_changed = Signal()  # label voxels
    counts_changed = Signal()
    window_changed = Signal(float, float)
    proposal_changed = Signal()
    active_label_changed = Signal(int)
    history_changed = Signal()
    chat_changed = Signal()
    view_state_loaded = Signal(dict)  # a project brought back its layout, slices and zoom
    changed = Signal()  # anything worth autosaving
    save_state_changed = Signal()  # a save target was saved, located or forgotten
    focus_changed = Signal(str, int)  # the slice the user works on (orientation, index)

    def __init__(self, session: AnnotationSession | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.session = session if session is not None else AnnotationSession()
        ev = self.session.events
        for event, signal in ((ev.volume, self.volume_changed), (ev.labels, self.labels_changed),
                              (ev.voxels, self.voxels_changed), (ev.counts, self.counts_changed),
                              (ev.window, self.window_changed), (ev.proposal, self.proposal_changed),
                              (ev.active_label, self.active_label_changed),
                              (ev.history, self.history_changed),
                              (ev.chat, self.chat_changed), (ev.view_state, self.view_state_loaded),
                              (ev.changed, self.changed), (ev.save_state, self.save_state_changed),
                              (ev.focus, self.focus_changed)):
            event.connect(signal.emit)
