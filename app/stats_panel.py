"""The Statistics panel: a table per label (voxels, ml, mean/SD/min/max in the scan's unit, bounding
box, RECIST long and short axis with their slice) and the list of measurements.

The numbers are the core's (`medplib_core.analysis.stats.label_statistics`), computed on a
worker from a copy of the labels taken under the session's lock, again after every edit (a
burst of edits costs one computation; only the newest result is shown) and only while the
panel is shown. Double-click a label row to put the cursor on its centre of mass; a
measurement row to show its slice.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QHeaderView, QLabel, QTableWidget,
                               QTableWidgetItem, QTabWidget, QToolButton, QVBoxLayout, QWidget)

from medplib_core.analysis.physical import length_unit
from medplib_core.analysis.stats import label_statistics
from medplib_core.annotation import LabelSet

from .background import LatestJob
from .resources import icon

LABEL_COLUMNS = ("Label", "Name", "Voxels", "Volume (ml)", "Mean", "SD", "Min", "Max", "Unit",
                 "Bounding box (i, j, k)", "Long axis", "Short axis", "Slice")
MEASURE_COLUMNS = ("Name", "Kind", "View", "Result")
AXES_COLUMN = LABEL_COLUMNS.index("Long axis")  # this column and the next two draw the axes
NAME_CHARS = 11  # the name column's widest, in wide letters; longer names are elided


def _num(v, digits: int = 1) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def _cell(text: str, right: bool = False, data=None) -> QTableWidgetItem:
    it = QTableWidgetItem(text)
    it.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
    if right:
        it.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    if data is not None:
        it.setData(Qt.ItemDataRole.UserRole, data)
    return it


def _table(columns) -> QTableWidget:
    t = QTableWidget(0, len(columns))
    t.setHorizontalHeaderLabels(list(columns))
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.verticalHeader().setVisible(False)
    t.verticalHeader().setDefaultSectionSize(t.fontMetrics().height() + 8)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    return t


class StatsPanel(QWidget):
    """Label statistics and measurements of the session, in two tabs."""

    jump_requested = Signal(object)  # world point (LPS mm) of a label's centre of mass
    measurement_requested = Signal(object)  # a measurement to show
    axes_requested = Signal(object)  # LabelStats whose long and short axes to draw on their slice

    def __init__(self, doc, measure_tool=None, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc = doc
        self.session = doc.session
        self.measure_tool = measure_tool
        self.rows = []  # LabelStats of the table
        self.tabs = QTabWidget()
        self.labels_table = _table(LABEL_COLUMNS)
        self.measure_table = _table(MEASURE_COLUMNS)
        self.measure_table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        # long names (portal_vein_and_splenic_vein) are elided so the numbers stay in sight
        self.labels_table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Interactive)
        self.orientation = QComboBox()
        self.orientation.addItems(["Axial", "Coronal", "Sagittal"])
        self.orientation.setToolTip("The plane the long and short axes are measured in (RECIST: axial)")
        self.state = QLabel("")
        self.state.setStyleSheet("color: palette(mid);")
        head = QHBoxLayout()
        head.addWidget(QLabel("Axes in"))
        head.addWidget(self.orientation)
        head.addStretch(1)
        head.addWidget(self.state)
        page = QWidget()
        lay = QVBoxLayout(page)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(head)
        lay.addWidget(self.labels_table, 1)
        self.tabs.addTab(page, "Labels")
        mpage = QWidget()
        mlay = QVBoxLayout(mpage)
        mlay.setContentsMargins(2, 2, 2, 2)
        mlay.addWidget(self.measure_table, 1)
        mrow = QHBoxLayout()
        self.delete_button = QToolButton()
        self.delete_button.setIcon(icon("delete"))
        self.delete_button.setToolTip("Delete the selected measurement (undoable)")
        self.delete_button.clicked.connect(self.delete_measurement)
        mrow.addWidget(self.delete_button)
        mrow.addWidget(QLabel("M: ruler · R: ROI · drag an end or corner to change it"), 1)
        mlay.addLayout(mrow)
        self.tabs.addTab(mpage, "Measurements")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.tabs)

        self.job = LatestJob(self._make_job, delay_ms=400, parent=self, name="label statistics")
        self.job.finished.connect(self._show)
        self.job.failed.connect(lambda exc: self.state.setText(f"Statistics failed: {exc}"))
        self.job.busy_changed.connect(lambda busy: self.state.setText("Computing…" if busy else self.state_text()))
        self._stale = True
        doc.volume_changed.connect(self._on_volume)
        doc.voxels_changed.connect(self.changed)
        doc.labels_changed.connect(self.changed)
        self.session.events.measurements.connect(self.refresh_measurements)
        self.orientation.currentIndexChanged.connect(lambda _: self.changed())
        self.labels_table.cellDoubleClicked.connect(self._label_double_clicked)
        self.measure_table.cellDoubleClicked.connect(self._measure_double_clicked)
        self.tabs.currentChanged.connect(lambda _: self._maybe_run())

    # ----- label statistics ------------------------------------------------------------------
    def state_text(self) -> str:
        vol = self.session.volume
        if vol is None or not self.rows:
            return ""
        return f"{len(self.rows)} labels" + ("" if self.rows[0].volume_ml is not None else " · no physical size: no ml")

    def changed(self) -> None:
        """The labels changed: compute again (now if shown, else when shown)."""
        self._stale = True
        self._maybe_run()

    def _maybe_run(self) -> None:
        if self._stale and self.isVisible() and self.session.volume is not None:
            self.job.request()

    def showEvent(self, ev) -> None:  # noqa: N802
        super().showEvent(ev)
        self._maybe_run()

    def _on_volume(self) -> None:
        self.job.cancel()
        self.rows = []
        self.labels_table.setRowCount(0)
        self.refresh_measurements()
        self.changed()

    def _make_job(self):
        s = self.session
        if s.volume is None:
            return None
        self._stale = False
        vol, src, lock, serial = s.volume, s.labelmap.array, s.lock, s.scan_serial
        label_set = LabelSet.from_list(s.labels.to_list())
        orientation = self.orientation.currentText().lower()

        def work(cancel, progress):
            with lock:
                labels = src.copy()  # NumPy copies without the GIL: the GUI keeps drawing
            if cancel():
                return None
            return serial, label_statistics(vol, labels, label_set, orientation=orientation)

        return work

    def _show(self, result) -> None:
        if result is None or result[0] != self.session.scan_serial:
            return
        self.rows = result[1]
        t = self.labels_table
        t.setRowCount(len(self.rows))
        for r, st in enumerate(self.rows):
            d = st.diameters
            unit = d.unit if d is not None else ""
            bbox = ", ".join(f"{a}–{b}" for a, b in zip(st.bbox_min_ijk, st.bbox_max_ijk))
            lab = self.session.labels.get(st.label)
            cells = [_cell(str(st.label), True, st.label), _cell(st.name), _cell(f"{st.voxels:,}", True),
                     _cell(_num(st.volume_ml, 2), True), _cell(_num(st.mean), True), _cell(_num(st.sd), True),
                     _cell(_num(st.min), True), _cell(_num(st.max), True), _cell(st.units or "—"), _cell(bbox),
                     _cell(f"{d.long:.1f} {unit}" if d else "—", True),
                     _cell(f"{d.short:.1f} {unit}" if d else "—", True),
                     _cell(f"{d.orientation} {d.slice_index + 1}" if d else "—")]
            for c, it in enumerate(cells):
                t.setItem(r, c, it)
            if lab is not None:
                from .labels_panel import swatch

                t.item(r, 0).setIcon(swatch(lab.color))
            t.item(r, 1).setToolTip(f"{st.name} — double-click: go to its centre of mass")
            if d is not None:
                for c in range(AXES_COLUMN, len(cells)):
                    t.item(r, c).setToolTip("Double-click: draw the long and short axes on their slice as rulers")
        t.resizeColumnToContents(1)
        t.setColumnWidth(1, min(t.columnWidth(1), t.fontMetrics().horizontalAdvance("m" * NAME_CHARS)))
        self.state.setText(self.state_text())

    def _label_double_clicked(self, row: int, col: int) -> None:
        if not 0 <= row < len(self.rows):
            return
        if col >= AXES_COLUMN and self.rows[row].diameters is not None:
            self.axes_requested.emit(self.rows[row])
        else:
            self.jump_requested.emit(self.rows[row].centroid_world)

    # ----- measurements ----------------------------------------------------------------------
    def refresh_measurements(self) -> None:
        t = self.measure_table
        items = list(self.session.measurements)
        t.setRowCount(len(items))
        vol = self.session.volume
        for r, m in enumerate(items):
            if m.kind == "ruler":
                result = f"{m.length(vol):.1f} {length_unit(vol)}"
            else:
                result = "  ·  ".join(self.measure_tool.label(m)) if self.measure_tool else ""
            for c, text in enumerate((m.name, m.kind, f"{m.orientation} {m.index + 1}", result)):
                t.setItem(r, c, _cell(text, data=r if c == 0 else None))
        self.delete_button.setEnabled(bool(items))

    def _measure_double_clicked(self, row: int, _col: int) -> None:
        items = list(self.session.measurements)
        if 0 <= row < len(items):
            self.measurement_requested.emit(items[row])

    def delete_measurement(self) -> None:
        items = list(self.session.measurements)
        row = self.measure_table.currentRow()
        if 0 <= row < len(items):
            self.session.measurements.remove(items[row])
