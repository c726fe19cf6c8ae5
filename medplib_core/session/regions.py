"""Region references of chat questions: what the user drew, the proposal, or a label mask.

A `RegionRef` is one ``<region>`` of a question: a drawn box, outline or points (image pixels
of the displayed slice, x = column, y = row, what the model is given) or a mask. Described to
the user (`describe` with the slice geometry) it is in voxel indices i, j, k, the coordinates
the status bar's cursor readout uses. Masks are never stored in the chat
itself: they live in the session's `PromptRecord`s (a proposal's own record, or a
"chat-region" record holding a snapshot of a corrected label) and the reference keeps the id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..project import PromptRecord
from ..text_enum import TextEnum


class RegionKind(TextEnum):
    BOX = "box"  # [x0, y0, x1, y1], inclusive pixel corners
    POLYGON = "polygon"  # [[x, y], ...]
    POINT = "point"  # [x, y]
    POINTS = "points"  # [[x, y], ...]
    MASK = "mask"  # a bool mask held by a prompt record


class RegionSource(TextEnum):
    DRAWN = "drawn"
    PROPOSAL = "proposal"
    LABEL = "label"


@dataclass
class RegionRef:
    """One region of a question."""

    kind: RegionKind
    data: Any = None  # coordinates for drawn kinds
    source: RegionSource = RegionSource.DRAWN
    prompt_id: int | None = None  # the PromptRecord holding a mask
    note: str = ""  # e.g. "proposal #4", "label 'liver'"
    saved_text: str = ""  # the description saved with the chat (masks are not in memory)
    mask: np.ndarray | None = field(default=None, repr=False, compare=False)

    def describe(self, geometry=None) -> str:
        """Short human-readable form: in voxel indices with the displayed slice's `SliceGeometry`
        (e.g. "box i 120–200, j 80–160 · k 12"), else in image pixels ("box 120,80–200,160")."""
        span = (lambda x0, y0, x1, y1: voxel_span(geometry, x0, y0, x1, y1)) if geometry is not None else \
            (lambda x0, y0, x1, y1: f"{x0},{y0}–{x1},{y1}" if (x0, y0) != (x1, y1) else f"{x0},{y0}")
        if self.kind is RegionKind.BOX:
            x0, y0, x1, y1 = (int(round(v)) for v in self.data)
            return f"box {span(x0, y0, x1, y1)}"
        if self.kind is RegionKind.POINT:
            x, y = (int(round(v)) for v in self.data)
            return f"point {span(x, y, x, y)}"
        if self.kind is RegionKind.POINTS:
            return "points " + "; ".join(span(int(x), int(y), int(x), int(y)) for x, y in self.data)
        if self.kind is RegionKind.POLYGON:
            a = np.asarray(self.data, dtype=float)
            (x0, y0), (x1, y1) = np.floor(a.min(0)).astype(int), np.ceil(a.max(0)).astype(int)
            return f"outline {len(a)} pts, {span(int(x0), int(y0), int(x1), int(y1))}"
        name = f"{self.note} mask" if self.note else "mask"  # e.g. "label 'liver' mask 1,234 px, …"
        m = self.mask
        if m is None or not m.any():
            return name
        ys, xs = np.nonzero(m)
        return f"{name} {int(m.sum()):,} px, {span(int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))}"

    def text(self) -> str:
        """The description: the one fixed when the question was asked (voxel indices), else
        `describe` in image pixels."""
        return self.saved_text or self.describe()

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": str(self.kind), "source": str(self.source), "text": self.text()}
        if self.data is not None:
            d["data"] = np.asarray(self.data, dtype=float).tolist()
        if self.prompt_id is not None:
            d["prompt_id"] = int(self.prompt_id)
        if self.note:
            d["note"] = self.note
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RegionRef":
        return cls(RegionKind(d.get("kind", "box")), d.get("data"), RegionSource(d.get("source", "drawn")),
                   d.get("prompt_id"), str(d.get("note", "")), str(d.get("text", "")))

    def model_region(self, records: dict[int, PromptRecord]) -> Any:
        """What `ChatSession.ask` takes: a dict region or a bool mask (from its record)."""
        if self.kind is not RegionKind.MASK:
            return {"kind": str(self.kind), "data": self.data}
        mask = self.mask
        if mask is None and self.prompt_id in records:
            mask = records[self.prompt_id].mask
        if mask is None or mask.ndim != 2:
            raise ValueError(f"the mask of {self.text()} is no longer available")
        return np.asarray(mask, dtype=bool)


def voxel_span(geometry, x0: int, y0: int, x1: int, y1: int) -> str:
    """The image-pixel rectangle (x = column, y = row) as voxel index ranges of the slice,
    e.g. "i 40–80, j 30–70 · k 12" (a single pixel: "i 40, j 30 · k 12")."""
    corners = np.array([geometry.to_voxel(r, c) for r in (y0, y1) for c in (x0, x1)])  # (i, j, k)
    lo, hi = corners.min(0), corners.max(0)
    fixed = {2: 0, 1: 1, 0: 2}[geometry.axis]  # the ijk index the slice holds constant
    parts = [f"{n} {lo[a]}" + (f"–{hi[a]}" if hi[a] != lo[a] else "") for a, n in enumerate("ijk") if a != fixed]
    return ", ".join(parts) + f" · {'ijk'[fixed]} {lo[fixed]}"


def grounding_prompt(question: str, refs: list[RegionRef]) -> dict:
    """A grounding record's prompt: the question, its regions and the first drawn shape
    (drawn on the viewer with the proposal)."""
    out: dict = {"text": question, "regions": [r.to_json() for r in refs]}
    for r in refs:
        if r.kind is RegionKind.BOX:
            out.setdefault("box", [float(v) for v in r.data])
        elif r.kind is RegionKind.POLYGON:
            out.setdefault("polygon", [[float(x), float(y)] for x, y in r.data])
        elif r.kind in (RegionKind.POINT, RegionKind.POINTS) and "points" not in out:
            pts = [r.data] if r.kind is RegionKind.POINT else list(r.data)
            out["points"], out["point_labels"] = [[float(x), float(y)] for x, y in pts], [1] * len(pts)
    return out
