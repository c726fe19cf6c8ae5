"""Labels panel: add, rename, recolour, hide, lock, delete; overlap policy; opacity; counts;
coded terminology; a filter box for long label lists (`add_row` takes more controls)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QColorDialog, QComboBox, QHBoxLayout, QHeaderView,
                               QLabel, QLineEdit, QSlider, QStyledItemDelegate, QTableWidget, QTableWidgetItem,
                               QToolButton, QVBoxLayout, QWidget)

from medplib_core.annotation import LockedLabelError, OverlapPolicy
from medplib_core.annotation.labels import away_from_proposal

from .dialogs import show_error
from .document import Document
from .resources import icon

COL_COLOUR, COL_NAME, COL_VISIBLE, COL_LOCK, COL_POLICY, COL_VOXELS, COL_VOLUME, COL_CODE = range(8)
POLICIES = (("Overwrite", OverlapPolicy.OVERWRITE), ("Merge", OverlapPolicy.MERGE))


POLICY_TEXT = {policy: text for text, policy in POLICIES}


class PolicyDelegate(QStyledItemDelegate):
    """A combo box that edits a label's overlap policy; the choice applies at once."""

    def __init__(self, panel: "LabelsPanel"):
        super().__init__(panel)
        self.panel = panel

    def createEditor(self, parent, option, index):  # noqa: N802 (Qt API)
        combo = QComboBox(parent)
        combo.addItems([text for text, _ in POLICIES])
        combo.activated.connect(lambda i, c=combo: self._chosen(c, index.row(), i))
        return combo

    def setEditorData(self, editor, index):  # noqa: N802
        value = self.panel._row_value(index.row())
        lab = self.panel.session.labels.get(value) if value is not None else None
        editor.setCurrentIndex(0 if lab is None or lab.policy is OverlapPolicy.OVERWRITE else 1)

    def setModelData(self, editor, model, index):  # noqa: N802
        pass  # applied in _chosen, through the document (undoable)

    def _chosen(self, editor, row: int, i: int) -> None:
        value = self.panel._row_value(row)
        self.closeEditor.emit(editor)
        if value is not None:
            self.panel.set_policy(value, i)


def volume_text(voxels: int, voxel_ml: float | None) -> str:
    """A label's volume (mm³ below 1 ml); "—" when the scan has no millimetres (a PNG)."""
    if voxel_ml is None:
        return "—"
    mm3 = voxels * voxel_ml * 1000.0
    return f"{mm3:.0f} mm³" if mm3 < 1000 else f"{mm3 / 1000:.2f} ml"


def code_item(lab) -> QTableWidgetItem:
    """The label's coded type (its code value; category and scheme in the tooltip)."""
    t = lab.terminology
    it = QTableWidgetItem(t["type"]["value"] if t else "")
    if t:
        mod = f", {t['modifier']['meaning']}" if t.get("modifier") else ""
        it.setToolTip(f"{t['type']['meaning']}{mod} ({t['type']['scheme']} {t['type']['value']})\n"
                      f"category: {t['category']['meaning']}")
        it.setData(Qt.ItemDataRole.UserRole, f"{t['type']['meaning']}{mod} {t['type']['value']} {t['category']['meaning']}")
    else:
        it.setToolTip("Not coded: the codes button chooses a coded meaning")
    it.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
    return it


def swatch(color) -> QIcon:
    pm = QPixmap(16, 16)
    pm.fill(QColor(*color))
    return QIcon(pm)


