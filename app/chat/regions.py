"""Region references for chat questions: what the user drew, the proposal, or a label mask.

A `RegionRef` is one ``<region>`` of a question: a drawn box, outline or points (image pixels
of the displayed slice, x = column, y = row) or a mask. Masks are never stored in the chat
itself: they live in `PromptRecord`s of the document (a proposal's own record, or a
"chat-region" record holding a snapshot of a corrected label) and the reference keeps the id.

`RegionTracker` watches the slice views and the document and lists the candidates on a slice,
newest first, so "Use as region" and an unfilled ``<region>`` take what the user touched last.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from medplib_core.project import PromptRecord
from medplib_core.slicing import n_slices, slice_geometry

from ..segment_controller import box_pixels

DERIVED_KINDS = ("box", "lasso", "click")  # proposals that only restate a drawn prompt


@dataclass
class RegionRef:
    """One region of a question; ``kind`` is box, polygon, point, points or mask."""

    kind: str
    data: Any = None  # coordinates for drawn kinds
    source: str = "drawn"  # "drawn", "proposal" or "label"
    prompt_id: int | None = None  # the PromptRecord holding a mask
    note: str = ""  # e.g. "proposal #4", "label 'liver'"
    saved_text: str = ""  # the description saved with the chat (masks are not in memory)
    mask: np.ndarray | None = field(default=None, repr=False, compare=False)

    def describe(self) -> str:
        """Short human-readable form, e.g. "box 120,80–200,160"."""
        if self.kind == "box":
            x0, y0, x1, y1 = (int(round(v)) for v in self.data)
            return f"box {x0},{y0}–{x1},{y1}"
        if self.kind == "point":
            x, y = (int(round(v)) for v in self.data)
            return f"point {x},{y}"
        if self.kind == "points":
            return "points " + "; ".join(f"{int(x)},{int(y)}" for x, y in self.data)
        if self.kind == "polygon":
            a = np.asarray(self.data, dtype=float)
            (x0, y0), (x1, y1) = np.floor(a.min(0)).astype(int), np.ceil(a.max(0)).astype(int)
            return f"outline {len(a)} pts, {x0},{y0}–{x1},{y1}"
        name = f"{self.note} mask" if self.note else "mask"  # e.g. "label 'liver' mask 1,234 px, …"
        m = self.mask
        if m is None or not m.any():
            return name
        ys, xs = np.nonzero(m)
        return f"{name} {int(m.sum()):,} px, {xs.min()},{ys.min()}–{xs.max()},{ys.max()}"

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "source": self.source, "text": self.text()}
        if self.data is not None:
            d["data"] = np.asarray(self.data, dtype=float).tolist()
        if self.prompt_id is not None:
            d["prompt_id"] = int(self.prompt_id)
        if self.note:
            d["note"] = self.note
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RegionRef":
        return cls(str(d.get("kind", "box")), d.get("data"), str(d.get("source", "drawn")),
                   d.get("prompt_id"), str(d.get("note", "")), str(d.get("text", "")))

    def text(self) -> str:
        """The description (the saved one when the mask itself is not in memory)."""
        if self.kind == "mask" and self.mask is None and self.saved_text:
            return self.saved_text
        return self.describe()

    def model_region(self, records: dict[int, PromptRecord]) -> Any:
        """What `ChatSession.ask` takes: a dict region or a bool mask (from its record)."""
        if self.kind != "mask":
            return {"kind": self.kind, "data": self.data}
        mask = self.mask
        if mask is None and self.prompt_id in records:
            mask = records[self.prompt_id].mask
        if mask is None or mask.ndim != 2:
            raise ValueError(f"the mask of {self.text()} is no longer available")
        return np.asarray(mask, dtype=bool)


def find_records(doc) -> dict[int, PromptRecord]:
    return {r.id: r for r in doc.prompts}


def materialize(doc, ref: RegionRef, orientation: str, index: int) -> RegionRef:
    """Make sure a mask reference points at a 2D `PromptRecord` of this slice (created for a
    label snapshot or a 3D proposal), so the chat can be saved and replayed."""
    if ref.kind != "mask" or ref.mask is None:
        return ref
    rec = find_records(doc).get(ref.prompt_id) if ref.prompt_id is not None else None
    if rec is not None and rec.mask is not None and rec.mask.ndim == 2 and \
            (rec.orientation, rec.index) == (orientation, index):
        return ref
    rec = PromptRecord(id=doc.new_prompt_id(), kind="chat-region", orientation=orientation,
                       index=index, prompt={"source": ref.source, "note": ref.note},
                       provenance={"engine": "user", "use": "region of a chat question",
                                   "from_prompt_id": ref.prompt_id},
                       mask=np.asarray(ref.mask, dtype=bool).copy(), status="reference")
    doc.prompts.append(rec)
    doc.mark_changed()
    ref.prompt_id = rec.id
    return ref


def show_again(doc, rec: PromptRecord) -> None:
    """Make a chat mask the proposal again: the same record (listed anew) unless it was
    accepted, then a copy, so the accepted record keeps its status."""
    p = doc.proposal
    if p is not None and p.record.id == rec.id:
        return
    if rec.status == "accepted":
        rec = PromptRecord(id=doc.new_prompt_id(), kind=rec.kind, orientation=rec.orientation,
                           index=rec.index, prompt=dict(rec.prompt), mask=rec.mask.copy(),
                           provenance=dict(rec.provenance, shown_again_from=rec.id))
    else:
        doc.prompts.remove(rec)
        rec.status = "proposed"
    doc.propose(rec)


class RegionTracker(QObject):
    """Remembers the last drawn prompt per slice and lists region candidates."""

    changed = Signal()

    def __init__(self, doc, views, parent: QObject | None = None):
        super().__init__(parent)
        self.doc = doc
        self._drawn: dict[tuple[str, int], tuple[RegionRef, float]] = {}
        self._t_proposal = 0.0
        self._t_label = 0.0
        for v in views:
            cv = v.canvas
            cv.box_drawn.connect(lambda *b, v=v: self._draw(v, RegionRef("box", list(box_pixels(*b)))))
            cv.lasso_drawn.connect(lambda pts, v=v: self._draw(
                v, RegionRef("polygon", [[float(x) - 0.5, float(y) - 0.5] for x, y in pts])))
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
        if old and old[0].kind in ("point", "points"):
            pts = [old[0].data] if old[0].kind == "point" else list(old[0].data)
            ref = RegionRef("points", pts + [pt])
        else:
            ref = RegionRef("point", pt)
        self._draw(view, ref)

    def _on_proposal(self) -> None:
        p = self.doc.proposal
        if p is not None and p.record.kind not in DERIVED_KINDS:
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
        doc, vol = self.doc, self.doc.volume
        if vol is None or not 0 <= index < n_slices(vol, orientation):
            return []  # a slice of the previous scan, asked before the panel caught up
        found: list[tuple[float, int, RegionRef]] = []
        drawn = self._drawn.get((orientation, index))
        if drawn:
            found.append((drawn[1], 0, drawn[0]))
        p = doc.proposal
        if p is not None:
            m = p.mask_on(vol, orientation, index)
            if m is not None and m.any():
                found.append((self._t_proposal, 1, RegionRef(
                    "mask", source="proposal", prompt_id=p.record.id,
                    note=f"proposal #{p.record.id}", mask=np.array(m, dtype=bool))))
        lab = doc.labels.get(doc.active_value) if doc.labelmap is not None else None
        if lab is not None:
            m = slice_geometry(vol, orientation, index).take(doc.labelmap.array) == lab.value
            if m.any():
                found.append((self._t_label, 2, RegionRef(
                    "mask", source="label", note=f"label '{lab.name}'", mask=np.array(m))))
        found.sort(key=lambda t: (-t[0], t[1]))
        return [r for _, _, r in found]


def grounding_prompt(question: str, refs: list[RegionRef]) -> dict:
    """The grounding record's prompt: the question, its regions and the first drawn shape
    (drawn on the viewer with the proposal)."""
    out: dict = {"text": question, "regions": [r.to_json() for r in refs]}
    for r in refs:
        if r.kind == "box":
            out.setdefault("box", [float(v) for v in r.data])
        elif r.kind == "polygon":
            out.setdefault("polygon", [[float(x), float(y)] for x, y in r.data])
        elif r.kind in ("point", "points") and "points" not in out:
            pts = [r.data] if r.kind == "point" else list(r.data)
            out["points"], out["point_labels"] = [[float(x), float(y)] for x, y in pts], [1] * len(pts)
    return out
