"""`ReviewPanel`: the review dock — the run's cases with status and decision, the selected
case's details, Accept / Save edits / Reject, Previous / Next, the summary and export."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QBrush, QColor, QKeySequence
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QFormLayout, QHBoxLayout, QHeaderView, QLabel,
                               QLineEdit, QMenu, QProgressBar, QTableWidget, QTableWidgetItem, QToolButton,
                               QVBoxLayout, QWidget)

from medplib_core.batch.review import ReviewItem

from .controller import ReviewController, ReviewState

COLUMNS = ("Case", "Batch", "Decision", "Details")
COL_CASE, COL_BATCH, COL_DECISION, COL_DETAILS = range(4)
DECISION_COLOURS = {"accepted": "#2e8b57", "edited": "#2f6db3", "rejected": "#c0392b", "failed": "#8e8e8e"}


def decision_text(it: ReviewItem) -> str:
    if it.status != "ok":
        return it.decision or "—"
    return it.decision or "to review"


def details_text(it: ReviewItem) -> str:
    if it.status != "ok":
        error = it.error or "failed"
        prefix = f"{it.input}: "
        return error[len(prefix):] if error.startswith(prefix) else error  # the reason first
    voxels = sum(int(v) for v in it.counts.values())  # the edited map's once saved
    reasons = [p["reason"] for p in it.record.get("prompts") or [] if p.get("reason")]
    text = f"{voxels:,} labelled voxels" if voxels else "empty label map"
    return "; ".join([text, *reasons])


def _button(action: QAction) -> QToolButton:
    b = QToolButton()
    b.setDefaultAction(action)
    b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    return b


class ReviewPanel(QWidget):
    """The widget inside the Review dock; every button is one of the window's review actions."""

    def __init__(self, controller: ReviewController, actions: dict[str, QAction], parent: QWidget | None = None):
        super().__init__(parent)
        self.ctl = controller
        self.actions = actions
        c = controller

        self.open_btn = _button(actions["review_open"])
        menu = QMenu(self.open_btn)
        menu.addAction(actions["review_open"])
        menu.addAction(actions["review_open_folder"])
        self.open_btn.setMenu(menu)
        self.open_btn.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        self.batch_btn = _button(actions["review_batch"])
        self.export_btn = _button(actions["review_export"])
        top = QHBoxLayout()
        top.addWidget(self.open_btn)
        top.addWidget(self.batch_btn)
        top.addStretch(1)
        top.addWidget(self.export_btn)

        self.run_label = QLabel("No run open. Open a run's manifest.jsonl (or its folder), or run a batch.")
        self.run_label.setWordWrap(True)
        self.run_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary = QLabel("")
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m reviewed")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setMaximumHeight(16)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        hh = self.table.horizontalHeader()
        for col in (COL_CASE, COL_BATCH, COL_DECISION):
            hh.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(COL_DETAILS, QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumHeight(6 * 22 + 26)
        self.table.itemSelectionChanged.connect(self._on_select)

        self.details = QLabel("")
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setMinimumHeight(36)
        self.details.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)

        self.reviewer = QLineEdit(c.reviewer)
        self.reviewer.setPlaceholderText("your name or initials")
        self.reviewer.editingFinished.connect(lambda: c.set_reviewer(self.reviewer.text()))
        self.note = QLineEdit()
        self.note.setPlaceholderText("optional, saved with the next decision (e.g. why rejected)")
        self.note.textChanged.connect(lambda t: setattr(c, "note", t))
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Reviewer", self.reviewer)
        form.addRow("Note", self.note)

        self.prev_btn = _button(actions["review_previous"])
        self.accept_btn = _button(actions["review_accept"])
        self.save_btn = _button(actions["review_save"])
        self.reject_btn = _button(actions["review_reject"])
        self.next_btn = _button(actions["review_next"])
        row = QHBoxLayout()
        row.setSpacing(4)
        row.addWidget(self.prev_btn)
        row.addStretch(1)
        for b in (self.accept_btn, self.save_btn, self.reject_btn):
            row.addWidget(b)
        row.addStretch(1)
        row.addWidget(self.next_btn)
        native = QKeySequence.SequenceFormat.NativeText
        keys = " · ".join(f"{actions[n].shortcut().toString(native)} {what}"
                          for n, what in (("review_accept", "accept"), ("review_save", "save edits"),
                                          ("review_reject", "reject"), ("review_previous", "previous"),
                                          ("review_next", "next")))
        self.keys = QLabel(keys)
        self.keys.setWordWrap(True)
        self.keys.setStyleSheet("color: palette(mid);")
        self.advance = QCheckBox("Go to the next case to review after each decision")
        self.advance.setChecked(c.advance)
        self.advance.toggled.connect(lambda on: setattr(c, "advance", bool(on)))

        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addLayout(top)
        lay.addWidget(self.run_label)
        lay.addWidget(self.summary)
        lay.addWidget(self.progress)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.details)
        lay.addLayout(form)
        lay.addLayout(row)
        lay.addWidget(self.keys)
        lay.addWidget(self.advance)

        c.queue_changed.connect(self.refresh)
        c.current_changed.connect(self.show_current)
        c.state_changed.connect(lambda _: self.update_actions())
        c.doc.voxels_changed.connect(self.update_actions)
        c.doc.labels_changed.connect(self.update_actions)
        self.refresh()

    # ----- contents ----------------------------------------------------------------------------
    def refresh(self) -> None:
        """Rebuild the case list and the summary from the queue."""
        q = self.ctl.queue
        self.table.blockSignals(True)
        self.table.setRowCount(0 if q is None else len(q))
        for r, it in enumerate(q.items if q else []):
            values = (it.case, it.status, decision_text(it), details_text(it))
            for col, text in enumerate(values):
                cell = QTableWidgetItem(text)
                cell.setData(Qt.ItemDataRole.UserRole, it.case)
                if col == COL_DETAILS:
                    cell.setToolTip(f"{it.input}\n{text}")
                self.table.setItem(r, col, cell)
            colour = DECISION_COLOURS.get(it.decision or "") or (DECISION_COLOURS["failed"] if it.status != "ok" else None)
            if colour:
                self.table.item(r, COL_DECISION).setForeground(QBrush(QColor(colour)))
            if it.status != "ok":
                self.table.item(r, COL_BATCH).setForeground(QBrush(QColor(DECISION_COLOURS["rejected"])))
        self.table.blockSignals(False)
        if not self.ctl.note and self.note.text():
            self.note.clear()  # the note went with the last decision
        if q is None:
            self.summary.setText("")
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
        else:
            s = q.summary()
            self.run_label.setText(f"Run: {q.run_dir}")
            self.run_label.setToolTip(str(q.manifest.path))
            self.summary.setText(f"{s['total']} cases: {s['accepted']} accepted, {s['edited']} edited, "
                                 f"{s['rejected']} rejected, {s['unreviewed']} to review, {s['failed']} failed")
            self.progress.setRange(0, max(s["total"], 1))
            self.progress.setValue(s["total"] - s["unreviewed"] - sum(1 for it in q.items
                                                                       if it.status != "ok" and it.decision is None))
        self.show_current()

    def show_current(self) -> None:
        """Select the current case's row and describe it."""
        c = self.ctl
        row = c.index()
        self.table.blockSignals(True)
        if row >= 0:
            self.table.selectRow(row)
            self.table.scrollToItem(self.table.item(row, 0))
        else:
            self.table.clearSelection()
        self.table.blockSignals(False)
        it = c.item
        if it is None:
            self.details.setText("")
        else:
            lines = [f"<b>{it.case}</b> — {it.decision or ('failed' if it.status != 'ok' else 'to review')}"]
            if it.status != "ok":
                lines.append(f"<span style='color:#c0392b'>Batch failed: {details_text(it)}</span> "
                             "(cannot be accepted)")
            if c.state is ReviewState.LOADING:
                lines.append("Loading the scan…")
            elif c.shown:
                lines.append(f"Scan {Path(it.input).name} · labels {self._labels_text(it)}")
            else:
                if c.load_error and it.status == "ok":
                    lines.append(f"<span style='color:#c0392b'>Cannot open the scan: {c.load_error}</span>")
                elif c.load_error:
                    lines.append("Its scan cannot be opened.")
                if c.loaded_case and c.session.volume is not None:
                    lines.append(f"<i>The viewer still shows {c.loaded_case}.</i>")
            self.details.setText("<br>".join(lines))
            self.details.setToolTip(f"scan: {it.input}\nlabels: {it.labels}")
        self.update_actions()

    def _labels_text(self, it: ReviewItem) -> str:
        if it.labels is None or not it.labels.is_file():
            return "none" if it.status != "ok" else "missing"
        try:
            rel = it.labels.relative_to(self.ctl.queue.run_dir)
        except ValueError:
            rel = it.labels
        return f"{rel} ({'edited' if it.labels != it.proposed else 'proposed'})"

    def update_actions(self) -> None:
        c, a = self.ctl, self.actions
        has = c.queue is not None and len(c.queue) > 0
        a["review_accept"].setEnabled(c.can_accept())
        a["review_save"].setEnabled(c.can_save_edits())
        a["review_reject"].setEnabled(c.can_reject())
        i = c.index()
        a["review_previous"].setEnabled(has and i > 0)
        a["review_next"].setEnabled(has and i < len(c.queue) - 1)
        a["review_export"].setEnabled(has and c.state is ReviewState.IDLE)
        self.save_btn.setStyleSheet("font-weight: bold;" if c.has_unsaved_edits() else "")

    # ----- user ------------------------------------------------------------------------------
    def _on_select(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return
        case = self.table.item(rows[0].row(), COL_CASE).data(Qt.ItemDataRole.UserRole)
        self.ctl.go_to(case)
