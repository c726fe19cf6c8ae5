"""One undo/redo history for voxel edits (delegated to `LabelMap`) and label-set changes.

Each entry records whether it changed voxels (one `LabelMap` undo step) and/or the label list
(a before/after snapshot), so "delete label" or "accept proposal" (voxels plus the label's
provenance) undo as one step. The voxel budget is the LabelMap's; entries whose voxel step it
dropped are trimmed from the bottom.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medplib_core.annotation import Label, LabelMap, LabelSet


@dataclass
class Entry:
    description: str
    voxels: bool
    labels_before: list[dict[str, Any]] | None = None
    labels_after: list[dict[str, Any]] | None = None


def restore_labels(label_set: LabelSet, items: list[dict[str, Any]]) -> None:
    """Make ``label_set`` equal to ``items`` in place (listeners see added/changed/removed)."""
    wanted = {int(d["value"]): Label.from_dict(d) for d in items}
    for lab in list(label_set):
        if lab.value not in wanted:
            label_set.remove(lab.value)
    for value, lab in wanted.items():
        cur = label_set.get(value)
        if cur is None:
            label_set.add(name=lab.name, value=value, color=tuple(lab.color), visible=lab.visible,
                          locked=lab.locked, policy=lab.policy, description=lab.description,
                          provenance=list(lab.provenance))
        elif cur.to_dict() != lab.to_dict():
            label_set.update(value, name=lab.name, color=tuple(lab.color), visible=lab.visible,
                             locked=lab.locked, policy=lab.policy, description=lab.description,
                             provenance=list(lab.provenance))


class History:
    """Undo/redo across voxels and labels; call `record` after each change."""

    def __init__(self, labelmap: LabelMap):
        self.labelmap = labelmap
        self._undo: list[Entry] = []
        self._redo: list[Entry] = []

    def record(self, description: str, voxels: bool, labels_before=None, labels_after=None) -> None:
        if not voxels and labels_before == labels_after:
            return
        self._undo.append(Entry(description, voxels, labels_before, labels_after))
        self._redo.clear()
        self._trim()

    def _trim(self) -> None:
        voxel_entries = sum(e.voxels for e in self._undo)
        excess = voxel_entries - self.labelmap.undo_depth
        while excess > 0 and self._undo:
            e = self._undo.pop(0)
            excess -= int(e.voxels)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo_text(self) -> str:
        return self._undo[-1].description if self._undo else ""

    def redo_text(self) -> str:
        return self._redo[-1].description if self._redo else ""

    def undo(self) -> Entry | None:
        if not self._undo:
            return None
        e = self._undo.pop()
        if e.labels_before is not None and e.labels_before != e.labels_after:
            restore_labels(self.labelmap.labels, e.labels_before)
        if e.voxels:
            self.labelmap.undo()
        self._redo.append(e)
        return e

    def redo(self) -> Entry | None:
        if not self._redo:
            return None
        e = self._redo.pop()
        if e.voxels:
            self.labelmap.redo()
        if e.labels_after is not None and e.labels_before != e.labels_after:
            restore_labels(self.labelmap.labels, e.labels_after)
        self._undo.append(e)
        return e

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()
        self.labelmap.clear_history()
