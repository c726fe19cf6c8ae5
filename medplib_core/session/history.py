"""One undo/redo history for a session: voxel edits and label-set changes in the same steps.

A `Step` holds the `Edit` a `LabelMap` returned (its changed box, compressed) and/or the label
list before and after (snapshots of `LabelSet.to_list`), so "delete label" (voxels and the label)
or "accept" (voxels and the label's provenance) undo as one step. All steps share one memory
budget: past it the oldest steps are dropped (the newest is always kept).

Measurement steps (`push_measurements`) hold snapshots of the session's measurement list; the
history gives them back through ``on_measurements`` (set by the session).

`state` names the current position (the id of the step on top, 0 for none), so a save-state
tracker can tell that undoing back to a saved point restores the saved labels.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any, Callable

from ..annotation import Edit, Label, LabelMap, LabelSet

DEFAULT_BUDGET_BYTES = 256 * 2**20
_LABEL_BYTES, _PROVENANCE_BYTES = 256, 512  # a snapshot's rough size per label / entry

Snapshot = list[dict[str, Any]]


@dataclass
class Step:
    """One undoable change: voxels (``edit``) and/or labels (``labels_before`` → ``labels_after``)."""

    id: int
    description: str
    edit: Edit | None = None
    labels_before: Snapshot | None = None
    labels_after: Snapshot | None = None
    measurements_before: Snapshot | None = None
    measurements_after: Snapshot | None = None

    @property
    def changes_labels(self) -> bool:
        return self.labels_before is not None and self.labels_before != self.labels_after

    @property
    def changes_measurements(self) -> bool:
        return self.measurements_before is not None and self.measurements_before != self.measurements_after

    @property
    def nbytes(self) -> int:
        """Compressed voxel bytes plus an estimate for the label snapshots."""
        n = self.edit.nbytes if self.edit is not None else 0
        for snap in (self.labels_before, self.labels_after):
            for d in snap or ():
                n += _LABEL_BYTES + _PROVENANCE_BYTES * len(d.get("provenance", ()))
        n += _LABEL_BYTES * (len(self.measurements_before or ()) + len(self.measurements_after or ()))
        return n


def restore_labels(label_set: LabelSet, items: Snapshot) -> None:
    """Make ``label_set`` equal to ``items`` in place (its listeners see each change)."""
    wanted = {int(d["value"]): Label.from_dict(d) for d in items}
    for lab in list(label_set):
        if lab.value not in wanted:
            label_set.remove(lab.value)
    for value, lab in wanted.items():
        fields = {f.name: getattr(lab, f.name) for f in dataclasses.fields(Label) if f.name != "value"}
        cur = label_set.get(value)
        if cur is None:
            label_set.add(value=value, **fields)
        elif cur.to_dict() != lab.to_dict():
            label_set.update(value, **fields)


class History:
    """Undo/redo over one `LabelMap` and its `LabelSet`; `push` after each change."""

    def __init__(self, labelmap: LabelMap, budget_bytes: int = DEFAULT_BUDGET_BYTES):
        self.labelmap = labelmap
        self.budget_bytes = int(budget_bytes)
        self._undo: list[Step] = []
        self._redo: list[Step] = []
        self._ids = itertools.count(1)
        self._floor = 0  # id of the newest step dropped for the budget (its effect stays)
        self.on_measurements: Callable[[Snapshot], None] | None = None  # restores the list

    def push(self, description: str, edit: Edit | None = None, labels_before: Snapshot | None = None,
             labels_after: Snapshot | None = None) -> Step | None:
        """Record a change already made; None (nothing recorded) when it changed nothing."""
        step = Step(next(self._ids), description, edit, labels_before, labels_after)
        if edit is None and not step.changes_labels:
            return None
        if not step.changes_labels:
            step.labels_before = step.labels_after = None
        return self._keep(step)

    def push_measurements(self, description: str, before: Snapshot, after: Snapshot) -> Step | None:
        """Record a change of the measurement list already made (None when nothing changed)."""
        step = Step(next(self._ids), description, measurements_before=before, measurements_after=after)
        return self._keep(step) if step.changes_measurements else None

    def _keep(self, step: Step) -> Step:
        self._undo.append(step)
        self._redo.clear()
        while len(self._undo) > 1 and self.memory() > self.budget_bytes:
            self._floor = self._undo.pop(0).id
        return step

    # ----- queries -------------------------------------------------------------------------
    def memory(self) -> int:
        return sum(s.nbytes for s in self._undo) + sum(s.nbytes for s in self._redo)

    @property
    def depth(self) -> int:
        """Steps that can be undone."""
        return len(self._undo)

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

    @property
    def state(self) -> int:
        """Where the history stands: the id of the last step in effect (0 before any); equal
        states mean equal labels and voxels."""
        return self._undo[-1].id if self._undo else self._floor

    # ----- moving --------------------------------------------------------------------------
    def undo(self) -> Step | None:
        if not self._undo:
            return None
        step = self._undo.pop()
        if step.changes_labels:
            restore_labels(self.labelmap.labels, step.labels_before)
        if step.edit is not None:
            self.labelmap.revert(step.edit)
        if step.changes_measurements and self.on_measurements is not None:
            self.on_measurements(step.measurements_before)
        self._redo.append(step)
        return step

    def redo(self) -> Step | None:
        if not self._redo:
            return None
        step = self._redo.pop()
        if step.edit is not None:
            self.labelmap.reapply(step.edit)
        if step.changes_labels:
            restore_labels(self.labelmap.labels, step.labels_after)
        if step.changes_measurements and self.on_measurements is not None:
            self.on_measurements(step.measurements_after)
        self._undo.append(step)
        return step

    def clear(self) -> None:
        """Forget every step (the labels stay as they are)."""
        self._floor = self.state
        self._undo.clear()
        self._redo.clear()
