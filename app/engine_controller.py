"""`EngineController`: loads the segmentation engine and runs every model call off the GUI thread.

Segment requests carry the displayed slice (window applied, uint8) and a `Prompt`; results come
back as proposals in the `Document`. Only the newest request counts: an older answer that
arrives late is dropped. Slices around the cursor are pre-encoded in the background, and the
status (engine, device, current slice encoded, last latency) is published for the status bar.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from medplib_core.annotation import PromptKind
from medplib_core.engines.base import Capability, Prompt, SegmentationEngine
from medplib_core.text_enum import TextEnum

from .document import Document
from .workers import TaskRunner


class EngineState(TextEnum):
    NOT_LOADED = "not loaded"
    LOADING = "loading"
    READY = "ready"
    BUSY = "busy"  # a prompt is being answered
    ERROR = "error"  # the engine could not be built


def default_engine_factory(name: str | None = None, settings=None) -> SegmentationEngine:
    """The engine named by $MEDPLIB_STUDIO_ENGINE, else ``name`` (the "engine" setting), else
    LiteMedSAM; in this process, or on the engine server that ``settings`` name (Settings ▸ Engine…)."""
    from medplib_core.server.location import EngineLocation, segmentation_engine

    name = os.environ.get("MEDPLIB_STUDIO_ENGINE") or name or "litemedsam"
    return segmentation_engine(EngineLocation.from_settings(settings), name)


class EngineController(QObject):
    """Owns the engine; all model calls go through its single worker thread."""

    status_changed = Signal(dict)
    error = Signal(str, str)  # title, message

    def __init__(self, doc: Document, factory: Callable[[], SegmentationEngine] | None = None,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.doc = doc  # signals
        self.session = doc.session  # state and operations
        self.factory = factory or default_engine_factory
        self.engine: SegmentationEngine | None = None
        self.runner = TaskRunner(1, self, "engine")
        self.state = EngineState.NOT_LOADED
        self.message = ""
        self.last_latency_ms: float | None = None
        self.current_encoded: bool | None = None
        self._current_pixels: np.ndarray | None = None
        self._request = 0
        self.pending: dict[str, Any] | None = None  # {"orientation", "index", "prompt": dict}
        self._prefetch: Callable[[], list[np.ndarray]] | None = None
        self._prefetch_paused = False  # a long engine task (propagation) runs
        self._poll = QTimer(self)
        self._poll.setInterval(400)
        self._poll.timeout.connect(self._poll_encoded)
        self._prefetch_timer = QTimer(self)
        self._prefetch_timer.setSingleShot(True)
        self._prefetch_timer.setInterval(120)
        self._prefetch_timer.timeout.connect(self._start_prefetch)

    # ----- loading ---------------------------------------------------------------------------
    def load(self) -> None:
        """Build the engine in the background (weights, encoder backend)."""
        if self.state in (EngineState.LOADING, EngineState.READY):
            return
        self._set_state(EngineState.LOADING, "loading the model…")
        started = time.perf_counter()

        def done(engine):
            self.engine = engine
            self._set_state(EngineState.READY, f"loaded in {time.perf_counter() - started:.1f} s")
            self._poll.start()
            self._prefetch_timer.start()

        def failed(exc):
            self._set_state(EngineState.ERROR, str(exc))
            self.error.emit("The segmentation engine could not start",
                            f"{exc}\n\nThe viewer, labels and export keep working; restart the app "
                            "after fixing the installation (scripts/setup.sh) to segment.")

        self.runner.submit(self.factory, name="load engine", on_done=done, on_error=failed)

    @property
    def ready(self) -> bool:
        return self.engine is not None

    def info(self) -> dict[str, str]:
        if self.engine is None:
            return {"name": "LiteMedSAM", "device": "—"}
        inf = self.engine.info
        return {"name": inf.name, "device": inf.device, "version": inf.version}

    # ----- status ----------------------------------------------------------------------------
    def _set_state(self, state: EngineState, message: str = "") -> None:
        self.state, self.message = EngineState(state), message
        self.publish()

    def publish(self) -> None:
        inf = self.info()
        self.status_changed.emit({"engine": inf["name"], "device": inf["device"], "state": self.state,
                                  "message": self.message, "encoded": self.current_encoded,
                                  "latency_ms": self.last_latency_ms})

    def set_current_slice(self, pixels: np.ndarray | None, neighbours: Callable[[], list[np.ndarray]] | None) -> None:
        """The slice under the user's eyes and, lazily, the slices around it; both are pre-encoded
        in the background (this one first) so that a prompt finds its embedding ready."""
        self._current_pixels = pixels
        self._prefetch = neighbours
        self._update_encoded()
        self._prefetch_timer.start()

    def _poll_encoded(self) -> None:
        if self.state is not EngineState.BUSY:  # a running prompt says "segmenting…"; it updates after
            self._update_encoded()

    def _update_encoded(self, publish: bool = True) -> None:
        eng, px = self.engine, self._current_pixels
        val = None
        if eng is not None and px is not None and eng.supports(Capability.CACHE_QUERY):
            try:
                val = eng.is_cached(px)
            except Exception:  # a status readout: never an error
                val = None
        if val != self.current_encoded:
            self.current_encoded = val
            if publish:
                self.publish()

    def _start_prefetch(self) -> None:
        eng = self.engine
        if eng is None or self._prefetch is None or self._prefetch_paused or not eng.supports(Capability.PREENCODE):
            return
        try:  # the slice on screen first (the next prompt is most likely there), then its neighbours
            current = [] if self._current_pixels is None else [self._current_pixels]
            eng.preencode(current + list(self._prefetch()))
        except Exception as exc:  # pre-encoding is an optimisation: never an error dialog
            self.message = f"pre-encoding stopped: {exc}"

    def pause_prefetch(self, paused: bool) -> None:
        """Hold pre-encoding while a long task has the engine (it resumes on the next slice)."""
        self._prefetch_paused = bool(paused)
        if paused:
            self.cancel_prefetch()
        else:
            self._prefetch_timer.start()

    def cancel_prefetch(self) -> None:
        if self.engine is not None:
            self.engine.cancel_preencode()

    def stop_prefetch(self, timeout: float = 60.0) -> None:
        """Cancel pre-encoding and wait until the encoder is idle (benchmarks, shutdown)."""
        self._prefetch_timer.stop()
        self.cancel_prefetch()
        if self.engine is not None:
            self.engine.wait_idle(timeout)

    # ----- segmentation ----------------------------------------------------------------------
    def segment(self, pixels: np.ndarray, prompt: Prompt, orientation: str, index: int,
                kind: PromptKind = PromptKind.SEGMENT) -> int:
        """Ask for a mask on one displayed slice; the answer becomes the document's proposal."""
        if self.engine is None:
            msg = ("The model is still loading; try again in a moment." if self.state is EngineState.LOADING
                   else f"The segmentation engine is not available ({self.message}).")
            self.error.emit("Segmentation unavailable", msg)
            return 0
        self._request += 1
        req = self._request
        self.pending = {"orientation": orientation, "index": index, "prompt": prompt.describe()}
        self._set_state(EngineState.BUSY, "segmenting…")
        engine = self.engine
        volume = self.session.volume
        started = time.perf_counter()

        def work():
            return engine.encode(pixels).predict(prompt)

        def done(result):
            if req != self._request or self.session.volume is not volume:
                return  # superseded, abandoned, or another scan is open now
            self.pending = None
            self.last_latency_ms = (time.perf_counter() - started) * 1000.0
            note = result.reason or f"score {result.score:.2f}"
            if pixels is self._current_pixels and engine.supports(Capability.CACHE_QUERY):
                self.current_encoded = True  # it was just encoded (or found): no second hash of it
            else:
                self._update_encoded(publish=False)
            self._set_state(EngineState.READY, note)  # one status update for both
            if result.empty:
                self.error.emit("No mask", f"{result.reason or 'the model returned an empty mask'}. "
                                "Try a tighter box or add a positive point on the object.")
                self.session.discard()
                return
            self.session.propose_result(result, prompt, orientation, index, kind,
                                    gui_latency_ms=round(self.last_latency_ms, 1))

        def failed(exc):
            if req != self._request:
                return
            self.pending = None
            self._set_state(EngineState.READY, "last prompt failed")
            self.error.emit("Segmentation failed", str(exc))

        self.runner.submit(work, name="segment", on_done=done, on_error=failed)
        return req

    def abandon(self) -> None:
        """Forget the running prompt: its answer, when it comes, is dropped."""
        if self.pending is not None:
            self._request += 1
            self.pending = None
            self._set_state(EngineState.READY, "prompt abandoned")

    def run(self, fn: Callable, *args, **kwargs):
        """Run other engine work (e.g. propagation) on the engine thread; see `TaskRunner.submit`."""
        return self.runner.submit(fn, *args, **kwargs)

    def reload(self) -> None:
        """Build the engine again (its location changed): the old one is closed on the engine
        thread after whatever it was doing."""
        old, self.engine = self.engine, None
        self.abandon()
        self._poll.stop()
        if old is not None:
            self.runner.submit(old.close, name="close engine")
        self.state = EngineState.NOT_LOADED
        self.load()

    def shutdown(self) -> None:
        """Stop background encoding and wait for the engine thread (before the app exits, so no
        native inference thread is still running while Python shuts down)."""
        self._poll.stop()
        self._prefetch_timer.stop()
        self.cancel_prefetch()
        self.runner.cancel_all()
        self.runner.wait(30000)
        if self.engine is not None:
            try:
                self.engine.close()
            except Exception:  # shutting down: nothing useful to report
                pass
