"""'Propagate in 3D': from the proposal (or the active label) on the current slice, through the
neighbouring slices, on the engine thread, with progress and cancel; the result is a 3D proposal."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
from PySide6.QtCore import QObject, Signal

from medplib_core.project import PromptRecord

from .dialogs import progress_dialog, show_error
from .document import Document
from .engine_controller import EngineController


def available() -> bool:
    """True when the engine package ships 3D propagation."""
    try:
        import medplib_core.engines.propagation  # noqa: F401
    except ImportError:
        return False
    return True


def seed_in_array_order(geom, mask2d: np.ndarray, shape_kji) -> np.ndarray:
    """A displayed-slice mask re-ordered as the array's own 2D slice along ``geom.axis``."""
    plane_shape = [n for a, n in enumerate(shape_kji) if a != geom.axis]
    tmp = np.zeros([1 if a == geom.axis else n for a, n in enumerate(shape_kji)], dtype=bool)
    dataclasses.replace(geom, index=0).take(tmp)[...] = mask2d
    return tmp.reshape(plane_shape)


def run_propagation(engine, volume, window, axis: int, index: int, seed: np.ndarray, progress, cancel):
    """Call the engine package's propagation along array ``axis`` (moved to k when needed).

    ``seed`` is the mask on slice ``index`` in the array's own order (see `seed_in_array_order`).
    Returns the 3D bool mask and a summary (slices reached, why each direction stopped).
    """
    from medplib_core.engines.registry import propagation_function

    fn = propagation_function(engine)
    if fn is None:
        raise RuntimeError("this installation has no 3D propagation (medplib_core.engines.propagation)")
    # the user's window: the engine sees the slices as they are displayed
    arr = np.moveaxis(volume.array, axis, 0) if axis != 0 else volume.array
    vol = dataclasses.replace(volume, array=arr, window=tuple(window))
    params = inspect.signature(fn).parameters
    kw = {}
    if "window" in params:
        kw["window"] = tuple(window)
    if "progress" in params:
        kw["progress"] = progress
    if "cancel" in params:
        kw["cancel"] = cancel
    summary: dict = {}
    if "log" in params:
        from medplib_core.engines.propagation import PropagationLog, propagation_summary

        kw["log"] = log = PropagationLog()
    mask = np.asarray(fn(engine, vol, index, seed, **kw), dtype=bool)
    if "log" in kw:
        summary = propagation_summary(log)
    return (np.moveaxis(mask, 0, axis) if axis != 0 else mask), summary


class PropagationController(QObject):
    """Runs one propagation at a time; shows progress; the result becomes a 3D proposal."""

    message = Signal(str)
    finished = Signal(bool)

    def __init__(self, doc: Document, engine: EngineController, parent=None):
        super().__init__(parent)
        self.doc = doc
        self.engine = engine
        self.task = None
        self.dialog = None

    @property
    def running(self) -> bool:
        return self.task is not None

    def seed(self, view):
        """(2D display-order seed mask, where it came from) on the view's current slice."""
        vol, p = self.doc.volume, self.doc.proposal
        if p is not None:
            m = p.mask_on(vol, view.orientation, view.index)
            if m is not None and m.any():
                return m, f"proposal #{p.record.id}"
        value = self.doc.active_value
        if value:
            m = view.geometry().take(self.doc.labelmap.array) == value
            if m.any():
                return m, f"label {self.doc.labels[value].name}"
        return None, ""

    def start(self, view) -> None:
        vol = self.doc.volume
        if vol is None or vol.is_2d or self.running:
            return
        if not self.engine.ready:
            show_error(self.parent(), "Propagation unavailable", "The segmentation engine is not ready yet.")
            return
        mask2d, source = self.seed(view)
        if mask2d is None:
            show_error(self.parent(), "Nothing to propagate",
                       "Propagation starts from a mask on the current slice.",
                       "Draw a box to get a proposal (or paint the active label) on this slice, then press Ctrl+P.")
            return
        geom = view.geometry()
        seed = seed_in_array_order(geom, mask2d, vol.shape)
        window = self.doc.window
        self.engine.cancel_prefetch()
        self.dialog = progress_dialog(self.parent(), f"Propagating {source} through the volume…", self.cancel)
        self.dialog.setMinimumDuration(0)

        def progress(done, total):
            if self.dialog is not None:
                self.dialog.setMaximum(max(total, 1))
                self.dialog.setValue(min(done, total))

        def done(result):
            self._finish()
            mask3d, summary = result
            if self.doc.volume is not vol:
                return
            n = int(mask3d.any(axis=tuple(a for a in range(3) if a != geom.axis)).sum())
            info = self.engine.info()
            prov = {"engine": info.get("name"), "device": info.get("device"),
                    "engine_version": info.get("version"), "seed": source, "seed_orientation": geom.orientation,
                    "seed_index": geom.index, "slices": n, "window": list(window), **summary}
            rec = PromptRecord(id=self.doc.new_prompt_id(), kind="propagate", orientation=geom.orientation,
                               index=geom.index, prompt={"seed": source}, provenance=prov, mask=mask3d)
            self.doc.propose(rec)
            stops = "; ".join(f"{k}: {v}" for k, v in summary.get("stops", {}).items())
            self.message.emit(f"Propagated over {n} slices ({stops}). Enter accepts, Esc discards.")
            self.finished.emit(True)

        def failed(exc):
            self._finish()
            show_error(self.parent(), "Propagation failed", str(exc))
            self.finished.emit(False)

        def cancelled():
            self._finish()
            self.message.emit("Propagation cancelled; nothing was changed.")
            self.finished.emit(False)

        self.task = self.engine.run(run_propagation, self.engine.engine, vol, window, geom.axis, geom.index, seed,
                                    name="propagate", on_done=done, on_error=failed, on_cancel=cancelled,
                                    on_progress=progress, pass_progress=True, pass_cancel=True)

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _finish(self) -> None:
        self.task = None
        if self.dialog is not None:
            self.dialog.reset()
            self.dialog.close()
            self.dialog.deleteLater()
            self.dialog = None
            self.parent().activateWindow()
