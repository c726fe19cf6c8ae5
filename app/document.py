"""The open scan and everything edited on it: labels, window, proposal, prompt history.

`Document` is the single model the views, panels, engine controller and autosave share. All
label changes go through it so they reach the undo history, the voxel counts and the
``changed`` signal that drives autosave.
"""

from __future__ import annotations

import itertools
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from medplib_core.annotation import LabelMap, LabelSet, LockedLabelError
from medplib_core.engines.base import Prompt
from medplib_core.project import Project, PromptRecord, scan_reference
from medplib_core.slicing import slice_geometry
from medplib_core.volume import Volume, robust_window

from .history import History


@dataclass
class Proposal:
    """A mask the engine proposed, waiting for Enter (accept) or Esc (discard)."""

    record: PromptRecord
    prompt: Prompt | None = None  # kept for corrective clicks
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_3d(self) -> bool:
        return self.record.mask is not None and self.record.mask.ndim == 3

    def mask_on(self, vol: Volume, orientation: str, index: int) -> np.ndarray | None:
        """The proposal's 2D mask on the given displayed slice, if it has one there."""
        rec = self.record
        if rec.mask is None:
            return None
        if self.is_3d:
            m = slice_geometry(vol, orientation, index).take(rec.mask)
            return m if m.any() else None
        if rec.orientation == orientation and rec.index == index:
            return rec.mask
        return None


def _count_delta(after: np.ndarray, before: np.ndarray, values: list[int]) -> dict[int, int]:
    """Per-label change in voxel count between two versions of an edited block.

    Large blocks with few labels use comparisons (NumPy releases the GIL for them, so a worker
    doing this never stalls the GUI); otherwise one bincount each.
    """
    values = sorted({int(v) for v in values if v})
    if after.size > 1_000_000 and len(values) <= 16:
        out = {v: int(np.count_nonzero(after == v)) - int(np.count_nonzero(before == v)) for v in values}
        return {v: d for v, d in out.items() if d}
    size = int(max(after.max(initial=0), before.max(initial=0))) + 1
    delta = np.bincount(after, minlength=size).astype(np.int64) - np.bincount(before, minlength=size)
    return {int(v): int(delta[v]) for v in np.flatnonzero(delta) if v}


