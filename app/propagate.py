"""'Propagate in 3D': from the proposal (or the active label) on the current slice, through the
neighbouring slices, in the background on the engine thread: progress and Cancel are in the
status bar while the user keeps scrolling, zooming and windowing; new prompts are refused with a
message until it ends (they would wait behind it). The result is a 3D proposal."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from medplib_core.engines.base import Capability
from medplib_core.engines.propagation import propagate_in_view

from .dialogs import show_error
from .document import Document
from .engine_controller import EngineController


class PropagationController(QObject):
    """Runs one propagation at a time; shows progress; the result becomes a 3D proposal."""

    message = Signal(str)
    started = Signal(str)  # what is propagated
    progressed = Signal(int, int)  # slices done, total
    finished = Signal(bool)

    def __init__(self, doc: Document, engine: EngineController, parent=None):
        super().__init__(parent)
        self.doc = doc  # signals
        self.session = doc.session  # state and operations
        self.engine = engine
        self.task = None

    @property
    def running(self) -> bool:
        return self.task is not None

    def seed(self, view):
        """(2D display-order seed mask, where it came from) on the view's current slice."""
        vol, p = self.session.volume, self.session.proposal
        if p is not None:
            m = p.mask_on(vol, view.orientation, view.index)
            if m is not None and m.any():
                return m, f"proposal #{p.record.id}"
        value = self.session.active_value
        if value:
            m = view.geometry().take(self.session.labelmap.array) == value
            if m.any():
                return m, f"label {self.session.labels[value].name}"
        return None, ""

    def start(self, view) -> None:
        vol = self.session.volume
        if vol is None or vol.is_2d or self.running:
            return
        if not self.engine.ready or not self.engine.engine.supports(Capability.PROPAGATE):
            show_error(self.parent(), "Propagation unavailable", "The segmentation engine is not ready yet.")
            return
        mask2d, source = self.seed(view)
        if mask2d is None:
            show_error(self.parent(), "Nothing to propagate",
                       "Propagation starts from a mask on the current slice.",
                       "Draw a box to get a proposal (or paint the active label) on this slice, then press Ctrl+P.")
            return
        geom = view.geometry()
        window = self.session.window
        self.engine.pause_prefetch(True)  # the slices the user scrolls to wait: the engine is busy

        def progress(done, total):
            if self.task is not None:
                self.progressed.emit(int(done), int(total))

        def done(result):
            self._finish()
            if self.session.volume is not vol:
                return
            self.session.propose_propagation(result, self.engine.info(), source)
            stops = "; ".join(f"{k}: {v}" for k, v in result.summary.get("stops", {}).items())
            self.message.emit(f"Propagated over {result.n_slices} slices ({stops}). Enter accepts, Esc discards.")
            self.finished.emit(True)

        def failed(exc):
            self._finish()
            show_error(self.parent(), "Propagation failed", str(exc))
            self.finished.emit(False)

        def cancelled():
            self._finish()
            self.message.emit("Propagation cancelled; nothing was changed.")
            self.finished.emit(False)

        self.task = self.engine.run(propagate_in_view, self.engine.engine, vol, geom.orientation, geom.index,
                                    mask2d, window=window, name="propagate", on_done=done, on_error=failed,
                                    on_cancel=cancelled, on_progress=progress, pass_progress=True,
                                    pass_cancel=True)
        self.started.emit(f"Propagating {source} in 3D…")
        self.message.emit(f"Propagating {source} in 3D in the background (Esc or ✕ cancels); "
                          "scroll and look around meanwhile.")

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def busy_reason(self) -> str | None:
        """Why a new prompt cannot run now (None: it can)."""
        if self.running:
            return "3D propagation is running in the background: wait for it or cancel it (Esc) first."
        return None

    def _finish(self) -> None:
        self.task = None
        self.engine.pause_prefetch(False)
