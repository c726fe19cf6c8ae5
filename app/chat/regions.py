"""Region candidates for chat questions: what the user drew last, the proposal, the label.

`RegionTracker` watches the slice views' drawing and the document and lists the regions on a
slice (the core's `RegionRef`s), newest first, so "Use as region" and an unfilled ``<region>``
take what the user touched last.
"""

from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import QObject, Signal

from medplib_core.annotation import PromptKind
from medplib_core.session import RegionKind, RegionRef, RegionSource
from medplib_core.slicing import n_slices, slice_geometry

from ..segment_controller import box_pixels


class RegionTracker(QObject):
    """Remembers the last drawn prompt per slice and lists region candidates."""

    changed = Signal()

    def __init__(self, doc, views, parent: QObject | None = None):
        super().__init__(parent)
        self.doc = doc  # signals
        self.session = doc.session  # state and operations
        self._drawn: dict[tuple[str, int], tuple[RegionRef, float]] = {}
        self._t_proposal = 0.0
        self._t_label = 0.0
        for v in views:
            cv = v.canvas
            cv.box_drawn.connect(lambda *b, v=v: self._draw(v, RegionRef(RegionKind.BOX, list(box_pixels(*b)))))
            cv.lasso_drawn.connect(lambda pts, v=v: self._draw(
                v, RegionRef(RegionKind.POLYGON, [[float(x) - 0.5, float(y) - 0.5] for x, y in pts])))
            cv.point_clicked.connect(lambda x, y, pos, v=v: self._point(v, x, y, pos))
        doc.proposal_changed.connect(self._on_proposal)
        doc.voxels_changed.connect(self._on_voxels)
        doc.active_label_changed.connect(lambda *_: self.changed.emit())
        doc.volume_changed.connect(self._on_volume)

    # ----- events ----------------------------------------------------------------------------
    def _draw(self, view, ref: RegionRef) -> None:
        self._drawn[(view.orientation, view.index)] = (ref, time.monotonic())
        self.changed.emit()

    def _point(self, view, x: float, y: float, positive: bool) -> None:
        if not positive:
            return
        key = (view.orientation, view.index)
        pt = [float(int(x)), float(int(y))]
        old = self._drawn.get(key)
        if old and old[0].kind in (RegionKind.POINT, RegionKind.POINTS):
            pts = [old[0].data] if old[0].kind is RegionKind.POINT else list(old[0].data)
            ref = RegionRef(RegionKind.POINTS, pts + [pt])
        else:
            ref = RegionRef(RegionKind.POINT, pt)
        self._draw(view, ref)

    def _on_proposal(self) -> None:
        p = self.session.proposal
        if p is not None and not PromptKind(p.record.kind).restates_drawing:
            self._t_proposal = time.monotonic()
        self.changed.emit()

    def _on_voxels(self) -> None:
        self._t_label = time.monotonic()
        self.changed.emit()

    def _on_volume(self) -> None:
        self._drawn.clear()
        self._t_proposal = self._t_label = 0.0
        self.changed.emit()

    # ----- queries ---------------------------------------------------------------------------
    def candidates(self, orientation: str, index: int) -> list[RegionRef]:
        """Regions available on one slice, the most recently touched first."""
        s, vol = self.session, self.session.volume
        if vol is None or not 0 <= index < n_slices(vol, orientation):
            return []  # a slice of the previous scan, asked before the panel caught up
        found: list[tuple[float, int, RegionRef]] = []
        drawn = self._drawn.get((orientation, index))
        if drawn:
            found.append((drawn[1], 0, drawn[0]))
        p = s.proposal
        if p is not None:
            m = p.mask_on(vol, orientation, index)
            if m is not None and m.any():
                found.append((self._t_proposal, 1, RegionRef(
                    RegionKind.MASK, source=RegionSource.PROPOSAL, prompt_id=p.record.id,
                    note=f"proposal #{p.record.id}", mask=np.array(m, dtype=bool))))
        lab = s.labels.get(s.active_value) if s.labelmap is not None else None
        if lab is not None:
            m = slice_geometry(vol, orientation, index).take(s.labelmap.array) == lab.value
            if m.any():
                found.append((self._t_label, 2, RegionRef(
                    RegionKind.MASK, source=RegionSource.LABEL, note=f"label '{lab.name}'", mask=np.array(m))))
        found.sort(key=lambda t: (-t[0], t[1]))
        return [r for _, _, r in found]
