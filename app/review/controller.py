"""`ReviewController`: the review queue of a batch run, driven from the GUI.

It opens a run's manifest (`ReviewQueue`), loads each case's scan into the main window with its
proposed (or previously edited) label map placed onto the scan by world coordinates, and records
accept / edit / reject decisions in the manifest the moment they are made. Loading, saving edits
and exporting run on a worker thread; the GUI thread only appends one manifest line per decision.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Callable

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QMessageBox

from medplib_core.batch.review import ReviewItem, ReviewQueue
from medplib_core.errors import MedplibError
from medplib_core.export import export_labels, import_labels
from medplib_core.session import SaveTarget
from medplib_core.text_enum import TextEnum

from ..dialogs import error_from_exception, explain, show_error
from ..files import load_for_display
from ..workers import TaskRunner


def _reviewer_default() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return ""


class ReviewState(TextEnum):
    IDLE = "idle"
    LOADING = "loading"  # a case's scan and labels
    SAVING = "saving"  # edited labels
    EXPORTING = "exporting"


class ReviewController(QObject):
    """Owns the open `ReviewQueue` and the case shown in the window's viewer."""

    queue_changed = Signal()  # the run, its items or their decisions changed
    current_changed = Signal()  # another case is selected, or its load state changed
    state_changed = Signal(str)  # a ReviewState
    message = Signal(str)

    def __init__(self, window):
        super().__init__(window)
        self.win = window
        self.doc, self.session = window.doc, window.session
        self.runner = TaskRunner(1, self, "review")
        self.queue: ReviewQueue | None = None
        self.current: str | None = None  # selected case
        self.loaded_case: str | None = None  # case whose scan and labels are in the viewer
        self.load_error: str | None = None
        self.state = ReviewState.IDLE
        self.advance = True  # go to the next unreviewed case after a decision
        self.reviewer = window.settings.get("review/reviewer", _reviewer_default(), str)
        self.note = ""
        self.prompt_box: QMessageBox | None = None  # the open "unsaved edits" question, if any
        self._request = 0
        self._asking = False  # leaving the shown case asks about unsaved edits
        self._own_load = False
        self.doc.volume_changed.connect(self._on_volume)

    # ----- the run -----------------------------------------------------------------------------
    def open_run(self, path: str | Path) -> bool:
        """Open ``manifest.jsonl`` or its run folder and show the first case left to review."""
        if self.ask_if_unsaved(lambda: self.open_run(path)):
            return False
        try:
            queue = ReviewQueue(path)
        except (MedplibError, OSError, ValueError) as exc:
            error_from_exception(self.win, "Cannot open the run", exc)
            return False
        if not len(queue):
            show_error(self.win, "Nothing to review", f"{queue.manifest.path}: the run has no case results yet.",
                       "Run the batch first (File ▸ Review ▸ Run batch…).")
            return False
        self.queue, self.current, self.loaded_case = queue, None, None
        self.win.settings.set("review/last_run", str(queue.manifest.path))
        self.queue_changed.emit()
        first = queue.next_unreviewed() or queue.items[0]
        self.go_to(first.case, force=True)
        return True

    def reload(self) -> None:
        """Re-read the manifest (a batch may still be adding cases)."""
        if self.queue is not None:
            self.queue.refresh()
            self.queue_changed.emit()
            self.current_changed.emit()

    @property
    def item(self) -> ReviewItem | None:
        if self.queue is None or self.current is None:
            return None
        try:
            return self.queue.item(self.current)
        except KeyError:
            return None

    def index(self) -> int:
        if self.queue is None or self.current is None:
            return -1
        return next((i for i, it in enumerate(self.queue.items) if it.case == self.current), -1)

    # ----- what may be done now ----------------------------------------------------------------
    @property
    def shown(self) -> bool:
        """The selected case is the one in the viewer."""
        return self.current is not None and self.current == self.loaded_case and self.session.volume is not None

    def can_accept(self) -> bool:
        it = self.item
        return (self.state is ReviewState.IDLE and self.shown and it is not None and it.status == "ok"
                and it.labels is not None and it.labels.is_file())

    def can_save_edits(self) -> bool:
        return self.state is ReviewState.IDLE and self.shown

    def can_reject(self) -> bool:
        return self.state is ReviewState.IDLE and self.item is not None

    # ----- navigation --------------------------------------------------------------------------
    def go_to(self, case: str, force: bool = False) -> None:
        """Select ``case`` and open its scan with its labels (asks first about unsaved edits)."""
        if self.queue is None:
            return
        if self.state is ReviewState.SAVING:  # the edits of the shown case are being written
            self.current_changed.emit()
            return
        if case == self.current and (self.loaded_case == case or self.state is ReviewState.LOADING):
            return
        if not force and self.ask_if_unsaved(lambda: self.go_to(case, force=True)):
            self.current_changed.emit()  # the list goes back to the case still shown
            return
        it = self.queue.item(case)
        self.current, self.load_error = case, None
        self._load(it)

    def step(self, delta: int) -> None:
        """Previous (-1) or next (+1) case in the list, reviewed or not."""
        if self.queue is None or not len(self.queue):
            return
        i = min(max(self.index() + delta, 0), len(self.queue) - 1)
        self.go_to(self.queue.items[i].case)

    def next_unreviewed(self) -> None:
        if self.queue is None:
            return
        nxt = self.queue.next_unreviewed(after=self.current)
        if nxt is None:
            self.message.emit("Every case is reviewed. Export the accepted labels when ready.")
        elif nxt.case != self.current:
            self.go_to(nxt.case)

    def _load(self, it: ReviewItem) -> None:
        self._request += 1
        req = self._request
        labels = it.labels if it.labels is not None and it.labels.is_file() else None
        self._set_state(ReviewState.LOADING)
        self.current_changed.emit()

        def work():
            vol = load_for_display(it.input)
            imported = import_labels(labels, vol) if labels is not None else None
            return vol, imported, _peak_voxel(imported.array) if imported is not None else None

        def done(result):
            if req != self._request:
                return
            vol, imported, peak = result
            self._show(it, vol, imported, peak)
            self._set_state(ReviewState.IDLE)
            self.current_changed.emit()

        def failed(exc):
            if req != self._request:
                return
            self.load_error = explain(exc)[0]
            self._set_state(ReviewState.IDLE)
            self.current_changed.emit()

        self.runner.submit(work, name=f"review {it.case}", on_done=done, on_error=failed)

    def _show(self, it: ReviewItem, vol, imported, peak) -> None:
        series = vol.source.series_instance_uid if vol.source and Path(it.input).is_dir() else None
        self._own_load = True
        try:
            self.session.open(vol, str(it.input), series,
                                labels=imported.labels if imported else None,
                                label_array=imported.array if imported else None)
        finally:
            self._own_load = False
        self.session.save_state.saved(SaveTarget.PROJECT)  # the labels are on disk: no project to save
        self.loaded_case = it.case
        self._mark_clean()
        notes = list(imported.notes) if imported else []
        if it.status == "ok" and imported is None:
            notes.append("the label file of this case is missing")
        if notes:
            self.message.emit(f"{it.case}: " + "; ".join(notes))
        if peak is not None:
            QTimer.singleShot(0, lambda: self._go_to_voxel(peak))

    def _go_to_voxel(self, ijk) -> None:
        """Show the slice where the label is largest in every visible view."""
        if self.session.volume is None:
            return
        for v in self.win.viewer.views:
            if v.isVisible() and v.n_slices():
                v.set_index(v.geometry().slice_index_of(*ijk))

    def _on_volume(self) -> None:
        if not self._own_load:
            self.loaded_case = None  # the user opened another scan
            self.current_changed.emit()

    # ----- unsaved edits -----------------------------------------------------------------------
    def _mark_clean(self) -> None:
        self.session.save_state.saved(SaveTarget.REVIEW)
        self._asking = True

    def has_unsaved_edits(self) -> bool:
        """True when the labels in the viewer differ from the case's label file (undoing back to
        them counts as no edit)."""
        return self.shown and self._asking and self.session.save_state.labels_dirty(SaveTarget.REVIEW)

    def ask_if_unsaved(self, then: Callable[[], None], verb: str = "leave this case",
                        after_save: Callable[[], None] | None = None) -> bool:
        """With unsaved edits: ask (non-blocking) to save, discard or stay; True when asked.

        Discard runs ``then``; Save runs ``after_save`` (default ``then``) once the edits are saved.
        """
        if not self.has_unsaved_edits():
            return False
        box = QMessageBox(QMessageBox.Icon.Question, "Unsaved edits",
                          f"The labels of {self.loaded_case} were edited but not saved.", parent=self.win)
        box.setInformativeText(f"Save the edits (decision “edited”) before you {verb}?")
        save = box.addButton("Save edits", QMessageBox.ButtonRole.AcceptRole)
        discard = box.addButton("Discard edits", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(save)
        box.save_button, box.discard_button = save, discard  # for tests and automation

        def clicked(button):
            if button is save:
                self.save_edits(then=after_save or then)
            elif button is discard:
                case = self.loaded_case
                self._asking = False  # forget the edits: the next step does not ask again
                then()
                self._revert_if_still(case)

        box.buttonClicked.connect(clicked)
        box.finished.connect(lambda *_: setattr(self, "prompt_box", None))
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.prompt_box = box
        box.open()
        return True

    def _revert_if_still(self, case: str | None) -> None:
        """After discarding edits: if ``case`` is still shown, show its label file again."""
        if case is not None and self.shown and self.current == case and self.state is ReviewState.IDLE:
            self._load(self.item)

    # ----- decisions ---------------------------------------------------------------------------
    def accept(self) -> None:
        """Accept the shown labels: the proposal, or the edited map an earlier edit saved."""
        if not self.can_accept():
            return
        if self.ask_if_unsaved(self._accept_now, "accept", after_save=self._after_decision):
            return
        self._accept_now()

    def _accept_now(self) -> None:
        it = self.item
        if it is None:
            return
        if it.decision == "edited" and it.labels is not None:
            self._decide("edited", edited_labels=it.labels)  # what is shown is the edited map
        else:
            self._decide("accepted")

    def reject(self) -> None:
        if not self.can_reject():
            return
        case = self.loaded_case if self.has_unsaved_edits() else None
        if case:
            self._asking = False  # rejecting the case drops its edits too
        self._decide("rejected")
        self._revert_if_still(case)

    def save_edits(self, then: Callable[[], None] | None = None) -> None:
        """Write the viewer's labels atomically to the case's edited path; decide "edited"."""
        if not self.can_save_edits() or self.queue is None:
            return
        it = self.item
        path = self.queue.edited_path(it.case)
        vol = self.session.volume
        proposed = str(it.proposed.relative_to(self.queue.run_dir)) if it.proposed else None
        extra = {"review": {"case": it.case, "decision": "edited", "proposed": proposed,
                            "reviewer": self.reviewer}}
        if isinstance(it.record.get("engine"), dict):
            extra["batch_engine"] = it.record["engine"]
        mark = self.session.save_state.mark()
        counts = dict(self.session.counts)  # what is written (taken with the labels, on this thread)
        job = self.session.project_job(lambda p: export_labels(path, p.label_array, vol, p.labels, extra))
        case = it.case
        self._set_state(ReviewState.SAVING)

        def done(written):
            self._set_state(ReviewState.IDLE)
            if self.loaded_case == case:
                self.session.save_state.saved(SaveTarget.REVIEW, mark)
                self.session.save_state.saved(SaveTarget.PROJECT)
            self._decide("edited", edited_labels=Path(written), case=case, then=then, counts=counts)

        def failed(exc):
            self._set_state(ReviewState.IDLE)
            error_from_exception(self.win, "Cannot save the edited labels", exc)

        self.runner.submit(job, name="save edits", on_done=done, on_error=failed)

    def _decide(self, decision: str, edited_labels: Path | None = None, case: str | None = None,
                then: Callable[[], None] | None = None, counts: dict[int, int] | None = None) -> None:
        case = case or self.current
        try:
            self.queue.decide(case, decision, edited_labels=edited_labels, reviewer=self.reviewer,
                              note=self.note, counts=counts)
        except (OSError, ValueError, MedplibError) as exc:
            error_from_exception(self.win, "Cannot record the decision", exc)
            return
        self.note = ""
        self.message.emit(f"{case}: {decision}")
        self.queue_changed.emit()
        self.current_changed.emit()
        if then is not None:
            then()
        elif case == self.current:
            self._after_decision()

    def _after_decision(self) -> None:
        if self.advance:
            self.next_unreviewed()

    # ----- export ------------------------------------------------------------------------------
    def export_accepted(self, dest: str | Path, on_done: Callable | None = None):
        """Copy the accepted and edited label maps (with sidecars) into ``dest`` on a worker."""
        if self.queue is None:
            return None
        queue = self.queue
        self._set_state(ReviewState.EXPORTING)

        def done(written):
            self._set_state(ReviewState.IDLE)
            self.message.emit(f"Exported {len(written)} label map(s) to {dest}")
            if on_done:
                on_done(written)

        def failed(exc):
            self._set_state(ReviewState.IDLE)
            error_from_exception(self.win, "Export failed", exc)

        return self.runner.submit(queue.export_accepted, dest, name="export accepted",
                                  on_done=done, on_error=failed)

    # ----- misc --------------------------------------------------------------------------------
    def set_reviewer(self, name: str) -> None:
        self.reviewer = name.strip()
        self.win.settings.set("review/reviewer", self.reviewer)

    def _set_state(self, state: ReviewState) -> None:
        if state is not self.state:
            self.state = state
            self.state_changed.emit(state)

    def shutdown(self) -> None:
        self._request += 1  # a load still running is dropped
        self.runner.wait(10000)


def _peak_voxel(array: np.ndarray) -> tuple[int, int, int] | None:
    """(i, j, k) at the centre of the label on the slice k where it is largest."""
    per_slice = np.count_nonzero(array.reshape(array.shape[0], -1), axis=1)
    if not per_slice.any():
        return None
    k = int(np.argmax(per_slice))
    rows, cols = np.nonzero(array[k])
    return int(np.median(cols)), int(np.median(rows)), k
