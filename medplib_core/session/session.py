"""`AnnotationSession`: what a user is doing to one scan, headless.

It holds the scan (`Volume`, its path and series), the labels (`LabelSet` and `LabelMap`),
every prompt record with its mask, the pending proposal, the active label, the display window,
the chat (`SessionChat`) and one undo `History` for voxel and label-set steps. Every change goes
through its operations, which announce themselves on ``events`` (`SessionEvents`): the GUI's
document turns them into Qt signals, the batch and the engine server ignore them or log them.

    session = AnnotationSession(medplib_core.load(path), path)
    session.add_label("liver")
    session.segment(engine, Prompt(box=(40, 30, 90, 80)), "axial", 12)   # a proposal
    session.accept()                                                    # into the active label
    session.undo(); session.redo()
    session.save("case.medplib")

Threads: call the operations from one thread (the GUI thread); ``lock`` is held by every voxel
write and by whoever copies the label array elsewhere. A large 3D accept may run its voxel write
(`write_accept`) on a worker between `begin_accept` and `finish_accept`, which announce.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any, Callable

import numpy as np

from ..analysis.brush import limit_to_range
from ..annotation import Edit, LabelMap, LabelSet, LockedLabelError, PromptKind, PromptStatus
from ..display import Windowing
from ..engines.base import Prompt, SegmentationEngine, SegResult
from ..project import PromptRecord
from ..slicing import n_slices, slice_geometry
from ..volume import Volume, robust_window
from . import project_io
from .conversation import SessionChat
from .events import SessionEvents
from .history import DEFAULT_BUDGET_BYTES, History
from .measurements import Measurements
from .proposal import STORED, AcceptJob, Proposal, plane_view
from .save_state import SaveState


def count_delta(after: np.ndarray, before: np.ndarray, values: list[int]) -> dict[int, int]:
    """Per-label change in voxel count between two versions of an edited block.

    Large blocks with few labels use comparisons (NumPy releases the GIL for them, so a worker
    doing this never stalls the GUI); otherwise one bincount each.
    """
    values = sorted({int(v) for v in values if v})
    if after.size > 1_000_000 and len(values) <= 16:
        out = {v: int(np.count_nonzero(after == v)) - int(np.count_nonzero(before == v)) for v in values}
        return {v: d for v, d in out.items() if d}
    size = int(max(after.max(initial=0), before.max(initial=0))) + 1
    delta = np.bincount(after.reshape(-1), minlength=size).astype(np.int64) - \
        np.bincount(before.reshape(-1), minlength=size)
    return {int(v): int(delta[v]) for v in np.flatnonzero(delta) if v}


class AnnotationSession:
    """The scan, its labels, prompts, proposal, window, chat and undo history."""

    def __init__(self, volume: Volume | None = None, path: str = "", series: str | None = None,
                 labels: LabelSet | None = None, label_array: np.ndarray | None = None,
                 undo_budget_bytes: int = DEFAULT_BUDGET_BYTES):
        self.events = SessionEvents()
        self.lock = threading.RLock()  # held by voxel writes and by whoever copies the labels
        self.undo_budget_bytes = int(undo_budget_bytes)
        self.volume: Volume | None = None
        self.path = ""
        self.series: str | None = None
        self.labelmap: LabelMap | None = None
        self.history: History | None = None
        self.active_value = 0
        self.window: tuple[float, float] = (0.0, 1.0)
        self.proposal: Proposal | None = None
        self.prompts: list[PromptRecord] = []
        self.chat = SessionChat(self)
        self.measurements = Measurements(self)  # rulers and ROIs (undoable, saved, exported)
        self.view_state: dict[str, Any] = {}  # layout, slices, zoom: kept for the project file
        self.view_state_provider: Callable[[], dict[str, Any]] | None = None  # the viewer's, if any
        self.focus: tuple[str, int] | None = None  # the slice the user works on (see `set_focus`)
        self.counts: dict[int, int] = {}
        self.revision = 0  # bumps on every change worth saving
        self.label_revision = 0  # bumps whenever the label overlay must be redrawn
        self.scan_serial = 0  # bumps with every scan opened (late results of an older one are dropped)
        self.save_state = SaveState(self)
        self._windowing = Windowing()
        self._ids = itertools.count(1)
        if volume is not None:
            self.open(volume, path, series, labels, label_array)

    # ----- the scan --------------------------------------------------------------------------
    @property
    def labels(self) -> LabelSet:
        return self.labelmap.labels if self.labelmap is not None else LabelSet()

    def open(self, volume: Volume, path: str = "", series: str | None = None,
             labels: LabelSet | None = None, label_array: np.ndarray | None = None) -> None:
        """Start on ``volume`` with empty labels unless given; forgets prompts, chat and history."""
        labels = labels if labels is not None else LabelSet()
        with self.lock:
            self.volume, self.path, self.series = volume, str(path), series
            self.labelmap = LabelMap(volume.shape, labels, array=label_array)
            self.history = History(self.labelmap, self.undo_budget_bytes)
            self.history.on_measurements = self.measurements.restore
        labels.subscribe(lambda event, value, ls=labels: self._labels_changed(ls))
        self.counts = self.labelmap.counts() if label_array is not None else {}
        self.proposal = None
        self.prompts = []
        self.chat.reset()
        self.measurements.reset()
        self.view_state = {}
        self.focus = None
        self._ids = itertools.count(1)
        self.active_value = next(iter(labels)).value if len(labels) else 0
        self.window = tuple(volume.window or (0.0, 1.0))  # type: ignore[assignment]
        self._windowing = Windowing.for_volume(volume)
        self.scan_serial += 1
        self.label_revision += 1
        self.save_state.forget()
        ev = self.events
        ev.volume.emit()
        ev.labels.emit()
        ev.counts.emit()
        ev.window.emit(*self.window)
        ev.active_label.emit(self.active_value)
        ev.history.emit()
        ev.chat.emit()
        ev.measurements.emit()

    def pixels(self, orientation: str = "axial", index: int | None = None,
               window: tuple[float, float] | None = None) -> np.ndarray:
        """A slice as displayed with the session's window (uint8): what engines are given.

        ``index`` defaults to the middle slice; orientation `STORED` is the scan's own k-slice."""
        vol = self._scan()
        if orientation == STORED:
            k = vol.shape[0] // 2 if index is None else int(index)
            plane = plane_view(vol, STORED, k)(vol.array)
        else:
            k = n_slices(vol, orientation) // 2 if index is None else int(index)
            plane = slice_geometry(vol, orientation, k).take(vol.array)
        return self._windowing.apply(plane, *(window or self.window))

    def set_focus(self, orientation: str, index: int) -> None:
        """The displayed slice the user works on (the view with the keyboard focus or drawn on
        last): chat questions are about it. Announced when it changes."""
        focus = (str(orientation), int(index))
        if focus != self.focus:
            self.focus = focus
            self.events.focus.emit(*focus)

    def _scan(self) -> Volume:
        if self.volume is None:
            raise RuntimeError("the session has no scan: open one first")
        return self.volume

    # ----- display window --------------------------------------------------------------------
    def set_window(self, centre: float, width: float) -> None:
        width = max(float(width), 1e-3)
        if (float(centre), width) != self.window:
            self.window = (float(centre), width)
            self.events.window.emit(*self.window)

    def auto_window(self) -> tuple[float, float]:
        """The robust percentile window (what MR and other modalities get); colour: identity."""
        if self.volume is None:
            return self.window
        c, w = (127.5, 255.0) if self.volume.is_colour else robust_window(self.volume.array)
        self.set_window(c, w)
        return c, w

    # ----- labels ----------------------------------------------------------------------------
    def _label_step(self, description: str, fn: Callable[[], Any]):
        before = self.labels.to_list()
        result = fn()
        self.history.push(description, None, before, self.labels.to_list())
        self.events.history.emit()
        return result

    def add_label(self, name: str | None = None, **fields: Any):
        """A new label (undoable), made active; ``fields`` as `LabelSet.add` takes them."""
        lab = self._label_step("add label", lambda: self.labels.add(name, **fields))
        self.set_active(lab.value)
        return lab

    def ensure_label(self, own_step: bool = True) -> int:
        """The active label's value, creating "label 1" when there is none. With
        ``own_step=False`` the creation is not an undo step of its own: the caller's edit
        (an accept, a brush stroke) records it together with its voxels."""
        if self.active_value and self.active_value in self.labels:
            return self.active_value
        if len(self.labels):
            self.set_active(next(iter(self.labels)).value)
            return self.active_value
        if own_step:
            return self.add_label().value
        lab = self.labels.add(None)
        self.set_active(lab.value)
        return lab.value

    def label_named(self, name: str, create: bool = True, own_step: bool = True) -> int:
        """The value of the label called ``name`` (case and spacing ignored), added when there
        is none and ``create`` (``own_step`` as in `ensure_label`); 0 when there is none."""
        want = " ".join(str(name).split()).lower()
        for lab in self.labels:
            if " ".join(lab.name.split()).lower() == want:
                return lab.value
        if not create:
            return 0
        name = " ".join(str(name).split())
        return self.add_label(name).value if own_step else self.labels.add(name).value

    def update_label(self, value: int, description: str = "change label", **changes: Any) -> None:
        """Change a label's fields; an undo step unless only its visibility changed."""
        lab = self.labels.get(value)
        if lab is None or all(getattr(lab, k) == v for k, v in changes.items()):
            return
        if set(changes) <= {"visible"}:
            self.labels.update(value, **changes)
        else:
            self._label_step(description, lambda: self.labels.update(value, **changes))

    def remove_label(self, value: int) -> None:
        """Delete a label and its voxels, as one undo step."""
        lab = self.labels.get(value)
        if lab is None:
            return
        if lab.locked:
            raise LockedLabelError(f"label '{lab.name}' is locked: unlock it before deleting it")
        before = self.labels.to_list()
        edit = None
        if self.counts.get(value):
            with self.lock:
                edit = self.labelmap.apply(self.labelmap.array == value, value, erase=True,
                                           description=f"delete {lab.name}")
            self._voxels_changed(edit)
        self.labels.remove(value)
        self.history.push(f"delete label {lab.name}", edit, before, self.labels.to_list())
        if self.active_value == value:
            self.set_active(next(iter(self.labels)).value if len(self.labels) else 0)
        self.events.history.emit()

    def set_active(self, value: int) -> None:
        if int(value) != self.active_value:
            self.active_value = int(value)
            self.events.active_label.emit(self.active_value)

    def replace_labels(self, array: np.ndarray, labels: LabelSet, description: str = "import labels"):
        """Replace every voxel (an import), adding the labels it names, as one undo step."""
        before = self.labels.to_list()
        for lab in labels:
            if lab.value not in self.labels:
                self.labels.add(lab.name, value=lab.value, color=tuple(lab.color))
        with self.lock:
            edit = self.labelmap.replace_all(array, description=description)
        self._voxels_changed(edit)
        self.history.push(description, edit, before, self.labels.to_list())
        self.events.history.emit()
        return edit

    # ----- voxel edits -----------------------------------------------------------------------
    def paint(self, mask2d: np.ndarray, orientation: str, index: int, erase: bool = False,
              value_range: tuple[float, float] | None = None) -> Edit | None:
        """A brush (or eraser) stroke on one displayed slice, as one undo step (with the label
        it created, if there was none); with ``value_range`` only where the scan's values lie
        in it (a threshold-limited brush)."""
        before = self.labels.to_list()
        value = 0 if erase else self.ensure_label(own_step=False)
        lab = self.labels.get(value)
        view = plane_view(self._scan(), orientation, index)
        if value_range is not None:
            mask2d = limit_to_range(mask2d, view(self.volume.array), value_range)
        with self.lock:
            edit = self.labelmap.apply(mask2d, value, view=view, erase=erase,
                                       policy=lab.policy if lab else None,
                                       description="eraser" if erase else f"brush {lab.name}")
        if edit is not None:
            self._voxels_changed(edit)
        if self.history.push(edit.description if edit else "add label", edit, before, self.labels.to_list()):
            self.events.history.emit()
        return edit

    def locked_under(self, mask2d: np.ndarray, orientation: str, index: int) -> dict[int, int]:
        """Voxels of locked labels under a 2D mask of a displayed slice, per label value: what
        an edit there keeps (so the user can be told)."""
        locked = self.labels.locked_values() if self.labelmap is not None else []
        if not len(locked):
            return {}
        plane = plane_view(self._scan(), orientation, index)(self.labelmap.array)
        under = plane[np.asarray(mask2d, dtype=bool)]
        return {int(v): int(np.count_nonzero(under == v)) for v in locked if np.any(under == v)}

    def paint_stamp(self, stamp, erase: bool = False, description: str | None = None) -> Edit | None:
        """A `BrushStamp` (`medplib_core.analysis.brush`: mm disc, 3D ball, value range) into the
        active label (or erased), as one undo step."""
        before = self.labels.to_list()
        value = 0 if erase else self.ensure_label(own_step=False)
        lab = self.labels.get(value)
        with self.lock:
            edit = self.labelmap.apply(stamp.mask, value, view=stamp.view, erase=erase,
                                       policy=lab.policy if lab else None,
                                       description=description or ("eraser" if erase else f"brush {lab.name}"))
        if edit is not None:
            self._voxels_changed(edit)
        if self.history.push(edit.description if edit else "add label", edit, before, self.labels.to_list()):
            self.events.history.emit()
        return edit

    def undo(self) -> bool:
        return self._move(undo=True)

    def redo(self) -> bool:
        return self._move(undo=False)

    def _move(self, undo: bool) -> bool:
        if self.history is None:
            return False
        with self.lock:
            step = self.history.undo() if undo else self.history.redo()
        if step is None:
            return False
        if step.edit is not None:
            self._voxels_changed(step.edit, undo=undo)
        self.events.history.emit()
        return True

    def _count(self, edit: Edit, undo: bool = False) -> None:
        """Update the voxel counts for ``edit`` (a new dict: readers never see one half-done)."""
        new, old = edit.new_block(), edit.old_block()
        after, before = (old, new) if undo else (new, old)
        counts = dict(self.counts)
        for v, d in count_delta(after, before, [lab.value for lab in self.labels] + list(counts)).items():
            n = counts.get(v, 0) + d
            if n > 0:
                counts[v] = n
            else:
                counts.pop(v, None)
        self.counts = counts

    def _voxels_changed(self, edit: Edit | None, undo: bool = False, count: bool = True) -> None:
        if edit is None:
            return
        if count:
            self._count(edit, undo)
        self.label_revision += 1
        self.events.voxels.emit()
        self.events.counts.emit()
        self.mark_changed()

    def _labels_changed(self, label_set: LabelSet) -> None:
        if label_set is not self.labels:
            return  # the label set of a scan closed since
        self.label_revision += 1
        self.events.labels.emit()
        self.mark_changed()

    # ----- prompts and proposals -------------------------------------------------------------
    def new_prompt_id(self) -> int:
        return next(self._ids)

    def restore_records(self, records: list[PromptRecord]) -> None:
        """Bring back saved prompt records; new ids continue after theirs."""
        self.prompts = list(records)
        self._ids = itertools.count(max((r.id for r in self.prompts), default=0) + 1)
        self.events.prompts.emit()

    def records(self) -> dict[int, PromptRecord]:
        """Every prompt record by id."""
        return {r.id: r for r in self.prompts}

    def add_record(self, record: PromptRecord) -> PromptRecord:
        """Keep a record that is no proposal (a chat region's mask)."""
        record.id = record.id or self.new_prompt_id()
        self.prompts.append(record)
        self.events.prompts.emit()
        self.mark_changed()
        return record

    def propose(self, record: PromptRecord, prompt: Prompt | None = None) -> Proposal:
        """Show ``record``'s mask as the proposal (the previous one stays in the records)."""
        record.id = record.id or self.new_prompt_id()
        self.prompts.append(record)
        self.proposal = Proposal(record, prompt)
        self.events.proposal.emit()
        self.events.prompts.emit()
        self.mark_changed()
        return self.proposal

    def propose_result(self, result: SegResult, prompt: Prompt, orientation: str, index: int,
                       kind: PromptKind = PromptKind.SEGMENT, **provenance: Any) -> Proposal:
        """An engine's answer on a displayed slice as the proposal, with its provenance."""
        prov = dict(result.provenance, score=round(float(result.score), 4), **provenance)
        rec = PromptRecord(id=self.new_prompt_id(), kind=PromptKind(kind), orientation=orientation,
                           index=int(index), prompt=prompt.describe(), provenance=prov,
                           mask=np.asarray(result.mask, dtype=bool))
        return self.propose(rec, prompt)

    def propose_propagation(self, result, engine_info: dict[str, Any], seed: str) -> Proposal:
        """A `PropagationResult` as a 3D proposal; ``seed`` names what it grew from."""
        prov = {"engine": engine_info.get("name"), "device": engine_info.get("device"),
                "engine_version": engine_info.get("version"), "seed": seed,
                "seed_orientation": result.summary.get("orientation"), "seed_index": result.seed_index,
                "slices": result.n_slices, **result.summary}
        rec = PromptRecord(id=self.new_prompt_id(), kind=PromptKind.PROPAGATE,
                           orientation=str(result.summary.get("orientation", "axial")),
                           index=int(result.seed_index), prompt={"seed": seed}, provenance=prov,
                           mask=result.mask)
        return self.propose(rec)

    def propose_fill(self, fill, orientation: str, value: int) -> Proposal | None:
        """Fill between slices (`analysis.interpolate.SliceFill` of label ``value`` along
        ``orientation``) as a 3D proposal of the voxels it adds; None when it adds none."""
        added = fill.added
        if not added.any():
            return None
        lab = self.labels.get(value)
        prov = {"method": "shape-based interpolation", "source_label": int(value),
                "source_name": lab.name if lab else "", "drawn_slices": [int(i) for i in fill.drawn],
                "filled_slices": [int(i) for i in fill.filled], "axis": int(fill.axis)}
        rec = PromptRecord(id=self.new_prompt_id(), kind=PromptKind.INTERPOLATE, orientation=orientation,
                           index=int(fill.drawn[0]) if fill.drawn else 0,
                           prompt={"fill_between": orientation}, provenance=prov, mask=added)
        return self.propose(rec)

    def segment(self, engine: SegmentationEngine, prompt: Prompt, orientation: str = "axial",
                index: int | None = None, kind: PromptKind = PromptKind.SEGMENT) -> Proposal:
        """Run ``engine`` on a displayed slice (blocking) and propose its mask (scripts, server)."""
        vol = self._scan()
        if index is None:
            index = (vol.shape[0] if orientation == STORED else n_slices(vol, orientation)) // 2
        result = engine.encode(self.pixels(orientation, index)).predict(prompt)
        return self.propose_result(result, prompt, orientation, index, kind)

    def discard(self) -> None:
        """Drop the proposal (its record stays, marked discarded)."""
        if self.proposal is not None:
            self.proposal.record.status = PromptStatus.DISCARDED
            self.proposal = None
            self.events.proposal.emit()
            self.events.prompts.emit()
            self.mark_changed()

    def accept(self) -> Edit | None:
        """Write the proposal into the active label with that label's overlap policy (locked
        labels are never changed); returns the edit, None when no voxel changed."""
        job = self.begin_accept()
        return None if job is None else self.finish_accept(job, self.write_accept(job))

    def begin_accept(self) -> AcceptJob | None:
        """Check that the proposal can be accepted; the job for `write_accept`, or None.

        The label is the one the proposal names (a chat answer to "Segment the liver" goes into
        "liver", added if needed), else the active one."""
        p = self.proposal
        if p is None or self.volume is None:
            return None
        before = self.labels.to_list()
        target = p.record.provenance.get("target")  # a grounded mask of a named structure
        # a label made here undoes with the accept
        value = self.label_named(target, own_step=False) if target else self.ensure_label(own_step=False)
        self.set_active(value)
        lab = self.labels[value]
        if lab.locked:
            raise LockedLabelError(f"label '{lab.name}' is locked: pick or add another label, or unlock it")
        rec = p.record
        view = None if p.is_3d else plane_view(self.volume, rec.orientation, rec.index)
        return AcceptJob(rec, value, lab.policy, lab.name, view, before, self.labelmap)

    def write_accept(self, job: AcceptJob) -> Edit | None:
        """The voxel write of an accept; may run on a worker (announces nothing)."""
        rec = job.record
        with self.lock:
            edit = job.labelmap.apply(rec.mask, job.value, view=job.view, policy=job.policy,
                                      description=f"accept {rec.kind} into {job.name}",
                                      meta={"prompt_id": rec.id})
            if edit is not None and job.labelmap is self.labelmap:
                self._count(edit)
        return edit

    def finish_accept(self, job: AcceptJob, edit: Edit | None) -> Edit | None:
        """Record the accept (provenance entry, status, one undo step) and announce it."""
        if job.labelmap is not self.labelmap:
            return None  # another scan was opened meanwhile
        rec, value = job.record, job.value
        rec.status, rec.label_value = PromptStatus.ACCEPTED, value
        entry = {"prompt_id": rec.id, "kind": rec.kind, "orientation": rec.orientation,
                 "slice": rec.index, **{k: v for k, v in rec.provenance.items() if k != "prompt"},
                 "prompt": rec.prompt}
        self.labels.update(value, provenance=list(self.labels[value].provenance) + [entry])
        self.history.push(f"accept {rec.kind}", edit, job.labels_before, self.labels.to_list())
        if self.proposal is not None and self.proposal.record is rec:
            self.proposal = None
        self._voxels_changed(edit, count=False)
        self.events.proposal.emit()
        self.events.prompts.emit()
        self.events.history.emit()
        self.mark_changed()
        return edit

    # ----- saving ----------------------------------------------------------------------------
    def mark_changed(self) -> None:
        self.revision += 1
        self.events.changed.emit()

    def export_extra(self) -> dict[str, Any]:
        """What an export's sidecar carries beside the labels: the accepted prompts and the
        measurements with their values."""
        extra: dict[str, Any] = {"prompts": [r.to_json() for r in self.prompts if r.status is PromptStatus.ACCEPTED]}
        if len(self.measurements):
            extra["measurements"] = self.measurements.results()
        return extra

    def to_project(self, copy: bool = True):
        """A `Project` snapshot (the label array copied unless ``copy=False``)."""
        return project_io.to_project(self, copy)

    def project_job(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn(project, *args)`` for a worker; see `project_io.project_job`."""
        return project_io.project_job(self, fn)

    def load_project(self, volume: Volume, project, folder=None) -> None:
        """Open ``volume`` with a saved project's labels, prompts, chat and view state;
        ``folder``: where it was read from (see `project_io.load_into`)."""
        project_io.load_into(self, volume, project, folder)

    def save(self, folder) -> Any:
        """Save as a project folder (atomically); returns the project.json path."""
        return project_io.save(self, folder)
