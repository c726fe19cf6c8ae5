"""Turns what the user draws on a view into engine prompts, edits and proposal decisions.

Box, lasso and positive clicks start a new proposal; clicks while a proposal is shown on the
same slice refine it (corrective points plus the current mask). Brush and eraser strokes edit
the active label directly. Enter accepts, Esc discards (or abandons the running prompt).
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QObject, Signal

from medplib_core.annotation import LockedLabelError, PromptKind
from medplib_core.engines.base import Prompt

from .document import Document
from .engine_controller import EngineController
from .slice_view import SliceView
from .workers import TaskRunner


def box_pixels(x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
    """A dragged rectangle (continuous image coords) → inclusive pixel box (x0, y0, x1, y1)."""
    left, top = math.floor(x0), math.floor(y0)
    right, bottom = max(math.ceil(x1) - 1, left), max(math.ceil(y1) - 1, top)
    return int(left), int(top), int(right), int(bottom)


class SegmentController(QObject):
    """Connects slice views, the engine and the document."""

    message = Signal(str)
    error = Signal(str, str)

    def __init__(self, doc: Document, engine: EngineController, parent: QObject | None = None):
        super().__init__(parent)
        self.doc = doc  # signals
        self.session = doc.session  # state and operations
        self.engine = engine
        self.views: list[SliceView] = []
        self.runner = TaskRunner(1, self, "edits")
        self.accepting = False
        self.busy_reason = lambda: None  # why prompts must wait now (set by the window), or None
        engine.status_changed.connect(lambda _: self.clear_pending() if engine.pending is None else None)

    def attach(self, view: SliceView) -> None:
        self.views.append(view)
        cv = view.canvas
        cv.box_drawn.connect(lambda *b, v=view: self.on_box(v, *b))
        cv.point_clicked.connect(lambda x, y, pos, v=view: self.on_point(v, x, y, pos))
        cv.lasso_drawn.connect(lambda pts, v=view: self.on_lasso(v, pts))
        cv.stroke_done.connect(lambda m, erase, v=view: self.on_stroke(v, m, erase))

    # ----- prompts ---------------------------------------------------------------------------
    def _pixels(self, view: SliceView) -> np.ndarray:
        return view.renderer.pixels(view.orientation, view.index)

    def _send(self, view: SliceView, prompt: Prompt, kind: PromptKind) -> None:
        busy = self.busy_reason()
        if busy:  # it would wait behind the running task: refused, and said so
            self.message.emit(busy)
            return
        self.engine.segment(self._pixels(view), prompt, view.orientation, view.index, kind)
        self._show_pending(view)

    def _show_pending(self, view: SliceView) -> None:
        for v in self.views:
            old = v.canvas.pending_prompt
            new = self.engine.pending["prompt"] if (self.engine.pending and v is view) else None
            if old is not None or new is not None:
                v.canvas.pending_prompt = new
                v.canvas.update_prompt(old)
                v.canvas.update_prompt(new)

    def clear_pending(self) -> None:
        for v in self.views:
            if v.canvas.pending_prompt is not None:
                old, v.canvas.pending_prompt = v.canvas.pending_prompt, None
                v.canvas.update_prompt(old)

    def on_box(self, view: SliceView, x0: float, y0: float, x1: float, y1: float) -> None:
        self._send(view, Prompt(box=box_pixels(x0, y0, x1, y1)), PromptKind.BOX)

    def on_lasso(self, view: SliceView, pts) -> None:
        poly = [(float(x) - 0.5, float(y) - 0.5) for x, y in pts]
        self._send(view, Prompt(polygon=poly), PromptKind.LASSO)

    def on_point(self, view: SliceView, x: float, y: float, positive: bool) -> None:
        pt = (float(int(x)), float(int(y)))
        p = self.session.proposal
        same = (p is not None and not p.is_3d and p.record.orientation == view.orientation
                and p.record.index == view.index and p.record.mask is not None)
        if same:
            old = p.prompt or Prompt()
            prompt = Prompt(points=list(old.points) + [pt], point_labels=list(old.point_labels) + [int(positive)],
                            box=old.box, polygon=old.polygon, mask_input=p.record.mask.copy())
            self._send(view, prompt, PromptKind.REFINE)
        elif positive:
            self._send(view, Prompt(points=[pt], point_labels=[1]), PromptKind.CLICK)
        else:
            self.message.emit("A negative point corrects a proposal: draw a box or a positive point first.")

    # ----- edits -----------------------------------------------------------------------------
    def on_stroke(self, view: SliceView, mask: np.ndarray, erase: bool) -> None:
        """A brush or eraser stroke, kept to the tool options' value range when one is on; a
        lock that kept voxels (or refused the stroke) is said in the status bar, and the stroke
        that changed nothing is not silent."""
        value_range, vol = view.canvas.tools.value_range, self.session.volume
        if value_range is not None and vol is not None and not vol.is_colour:
            mask = view.in_value_range(mask)
            if not mask.any():
                lo, hi = value_range
                self.message.emit(f"Nothing under the stroke lies in the range {lo:g}..{hi:g}; nothing painted.")
                return
        kept = self.session.locked_under(mask, view.orientation, view.index)
        try:
            edit = self.session.paint(mask, view.orientation, view.index, erase=erase)
        except LockedLabelError as exc:
            self.message.emit(f"{exc} (the lock in the Labels panel).")
            return
        if kept:
            names = ", ".join(f"'{self.session.labels[v].name}' ({n:,} px)" for v, n in kept.items())
            verb = "erased" if erase else "painted over"
            self.message.emit(f"Locked label {names} kept: locked voxels are never {verb}"
                              + ("." if edit is not None else "; the stroke changed nothing."))

    def accept(self) -> bool:
        """Enter: the proposal goes into the active label (a 3D one is written on a worker)."""
        if self.session.proposal is None:
            self.message.emit("Nothing to accept: draw a box, a click or a lasso first.")
            return False
        if self.accepting:
            return False
        try:
            job = self.session.begin_accept()
        except LockedLabelError as exc:
            self.error.emit("Label is locked", str(exc))
            return False
        self.clear_pending()
        if job is None:
            return False
        if not self.session.proposal.is_3d:
            self._accepted(self.session.finish_accept(job, self.session.write_accept(job)))
            return True
        self.accepting = True
        self.message.emit("Writing the 3D proposal into the label…")

        def done(edit):
            self.accepting = False
            self._accepted(self.session.finish_accept(job, edit))

        def failed(exc):
            self.accepting = False
            self.error.emit("Accept failed", str(exc))

        self.runner.submit(self.session.write_accept, job, name="accept 3D", on_done=done, on_error=failed)
        return True

    def _accepted(self, edit) -> None:
        if edit is None:
            self.message.emit("Accepted, but no voxel changed (locked labels or the merge policy kept them).")
        else:
            self.message.emit(f"Accepted: {edit.changed:,} voxels into {self.session.labels[self.session.active_value].name}.")

    def discard(self) -> None:
        if self.engine.pending is not None:
            self.engine.abandon()
            return
        self.session.discard()