class Document(QObject):
    """Model of the open scan; emits signals the GUI listens to."""

    volume_changed = Signal()
    labels_changed = Signal()  # label definitions (name, colour, visibility, lock, ...)
    voxels_changed = Signal()  # label voxels
    counts_changed = Signal()
    window_changed = Signal(float, float)
    proposal_changed = Signal()
    active_label_changed = Signal(int)
    history_changed = Signal()
    changed = Signal()  # anything worth autosaving
    view_state_loaded = Signal(dict)  # a project brought back its layout, slices and zoom

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.volume: Volume | None = None
        self.path: str = ""
        self.series: str | None = None
        self.labelmap: LabelMap | None = None
        self.history: History | None = None
        self.active_value: int = 0
        self.window: tuple[float, float] = (0.0, 1.0)
        self.proposal: Proposal | None = None
        self.prompts: list[PromptRecord] = []
        self.chat: list[dict[str, Any]] = []
        self.view_state: dict[str, Any] = {}
        self.view_state_provider = None  # callable returning the viewer's layout/slices/zoom
        self.counts: dict[int, int] = {}
        self.revision = 0  # bumps on every persistent change
        self.label_revision = 0  # bumps when the overlay must be redrawn
        self.lock = threading.RLock()  # held by voxel edits and by workers copying the labels
        self._quiet = False  # True while a worker writes voxels: no signals from that thread
        self._ids = itertools.count(1)

    # ----- scan ----------------------------------------------------------------------------
    @property
    def labels(self) -> LabelSet:
        return self.labelmap.labels if self.labelmap else LabelSet()

    def set_volume(self, vol: Volume, path: str = "", series: str | None = None,
                   labels: LabelSet | None = None, label_array: np.ndarray | None = None) -> None:
        """Show a newly loaded scan, with empty labels unless given."""
        self.volume, self.path, self.series = vol, str(path), series
        labels = labels if labels is not None else LabelSet()
        self.labelmap = LabelMap(vol.shape, labels, array=label_array)
        self.history = History(self.labelmap)
        self.labelmap.subscribe(self._on_voxels)
        labels.subscribe(self._on_labels)
        self.counts = self.labelmap.counts() if label_array is not None else {}
        self.proposal = None
        self.prompts = []
        self.chat = []
        self.view_state = {}
        self.active_value = next(iter(labels)).value if len(labels) else 0
        self.window = tuple(vol.window or (0.0, 1.0))  # type: ignore[assignment]
        self.label_revision += 1
        self.volume_changed.emit()
        self.labels_changed.emit()
        self.counts_changed.emit()
        self.window_changed.emit(*self.window)
        self.active_label_changed.emit(self.active_value)
        self.history_changed.emit()

    # ----- display window ------------------------------------------------------------------
    def set_window(self, centre: float, width: float) -> None:
        width = max(float(width), 1e-3)
        if (centre, width) != self.window:
            self.window = (float(centre), width)
            self.window_changed.emit(*self.window)

    def auto_window(self) -> tuple[float, float]:
        """Robust percentile window (what MR and other modalities get)."""
        if self.volume is None:
            return self.window
        if self.volume.is_colour:
            c, w = 127.5, 255.0
        else:
            c, w = robust_window(self.volume.array)
        self.set_window(c, w)
        return c, w

    # ----- labels --------------------------------------------------------------------------
    def _snapshot(self) -> list[dict[str, Any]]:
        return self.labels.to_list()

    def _label_change(self, description: str, fn, voxels: bool = False):
        before = self._snapshot()
        result = fn()
        self.history.record(description, voxels, before, self._snapshot())
        self.history_changed.emit()
        return result

    def add_label(self, name: str | None = None, **kw: Any):
        lab = self._label_change("add label", lambda: self.labels.add(name, **kw))
        self.set_active(lab.value)
        return lab

    def ensure_label(self) -> int:
        """The active label's value, creating "label 1" when there is none."""
        if self.active_value and self.active_value in self.labels:
            return self.active_value
        if len(self.labels):
            self.set_active(next(iter(self.labels)).value)
            return self.active_value
        return self.add_label().value

    def update_label(self, value: int, description: str = "change label", **changes: Any) -> None:
        lab = self.labels.get(value)
        if lab is None:
            return
        if all(getattr(lab, k) == v for k, v in changes.items()):
            return
        undoable = any(k not in ("visible",) for k in changes)
        if undoable:
            self._label_change(description, lambda: self.labels.update(value, **changes))
        else:
            self.labels.update(value, **changes)

    def remove_label(self, value: int) -> None:
        """Delete a label and its voxels, as one undo step."""
        lab = self.labels.get(value)
        if lab is None:
            return
        if lab.locked:
            raise LockedLabelError(f"label '{lab.name}' is locked: unlock it before deleting it")
        before = self._snapshot()
        with self.lock:
            edit = self.labelmap.apply(self.labelmap.array == value, value, erase=True,
                                       description=f"delete {lab.name}") if self.counts.get(value) else None
        self.labels.remove(value)
        self.history.record(f"delete label {lab.name}", edit is not None, before, self._snapshot())
        if self.active_value == value:
            self.set_active(next(iter(self.labels)).value if len(self.labels) else 0)
        self.history_changed.emit()

    def set_active(self, value: int) -> None:
        if value != self.active_value:
            self.active_value = int(value)
            self.active_label_changed.emit(self.active_value)

    # ----- voxel edits ---------------------------------------------------------------------
    def paint(self, mask2d: np.ndarray, orientation: str, index: int, erase: bool = False):
        """Brush (or eraser) stroke on one displayed slice, as one undo step."""
        value = 0 if erase else self.ensure_label()
        geom = slice_geometry(self.volume, orientation, index)
        lab = self.labels.get(value)
        with self.lock:
            edit = self.labelmap.apply(mask2d, value, view=geom.take, erase=erase,
                                       policy=lab.policy if lab else None,
                                       description="eraser" if erase else f"brush {lab.name}")
        if edit is not None:
            self.history.record(edit.description, True)
            self.history_changed.emit()
        return edit

    def propose(self, record: PromptRecord, prompt: Prompt | None = None) -> Proposal:
        record.id = next(self._ids) if not record.id else record.id
        self.prompts.append(record)
        self.proposal = Proposal(record, prompt)
        self.proposal_changed.emit()
        self.mark_changed()
        return self.proposal

    def new_prompt_id(self) -> int:
        return next(self._ids)

    def discard_proposal(self) -> None:
        if self.proposal is not None:
            self.proposal.record.status = "discarded"
            self.proposal = None
            self.proposal_changed.emit()
            self.mark_changed()

    def accept_proposal(self):
        """Write the proposal into the active label with the label's overlap policy."""
        job = self.begin_accept()
        return None if job is None else self.finish_accept(job, self.write_accept(job))

    def begin_accept(self) -> dict | None:
        """Check the proposal can be accepted (GUI thread); the job for `write_accept`."""
        p = self.proposal
        if p is None or self.volume is None:
            return None
        value = self.ensure_label()
        lab = self.labels[value]
        if lab.locked:
            raise LockedLabelError(f"label '{lab.name}' is locked: pick or add another label, or unlock it")
        rec = p.record
        view = None if p.is_3d else slice_geometry(self.volume, rec.orientation, rec.index).take
        return {"value": value, "policy": lab.policy, "name": lab.name, "record": rec, "view": view,
                "before": self._snapshot(), "labelmap": self.labelmap}

    def write_accept(self, job: dict):
        """The voxel write of an accept; may run on a worker (a large 3D proposal)."""
        rec = job["record"]
        with self.lock:
            self._quiet = True  # listeners update the counts here; signals follow on the GUI thread
            try:
                return job["labelmap"].apply(rec.mask, job["value"], view=job["view"], policy=job["policy"],
                                             description=f"accept {rec.kind} into {job['name']}",
                                             meta={"prompt_id": rec.id})
            finally:
                self._quiet = False

    def finish_accept(self, job: dict, edit):
        """Record the accept (provenance, undo step) and tell the views (GUI thread)."""
        if job["labelmap"] is not self.labelmap:
            return None  # another scan was opened meanwhile
        rec, value = job["record"], job["value"]
        rec.status, rec.label_value = "accepted", value
        entry = {"prompt_id": rec.id, "kind": rec.kind, "orientation": rec.orientation,
                 "slice": rec.index, **{k: v for k, v in rec.provenance.items() if k != "prompt"},
                 "prompt": rec.prompt}
        lab = self.labels[value]
        self.labels.update(value, provenance=list(lab.provenance) + [entry])
        self.history.record(f"accept {rec.kind}", edit is not None, job["before"], self._snapshot())
        if self.proposal is not None and self.proposal.record is rec:
            self.proposal = None
        if edit is not None:
            self.label_revision += 1
            self.voxels_changed.emit()
            self.counts_changed.emit()
        self.proposal_changed.emit()
        self.history_changed.emit()
        self.mark_changed()
        return edit

    def replace_labels(self, array: np.ndarray, labels: LabelSet, description: str = "import labels"):
        """Replace all labels (an import) as one undo step."""
        before = self._snapshot()
        for lab in labels:
            if lab.value not in self.labels:
                self.labels.add(lab.name, value=lab.value, color=tuple(lab.color))
        with self.lock:
            edit = self.labelmap.replace_all(array, description=description)
        self.history.record(description, edit is not None, before, self._snapshot())
        self.history_changed.emit()
        return edit

    def undo(self) -> bool:
        if self.history is None:
            return False
        with self.lock:
            if self.history.undo() is None:
                return False
        self.history_changed.emit()
        return True

    def redo(self) -> bool:
        if self.history is None:
            return False
        with self.lock:
            if self.history.redo() is None:
                return False
        self.history_changed.emit()
        return True

    # ----- listeners -----------------------------------------------------------------------
    def _on_voxels(self, event: str, edit) -> None:
        if edit is not None and event in ("edit", "undo", "redo"):
            old = np.frombuffer(zlib.decompress(edit.old), dtype=np.uint16)
            new = np.frombuffer(zlib.decompress(edit.new), dtype=np.uint16)
            a, b = (new, old) if event != "undo" else (old, new)
            for v, d in _count_delta(a, b, [lab.value for lab in self.labels] + list(self.counts)).items():
                n = self.counts.get(v, 0) + d
                if n > 0:
                    self.counts[v] = n
                else:
                    self.counts.pop(v, None)
        else:
            self.counts = self.labelmap.counts()
        if self._quiet:
            return
        self.label_revision += 1
        self.voxels_changed.emit()
        self.counts_changed.emit()
        self.mark_changed()

    def _on_labels(self, event: str, value: int) -> None:
        self.label_revision += 1
        self.labels_changed.emit()
        self.mark_changed()

    def mark_changed(self) -> None:
        self.revision += 1
        self.changed.emit()

    # ----- projects ------------------------------------------------------------------------
    def to_project(self, copy: bool = True) -> Project:
        """A snapshot for saving (the label array is copied so a worker can write it)."""
        arr = self.labelmap.array.copy() if copy else self.labelmap.array
        if self.view_state_provider is not None:
            self.view_state.update(self.view_state_provider())
        view = dict(self.view_state, active_label=self.active_value, window=list(self.window))
        return Project(scan=scan_reference(self.volume, self.path, self.series),
                       labels=LabelSet.from_list(self.labels.to_list()), label_array=arr,
                       prompts=list(self.prompts), chat=list(self.chat), view=view)

    def project_job(self, fn):
        """``fn(project, *args)`` wrapped for a worker: the labels are copied there, under the
        edit lock (NumPy copies without the GIL), so the GUI never waits for a large copy."""
        project = self.to_project(copy=False)
        src, lock = self.labelmap.array, self.lock

        def job(*args, **kwargs):
            with lock:
                project.label_array = src.copy()
            return fn(project, *args, **kwargs)

        return job

    def load_project(self, vol: Volume, project: Project) -> None:
        """Show ``vol`` with a saved project's labels, prompts, chat and view state."""
        if tuple(project.label_array.shape) != vol.shape:
            raise ValueError(f"the project's labels {project.label_array.shape} do not fit the scan {vol.shape}")
        self.set_volume(vol, project.scan.get("path", ""), project.scan.get("series"),
                        labels=project.labels, label_array=project.label_array)
        self.prompts = list(project.prompts)
        self.chat = list(project.chat)
        self.view_state = dict(project.view)
        top = max((r.id for r in self.prompts), default=0)
        self._ids = itertools.count(top + 1)
        if project.view.get("window"):
            self.set_window(*project.view["window"])
        if project.view.get("active_label") in self.labels:
            self.set_active(int(project.view["active_label"]))
        self.view_state_loaded.emit(self.view_state)