class LabelsPanel(QWidget):
    """A table of the document's labels; the selected row is the active label."""

    opacity_changed = Signal(float)

    def __init__(self, doc: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc = doc  # signals
        self.session = doc.session  # state and operations
        self._building = False
        self.table = QTableWidget(0, 8)
        self.table.setHorizontalHeaderLabels(["", "Label", "", "", "Overlap", "Voxels", "Volume", "Code"])
        self.table.horizontalHeaderItem(COL_CODE).setToolTip("Coded meaning (SNOMED CT, DICOM CID 7150 family)")
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)  # many rows fit
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter labels (name or code)…")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.apply_filter)
        self.table.horizontalHeaderItem(COL_VISIBLE).setIcon(icon("visible"))
        self.table.horizontalHeaderItem(COL_LOCK).setIcon(icon("locked"))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                   | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.table.verticalHeader().setVisible(False)
        self.setMinimumWidth(340)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(COL_NAME, QHeaderView.ResizeMode.Stretch)
        for c in (COL_COLOUR, COL_VISIBLE, COL_LOCK):
            hh.setSectionResizeMode(c, QHeaderView.ResizeMode.Fixed)
            self.table.setColumnWidth(c, 28)
        for c in (COL_VOXELS, COL_VOLUME, COL_CODE):
            hh.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(COL_POLICY, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setItemDelegateForColumn(COL_POLICY, PolicyDelegate(self))

        self.add_btn = self._button("add", "Add a label (Ctrl+N)", self.add_label)
        self.del_btn = self._button("delete", "Delete the selected label and its voxels (undoable)", self.delete_label)
        self.ren_btn = self._button("rename", "Rename the selected label", self.rename_label)
        self.col_btn = self._button("colour", "Change the selected label's colour", self.recolour_label)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(45)
        self.opacity.setToolTip("Overlay opacity")
        self.opacity.valueChanged.connect(lambda v: self.opacity_changed.emit(v / 100.0))
        buttons = QHBoxLayout()
        for b in (self.add_btn, self.del_btn, self.ren_btn, self.col_btn):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(QLabel("Opacity"))
        buttons.addWidget(self.opacity)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.filter)
        lay.addWidget(self.table, 1)
        lay.addLayout(buttons)
        self._layout = lay

        self.table.itemSelectionChanged.connect(self._selection)
        self.table.itemChanged.connect(self._item_changed)
        self.table.cellClicked.connect(self._cell_clicked)
        self.table.cellDoubleClicked.connect(self._cell_double_clicked)
        doc.labels_changed.connect(self.rebuild)
        doc.counts_changed.connect(self.update_counts)
        doc.active_label_changed.connect(self._select_value)
        doc.volume_changed.connect(self.rebuild)

    def add_row(self, widget: QWidget) -> None:
        """More controls below the buttons (display style, opacity, jump, codes)."""
        self._layout.addWidget(widget)

    def apply_filter(self, text: str | None = None) -> None:
        """Show only the rows whose name, value or code meaning contains every word typed."""
        words = (self.filter.text() if text is None else text).lower().split()
        for r, lab in enumerate(self.session.labels):
            item = self.table.item(r, COL_CODE)
            code = str(item.data(Qt.ItemDataRole.UserRole) or "").lower() if item is not None else ""
            hay = f"{lab.name.lower()} {lab.value} {code}"
            self.table.setRowHidden(r, not all(w in hay for w in words))

    def _button(self, name: str, tip: str, slot) -> QToolButton:
        b = QToolButton()
        b.setIcon(icon(name))
        b.setToolTip(tip)
        b.clicked.connect(slot)
        return b

    # ----- table -----------------------------------------------------------------------------
    def values(self) -> list[int]:
        return [lab.value for lab in self.session.labels]

    def rebuild(self) -> None:
        self._building = True
        labels = list(self.session.labels)
        self.table.setRowCount(len(labels))
        for r, lab in enumerate(labels):
            colour = QTableWidgetItem()
            colour.setIcon(swatch(lab.color))
            colour.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
            colour.setToolTip("Double-click to change the colour")
            colour.setData(Qt.ItemDataRole.UserRole, lab.value)
            self.table.setItem(r, COL_COLOUR, colour)
            name = QTableWidgetItem(lab.name)
            name.setToolTip(f"{lab.name}\nvalue {lab.value}; double-click to rename")  # whole, when elided
            self.table.setItem(r, COL_NAME, name)
            vis = QTableWidgetItem()
            vis.setIcon(icon("visible" if lab.visible else "hidden"))
            vis.setToolTip("Shown (click to hide)" if lab.visible else "Hidden (click to show)")
            vis.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
            self.table.setItem(r, COL_VISIBLE, vis)
            lock = QTableWidgetItem()
            lock.setIcon(icon("locked" if lab.locked else "unlocked"))
            lock.setToolTip("Locked: no edit changes it (click to unlock)" if lab.locked
                            else "Unlocked (click to lock)")
            lock.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
            self.table.setItem(r, COL_LOCK, lock)
            policy = QTableWidgetItem(POLICY_TEXT[lab.policy] + " ▾")
            policy.setToolTip("Click to choose.\nOverwrite: new masks of this label take voxels of "
                              "other labels.\nMerge: they only fill background.\n"
                              "Locked labels are never changed by any edit.")
            self.table.setItem(r, COL_POLICY, policy)
            for c in (COL_VOXELS, COL_VOLUME):
                it = QTableWidgetItem("")
                it.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                it.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, it)
            self.table.setItem(r, COL_CODE, code_item(lab))
        self._building = False
        self.apply_filter()
        self.update_counts()
        self._select_value(self.session.active_value)

    def update_counts(self) -> None:
        vol = self.session.volume
        if vol is None:
            return
        self._building = True
        for r, value in enumerate(self.values()):
            n = self.session.counts.get(value, 0)
            self.table.item(r, COL_VOXELS).setText(f"{n:,}")
            item = self.table.item(r, COL_VOLUME)
            item.setText(volume_text(n, vol.voxel_volume_ml))
            item.setToolTip("" if vol.voxel_volume_ml is not None else
                            "No volume: this image has no physical spacing (pixels, not millimetres)")
        self._building = False

    def _row_value(self, row: int) -> int | None:
        vals = self.values()
        return vals[row] if 0 <= row < len(vals) else None

    def _select_value(self, value: int) -> None:
        vals = self.values()
        if value in vals:
            r = vals.index(value)
            if self.table.currentRow() != r:
                self.table.selectRow(r)

    def _selection(self) -> None:
        if self._building:
            return
        v = self._row_value(self.table.currentRow())
        if v is not None:
            self.session.set_active(v)

    def _item_changed(self, item: QTableWidgetItem) -> None:
        if self._building or item.column() != COL_NAME:
            return
        v = self._row_value(item.row())
        name = item.text().strip()
        if v is not None and name:
            self.session.update_label(v, "rename label", name=name)

    def _cell_clicked(self, row: int, col: int) -> None:
        v = self._row_value(row)
        if v is None:
            return
        lab = self.session.labels[v]
        if col == COL_POLICY:
            self.edit_policy(row)
        elif col == COL_VISIBLE:
            self.session.update_label(v, visible=not lab.visible)
        elif col == COL_LOCK:
            self.session.update_label(v, "lock label" if not lab.locked else "unlock label", locked=not lab.locked)

    def edit_policy(self, row: int) -> QComboBox | None:
        """Open the overlap-policy chooser of a row (what a click on the cell does)."""
        item = self.table.item(row, COL_POLICY)
        if item is None:
            return None
        self.table.editItem(item)
        editor = self.table.indexWidget(self.table.model().index(row, COL_POLICY))
        return editor if isinstance(editor, QComboBox) else None

    def set_policy(self, value: int, index: int) -> None:
        self.session.update_label(value, "change overlap policy", policy=POLICIES[index][1])

    def _cell_double_clicked(self, row: int, col: int) -> None:
        if col == COL_COLOUR:
            self.recolour_label()

    # ----- actions ---------------------------------------------------------------------------
    def add_label(self) -> None:
        if self.session.volume is not None:
            self.session.add_label()

    def delete_label(self) -> None:
        v = self.session.active_value
        if v and v in self.session.labels:
            try:
                self.session.remove_label(v)
            except LockedLabelError as exc:
                show_error(self, "Label is locked", str(exc))

    def rename_label(self) -> None:
        r = self.table.currentRow()
        if r >= 0:
            self.table.editItem(self.table.item(r, COL_NAME))

    def recolour_label(self) -> None:
        v = self.session.active_value
        lab = self.session.labels.get(v)
        if lab is None:
            return
        dlg = QColorDialog(QColor(*lab.color), self)
        dlg.setWindowTitle(f"Colour of {lab.name}")
        dlg.colorSelected.connect(lambda c: self.session.update_label(
            v, "recolour label", color=away_from_proposal((c.red(), c.green(), c.blue()))))  # never proposal-white
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.open()
        self.colour_dialog = dlg
